"""The parts of a report that say how far a benefit can be trusted: how the intervals were made, each setup
against its controls, the recipe's expectations and whether they held, per-class recall with collapses
flagged, and a plain-words reading derived from those figures (never typed in by hand)."""

from __future__ import annotations

CONTROL_COLUMNS = (
    ("shuffled", "vs shuffled labels"),
    ("step-matched", "vs step-matched"),
    ("capacity-matched", "vs capacity-matched"),
    ("pooled", "vs pooled data"),
)


def interval(stats: dict | None, digits: int = 1) -> str:
    """'+2.3 [+0.4, +4.1] ✓' (✓: the interval excludes 0); '–' when there is nothing to show."""
    if not stats:
        return "–"
    text = f"{stats['mean']:+.{digits}f}"
    if not stats.get("interval", True):
        return text + " (no interval)"
    lo, hi = stats["ci"]
    return f"{text} [{lo:+.{digits}f}, {hi:+.{digits}f}]" + (" ✓" if stats.get("shown") else "")


def method_note(target: dict, results: dict) -> str:
    n_examples = target.get("n_examples")
    examples = (
        (
            f"{min(n_examples.values())}"
            if len(set(n_examples.values())) == 1
            else f"{min(n_examples.values())}–{max(n_examples.values())}"
        )
        if n_examples
        else "?"
    )
    return (
        f"{target['n_seeds']} seed(s) × {examples if n_examples else 'not kept'} test examples per language; "
        f"{results['confidence']:.0%} intervals by {target['interval_method']}, {results.get('bootstrap', '?')} "
        f"resamples. A difference is **shown** (✓) only when its interval excludes 0."
    )


def _setups(target: dict) -> list[dict]:
    return [r for r in target["rows"] if r["role"] == "setup" and r["form"] == "unmerged" and "average_benefit" in r]


def _transfer(row: dict) -> bool:
    """The setup beats its shuffled-label control (interval above 0)."""
    shuffled = row.get("comparisons", {}).get("shuffled", {}).get("average")
    return bool(shuffled and shuffled.get("shown") and shuffled["mean"] > 0)


def _reading(row: dict) -> str:
    benefit = row["average_benefit"]
    shuffled = row.get("comparisons", {}).get("shuffled", {}).get("average")
    if not benefit.get("shown"):
        head = "no benefit shown"
    else:
        head = "benefit shown" if benefit["mean"] > 0 else "harm shown"
    if shuffled is None:
        return head + "; no shuffled-label control to tell task transfer from optimisation"
    if _transfer(row):
        return head + "; above the shuffled-label control: task transfer shown"
    if shuffled.get("shown"):
        return head + "; below the shuffled-label control"
    return head + "; not distinguishable from the shuffled-label control: no task transfer shown"


