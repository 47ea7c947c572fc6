"""The engine's adapters: names, stacks, the forms each kind is served in, hot add and remove, and every refusal
with the status and field it names."""

from __future__ import annotations

import json
import shutil
import threading
import time

import pytest
import torch

from adapterx.core.backbone import load_backbone
from adapterx.core.heads import HeadSpec
from adapterx.serve import Engine, RequestError, Row
from adapterx.serve.discover import discover
from adapterx.serve.errors import status_of

pytestmark = pytest.mark.usefixtures("one_thread")


def refusal(call, *args, **kwargs) -> tuple[int, str]:
    with pytest.raises(Exception) as caught:
        call(*args, **kwargs)
    return status_of(caught.value), str(caught.value)


def test_names_from_an_artifacts_directory(tmp_path, served_dir):
    _, dirs = served_dir
    run = tmp_path / "adapters" / "tiny-xnli" / "tiny-nli+stack" / "seed-0" / "adapter"
    inter = tmp_path / "adapters" / "intermediate" / "tiny-nli" / "seed-0" / "adapter"
    for target in (run, inter):
        shutil.copytree(dirs["nli-a"], target)
    (tmp_path / "elsewhere").symlink_to(dirs["nli-b"])  # not followed
    assert [n for n, _ in discover(tmp_path)] == ["tiny-nli/seed-0", "tiny-xnli/tiny-nli+stack/seed-0"]
    assert discover(f"mine={dirs['nli-a']}") == [("mine", dirs["nli-a"])]
    assert discover(run)[0][0] == "seed-0"


def test_each_kind_is_served_in_its_form_and_mixed_rows_take_one_forward_plus_one_per_grouped_adapter(engine):
    forms = {a["name"]: a["served_as"] for a in engine.adapters()}
    assert {n for n, f in forms.items() if f == "gathered"} == {
        "nli-a",
        "nli-b",
        "nli-stacked",
        "pos-lora",
        "qa-lora",
        "encoder",
    }
    assert {n for n, f in forms.items() if f == "unmerged"} == {
        "nli-bottleneck",
        "nli-prompt",
        "nli-prefix",
        "pos-bottleneck",
        "qa-prompt",
    }
    text = {"text": "the dog eats the apple", "text_pair": "the dog eats"}
    rows = [Row("predict", a, **text) for a in ("nli-a", "nli-b", "nli-stacked", "nli-a+nli-b")]
    rows += [Row("embed", a, text="the dog") for a in (None, "nli-a+nli-b", ("nli-b", "nli-a"))]
    rows += [Row("predict", "nli-bottleneck", **text), Row("predict", "nli-prompt", **text)]
    works = engine.prepare(rows)
    try:
        batch = engine.run(works)
    finally:
        engine.release(works)
    assert batch.forwards == 3 and batch.rows == 9  # one for all gathered rows, one per other adapter
    assert batch.programs[:6] == ["nli-a", "nli-b", "nli-stacked", "nli-a+nli-b", "", "nli-b+nli-a"]
    # a stack adds both deltas (the top adapter's head reads it): its logits are those of neither part alone
    a, b, _, ab = (r["logits"] for r in batch.answers[:4])
    assert max(abs(x - y) for x, y in zip(ab, b)) > 1e-3 and max(abs(x - y) for x, y in zip(ab, a)) > 1e-3
    # the encoder states of a LoRA stack do not depend on its order
    bare, ab, ba = (r["embedding"] for r in batch.answers[4:7])
    assert max(abs(x - y) for x, y in zip(ab, ba)) < 1e-5 < max(abs(x - y) for x, y in zip(ab, bare))


@pytest.mark.parametrize(
    "row, status, words",
    [
        (Row("predict", "nli-aa", text="x"), 404, ["unknown adapter 'nli-aa'", "did you mean 'nli-a'"]),
        (Row("predict", "nli-a+nope", text="x"), 404, ["unknown adapter 'nope'"]),
        (Row("predict", None, text="x"), 422, ["the bare encoder has no head"]),
        (Row("tag", "nli-a", text="x"), 422, ["/tag needs an adapter with a tagging head", "classification"]),
        (Row("predict", "nli-a"), 422, ["inputs.text: required"]),
        (
            Row("predict", "nli-a+nli-bottleneck", text="x"),
            422,
            ["only LoRA adapters", "'nli-bottleneck' is served unmerged"],
        ),
        (Row("predict", "nli-stacked+nli-a", text="x"), 422, ["holds one adapter twice"]),
        (Row("embed", None, text="x", layer=7), 422, ["inputs.layer: 7 does not exist"]),
        (Row("predict", "nli-a", text="the dog " * 80), 413, ["more than the 128", "--auto-truncate"]),
        (Row("predict", "nli-prompt", text="the dog " * 62), 413, ["more than the 124"]),
    ],
)
def test_bad_rows_are_refused_naming_the_field(engine, row, status, words):
    got, message = refusal(engine.prepare, [row])
    assert got == status and all(w in message for w in words), message


