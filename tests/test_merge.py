"""Merging LoRA into the base weights: the merged checkpoint equals the unmerged model (≤ 1e-4 in fp32), loads
with plain transformers in a fresh process where peft, adapters and adapterx are not installed, and refusals
(bottleneck adapters, a failed check) name the parts and write nothing."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModel, AutoModelForSequenceClassification

from adapterx.core.backbone import load_backbone
from adapterx.core.errors import CompositionError
from adapterx.core.heads import HeadSpec
from adapterx.deploy.compose import compose
from adapterx.deploy.merge import TOLERANCE, merge, merge_adapters

TEXTS = ["the happy dog eats the apple", "der hund isst nicht den apfel heute", "le chat"]


@pytest.fixture(scope="module")
def base():
    return load_backbone("builtin:tiny-xlmr")


@pytest.fixture(scope="module")
def saved(base, tmp_path_factory, saved_adapter):
    make_adapter = saved_adapter
    root = tmp_path_factory.mktemp("merge-adapters")
    return {
        "inter": make_adapter(base.fresh_copy(), root / "inter", r=4, seed=11, labels=["no", "yes"]),
        "target": make_adapter(
            base.fresh_copy(),
            root / "target",
            r=8,
            alpha=16.0,
            seed=12,
            target_modules=["query", "key", "value", "dense"],
        ),
        "bare": make_adapter(base.fresh_copy(), root / "bare", r=4, seed=13, head=False),
        "bottleneck": make_adapter(base.fresh_copy(), root / "bottleneck", "bottleneck", seed=14),
    }


@pytest.fixture(scope="module")
def merged(base, saved, tmp_path_factory):
    out = tmp_path_factory.mktemp("merged") / "xnli-merged"
    report = merge_adapters(base.fresh_copy(), [("inter", saved["inter"]), ("target", saved["target"])], out)
    return out, report


def unmerged_logits(base, saved, texts=TEXTS):
    composed = compose(base.fresh_copy(), {"inter": saved["inter"], "target": saved["target"]}, "sum")
    enc = base.tokenizer(texts, padding=True, return_tensors="pt")
    return composed(enc["input_ids"], enc["attention_mask"])


def test_merge_equals_unmerged_and_writes_a_plain_checkpoint(base, saved, merged, nli_labels):
    out, report = merged
    assert report.max_abs_diff <= TOLERANCE and report.compared == "logits"
    assert report.merged == ["inter", "target"]
    assert report.loader == "AutoModelForSequenceClassification"
    for name in (
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "README.md",
        "adapterx_merge.json",
    ):
        assert (out / name).is_file(), name
    assert not list(out.glob("*.bin")) and not (out / "adapter_config.json").exists()
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["XLMRobertaForSequenceClassification"]
    assert config["id2label"] == {str(i): label for i, label in enumerate(nli_labels)}
    assert config["label2id"] == {label: i for i, label in enumerate(nli_labels)}
    # independently of merge's own check: reload and compare on other inputs
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    texts = ["the cat does not eat", "ein hund"]
    enc = base.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        got = model(**enc).logits
    assert (got - unmerged_logits(base, saved, texts)).abs().max() <= TOLERANCE
    # the merge really changed the weights (the LoRA deltas are not zero)
    plain = AutoModel.from_pretrained(out, add_pooling_layer=False)
    query = "encoder.layer.0.attention.self.query.weight"
    assert not torch.allclose(plain.state_dict()[query], base.base_tensors[query])


@pytest.mark.slow  # a fresh process or a whole study: seconds; runs in CI with -m slow
def test_merged_checkpoint_loads_in_a_fresh_process_with_only_transformers(
    base, saved, merged, tmp_path, nli_labels, plain_transformers_logits
):
    out, _ = merged
    data = plain_transformers_logits(out, TEXTS, tmp_path)
    assert data["installed"] == [] and data["imported"] == []  # peft/adapters/adapterx absent, not imported
    assert data["id2label"] == {str(i): label for i, label in enumerate(nli_labels)}
    got = torch.tensor(data["logits"])
    assert (got - unmerged_logits(base, saved)).abs().max() <= TOLERANCE


def test_a_refusal_lists_what_each_part_can_do(base, saved, tmp_path):
    """(Each kind's refusal and its reason: tests/test_kinds.py.) With a mergeable part beside, both are named."""
    with pytest.raises(CompositionError) as info:
        merge_adapters(
            base.fresh_copy(), [("inter", saved["bottleneck"]), ("target", saved["target"])], tmp_path / "out"
        )
    message = str(info.value)
    assert "lora (mergeable" in message and "bottleneck (not mergeable" in message and "kind=lora" in message
    assert str(saved["bottleneck"]) in message and str(saved["target"]) in message
    assert not (tmp_path / "out").exists()


def test_a_failed_check_writes_nothing(base, saved, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(CompositionError, match="differ by .* > -1.*nothing was written"):
        merge_adapters(base.fresh_copy(), [("target", saved["target"])], out, tolerance=-1.0)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_encoder_only_merge_for_an_adapter_without_head(base, saved, tmp_path):
    report = merge_adapters(base.fresh_copy(), [("bare", saved["bare"])], tmp_path / "enc")
    assert report.loader == "AutoModel" and report.compared == "hidden states"
    assert report.max_abs_diff <= TOLERANCE
    assert AutoModel.from_pretrained(tmp_path / "enc").config.architectures == ["XLMRobertaModel"]


@pytest.mark.parametrize(
    "spec,loader",
    [
        (HeadSpec("tagging", 3), "AutoModelForTokenClassification"),
        (HeadSpec("classification", 3, {"pooling": "mean"}), "AutoModel"),
    ],
)
def test_other_heads(base, tmp_path, spec, loader, saved_adapter):
    adapter = saved_adapter(base.fresh_copy(), tmp_path / "adapter", r=4, seed=15, head=spec)
    report = merge_adapters(base.fresh_copy(), [("t", adapter)], tmp_path / "out")
    assert report.loader == loader and report.compared == "logits" and report.max_abs_diff <= TOLERANCE
    if loader == "AutoModel":  # no transformers twin: encoder + head files, and the README says why
        assert (tmp_path / "out" / "head.safetensors").is_file() and (tmp_path / "out" / "head.json").is_file()
        assert "pools by 'mean'" in (tmp_path / "out" / "README.md").read_text()
    else:
        config = json.loads((tmp_path / "out" / "config.json").read_text())
        assert config["architectures"] == ["XLMRobertaForTokenClassification"] and len(config["id2label"]) == 3


def test_a_weighted_merge_folds_too(base, saved, tmp_path):
    composed = compose(
        base.fresh_copy(), {"bare": saved["bare"], "target": saved["target"]}, "weighted", weights=[0.3, 0.7]
    )
    report = merge(composed, tmp_path / "w")
    assert report.max_abs_diff <= TOLERANCE and report.merged == ["weighted_bare_target"]
    mixed = compose(base.fresh_copy(), {"inter": saved["inter"], "target": saved["target"]}, "mixed")
    with pytest.raises(CompositionError, match="picks adapters per row"):
        merge(mixed, tmp_path / "m")


def test_cli_merge_reports_the_difference(saved, tmp_path, capsys, compose_cli):
    run_cli = compose_cli
    rc = run_cli(["merge", "--adapter", str(saved["target"]), "--output", str(tmp_path / "cli")])
    out = capsys.readouterr().out
    assert rc == 0 and "max |merged - unmerged| logits" in out and "AutoModelForSequenceClassification" in out
    with pytest.raises(CompositionError, match="bottleneck"):
        run_cli(["merge", "--adapter", str(saved["bottleneck"]), "--output", str(tmp_path / "no")])
    with pytest.raises(SystemExit):
        run_cli(["merge", "--help"])
    assert "no adapterx or peft" in capsys.readouterr().out