def controls_table(target: dict) -> str:
    """One line per setup: its benefit, its difference to each control (setup minus control), and a reading."""
    setups = _setups(target)
    if not setups:
        return ""
    columns = [(k, title) for k, title in CONTROL_COLUMNS if any(k in r.get("comparisons", {}) for r in setups)]
    head = ["setup", "Δ vs target-only", *[title for _, title in columns], "reading"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in setups:
        cells = [interval(row.get("comparisons", {}).get(k, {}).get("average")) for k, _ in columns]
        lines.append("| " + " | ".join([row["label"], interval(row["average_benefit"]), *cells, _reading(row)]) + " |")
    return "\n".join(lines)


def expectations_table(expectations: list[dict]) -> str:
    if not expectations:
        return ""
    lines = ["| setup | vs | expected | observed Δ | verdict | why expected |", "|---|---|---|---|---|---|"]
    for e in expectations:
        where = f" ({e['language']})" if e.get("language") else ""
        vs = e["vs"] + (f" = {e['vs_row']}" if e.get("vs_row") and e["vs_row"] != e["vs"] else "")
        lines.append(
            f"| {e['setup']}{where} | {vs} | {e['direction']} | {interval(e['difference'])} | "
            f"**{e['verdict']}** | {e.get('why', '')} |"
        )
    return "\n".join(lines)


def recall_table(target: dict) -> str:
    """Per-class recall (% of each gold class predicted as itself, all seeds together), unmerged rows; a
    collapse to one class is flagged with the class and the seeds."""
    rows = [r for r in target["rows"] if r["form"] == "unmerged" and r.get("confusion")]
    if not rows or not target.get("labels"):
        return ""
    languages, labels = target["languages"], target["labels"]
    lines = ["| run | " + " | ".join(languages) + " |", "|" + "---|" * (len(languages) + 1)]
    for row in rows:
        cells = []
        for lang in languages:
            matrix = row["confusion"][lang]
            recall = [100 * matrix[i][i] / max(1, sum(matrix[i])) for i in range(len(labels))]
            cell = " ".join(f"{label[:3]} {value:.0f}" for label, value in zip(labels, recall))
            if lang in row.get("collapsed", {}):
                c = row["collapsed"][lang]
                cell += f" — **collapsed to {c['label']}** (seeds {', '.join(map(str, c['seeds']))})"
            cells.append(cell)
        lines.append("| " + " | ".join([row["label"], *cells]) + " |")
    return "\n".join(lines)


def intermediate_lines(intermediates: dict) -> list[str]:
    """One line per intermediate adapter: its own English dev score per seed, and chance."""
    lines = []
    for name, entry in intermediates.items():
        scores = [next(iter(v.values()), None) if v else None for v in entry["validation"]]
        shown = ", ".join("–" if s is None else f"{s:.1f}" for s in scores)
        metric = next(iter(entry["validation"][0]), "score") if entry["validation"] and entry["validation"][0] else ""
        chance = f" (chance {entry['chance']:.1f})" if "chance" in entry else ""
        lines.append(f"- {name}: English dev {metric} {shown} (seeds {', '.join(map(str, entry['seeds']))}){chance}")
    return lines


def honest_reading(target: dict, expectations: list[dict]) -> list[str]:
    """Counts taken from the figures above: what was shown, what was not, what to distrust."""
    setups = _setups(target)
    up = [r["label"] for r in setups if r["average_benefit"].get("shown") and r["average_benefit"]["mean"] > 0]
    down = [r["label"] for r in setups if r["average_benefit"].get("shown") and r["average_benefit"]["mean"] < 0]
    transfer = [r["label"] for r in setups if _transfer(r)]
    lines = [
        f"- Benefit over target-only shown for {len(up)} of {len(setups)} setups"
        + (f" ({', '.join(up)})" if up else "")
        + f"; harm shown for {len(down)}"
        + (f" ({', '.join(down)})" if down else "")
        + "."
    ]
    by_language = [
        f"{r['label']} " + ", ".join(f"{lang} {b['mean']:+.1f}" for lang, b in r["benefit"].items() if b.get("shown"))
        for r in setups
        if any(b.get("shown") for b in r.get("benefit", {}).values())
    ]
    if by_language:
        lines.append(
            "- Per language, differences to target-only that are shown: "
            + "; ".join(by_language)
            + " (an average can hide gains in one language and losses in another)."
        )
    with_control = [r for r in setups if "shuffled" in r.get("comparisons", {})]
    if with_control:
        lines.append(
            f"- Task transfer (above the shuffled-label control) shown for {len(transfer)} of "
            f"{len(with_control)} setups with that control" + (f": {', '.join(transfer)}" if transfer else "") + "."
        )
    collapsed = sorted({f"{r['label']} ({', '.join(r['collapsed'])})" for r in target["rows"] if r.get("collapsed")})
    if collapsed:
        lines.append(
            f"- Predictions collapsed to one class in: {'; '.join(collapsed)} — those scores measure a "
            f"class prior, not transfer."
        )
    if expectations:
        counts = {v: sum(e["verdict"] == v for e in expectations) for v in ("held", "contradicted", "inconclusive")}
        lines.append(
            f"- Expectations stated in the recipe before the run: {counts['held']} held, "
            f"{counts['contradicted']} contradicted, {counts['inconclusive']} inconclusive "
            f"(of {len(expectations)})."
        )
    return lines
