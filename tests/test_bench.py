"""adapterx bench: end-to-end quick run, output files and schema, README sections, clear errors.
No timing assertions: ratios are benchmark output."""

import csv
import json

import pytest
import torch

from adapterx.bench.__main__ import main
from adapterx.bench.report import CSV_COLUMNS, OUTPUT_FILES, replace_section
from adapterx.bench.timing import paired_ratio, quantile, summarize
from adapterx.core.errors import AdapterxError

README = "# Title\n\nintro\n\n<!-- bench:cpu:start -->\nold table\n<!-- bench:cpu:end -->\n\nafter\n"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    readme = out / "README.md"
    readme.write_text(README)
    rc = main(
        [
            "--quick",
            "--output",
            str(out),
            "--iterations",
            "3",
            "--batch-sizes",
            "1,2",
            "--seq-lens",
            "8,16",
            "--forms",
            "base,lora,lora-fast,lora-merged,lora-stack-2,lora-stack-2-fused,bottleneck,"
            "bottleneck-stack-2,lora-mixed-2,lora-mixed-2-gathered",
            "--no-progress",
            "--readme",
            str(readme),
        ]
    )
    assert rc == 0
    return out, readme


def test_quick_run_writes_all_outputs(quick_run):
    out, _ = quick_run
    for name in OUTPUT_FILES:
        assert (out / name).stat().st_size > 0, name
    for png in ("overhead_vs_batch.png", "throughput_vs_seq.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads((out / "results.json").read_text())
    for key in (
        "schema_version",
        "command",
        "machine",
        "versions",
        "git_commit",
        "settings",
        "backbone",
        "forms",
        "results",
        "targets",
        "notes",
    ):
        assert key in doc, key
    assert doc["schema_version"] == 1
    assert doc["backbone"]["weights"] == "random" and doc["backbone"]["name"] == "builtin:tiny-xlmr"
    assert {"torch", "transformers", "peft", "adapters"} <= set(doc["versions"])
    assert len(doc["results"]) == 4 * 10
    row = next(r for r in doc["results"] if r["form"] == "lora-stack-2-fused")
    assert row["reference"] == "lora-stack-2" and row["ratio_to_reference"] is not None
    for key in ("median", "p10", "p90", "within_noise", "label"):
        assert key in row["ratio_to_base"]
    assert {"median", "p10", "p90", "cv"} <= set(row["time_ms"])
    assert row["throughput"]["tokens_per_s"] > 0 and row["memory"]["cpu_peak_rss_mb"] > 0
    assert doc["forms"]["lora-merged"]["params_added"] == 0
    assert doc["forms"]["lora"]["params_added"] > 0
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 40
    md = (out / "results.md").read_text()
    assert "| lora-merged |" in md and "python -m adapterx.bench" in md


def test_readme_section_is_replaced(quick_run):
    _, readme = quick_run
    text = readme.read_text()
    assert text.startswith("# Title\n\nintro\n\n<!-- bench:cpu:start -->\n")
    assert text.endswith("<!-- bench:cpu:end -->\n\nafter\n")
    assert "old table" not in text and "| lora-stack-2-fused |" in text


def test_replace_section_needs_markers():
    assert replace_section(README, "cpu", "new") == README.replace("old table", "new")
    with pytest.raises(AdapterxError, match="bench:gpu:start"):
        replace_section(README, "gpu", "x")


def test_missing_markers_fail_before_measuring(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    rc = main(["--quick", "--output", str(tmp_path / "out"), "--readme", str(readme), "--no-progress"])
    assert rc == 2 and "bench:cpu:start" in capsys.readouterr().err
    assert readme.read_text() == "# no markers\n" and not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_gpu_is_a_clear_error(tmp_path, capsys):
    rc = main(["--quick", "--devices", "cuda", "--output", str(tmp_path), "--no-progress"])
    assert rc == 2 and "no CUDA GPU" in capsys.readouterr().err


def test_bad_options_are_clear_errors(tmp_path, capsys):
    assert main(["--quick", "--forms", "base,lora-tripled", "--output", str(tmp_path), "--no-progress"]) == 2
    assert "unknown bench form 'lora-tripled'" in capsys.readouterr().err
    assert main(["--quick", "--forms", "lora", "--output", str(tmp_path), "--no-progress"]) == 2
    assert "must include 'base'" in capsys.readouterr().err
    assert main(["--quick", "--dtypes", "fp16", "--output", str(tmp_path), "--no-progress"]) == 2
    assert "CUDA only" in capsys.readouterr().err


def test_help_teaches_forms_ratios_and_examples(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for needle in (
        "lora-stack-K-fused",
        "lora-mixed-N-gathered",
        "RATIO",
        "within noise",
        "Examples",
        "--batch-sizes",
        "--readme",
    ):
        assert needle in text, needle


def test_statistics():
    assert quantile([1, 2, 3, 4, 5], 0.5) == 3 and quantile([1, 2], 0.1) == pytest.approx(1.1)
    s = summarize([1.0, 1.0, 1.0])
    assert s["median"] == 1.0 and s["cv"] == 0.0
    clear = paired_ratio([2.0, 2.1, 1.9, 2.0], [1.0, 1.0, 1.0, 1.0])
    assert clear["median"] == pytest.approx(2.0) and not clear["within_noise"] and clear["label"] == "slower"
    noisy = paired_ratio([0.9, 1.2, 1.0, 1.1, 0.95], [1.0] * 5)
    assert noisy["within_noise"] and noisy["label"] == "within noise"
