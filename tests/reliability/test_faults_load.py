"""Fault injection, loading (issue 15, cases 4 and 5, and the forms of case 6): a saved adapter loads only if
its files are what adapterx.json promises (its kind's safetensors file, with the recorded digest, no pickle
beside it) and its head fits the task it is evaluated on; anything else is one line naming the file."""

from __future__ import annotations

import json
import pickle
import shutil

import pytest
import torch
from safetensors.torch import load_file

from adapterx import store
from adapterx.core.backbone import load_backbone
from adapterx.core.errors import AdapterFileError
from adapterx.core.model import AdaptedModel


@pytest.fixture(scope="module")
def adapters(kit, tmp_path_factory):
    base = load_backbone("builtin:tiny-xlmr")
    root = tmp_path_factory.mktemp("saved")
    return {
        "lora": kit.make_adapter(base.fresh_copy(), root / "lora", r=2),
        "lora2": kit.make_adapter(base.fresh_copy(), root / "lora2", r=2, seed=1),
        "bottleneck": kit.make_adapter(base.fresh_copy(), root / "bottleneck", "bottleneck", reduction_factor=8),
        "prompt": kit.make_adapter(base.fresh_copy(), root / "prompt", "prompt", num_virtual_tokens=4),
    }


def _evaluate(task, adapter, out, *extra):
    return [
        "evaluate",
        "--task",
        task,
        "--adapter",
        adapter,
        "--split",
        "test",
        "--languages",
        "en",
        "--limit",
        "8",
        "--bootstrap",
        "10",
        "--output",
        out,
        *extra,
    ]


def _copy(adapters, name, tmp_path):
    return shutil.copytree(adapters[name], tmp_path / name)


def test_the_adapters_evaluate_as_saved(kit, adapters, tmp_path):
    code, out, err = kit.cli(*_evaluate("tiny-xnli", adapters["lora"], tmp_path / "scores.json"))
    assert code == 0, err
    assert json.loads((tmp_path / "scores.json").read_text())["task"] == "tiny-xnli"


# ----------------------------------------------------------------------------- case 4: the head fits the task
def test_a_three_class_head_is_refused_on_a_two_class_task(kit, adapters, tmp_path):
    before = kit.snapshot(tmp_path)
    kit.one_line_error(
        _evaluate("tiny-sst", adapters["lora"], tmp_path / "scores.json"),
        str(adapters["lora"] / "adapterx.json"),
        "'tiny-sst'",
        "contradiction",
    )
    assert kit.snapshot(tmp_path) == before


def test_the_same_labels_in_another_order_are_refused(kit, adapters, tmp_path):
    directory = _copy(adapters, "lora", tmp_path)
    meta = json.loads((directory / "adapterx.json").read_text())
    meta["labels"] = list(reversed(kit.XNLI))
    (directory / "adapterx.json").write_text(json.dumps(meta))
    before = kit.snapshot(tmp_path)
    kit.one_line_error(_evaluate("tiny-xnli", directory, tmp_path / "scores.json"), "labels")
    assert kit.snapshot(tmp_path) == before


# ----------------------------------------------------------------------------- case 5: files as promised
def test_weights_swapped_in_from_another_adapter_are_refused(kit, adapters, tmp_path, pristine_backbone):
    directory = _copy(adapters, "lora", tmp_path)
    shutil.copy(adapters["lora2"] / "adapter_model.safetensors", directory / "adapter_model.safetensors")
    before = kit.snapshot(tmp_path)
    kit.one_line_error(
        _evaluate("tiny-xnli", directory, tmp_path / "scores.json"),
        str(directory / "adapter_model.safetensors"),
        "weights_digest",
    )
    assert kit.snapshot(tmp_path) == before
    with pytest.raises(AdapterFileError, match="weights_digest"):
        store.load_adapter(AdaptedModel(pristine_backbone.fresh_copy()), directory)


def test_a_swapped_head_is_refused(kit, adapters, tmp_path):
    directory = _copy(adapters, "lora", tmp_path)
    shutil.copy(adapters["lora2"] / "head.safetensors", directory / "head.safetensors")
    kit.one_line_error(_evaluate("tiny-xnli", directory, tmp_path / "scores.json"), "head.safetensors", "head_digest")


class _Canary:
    """Unpickling this creates a file: proof that a pickle was loaded."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _plant_pickle(directory, name, marker):
    with open(directory / name, "wb") as f:
        pickle.dump({"weights": _Canary(marker)}, f)


def test_weights_file_pointed_elsewhere_is_refused_and_the_pickle_never_loaded(kit, adapters, tmp_path):
    """The bottleneck adapter's real weights as the adapters library's default pickle, adapterx.json pointing
    at another (valid safetensors) file: the library would fall back to the pickle."""
    directory = _copy(adapters, "bottleneck", tmp_path)
    torch.save(load_file(directory / "adapter.safetensors"), directory / "pytorch_adapter.bin")
    (directory / "adapter.safetensors").unlink()
    meta = json.loads((directory / "adapterx.json").read_text())
    meta["weights_file"] = "head.safetensors"
    (directory / "adapterx.json").write_text(json.dumps(meta))
    before = kit.snapshot(tmp_path)
    kit.one_line_error(_evaluate("tiny-xnli", directory, tmp_path / "scores.json"), "'weights_file'")
    assert kit.snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "kind, pickle_name", [("bottleneck", "pytorch_adapter.bin"), ("lora", "adapter_model.bin"), ("lora", "weights.pt")]
)
def test_a_pickle_beside_the_weights_is_refused(kit, adapters, tmp_path, kind, pickle_name):
    directory = _copy(adapters, kind, tmp_path)
    marker = tmp_path / "unpickled"
    _plant_pickle(directory, pickle_name, marker)
    before = kit.snapshot(tmp_path)
    kit.one_line_error(_evaluate("tiny-xnli", directory, tmp_path / "scores.json"), pickle_name, "pickle")
    assert kit.snapshot(tmp_path) == before and not marker.exists()


# ----------------------------------------------------------------------------- case 6: forms that do not apply
@pytest.mark.parametrize("kind, form", [("bottleneck", "merged"), ("prompt", "fused"), ("prompt", "merged")])
def test_a_form_no_adapter_can_take_is_one_line(kit, adapters, tmp_path, kind, form):
    before = kit.snapshot(tmp_path)
    kit.one_line_error(
        _evaluate("tiny-xnli", adapters[kind], tmp_path / "scores.json", "--forms", form),
        f"forms {form}",
        f"({kind}): form {form!r}",
    )
    assert kit.snapshot(tmp_path) == before
