"""The report's XTREME sections (from results["xtreme"], see adapterx.study.aggregate): the XTREME and category
scores per setup, the ranking of intermediate setups by mean gain, and the best setup per target chosen on dev
with its test score, beside the paper's numbers when the backbone is XLM-R Large."""

from __future__ import annotations

from adapterx.study.aggregate import BASELINE_SETUP, GROUPS, XTREME_TASKS

SPLIT_NAMES = {"validation": "dev (validation)", "test": "test"}


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *("| " + " | ".join(r) + " |" for r in rows)]


def scores_table(xtreme: dict, split: str) -> list[str]:
    part = xtreme["splits"][split]
    tasks = [t for t in (*XTREME_TASKS, *sorted(part["tasks"])) if t in part["tasks"]]
    tasks = list(dict.fromkeys(tasks))
    head = ["setup", "XTREME", *GROUPS, f"mean ({len(tasks)} tasks)", *tasks]
    rows = []
    for setup in xtreme["setups"]:
        o = part["overall"][setup]
        if not o["tasks"]:
            continue
        rows.append(
            [
                setup,
                _num(o["xtreme"]),
                *(_num(o["categories"][g]) for g in GROUPS),
                _num(o["mean"]),
                *(_num(part["tasks"][t].get(setup, {}).get("score")) for t in tasks),
            ]
        )
    return _table(head, rows)


def ranking_table(xtreme: dict, split: str) -> list[str]:
    rows = [
        [
            str(i),
            r["setup"],
            f"{r['mean_gain']:+.1f}",
            str(len(r["gains"])),
            ", ".join(f"{t} {g:+.1f}" for t, g in r["gains"].items()),
        ]
        for i, r in enumerate(xtreme["splits"][split]["ranking"], start=1)
    ]
    return _table(["rank", "setup", "mean gain", "targets", "per target"], rows)


def best_table(xtreme: dict) -> list[str]:
    paper = (xtreme.get("paper") or {}).get("targets", {})
    head = ["target", "chosen on dev", "dev score", "test score", "baseline test", "Δ test", "rule"]
    if paper:
        head[6:6] = ["primary (test)", "paper XLM-R Large", "paper best intermediate"]
    rows = []
    for target, b in xtreme["best_per_target"].items():
        delta = None if b["baseline_score"] is None else b["test_score"] - b["baseline_score"]
        row = [
            target,
            b["setup"],
            _num(b["dev_score"]),
            _num(b["test_score"]),
            _num(b["baseline_score"]),
            "–" if delta is None else f"{delta:+.1f}",
            b["rule"],
        ]
        if paper:
            metric, base, best = paper.get(target, (None, None, None))
            row[6:6] = [
                f"{b['baseline_primary']:.1f} → {b['test_primary']:.1f}"
                if b["baseline_primary"] is not None
                else _num(b["test_primary"]),
                f"{base} ({metric})" if base is not None else "–",
                _num(best),
            ]
        rows.append(row)
    return _table(head, rows)


def render_xtreme(results: dict) -> list[str]:
    """The report's lines for the XTREME aggregation (empty when nothing was aggregated)."""
    xtreme = results.get("xtreme") or {}
    if not xtreme.get("splits"):
        return []
    parts = [
        "## XTREME scores",
        "",
        "Task scores as XTREME's evaluate.py: the mean over the evaluated languages of F1 (PAN-X, UDPOS, BUCC) or "
        "accuracy (XNLI, PAWS-X, Tatoeba); QA: (exact match + F1) / 2. XTREME = the mean of the nine task scores "
        "and each category the mean of its tasks, shown only when all of them were evaluated. Means over "
        f"seeds, unmerged form. `{BASELINE_SETUP}`: target-only adapters (the bare backbone on retrieval).",
        "",
    ]
    for split in ("test", "validation"):
        if split in xtreme["splits"]:
            parts += [f"### On {SPLIT_NAMES[split]}", "", *scores_table(xtreme, split), ""]
    report_split = "test" if "test" in xtreme["splits"] else "validation"
    parts += [
        f"## Intermediate setups ranked by mean gain over the baseline ({SPLIT_NAMES[report_split]})",
        "",
        *ranking_table(xtreme, report_split),
        "",
    ]
    if xtreme["best_per_target"]:
        parts += [
            "## Best intermediate setup per target: chosen on dev, scored on test",
            "",
            "Each target's setup is the one with the best dev task score; test was not looked at to choose.",
            "",
            *best_table(xtreme),
            "",
        ]
        best = xtreme["best_overall"]
        if best["mean"] is not None:
            what = (
                "XTREME score" if best["xtreme"] is not None else f"mean over {len(xtreme['best_per_target'])} targets"
            )
            line = f"- best setup per target, {what} on test: {best['mean']:.1f}"
            if best["baseline_mean"] is not None:
                line += f" (baseline {best['baseline_mean']:.1f}, {best['mean'] - best['baseline_mean']:+.1f})"
            parts += [line]
        if xtreme.get("paper"):
            parts += [
                f"- paper: {xtreme['paper']['source']}; full fine-tuning, where adapterx trains adapters; "
                "the paper's columns are the primary metric (accuracy or F1) averaged over all languages"
            ]
        parts += [""]
    return parts
