"""Save / load of adapters: plain-peft compatibility and clear errors on bad files. (Identical logits after a
reload, for every kind: tests/test_kinds.py; plain libraries in a process without adapterx:
tests/test_plain_reload.py.)"""

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

from adapterx import store
from adapterx.core.errors import AdapterFileError, BackboneMismatchError
from adapterx.core.heads import HeadSpec, build_head
from adapterx.core.model import AdaptedModel
from adapterx.methods import parse_spec


@pytest.fixture
def saved(backbone, tmp_path, perturb):
    """(model, directory): a LoRA adapter (B != 0) with a classification head, saved."""
    model = AdaptedModel(backbone)
    store.add_adapter(model, "a", parse_spec({"kind": "lora", "r": 4}))
    store.activate(model, ["a"], trainable="a")
    model.add_head("a", HeadSpec("classification", 3))
    perturb(model)
    model.eval()
    directory = store.save_adapter(model, "a", tmp_path / "a", task="tiny-xnli", labels=["e", "n", "c"], head="a")
    return model, directory


def test_lora_adapter_loads_in_plain_peft(pristine_backbone, tmp_path, probe, saved):
    model, directory = saved
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


def test_wrong_backbone_names_both_fingerprints(backbone, tmp_path, saved):
    _, directory = saved
    from adapterx.core.backbone import load_backbone

    other = load_backbone("builtin:tiny-xlmr@7")
    with pytest.raises(BackboneMismatchError) as info:
        store.load_adapter(AdaptedModel(other), directory)
    message = str(info.value)
    assert str(directory) in message and other.fingerprint in message and backbone.fingerprint in message


def test_missing_weights_file_is_named(pristine_backbone, tmp_path, saved):
    _, directory = saved
    (directory / "adapter_model.safetensors").unlink()
    with pytest.raises(AdapterFileError, match="adapter_model.safetensors.*missing"):
        store.load_adapter(AdaptedModel(pristine_backbone.fresh_copy()), directory)


def test_corrupt_safetensors_is_named(pristine_backbone, tmp_path, saved):
    _, directory = saved
    (directory / "adapter_model.safetensors").write_bytes(b"\x00garbage not a safetensors file")
    with pytest.raises(AdapterFileError, match="adapter_model.safetensors.*corrupt"):
        store.load_adapter(AdaptedModel(pristine_backbone.fresh_copy()), directory)


def test_corrupt_head_is_named(pristine_backbone, tmp_path, saved):
    _, directory = saved
    data = (directory / "head.safetensors").read_bytes()
    (directory / "head.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(AdapterFileError, match="head.safetensors"):
        store.load_adapter(AdaptedModel(pristine_backbone.fresh_copy()), directory)


def test_missing_or_corrupt_metadata(pristine_backbone, tmp_path, saved):
    with pytest.raises(AdapterFileError, match="no such adapter directory"):
        store.read_metadata(tmp_path / "nothing")
    _, directory = saved
    (directory / "adapterx.json").write_text("{not json")
    with pytest.raises(AdapterFileError, match="adapterx.json.*corrupt JSON"):
        store.read_metadata(directory)
    (directory / "adapterx.json").unlink()
    with pytest.raises(AdapterFileError, match="adapterx.json.*missing"):
        store.read_metadata(directory)


def test_failed_save_leaves_the_old_adapter_intact(pristine_backbone, tmp_path, monkeypatch, saved):
    model, directory = saved
    before = {p.name: p.read_bytes() for p in directory.iterdir()}

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("adapterx.store.adapter.file_digest", broken_save)
    with pytest.raises(OSError, match="disk full"):
        store.save_adapter(model, "a", directory, head="a")
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["a"]  # no temporary directory left behind


def test_spec_fields_are_checked():
    from adapterx.core.errors import AdapterxError

    with pytest.raises(AdapterxError, match="unknown field.*'rank'"):
        parse_spec({"kind": "lora", "rank": 8})
    with pytest.raises(AdapterxError, match="unknown adapter kind 'loraa'"):
        parse_spec({"kind": "loraa"})
    with pytest.raises(AdapterxError, match="architecture"):
        parse_spec({"kind": "bottleneck", "architecture": "mystery"})
