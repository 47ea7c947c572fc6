"""report.md (+ PNG) from a run's results: the benefit table with its controls, expectations and per-class recall
(adapterx.study.reading), the XTREME sections, the overhead table, and the trade-off plot."""

from __future__ import annotations

from pathlib import Path

from adapterx.core.io import atomic_write_text
from adapterx.study.reading import (
    controls_table,
    expectations_table,
    honest_reading,
    intermediate_lines,
    interval,
    method_note,
    recall_table,
)
from adapterx.study.report_xtreme import SPLIT_NAMES, render_xtreme


def _pm(stats: dict) -> str:
    return f"{stats['mean']:.1f}" + (f" ± {stats['std']:.1f}" if stats.get("n", 1) > 1 else "")


def _signed(x: float) -> str:
    return f"{x:+.1f}"


def _ratio(r: dict | None) -> str:
    if not r:
        return "–"
    text = f"{r['median']:.3f} [{r['p10']:.2f}–{r['p90']:.2f}]"
    return text + (" ~" if r.get("within_noise") else "")


def benefit_table(target: dict, forms: tuple[str, ...] | None = None) -> str:
    """Runs x languages: mean ± std over seeds, (Δ to the baseline); the average's Δ with its interval
    (✓: excludes 0). `forms`: only rows of these deployment forms."""
    languages = target["languages"]
    head = ["run", "strategy", "form", "modules", *languages, "avg", "Δ avg [CI]"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in target["rows"]:
        if forms is not None and row["form"] not in forms:
            continue
        cells = []
        for lang in languages:
            cell = _pm(row["per_language"][lang])
            if "benefit" in row:
                cell += f" ({_signed(row['benefit'][lang]['mean'])})"
            cells.append(cell)
        delta = interval(row["average_benefit"]) if "average_benefit" in row else "baseline"
        lines.append(
            "| "
            + " | ".join(
                [
                    row["label"],
                    row["strategy"],
                    row["form"],
                    str(row["modules_at_inference"]),
                    *cells,
                    _pm(row["average"]),
                    delta,
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def _other_forms(target: dict) -> bool:
    return any(r["form"] != "unmerged" for r in target["rows"])


def _study_sections(name: str, target: dict, results: dict, level: str = "###", recall: bool = True) -> list[str]:
    """Benefit, controls, expectations and (`recall`) per-class recall of one target, and the reading."""
    expectations = [e for e in results.get("expectations", []) if e["target"] == name]
    parts = [
        f"{level} {name} ({target['metric']}, {results['split']} split)",
        "",
        method_note(target, results),
        "",
        benefit_table(target, ("unmerged",)),
        "",
    ]
    if table := controls_table(target):
        parts += [
            "Each setup against its controls (setup minus control, paired by seed and test example):",
            "",
            table,
            "",
        ]
    if table := expectations_table(expectations):
        parts += ["Expectations written in the recipe before the run, and what happened:", "", table, ""]
    if recall and (table := recall_table(target)):
        parts += ["Per-class recall (%, all seeds; confusion matrices in results.json):", "", table, ""]
    parts += ["Reading:", "", *honest_reading(target, expectations), ""]
    return parts


def overhead_table(bench: dict) -> str:
    """Bench forms x batch sizes: latency ratio to the base model, median [p10–p90] of paired rounds."""
    rows = [r for r in bench["results"] if not r.get("error")]
    batches = sorted({r["batch_size"] for r in rows})
    seqs = sorted({r["seq_len"] for r in rows})
    head = ["form", *[f"batch {b} × seq {s}" for s in seqs for b in batches]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for form in dict.fromkeys(r["form"] for r in rows):
        cells = []
        for s in seqs:
            for b in batches:
                match = [r for r in rows if r["form"] == form and r["batch_size"] == b and r["seq_len"] == s]
                cells.append(_ratio(match[0]["ratio_to_base"]) if match else "–")
        lines.append("| " + " | ".join([form, *cells]) + " |")
    return "\n".join(lines)


def tradeoff_points(results: dict) -> list[dict]:
    """One point per (target, setup, form) that has both a benefit and a measured overhead (smallest batch);
    controls are left out (they are not deployments)."""
    points = []
    for target_name, target in results["targets"].items():
        for row in target["rows"]:
            if "average_benefit" not in row or not row["overhead"] or row.get("role", "setup") != "setup":
                continue
            batch = min(row["overhead"], key=int)
            points.append(
                {
                    "target": target_name,
                    "label": row["label"],
                    "strategy": row["strategy"],
                    "form": row["form"],
                    "benefit": row["average_benefit"]["mean"],
                    "benefit_ci": row["average_benefit"]["ci"],
                    "batch_size": int(batch),
                    "overhead": row["overhead"][batch],
                }
            )
    return points


def plot_tradeoff(results: dict, path: Path) -> bool:
    """Accuracy benefit (y) against latency overhead (x), one point per (run, deployment form)."""
    points = tradeoff_points(results)
    if not points:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    markers = {
        ("stack", "unmerged"): "^",
        ("stack", "merged"): "v",
        ("stack", "fused"): ">",
        ("continue", "unmerged"): "o",
        ("continue", "merged"): "D",
        ("continue", "fused"): "d",
        ("merge-then-train", "unmerged"): "P",
        ("merge-then-train", "merged"): "X",
    }
    labels = sorted({p["target"] + ": " + (p["label"].split("+")[0]) for p in points})
    colours = {name: plt.cm.tab10(i % 10) for i, name in enumerate(labels)}
    seen = set()
    for p in points:
        r = p["overhead"]
        x = (r["median"] - 1) * 100
        colour = colours[p["target"] + ": " + p["label"].split("+")[0]]
        style = (p["strategy"], p["form"])
        ax.errorbar(
            x,
            p["benefit"],
            xerr=[[x - (r["p10"] - 1) * 100], [(r["p90"] - 1) * 100 - x]],
            yerr=[[p["benefit"] - p["benefit_ci"][0]], [p["benefit_ci"][1] - p["benefit"]]],
            fmt=markers.get(style, "o"),
            color=colour,
            capsize=3,
            alpha=0.8,
            markersize=8,
        )
        seen.add(style)
    handles = [plt.Line2D([], [], color=c, marker="s", ls="", label=name) for name, c in colours.items()]
    handles += [
        plt.Line2D([], [], color="black", marker=markers.get(s, "o"), ls="", label=f"{s[0]}, {s[1]}")
        for s in sorted(seen)
    ]
    ax.legend(handles=handles, fontsize=8, loc="best", title="intermediate task / strategy, form")
    ax.axhline(0, color="grey", lw=0.8)
    ax.axvline(0, color="grey", lw=0.8)
    batch = points[0]["batch_size"]
    ax.set_xlabel(f"latency overhead vs base model, % (batch {batch}; bars p10–p90)")
    ax.set_ylabel(f"accuracy benefit over target-only, points (bars {results['confidence']:.0%} CI)")
    ax.set_title("What the intermediate task buys, and what it costs at inference")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return True


def _benefit_sections(results: dict) -> list[str]:
    """The accuracy part of the report: intermediate adapters on their own task, then per target its benefit,
    controls, expectations, per-class recall and reading, and the other deployment forms."""
    parts: list[str] = []
    parts += [
        f"## Accuracy benefit ({SPLIT_NAMES[results['split']]})",
        "",
        "Per language: mean ± std over seeds, in brackets the difference to the baseline (target-only "
        "adapter; the bare backbone on retrieval targets). Δ avg: the XTREME-style average's difference, paired "
        f"by seed and test example, with its {results['confidence']:.0%} interval. `modules`: adapter modules "
        "active at inference (0 once merged). Controls (see adapterx.study.controls): `-shuffled` = the "
        "intermediate task with permuted labels, `step-matched-N` = target-only for N steps, "
        "`capacity-matched` = one adapter as large as a stacked pair, `-pooled` = target-only on target and "
        "intermediate rows.",
        "",
    ]
    if results.get("intermediates"):
        parts += [
            "How well each intermediate adapter learned its own task (a task not learned cannot transfer; "
            "shuffled-label controls should sit at chance):",
            "",
            *intermediate_lines(results["intermediates"]),
            "",
        ]
    for name, target in results["targets"].items():
        parts += _study_sections(name, target, results)
        if _other_forms(target):
            parts += [
                "Deployment forms (merged and fused forms compute what the unmerged form computes):",
                "",
                benefit_table(target, ("merged", "fused")),
                "",
            ]
    return parts


def render_report(results: dict, plot_name: str | None) -> str:
    b = results["backbone"]
    recipe = results["recipe"]
    versions = ", ".join(f"{k} {v}" for k, v in results["library_versions"].items())
    weights = "pretrained" if b["pretrained"] else "NOT pretrained (random/synthetic weights)"
    parts = [
        f"# {recipe['name']}: what English intermediate-task training buys, and what it costs",
        "",
        f"- backbone: `{b['name']}` — {b['description']}; weights {weights}; fingerprint `{b['fingerprint']}`",
        f"- adapter: `{recipe['adapter']}`; seeds {results['seeds']}; splits evaluated: "
        f"{', '.join(SPLIT_NAMES[s] for s in results.get('splits', [results['split']]))}; tables are on "
        f"{SPLIT_NAMES[results['split']]} unless their title says otherwise; every choice is made on dev",
        f"- device: {results['device']}; run time {results['seconds']:.0f} s "
        f"({sum(p['reused'] for p in results['phases'])} of {len(results['phases'])} phases reused from cache)",
        f"- libraries: {versions}",
        "",
    ]
    for strategy, why in results.get("skipped_strategies", {}).items():
        parts += [f"- strategy `{strategy}` left out: {why}"]
    for control, why in results.get("skipped_controls", {}).items():
        parts += [f"- control `{control}` left out: {why}"]
    if results.get("skipped_strategies") or results.get("skipped_controls"):
        parts += [""]
    if not b["pretrained"]:
        parts += [
            "> The backbone is not pretrained: these numbers show the pipeline working on synthetic data, "
            "not the science. Run a `recipes/paper/` recipe on `FacebookAI/xlm-roberta-large` for that.",
            "",
        ]
    parts += _benefit_sections(results)
    parts += render_xtreme(results)
    if results.get("dev_targets"):
        parts += ["## Dev scores (validation split: what the choices above were made on)", ""]
        for name, target in results["dev_targets"].items():
            parts += [f"### {name} ({target['metric']}, dev)", "", benefit_table(target, ("unmerged",)), ""]
    bench = results.get("bench")
    if bench:
        bb = bench.get("backbone") or {}
        settings = bench.get("settings") or {}
        parts += [
            "## Inference overhead",
            "",
            f"Latency ratio to the plain base model, median [p10–p90] over interleaved rounds (`~` = within "
            f"noise). Backbone `{bb.get('name', '?')}` ({bb.get('weights', bb.get('description', ''))}), "
            f"{', '.join(settings.get('dtypes', []))}, {settings.get('iterations', '?')} rounds.",
            "",
            overhead_table(bench),
            "",
        ]
        parts += [f"- {n}" for n in bench.get("notes", [])] + [""]
    if plot_name:
        parts += ["## Benefit against cost", "", f"![benefit vs overhead]({plot_name})", ""]
    parts += ["## Phases", "", "| phase | reused | seconds |", "|---|---|---|"]
    parts += [f"| {p['name']} | {'yes' if p['reused'] else 'no'} | {p['seconds']:.1f} |" for p in results["phases"]]
    return "\n".join(parts) + "\n"


def readme_summary(results: dict, command: str) -> str:
    """The benefit, controls and expectations tables and the overhead table, with the facts needed to read
    them, for a README section."""
    b = results["backbone"]
    reused = sum(p["reused"] for p in results["phases"])
    lines = [
        f"Generated by `{command}` on {results['device']} in {results['seconds']:.0f} s, {reused} of "
        f"{len(results['phases'])} phases reused from earlier runs (backbone `{b['name']}`, "
        f"{'pretrained' if b['pretrained'] else 'not pretrained'}; seeds {results['seeds']}; "
        f"Δ = benefit over target-only, unmerged form).",
        "",
    ]
    if results.get("intermediates"):
        lines += [
            "Intermediate adapters on their own task (English dev):",
            "",
            *intermediate_lines(results["intermediates"]),
            "",
        ]
    for name, target in results["targets"].items():
        lines += _study_sections(name, target, results, level="####", recall=False)
    if results.get("bench"):
        bench_backbone = (results["bench"].get("backbone") or {}).get("name", b["name"])
        lines += [
            f"Latency ratio to the base model (the same run, backbone `{bench_backbone}`):",
            "",
            overhead_table(results["bench"]),
            "",
        ]
    return "\n".join(lines)


def write_report(run_dir: Path, results: dict) -> Path:
    run_dir = Path(run_dir)
    plot = "benefit_vs_overhead.png" if plot_tradeoff(results, run_dir / "benefit_vs_overhead.png") else None
    path = run_dir / "report.md"
    atomic_write_text(path, render_report(results, plot))
    return path
