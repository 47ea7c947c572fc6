"""The offline quickstart end to end, as a user runs it (slow: a few minutes on 2 CPU cores; `pytest -m slow`)."""

import json
import time

import pytest
import yaml

from adapterx.cli.main import main

pytestmark = pytest.mark.slow


def test_quickstart_writes_the_report_and_a_rerun_reuses_everything(tmp_path):
    recipe = yaml.safe_load(open("recipes/quickstart.yaml"))
    recipe["output_dir"] = str(tmp_path / "quickstart")
    path = tmp_path / "quickstart.yaml"
    path.write_text(yaml.safe_dump(recipe))

    assert main(["run", str(path)]) == 0
    out = tmp_path / "quickstart"
    report = (out / "report.md").read_text()
    assert "## Accuracy benefit" in report and "## Inference overhead" in report
    assert "Expectations written in the recipe before the run" in report and "vs shuffled labels" in report
    assert (out / "benefit_vs_overhead.png").stat().st_size > 10_000
    results = json.loads((out / "results.json").read_text())
    rows = results["targets"]["tiny-xnli"]["rows"]
    setups = {f"{task}+{s}" for task in ("tiny-nli", "tiny-negation", "tiny-sst") for s in ("stack", "continue")}
    controls = {f"{task}-shuffled+{s}" for task in ("tiny-nli", "tiny-negation") for s in ("stack", "continue")}
    controls |= {"capacity-matched", "tiny-nli-pooled"}
    labels = {r["label"] for r in rows}
    assert labels - {label for label in labels if label.startswith("step-matched-")} == {
        "target-only",
        *setups,
        *controls,
    }
    assert all(r["average"]["n"] == 3 for r in rows)
    assert len(results["expectations"]) == 7 and all(e["verdict"] != "not run" for e in results["expectations"])

    started = time.perf_counter()
    assert main(["run", str(path)]) == 0
    again = json.loads((out / "results.json").read_text())
    reused = [p for p in again["phases"] if p["name"] != "bench"]
    assert all(p["reused"] for p in again["phases"])
    assert reused and time.perf_counter() - started < 60
