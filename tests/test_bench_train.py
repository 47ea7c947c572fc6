"""`adapterx bench --train`: what each kind's training run measures (in-process here, for speed), and the
end-to-end run with one fresh process per kind (slow). No timing assertions."""

import json
import os

import pytest

from adapterx.bench.__main__ import main
from adapterx.bench.train_cost import measure_kind
from adapterx.bench.train_runner import TRAIN_CSV_COLUMNS, train_markdown

JOB = {
    "backbone": "builtin:tiny-xlmr",
    "device": "cpu",
    "dtype": "fp32",
    "threads": 1,
    "batch_size": 2,
    "seq_len": 8,
    "warmup": 1,
    "iterations": 3,
    "rank": 4,
    "reduction_factor": 16,
    "virtual_tokens": 4,
    "seed": 0,
    "attention": "sdpa",
}


@pytest.fixture(scope="module")
def measured():
    return {kind: measure_kind(dict(JOB, kind=kind)) for kind in ("full", "bottleneck", "lora")}


def test_full_fine_tuning_trains_everything_and_adapters_little(measured):
    full, bottleneck, lora = measured["full"], measured["bottleneck"], measured["lora"]
    assert full["params"]["trainable"] == full["params"]["total"]
    hidden, layers = full["backbone"]["hidden_size"], full["backbone"]["num_hidden_layers"]
    head = hidden * hidden + hidden + hidden * 3 + 3  # classification head: dense + out_proj
    down = hidden // 16
    assert bottleneck["params"]["trainable"] == head + layers * (hidden * down + down + down * hidden + hidden)
    assert lora["params"]["trainable"] == head + layers * 2 * 4 * (hidden + hidden)  # query+value, A and B
    assert full["checkpoint_bytes"] > 4 * full["params"]["total"]  # fp32 weights, all of them
    assert bottleneck["checkpoint_bytes"] < full["checkpoint_bytes"] / 3


def test_each_run_reports_time_memory_and_its_measure(measured):
    for kind, r in measured.items():
        assert r["error"] is None and r["steps"] == 3 and r["kind"] == kind
        assert r["step_ms"]["p10"] <= r["step_ms"]["median"] <= r["step_ms"]["p90"]
        assert r["tokens_per_s"] == pytest.approx(2 * 8 / (r["step_ms"]["median"] / 1000))
        assert r["memory"]["measure"] in ("rss_peak_training", "rss_peak_process")
        assert r["memory"]["peak_mb"] > 0 and r["memory"]["before_training_mb"] > 0


@pytest.mark.slow
def test_train_bench_end_to_end_one_process_per_kind(tmp_path, capsys):
    rc = main(
        [
            "--train",
            "--shape",
            "builtin:tiny-xlmr",
            "--batch-sizes",
            "2",
            "--seq-lens",
            "8",
            "--threads",
            "1",
            "--iterations",
            "3",
            "--train-kinds",
            "full,lora,bottleneck,prompt,prefix",
            "--no-progress",
            "--output",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["scenario"] == "train" and [r["kind"] for r in doc["results"]] == [
        "full",
        "lora",
        "bottleneck",
        "prompt",
        "prefix",
    ]
    pids = {r["pid"] for r in doc["results"]}
    assert len(pids) == 5 and os.getpid() not in pids  # each kind in a fresh process
    assert all(r["error"] is None for r in doc["results"])
    assert doc["results"][0]["peak_vs_full"] == 1.0
    assert len(doc["targets"]) == 4 and "training peak memory" in out
    md = (tmp_path / "results.md").read_text()
    assert md == train_markdown(doc) and "| prefix |" in md and "VmHWM" in md
    header = (tmp_path / "results.csv").read_text().splitlines()[0]
    assert header == ",".join(TRAIN_CSV_COLUMNS)
