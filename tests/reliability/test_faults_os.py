"""Fault injection, the file system (issue 15, case 6): a full disk (ENOSPC), a read-only output (EROFS) or a
denied one (EACCES) under every command's --output ends in exit 2 with one line naming the path, no traceback
(unless --verbose), and no partial output left behind. The tests run as root, which permission bits do not
stop, so the failures are injected at the os/safetensors calls (tests/faultkit.py)."""

from __future__ import annotations

import errno

import pytest

from adapterx.core.backbone import load_backbone

ERRORS = {errno.ENOSPC: "no space left", errno.EROFS: "read-only file system", errno.EACCES: "permission denied"}

TINY_TRAIN = ["--max-steps", "2", "--batch-size", "8", "--train-limit", "16"]


@pytest.fixture(scope="module")
def lora(kit, tmp_path_factory):
    root = tmp_path_factory.mktemp("os")
    return kit.make_adapter(load_backbone("builtin:tiny-xlmr"), root / "xnli", r=2)


def _argv(command, lora, out):
    return {
        "train": ["train", "--task", "tiny-xnli", "--output", out, *TINY_TRAIN],
        "merge": ["merge", "--adapter", lora, "--output", out],
        "compose": ["compose", "--adapter", f"target={lora}", "--output", out],
        "compose-json": ["compose", "--adapter", f"target={lora}", "--output", out / "c.json"],
        "evaluate": [
            "evaluate",
            "--task",
            "tiny-xnli",
            "--adapter",
            lora,
            "--languages",
            "en",
            "--limit",
            "8",
            "--bootstrap",
            "10",
            "--output",
            out / "scores.json",
        ],
    }[command]


@pytest.mark.parametrize("code", sorted(ERRORS))
@pytest.mark.parametrize("command", ["train", "merge", "compose", "compose-json", "evaluate"])
def test_an_unwritable_output_is_one_line_and_leaves_nothing(kit, lora, tmp_path, command, code):
    readonly = tmp_path / "ro"
    readonly.mkdir()
    out = readonly / "out"
    before = kit.snapshot(tmp_path)
    with kit.writes_fail_under(readonly, code):
        kit.one_line_error(_argv(command, lora, out), str(out), ERRORS[code])
    assert kit.snapshot(tmp_path) == before


@pytest.mark.parametrize("command", ["train", "merge"])
def test_a_disk_that_fills_up_mid_save_leaves_no_partial_directory(kit, lora, tmp_path, command):
    out = tmp_path / "out"
    with kit.writes_fail_under(tmp_path, errno.ENOSPC, what=("save",)):
        kit.one_line_error(_argv(command, lora, out), "no space left")
    leftovers = [p.name for p in tmp_path.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]
    assert leftovers == [] and not (out / "adapter").exists() and not (out / "model.safetensors").exists()


def test_verbose_shows_the_traceback(kit, lora, tmp_path):
    out = tmp_path / "out"
    with kit.writes_fail_under(tmp_path, errno.EROFS), pytest.raises(OSError) as info:
        kit.cli("--verbose", *_argv("merge", lora, out))
    assert info.value.errno == errno.EROFS


@pytest.mark.parametrize("command", ["train", "merge", "compose", "evaluate"])
def test_a_file_where_a_directory_is_expected_is_named(kit, lora, tmp_path, command):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file\n")
    before = kit.snapshot(tmp_path)
    kit.one_line_error(_argv(command, lora, blocker / "out"), str(blocker))
    assert kit.snapshot(tmp_path) == before
