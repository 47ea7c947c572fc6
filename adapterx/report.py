"""report.md from a run's results.json: what was trained on what, and what the intermediate task bought."""

from __future__ import annotations

from pathlib import Path

from adapterx.io import atomic_write_text


def _fmt(x: float, signed: bool = False) -> str:
    return f"{x:+.1f}" if signed else f"{x:.1f}"


def benefit_table(results: dict) -> str:
    runs = results["runs"]
    languages = list(next(iter(runs.values()))["per_language"])
    head = ["run", "strategy", "modules", *languages, "avg", "Δ avg"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, run in runs.items():
        cells = [f"{_fmt(run['per_language'][lang])} ({_fmt(run['benefit'][lang], True)})"
                 if label != "target-only" else _fmt(run["per_language"][lang]) for lang in languages]
        lines.append("| " + " | ".join([label, run["strategy"], str(run["modules_at_inference"]), *cells,
                                         _fmt(run["average"]), _fmt(run["average_benefit"], True)]) + " |")
    return "\n".join(lines)


def render_report(results: dict) -> str:
    b = results["backbone"]
    recipe = results["recipe"]
    versions = ", ".join(f"{k} {v}" for k, v in results["library_versions"].items())
    weights = "pretrained" if b["pretrained"] else "NOT pretrained (random/synthetic weights)"
    parts = [
        f"# {recipe['name']}: does intermediate-task training help {results['target_task']}?",
        "",
        f"- backbone: `{b['name']}` — {b['description']}; weights {weights}; fingerprint `{b['fingerprint']}`",
        f"- adapter: `{recipe['adapter']}`",
        f"- target task: `{results['target_task']}`, {results['metric']} on the `{results['split']}` split, "
        f"zero-shot in every language but the training language",
        f"- device: {results['device']}; run time {results['seconds']:.0f} s "
        f"({sum(p['reused'] for p in results['phases'])} of {len(results['phases'])} phases reused from cache)",
        f"- libraries: {versions}",
        "",
        "## Accuracy benefit",
        "",
        f"{results['metric']} per language; in brackets the difference to the target-only adapter "
        "(the benefit of the intermediate task). `modules` = adapter modules active at inference.",
        "",
        benefit_table(results),
        "",
    ]
    if not b["pretrained"]:
        parts += ["> The backbone is not pretrained: these numbers show the pipeline working on synthetic data, "
                  "not the science. Run a `recipes/paper/` recipe on `FacebookAI/xlm-roberta-large` for that.", ""]
    parts += ["## Phases", "", "| phase | reused | seconds |", "|---|---|---|"]
    parts += [f"| {p['name']} | {'yes' if p['reused'] else 'no'} | {p['seconds']:.1f} |" for p in results["phases"]]
    return "\n".join(parts) + "\n"


def write_report(run_dir: Path, results: dict) -> Path:
    path = Path(run_dir) / "report.md"
    atomic_write_text(path, render_report(results))
    return path
