"""Transfer strategies 'merge-then-train' and 'fuse': train via train_task, save, reload with identical logits;
the merged base is rebuilt and checked on reload; the fusion layer travels with the target; errors are clear."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from adapterx import store
from adapterx.core.backbone import load_backbone
from adapterx.core.errors import AdapterxError, BackboneMismatchError, CompositionError
from adapterx.core.model import AdaptedModel
from adapterx.deploy.plain import merge_into_base
from adapterx.deploy.setup import load_for_inference
from adapterx.methods import get_method, parse_spec
from adapterx.tasks import get_task
from adapterx.training import strategies as transfer
from adapterx.training.loop import TrainConfig, restore_trainable_state, trainable_state
from adapterx.training.workflow import train_task

LORA = {"kind": "lora", "r": 4}
BOTTLENECK = {"kind": "bottleneck", "reduction_factor": 4}
FAST = TrainConfig(max_steps=3, batch_size=16, learning_rate=5e-3)


def _train(backbone, task, spec, out, **kw):
    return train_task(
        backbone, get_task(task), parse_spec(spec), FAST, out, train_limit=32, eval_limit=16, progress=False, **kw
    )


@pytest.fixture(scope="module")
def intermediates(pristine_backbone, tmp_path_factory):
    """A LoRA intermediate (tiny-nli) and two bottleneck intermediates (tiny-nli, tiny-sst), trained 3 steps each."""
    root = tmp_path_factory.mktemp("intermediates")
    return {
        "lora": _train(pristine_backbone, "tiny-nli", LORA, root / "lora-nli").directory,
        "nli": _train(pristine_backbone, "tiny-nli", BOTTLENECK, root / "bn-nli").directory,
        "sst": _train(pristine_backbone, "tiny-sst", BOTTLENECK, root / "bn-sst").directory,
    }


@pytest.fixture
def spy(monkeypatch):
    """Keeps the model train_task prepared (and trained), to compare with the reloaded one."""
    seen = {}
    real = transfer.prepare

    def prepare(*args, **kwargs):
        seen["prepared"] = real(*args, **kwargs)
        return seen["prepared"]

    monkeypatch.setattr(transfer, "prepare", prepare)
    return seen


def _logits(model, probe):
    model.eval()
    with torch.inference_mode():
        return model(**probe).logits


@pytest.mark.parametrize("target", ["lora", "bottleneck"])
def test_merge_then_train_trains_on_a_merged_base_and_reloads(
    pristine_backbone, intermediates, tmp_path, probe, spy, target
):
    spec = LORA if target == "lora" else BOTTLENECK
    trained = _train(
        pristine_backbone,
        "tiny-xnli",
        spec,
        tmp_path / "t",
        strategy="merge-then-train",
        intermediate=intermediates["lora"],
    )
    model = spy["prepared"].model
    metadata = store.read_metadata(trained.directory)
    inter_digest = store.read_metadata(intermediates["lora"])["weights_digest"]
    base = metadata["base_model"]
    assert base["name"] == f"builtin:tiny-xlmr+merged({inter_digest})"
    assert base["fingerprint"] == model.backbone.fingerprint != pristine_backbone.fingerprint
    [part] = metadata["requires"]
    assert part["role"] == "merged_into_base" and part["weights_digest"] == inter_digest
    assert part["base_model"] == {"name": pristine_backbone.name, "fingerprint": pristine_backbone.fingerprint}
    assert type(model.backbone.model).__name__ == "XLMRobertaModel"

    reloaded = load_for_inference(pristine_backbone.fresh_copy(), trained.directory)
    assert reloaded.backbone.fingerprint == base["fingerprint"] and reloaded.active_adapters == ["target"]
    assert torch.equal(_logits(model, probe), _logits(reloaded, probe))
    if target == "lora":  # the target merges too: no adapter module left at inference
        plain = merge_into_base(reloaded, ["target"])
        with torch.inference_mode():
            hidden = plain(input_ids=probe["input_ids"], attention_mask=probe["attention_mask"]).last_hidden_state
            want = reloaded.encode(probe["input_ids"], probe["attention_mask"]).last_hidden_state
        assert torch.allclose(hidden, want, atol=1e-5)


def test_merge_then_train_checks_the_rebuilt_base(pristine_backbone, intermediates, tmp_path):
    trained = _train(
        pristine_backbone,
        "tiny-xnli",
        LORA,
        tmp_path / "t",
        strategy="merge-then-train",
        intermediates=[intermediates["lora"]],
    )
    path = trained.directory / store.METADATA_FILE
    original = json.loads(path.read_text())

    tampered = json.loads(json.dumps(original))
    tampered["base_model"]["fingerprint"] = "sha256:" + "0" * 32
    path.write_text(json.dumps(tampered))
    with pytest.raises(BackboneMismatchError, match="rebuilding its merged base"):
        load_for_inference(pristine_backbone.fresh_copy(), trained.directory)

    tampered = json.loads(json.dumps(original))
    tampered["requires"][0]["weights_digest"] = "sha256:" + "1" * 32  # as if the intermediate had been retrained
    path.write_text(json.dumps(tampered))
    with pytest.raises(CompositionError, match="merged in"):
        load_for_inference(pristine_backbone.fresh_copy(), trained.directory)

    path.write_text(json.dumps(original))
    with pytest.raises(BackboneMismatchError):  # another original backbone: the intermediate does not fit it
        load_for_inference(load_backbone("builtin:tiny-xlmr@1"), trained.directory)
    load_for_inference(pristine_backbone.fresh_copy(), trained.directory)  # untampered: loads


def test_fuse_trains_fusion_and_target_and_reloads(pristine_backbone, intermediates, tmp_path, probe, spy):
    trained = _train(
        pristine_backbone,
        "tiny-xnli",
        BOTTLENECK,
        tmp_path / "t",
        strategy="fuse",
        intermediates=[intermediates["nli"], intermediates["sst"]],
    )
    model = spy["prepared"].model
    metadata = store.read_metadata(trained.directory)
    roles = [(p["name"], p["role"]) for p in metadata["requires"]]
    assert roles == [
        ("intermediate_1", "fused"),
        ("intermediate_2", "fused"),
        ("intermediate_1,intermediate_2", "fusion"),
    ]
    fusion = metadata["requires"][-1]
    assert fusion["path"] == "fusion" and fusion["fuses"] == ["intermediate_1", "intermediate_2"]
    assert (trained.directory / "fusion" / "model_adapter_fusion.safetensors").is_file()
    assert not list(trained.directory.rglob("*.bin"))
    assert metadata["base_model"]["fingerprint"] == pristine_backbone.fingerprint

    # trained: fusion, target and head; frozen: the intermediates
    state = trainable_state(model, "target", "target")
    fusion_keys = [k for k in state if k.startswith("extra.") and ".adapter_fusion_layer." in k]
    assert fusion_keys and all(k.startswith(("adapter.", "head.", "extra.")) for k in state)
    value = next(v for k, v in state.items() if k.endswith("value.weight") and k in fusion_keys)
    assert not torch.equal(value, torch.eye(value.shape[0]))  # initialised to identity, then trained
    for name, path in (("intermediate_1", intermediates["nli"]), ("intermediate_2", intermediates["sst"])):
        reference = AdaptedModel(pristine_backbone.fresh_copy())
        store.load_adapter(reference, path, name=name, with_head=False)
        method = get_method("bottleneck")
        saved, now = method.adapter_state(reference, name), method.adapter_state(model, name)
        assert all(torch.equal(saved[k], now[k]) for k in saved)

    # a checkpoint holds the fusion layer and restores it
    snapshot = {k: v.clone() for k, v in state.items()}
    with torch.no_grad():
        for _, p in model.encoder.named_parameters():
            if p.requires_grad:
                p.add_(1.0)
    restore_trainable_state(model, "target", "target", snapshot)
    assert all(torch.equal(v, snapshot[k]) for k, v in trainable_state(model, "target", "target").items())

    reloaded = load_for_inference(pristine_backbone.fresh_copy(), trained.directory)
    assert reloaded.active_adapters == ["intermediate_1", "intermediate_2", "target"]
    assert torch.equal(_logits(model, probe), _logits(reloaded, probe))
    with torch.no_grad():  # the fusion layer is in use
        value = next(
            p for n, p in reloaded.encoder.named_parameters() if ".adapter_fusion_layer." in n and "value" in n
        )
        value.mul_(2)
    assert not torch.allclose(_logits(model, probe), _logits(reloaded, probe), atol=1e-4)
    assert transfer.modules_at_inference("fuse", 2) == 4

    # a changed fusion layer is refused
    weights = trained.directory / "fusion" / "model_adapter_fusion.safetensors"
    save_file({k: v + 1 for k, v in load_file(str(weights)).items()}, str(weights))
    with pytest.raises(CompositionError, match="fusion layer"):
        load_for_inference(pristine_backbone.fresh_copy(), trained.directory)


def test_strategy_errors(pristine_backbone, intermediates):
    lora, nli, sst = intermediates["lora"], intermediates["nli"], intermediates["sst"]
    bottleneck, lora_spec = parse_spec(BOTTLENECK), parse_spec(LORA)

    def prepare(strategy, spec, paths):
        return transfer.prepare(strategy, pristine_backbone.fresh_copy(), spec, paths)

    with pytest.raises(CompositionError, match="cannot be merged.*LoRA"):
        prepare("merge-then-train", lora_spec, [nli])
    with pytest.raises(CompositionError, match="fuse' needs bottleneck intermediate adapters"):
        prepare("fuse", bottleneck, [nli, lora])
    with pytest.raises(CompositionError, match="target must be a bottleneck adapter"):
        prepare("fuse", lora_spec, [nli, sst])
    with pytest.raises(AdapterxError, match="'fuse' takes at least 2 intermediate adapters, got 1"):
        prepare("fuse", bottleneck, [nli])
    for strategy in ("stack", "continue", "merge-then-train"):
        with pytest.raises(AdapterxError, match=f"'{strategy}' takes exactly 1 intermediate adapter, got 2.*'fuse'"):
            prepare(strategy, lora_spec, [lora, lora])
        with pytest.raises(AdapterxError, match="exactly 1 intermediate adapter, got 0"):
            prepare(strategy, lora_spec, [])
    with pytest.raises(AdapterxError, match="'none' takes no intermediate adapter"):
        prepare("none", lora_spec, lora)
    with pytest.raises(AdapterxError, match="not both"):
        train_task(
            pristine_backbone,
            get_task("tiny-xnli"),
            lora_spec,
            FAST,
            "unused",
            strategy="stack",
            intermediate=lora,
            intermediates=[lora],
        )


def test_modules_at_inference():
    assert {s: transfer.modules_at_inference(s, 1) for s in ("none", "stack", "continue", "merge-then-train")} == {
        "none": 1,
        "stack": 2,
        "continue": 1,
        "merge-then-train": 1,
    }
    assert transfer.modules_at_inference("fuse", 3) == 5
    assert transfer.STRATEGIES.names() == ["none", "stack", "continue", "merge-then-train", "fuse"]
    assert all(entry.inference for entry in transfer.STRATEGIES.values())
    with pytest.raises(AdapterxError, match="unknown transfer strategy 'stak'; did you mean 'stack'"):
        transfer.modules_at_inference("stak", 1)


def test_kind_problem_tells_a_recipe_before_training():
    assert transfer.kind_problem("merge-then-train", "lora", "bottleneck") == ""
    assert "cannot be merged" in transfer.kind_problem("merge-then-train", "bottleneck", "lora")
    assert transfer.kind_problem("fuse", "bottleneck", "bottleneck") == ""
    assert "bottleneck intermediate" in transfer.kind_problem("fuse", "lora", "bottleneck")
    assert "target must be a bottleneck" in transfer.kind_problem("fuse", "bottleneck", "lora")
