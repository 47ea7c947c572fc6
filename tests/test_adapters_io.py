"""Save / load of adapters: identical logits, plain-peft compatibility, and clear errors on bad files."""


import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

from adapterx import store
from adapterx.core.errors import AdapterFileError, BackboneMismatchError
from adapterx.core.heads import HeadSpec, build_head
from adapterx.core.model import AdaptedModel
from adapterx.methods import parse_spec
from tests.conftest import perturb_trainable

SPECS = {"lora": {"kind": "lora", "r": 4}, "houlsby": {"kind": "bottleneck", "architecture": "houlsby",
                                                        "reduction_factor": 4},
         "pfeiffer": {"kind": "bottleneck", "reduction_factor": 4}}


def _saved(backbone, tmp_path, spec=SPECS["lora"], name="a"):
    model = AdaptedModel(backbone)
    store.add_adapter(model, name, parse_spec(spec))
    store.activate(model, [name], trainable=name)
    model.add_head(name, HeadSpec("classification", 3))
    perturb_trainable(model)
    model.eval()
    directory = store.save_adapter(model, name, tmp_path / name, task="tiny-xnli", labels=["e", "n", "c"], head=name)
    return model, directory


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_reloaded_adapter_gives_identical_logits(pristine_backbone, tmp_path, probe, kind):
    model, directory = _saved(pristine_backbone.fresh_copy(), tmp_path, SPECS[kind])
    with torch.inference_mode():
        expected = model(**probe).logits
    reloaded = AdaptedModel(pristine_backbone.fresh_copy())
    store.load_adapter(reloaded, directory)
    store.activate(reloaded, ["a"])
    reloaded.eval()
    with torch.inference_mode():
        assert torch.equal(reloaded(**probe).logits, expected)
    metadata = store.read_metadata(directory)
    assert metadata["base_model"]["fingerprint"] == pristine_backbone.fingerprint
    assert metadata["task"] == "tiny-xnli" and metadata["labels"] == ["e", "n", "c"]
    assert {"torch", "peft", "adapters", "transformers"} <= set(metadata["library_versions"])
    assert not list(directory.glob("*.bin")) and not list(directory.glob("*.pt"))


def test_lora_adapter_loads_in_plain_peft(pristine_backbone, tmp_path, probe):
    model, directory = _saved(pristine_backbone.fresh_copy(), tmp_path)
    with torch.inference_mode():
        expected = model(**probe).logits
    base = pristine_backbone.fresh_copy().model
    plain = PeftModel.from_pretrained(base, str(directory)).eval()
    head = build_head(base.config.hidden_size, HeadSpec.from_json(store.read_metadata(directory)["head"]))
    head.load_state_dict(load_file(str(directory / "head.safetensors")))
    head.eval()
    with torch.inference_mode():
        hidden = plain(input_ids=probe["input_ids"], attention_mask=probe["attention_mask"]).last_hidden_state
        assert torch.allclose(head(hidden, probe["attention_mask"]), expected, atol=1e-6)


def test_wrong_backbone_names_both_fingerprints(backbone, tmp_path):
    _, directory = _saved(backbone, tmp_path)
    from adapterx.core.backbone import load_backbone
    other = load_backbone("builtin:tiny-xlmr@7")
    with pytest.raises(BackboneMismatchError) as info:
        store.load_adapter(AdaptedModel(other), directory)
    message = str(info.value)
    assert str(directory) in message and other.fingerprint in message and backbone.fingerprint in message


def test_missing_weights_file_is_named(pristine_backbone, tmp_path):
    _, directory = _saved(pristine_backbone.fresh_copy(), tmp_path)
    (directory / "adapter_model.safetensors").unlink()
    with pytest.raises(AdapterFileError, match="adapter_model.safetensors.*missing"):
        store.load_adapter(AdaptedModel(pristine_backbone.fresh_copy()), directory)


def test_corrupt_safetensors_is_named(pristine_backbone, tmp_path):
    _, directory = _saved(pristine_backbone.fresh_copy(), tmp_path)
    (directory / "adapter_model.safetensors").write_bytes(b"\x00garbage not a safetensors file")
    with pytest.raises(AdapterFileError, match="adapter_model.safetensors.*corrupt"):
        store.load_adapter(AdaptedModel(pristine_backbone.fresh_copy()), directory)


def test_corrupt_head_is_named(pristine_backbone, tmp_path):
    _, directory = _saved(pristine_backbone.fresh_copy(), tmp_path)
    data = (directory / "head.safetensors").read_bytes()
    (directory / "head.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(AdapterFileError, match="head.safetensors"):
        store.load_adapter(AdaptedModel(pristine_backbone.fresh_copy()), directory)


def test_missing_or_corrupt_metadata(pristine_backbone, tmp_path):
    with pytest.raises(AdapterFileError, match="no such adapter directory"):
        store.read_metadata(tmp_path / "nothing")
    _, directory = _saved(pristine_backbone.fresh_copy(), tmp_path)
    (directory / "adapterx.json").write_text("{not json")
    with pytest.raises(AdapterFileError, match="adapterx.json.*corrupt JSON"):
        store.read_metadata(directory)
    (directory / "adapterx.json").unlink()
    with pytest.raises(AdapterFileError, match="adapterx.json.*missing"):
        store.read_metadata(directory)


def test_failed_save_leaves_the_old_adapter_intact(pristine_backbone, tmp_path, monkeypatch):
    model, directory = _saved(pristine_backbone.fresh_copy(), tmp_path)
    before = {p.name: p.read_bytes() for p in directory.iterdir()}

    def broken_save(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr("adapterx.store.adapter.file_digest", broken_save)
    with pytest.raises(OSError, match="disk full"):
        store.save_adapter(model, "a", directory, head="a")
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["a"]   # no temporary directory left behind


def test_spec_fields_are_checked():
    from adapterx.core.errors import AdapterxError
    with pytest.raises(AdapterxError, match="unknown field.*'rank'"):
        parse_spec({"kind": "lora", "rank": 8})
    with pytest.raises(AdapterxError, match="unknown adapter kind 'loraa'"):
        parse_spec({"kind": "loraa"})
    with pytest.raises(AdapterxError, match="architecture"):
        parse_spec({"kind": "bottleneck", "architecture": "mystery"})
