"""The bench guards its own conditions: it warns when the machine is busy, --target-ci adds rounds until every
ratio's bootstrap interval is that narrow (or the budget ends, and says so), and --clock instructions counts
instructions with callgrind. No timing assertions: only what the bench decides and reports."""

import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np
import pytest

from adapterx.bench.__main__ import main
from adapterx.bench.config import BenchConfig
from adapterx.bench.forms import with_defaults
from adapterx.bench.hygiene import LoadMonitor, bootstrap_ci
from adapterx.bench.rounds import BUDGET, REACHED
from adapterx.bench.timing import ci_half_width
from adapterx.core.errors import AdapterxError

QUICK = [
    "--quick",
    "--forms",
    "base,lora-fast",
    "--batch-sizes",
    "1",
    "--seq-lens",
    "8",
    "--iterations",
    "3",
    "--no-progress",
]


def test_bootstrap_interval_holds_the_median_and_narrows_with_rounds():
    assert bootstrap_ci([1.2] * 10) == (1.2, 1.2)
    rng = np.random.default_rng(5)
    few, many = rng.normal(1.05, 0.05, 10), rng.normal(1.05, 0.05, 1000)
    lo_few, hi_few = bootstrap_ci(few)
    lo_many, hi_many = bootstrap_ci(many)
    assert lo_few <= statistics.median(few) <= hi_few and lo_many <= statistics.median(many) <= hi_many
    assert hi_many - lo_many < (hi_few - lo_few) / 3  # ~ 1/sqrt(100) of the spread: far narrower
    assert lo_many < 1.05 < hi_many  # the true median is inside
    assert bootstrap_ci(few, seed=1) == bootstrap_ci(few, seed=1)


def _monitor(loads, own=1, cores=2):
    values = iter(loads)
    with LoadMonitor(own, interval=0.01, cores=cores, read=lambda: next(values, loads[-1])) as monitor:
        time.sleep(0.05)
    return monitor.record()


def test_load_monitor_rule():
    busy = _monitor([1.5, 0.5])  # other work before the run: busy
    assert busy["busy"] and "busy" in busy["warning"] and busy["max_other_load"] == 1.5
    assert busy["samples"][0]["phase"] == "before" and busy["samples"][-1]["phase"] == "after"
    quiet = _monitor([0.3, 1.9], own=1)  # 1.9 during the run, of which 1 is the bench's own thread
    assert not quiet["busy"] and quiet["warning"] is None and quiet["max_other_load"] == pytest.approx(0.9)
    assert _monitor([0.3, 2.2], own=1)["busy"]  # 1.2 from others while it ran: busy


def test_target_ci_stops_when_every_interval_is_that_narrow(tmp_path, capsys):
    started = time.monotonic()
    rc = main(QUICK + ["--target-ci", "0.2", "--max-seconds", "120", "--output", str(tmp_path)])
    elapsed = time.monotonic() - started
    out = capsys.readouterr().out
    assert rc == 0
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["target_ci"]["reached"] == 1 and doc["target_ci"]["budget_ended"] == 0
    assert "reached at every grid point" in out and elapsed < 100  # stopped early, long before the budget
    for r in doc["results"]:
        assert r["stop"] == REACHED and r["widest_half_ci"] <= 0.2
        assert ci_half_width(r["ratio_to_base"]) <= 0.2
        assert r["ratio_to_base"]["ci_low"] <= r["ratio_to_base"]["median"] <= r["ratio_to_base"]["ci_high"]
    assert "[CI " in (tmp_path / "results.md").read_text()


def test_target_ci_says_when_the_budget_ended_first(tmp_path, capsys):
    rc = main(QUICK + ["--target-ci", "1e-9", "--max-seconds", "1", "--output", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["target_ci"]["budget_ended"] == 1 and all(r["stop"] == BUDGET for r in doc["results"])
    assert doc["results"][0]["iterations"] > 3  # it did add rounds before the budget ended
    assert "time budget (--max-seconds 1) ended" in out


def test_bad_hygiene_options_are_clear_errors(tmp_path, capsys):
    assert main(QUICK + ["--target-ci", "-1", "--output", str(tmp_path)]) == 2
    assert "--target-ci must be >= 0" in capsys.readouterr().err
    assert main(QUICK + ["--clock", "instructions", "--target-ci", "0.01", "--output", str(tmp_path)]) == 2
    assert "deterministic" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(QUICK + ["--clock", "sundial"])


def _busy_loops(n):
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


@pytest.mark.slow
def test_bench_warns_when_the_machine_is_busy(tmp_path, capsys):
    cores = os.cpu_count() or 1
    loops = _busy_loops(cores + 1)
    try:
        deadline = time.monotonic() + 240
        while os.getloadavg()[0] <= cores / 2 + 0.5 and time.monotonic() < deadline:
            time.sleep(2)
        rc = main(QUICK + ["--output", str(tmp_path)])
    finally:
        for p in loops:
            p.kill()
            p.wait()
    out = capsys.readouterr().out
    assert rc == 0
    doc = json.loads((tmp_path / "results.json").read_text())
    load = doc["machine"]["load"]
    assert load["busy"] and load["max_other_load"] > cores / 2 and doc["warnings"]
    assert "WARNING: the machine was busy" in out
    assert "WARNING: the machine was busy" in (tmp_path / "results.md").read_text()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_instruction_clock_counts_deterministically(tmp_path, capsys):
    rc = main(
        [
            "--quick",
            "--forms",
            "base,bottleneck,bottleneck-fast",
            "--batch-sizes",
            "1",
            "--seq-lens",
            "8",
            "--clock",
            "instructions",
            "--no-progress",
            "--output",
            str(tmp_path),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    doc = json.loads((tmp_path / "results.json").read_text())
    rows = {r["form"]: r for r in doc["results"]}
    base = rows["base"]["instructions"]
    assert base["median"] > 1e5 and base["cv"] < 0.01  # counts, and (nearly) the same every repeat
    assert (
        rows["bottleneck"]["instructions"]["median"]
        > rows["bottleneck-fast"]["instructions"]["median"]
        > base["median"]
    )  # adapters add work; the library adds more
    md = (tmp_path / "results.md").read_text()
    assert "M instructions" in md and "not time" in md


def test_unknown_train_kind_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(AdapterxError, match="train-kinds"):  # the kinds are the registry's: known at run time
        with_defaults(BenchConfig(train=True, train_kinds=("full", "adapterdrop")))
