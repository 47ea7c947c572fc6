"""Fault injection, artifacts (issue 15, cases 8, 9 and 10): artifacts keep working when moved or copied and
their caches survive the move; a second `adapterx run` on one artifacts directory waits or is refused cleanly
and redoes nothing; files and directories get the process umask's modes."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from adapterx.core.backbone import load_backbone
from adapterx.study.lock import LOCK_FILE, locked

BENCH = ("bench: {enabled: false}", "bench: {iterations: 3, warmup: 0, batch_sizes: [1], seq_lens: [8], threads: 1}")
TRAIN = ["--max-steps", "2", "--batch-size", "8", "--train-limit", "16"]


def _phases(out: Path) -> dict[str, bool]:
    return {p["name"]: p["reused"] for p in json.loads((out / "results.json").read_text())["phases"]}


# ----------------------------------------------------------------------------- case 8: portable artifacts
def test_a_stacked_target_evaluates_after_its_runs_moved(kit, tmp_path):
    runs = tmp_path / "a" / "runs"
    assert kit.cli("train", "--task", "tiny-nli", "--output", runs / "nli", *TRAIN)[0] == 0
    code, _, err = kit.cli(
        "train",
        "--task",
        "tiny-xnli",
        "--strategy",
        "stack",
        "--on-top-of",
        runs / "nli" / "adapter",
        "--output",
        runs / "xnli",
        *TRAIN,
    )
    assert code == 0, err
    [need] = json.loads((runs / "xnli" / "adapter" / "adapterx.json").read_text())["requires"]
    assert not Path(need["path"]).is_absolute()
    moved = tmp_path / "b" / "elsewhere"
    moved.parent.mkdir()
    shutil.move(str(runs), str(moved))
    code, _, err = kit.cli(
        "evaluate",
        "--task",
        "tiny-xnli",
        "--adapter",
        moved / "xnli" / "adapter",
        "--languages",
        "en",
        "--limit",
        "8",
        "--bootstrap",
        "10",
    )
    assert code == 0, err


@pytest.mark.slow  # a fresh process or a whole study: seconds; runs in CI with -m slow
def test_a_copied_study_reuses_every_phase_bench_included(kit, tmp_path):
    first = kit.recipe_file(tmp_path, tmp_path / "a", BENCH, name="a.yaml")
    assert kit.cli("run", first)[0] == 0
    assert not any(_phases(tmp_path / "a").values())
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "a")
    second = kit.recipe_file(tmp_path, tmp_path / "b", BENCH, name="b.yaml")
    code, _, err = kit.cli("run", second)
    assert code == 0, err
    reused = _phases(tmp_path / "b")
    assert "bench" in reused and all(reused.values()), reused


# ----------------------------------------------------------------------------- case 10: umask
def _modes(root: Path) -> set[tuple[str, str]]:
    return {
        ("dir" if p.is_dir() else "file", oct(stat.S_IMODE(p.stat().st_mode)))
        for p in root.rglob("*")
        if p.name != LOCK_FILE
    }


@pytest.fixture
def umask():
    previous = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(previous)


@pytest.mark.parametrize(
    "mask, modes", [(0o022, {("dir", "0o755"), ("file", "0o644")}), (0o077, {("dir", "0o700"), ("file", "0o600")})]
)
def test_outputs_follow_the_umask(kit, tmp_path, umask, mask, modes):
    umask(mask)
    adapter = kit.make_adapter(load_backbone("builtin:tiny-xlmr"), tmp_path / "saved" / "xnli", r=2)
    commands = [
        ["train", "--task", "tiny-xnli", "--output", tmp_path / "train", *TRAIN],
        ["merge", "--adapter", adapter, "--output", tmp_path / "merged"],
        ["compose", "--adapter", f"target={adapter}", "--output", tmp_path / "composed"],
        [
            "evaluate",
            "--task",
            "tiny-xnli",
            "--adapter",
            adapter,
            "--languages",
            "en",
            "--limit",
            "8",
            "--bootstrap",
            "10",
            "--output",
            tmp_path / "scores" / "s.json",
        ],
    ]
    for argv in commands:
        code, _, err = kit.cli(*argv)
        assert code == 0, err
    assert _modes(tmp_path) == modes


# ----------------------------------------------------------------------------- case 9: one run per directory
def test_a_run_on_a_directory_in_use_is_refused_and_changes_nothing(kit, tmp_path):
    recipe = kit.recipe_file(tmp_path, tmp_path / "out")
    with locked(tmp_path / "out"):
        before = kit.snapshot(tmp_path)
        kit.one_line_error(["run", recipe], str(tmp_path / "out"), "in use", f"pid {os.getpid()}", "--wait")
        assert kit.snapshot(tmp_path) == before


def test_a_run_waits_for_the_directory_then_runs(kit, tmp_path):
    recipe = kit.recipe_file(tmp_path, tmp_path / "out")
    held, release = threading.Event(), threading.Event()

    def holder():
        with locked(tmp_path / "out"):
            held.set()
            release.wait(30)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(10)
    threading.Timer(1.0, release.set).start()
    started = time.monotonic()
    code, _, err = kit.cli("run", recipe, "--wait", "60")
    thread.join()
    assert code == 0, err
    assert time.monotonic() - started >= 1.0


SLOW_RECIPE = (
    "train: {max_steps: 2, batch_size: 8}\nevaluate",
    "train: {max_steps: 200, batch_size: 8, eval_every: 200, checkpoint_every: 200}\nevaluate",
)


@pytest.mark.slow
def test_two_runs_at_once_on_one_directory(kit, tmp_path):
    """Must show (issue 15): `adapterx run` started twice at once on one artifacts directory (two plain runs
    started together, a third with --wait 3 s later). One of the two runs the study; the other plain one is refused
    at once, naming the holder's pid, and writes nothing; the one with --wait waits for the holder, then reuses
    every phase it wrote. Each phase is trained exactly once."""
    recipe = kit.recipe_file(tmp_path, tmp_path / "out", SLOW_RECIPE)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": "1"}

    def start(*extra):
        return subprocess.Popen(
            [sys.executable, "-m", "adapterx.cli", "run", str(recipe), *extra],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    plain = [start(), start()]
    time.sleep(3)  # so that one of the plain two holds the directory by the time this one asks
    waiting = start("--wait", "900")
    results = {p.pid: (p, *p.communicate(timeout=900)) for p in [*plain, waiting]}  # (process, stdout, stderr)
    holders = [pid for pid, (p, out, err) in results.items() if p.returncode == 0 and "training" in out + err]
    assert len(holders) == 1, {pid: (p.returncode, err[-2000:]) for pid, (p, _, err) in results.items()}
    [holder] = holders
    assert holder in [p.pid for p in plain]
    [other] = [p for p in plain if p.pid != holder]
    _, out2, err2 = results[other.pid]
    assert other.returncode == 2 and "in use by another adapterx run" in err2 and f"pid {holder}" in err2, err2
    assert "Traceback" not in err2 and "training" not in out2 + err2 and len(err2.strip().splitlines()) == 1
    _, out3, err3 = results[waiting.pid]
    assert waiting.returncode == 0, err3[-3000:]
    assert "waiting" in out3 + err3 and "training" not in out3 + err3 and "reused" in out3 + err3
    assert all(_phases(tmp_path / "out").values())  # the results of the last run: every phase reused
