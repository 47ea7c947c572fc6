"""The issue's targets, checked against measured results. Verdicts are benchmark output, never assertions:
'met', 'not met', or 'undecided' where the noise is larger than the difference that decides."""

from __future__ import annotations

import re


def _key(r: dict) -> tuple:
    return (r["device"], r["dtype"], r["threads"], r["mode"], r["batch_size"], r["seq_len"])


def _point(r: dict) -> str:
    return f"{r['device']} {r['dtype']} {r['mode']} threads={r['threads']} batch={r['batch_size']} seq={r['seq_len']}"


def _fmt(ratio: dict) -> str:
    ci = f", 95% CI {ratio['ci_low']:.3f}-{ratio['ci_high']:.3f}" if "ci_low" in ratio else ""
    return f"{ratio['median']:.3f} (p10-p90 {ratio['p10']:.3f}-{ratio['p90']:.3f}{ci})"


def _uncertainty(ratio: dict) -> float:
    """How far off a ratio's median may be: half its bootstrap interval where there is one (it narrows with more
    rounds, so --target-ci can decide a target), else half its p10-p90 spread."""
    if "ci_low" in ratio:
        return (ratio["ci_high"] - ratio["ci_low"]) / 2
    return ratio["spread"]


def _at_most(ratio: dict, bound: float) -> str:
    """'met' when the whole interval lies at or under `bound`, 'not met' when it lies over, else undecided."""
    low, high = (ratio["ci_low"], ratio["ci_high"]) if "ci_low" in ratio else (ratio["p10"], ratio["p90"])
    if high <= bound:
        return "met"
    if low > bound:
        return "not met"
    return "undecided (the interval straddles the bound)"


# form -> the bound on its ratio to base on CPU at batch 1
FAST_BOTTLENECK_BOUNDS = {"bottleneck-fast": 1.03, "bottleneck-stack-2-fast": 1.05}


def evaluate_targets(results: list[dict]) -> list[dict]:
    by_point: dict[tuple, dict[str, dict]] = {}
    for r in results:
        if r.get("error") is None:
            by_point.setdefault(_key(r), {})[r["form"]] = r
    checks = []
    for rows in by_point.values():
        any_row = next(iter(rows.values()))
        where = _point(any_row)
        checks += _merged_checks(rows, where) + _stack_and_mixed_checks(rows, where)
        if any_row["device"] == "cpu" and any_row["batch_size"] == 1:
            checks += _fast_bottleneck_checks(rows, where)
        if any_row["device"] == "cuda" and any_row["batch_size"] == 1 and any_row["dtype"] in ("bf16", "fp16"):
            for name in ("lora", "lora-fast"):
                if name in rows:
                    q = rows[name]["ratio_to_base"]
                    checks.append(
                        {
                            "target": f"{name} on GPU at batch 1 costs <= 10% over the base",
                            "where": where,
                            "value": _fmt(q),
                            "verdict": "met" if q["median"] <= 1.10 else "not met",
                        }
                    )
    return checks


def _merged_checks(rows: dict[str, dict], where: str) -> list[dict]:
    if "lora-merged" not in rows:
        return []
    q = rows["lora-merged"]["ratio_to_base"]
    if "ci_low" in q:  # decided by where the median's interval lies against 1.00 +- 0.01
        verdict = _at_most(q, 1.01)
        if q["ci_high"] < 0.99:
            verdict = "met (faster than base beyond noise: a measurement artefact, e.g. cache or layout)"
    elif q["within_noise"] or abs(q["median"] - 1) <= 0.01:
        verdict = "met"
    elif q["median"] < 1:
        verdict = "met (faster than base beyond noise: a measurement artefact, e.g. cache or layout)"
    else:
        verdict = "not met"
    return [
        {
            "target": "merged LoRA costs nothing (ratio 1.00 +- noise)",
            "where": where,
            "value": _fmt(q),
            "verdict": verdict,
        }
    ]


def _stack_and_mixed_checks(rows: dict[str, dict], where: str) -> list[dict]:
    checks = []
    for name, row in rows.items():
        m = re.fullmatch(r"lora-stack-(\d+)-fused", name)
        if m and f"lora-stack-{m.group(1)}" in rows and int(m.group(1)) > 1:
            naive = rows[f"lora-stack-{m.group(1)}"]["ratio_to_base"]
            over_n, over_f = naive["median"] - 1, row["ratio_to_base"]["median"] - 1
            if over_n <= _uncertainty(naive):
                verdict = "undecided (naive overhead within noise)"
            else:
                verdict = "met" if over_f <= 0.5 * over_n else "not met"
            checks.append(
                {
                    "target": f"stack of {m.group(1)} fused: overhead <= half the naive (peft) one",
                    "where": where,
                    "verdict": verdict,
                    "value": f"overhead fused {over_f:+.3f} vs naive {over_n:+.3f} "
                    f"(fused/naive time {_fmt(row['ratio_to_reference'])})",
                }
            )
        m = re.fullmatch(r"lora-mixed-(\d+)(-gathered)?", name)
        if m and row.get("ratio_to_reference"):
            q = row["ratio_to_reference"]  # time(mixed) / time(lora on one adapter)
            frac = 1 / q["median"]
            verdict = "met" if frac >= 0.9 else ("undecided (within noise)" if 1 / q["p10"] >= 0.9 else "not met")
            checks.append(
                {
                    "target": f"{name}: >= 90% of the throughput of one LoRA adapter",
                    "where": where,
                    "value": f"{frac:.1%} (time ratio {_fmt(q)})",
                    "verdict": verdict,
                }
            )
    return checks


def _fast_bottleneck_checks(rows: dict[str, dict], where: str) -> list[dict]:
    checks = []
    for name, bound in FAST_BOTTLENECK_BOUNDS.items():
        if name in rows:
            q = rows[name]["ratio_to_base"]
            library = rows.get(name.removesuffix("-fast"))
            also = f"; library form {_fmt(library['ratio_to_base'])}" if library else ""
            checks.append(
                {
                    "target": f"{name} on CPU at batch 1 costs <= {bound:.2f} x the base",
                    "where": where,
                    "value": _fmt(q) + also,
                    "verdict": _at_most(q, bound),
                }
            )
    return checks