def test_auto_truncate_cuts_an_input_to_what_the_model_takes(served_dir, pristine_backbone):
    root, _ = served_dir
    engine = Engine.from_sources([f"a={root / 'nli-a'}"], backbone=pristine_backbone, auto_truncate=True)
    answer = engine.infer([Row("predict", "a", text="the dog " * 80)])[0]
    assert answer["tokens"] == 128


def test_hot_add_checks_root_fingerprint_digest_and_head_then_remove_waits_for_rows(
    tmp_path, served_dir, pristine_backbone, save_served
):
    _, dirs = served_dir
    root = tmp_path / "root"
    root.mkdir()
    engine = Engine(pristine_backbone, adapter_root=root)
    assert refusal(engine.add, str(dirs["nli-a"]))[0] == 403  # outside the root
    (root / "link").symlink_to(dirs["nli-a"])
    assert refusal(engine.add, "link")[0] == 403  # a link out of the root is outside it too
    assert refusal(engine.add, "missing")[0] == 404
    assert refusal(Engine(pristine_backbone).add, str(dirs["nli-a"]))[0] == 403  # no root: no hot add
    for name in ("nli-a", "nli-stacked", "nli-b"):
        shutil.copytree(dirs[name], root / name)
    # the stacked target rests on "../nli-a": the copy under the root; pointed outside the root, it is refused
    metadata = json.loads((root / "nli-stacked" / "adapterx.json").read_text())
    assert metadata["requires"][0]["path"] == "../nli-a"
    metadata["requires"][0]["path"] = str(dirs["nli-a"])
    (root / "nli-stacked" / "adapterx.json").write_text(json.dumps(metadata))
    status, message = refusal(engine.add, "nli-stacked")
    assert status == 403 and "rests on 'inter'" in message
    other = load_backbone("builtin:tiny-xlmr@1")
    save_served(other, root / "other", {"kind": "lora", "r": 4}, HeadSpec("classification", 3), task="tiny-xnli")
    status, message = refusal(engine.add, "other")
    assert status == 409 and "fingerprint" in message
    weights = root / "nli-b" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\x00\x00\x00\x00")
    status, message = refusal(engine.add, "nli-b")
    assert status == 422 and "adapter_model.safetensors" in message
    (root / "nli-a" / "head.safetensors").unlink()
    shutil.copytree(dirs["nli-a"], root / "ok")
    assert refusal(engine.add, "nli-a")[0] == 422  # its head file is gone
    assert engine.add("ok", name="first")["served_as"] == "gathered"
    assert refusal(engine.add, "ok", name="first")[0] == 409
    assert refusal(engine.add, "ok", name="base")[0] == 422
    row = Row("predict", "first", text="the dog eats")
    before = engine.infer([row])[0]
    works = engine.prepare([row])
    removed = threading.Event()
    worker = threading.Thread(target=lambda: (engine.remove("first"), removed.set()))
    worker.start()
    time.sleep(0.3)
    assert not removed.is_set(), "removal waits for the prepared row"
    assert refusal(engine.prepare, [row])[0] == 404  # no new rows while it drains
    assert engine.run(works).answers[0]["logits"] == before["logits"]
    engine.release(works)
    worker.join(5)
    assert removed.is_set() and engine.adapters() == []
    assert not engine._gathered.bank.keys
    assert torch.equal(
        torch.tensor(engine.infer([Row("embed", None, text="the dog")])[0]["embedding"]),
        torch.tensor(Engine(pristine_backbone).infer([Row("embed", None, text="the dog")])[0]["embedding"]),
    )


def test_a_request_error_is_an_adapterx_error():
    assert issubclass(RequestError, Exception) and RequestError("x").status == 422
