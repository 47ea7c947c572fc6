"""The issue's targets, checked against measured results. Verdicts are benchmark output, never assertions:
'met', 'not met', or 'undecided' where the noise is larger than the difference that decides."""

from __future__ import annotations

import re


def _key(r: dict) -> tuple:
    return (r["device"], r["dtype"], r["threads"], r["mode"], r["batch_size"], r["seq_len"])


def _point(r: dict) -> str:
    return f"{r['device']} {r['dtype']} {r['mode']} threads={r['threads']} batch={r['batch_size']} seq={r['seq_len']}"


def _fmt(ratio: dict) -> str:
    return f"{ratio['median']:.3f} (p10-p90 {ratio['p10']:.3f}-{ratio['p90']:.3f})"


def evaluate_targets(results: list[dict]) -> list[dict]:
    by_point: dict[tuple, dict[str, dict]] = {}
    for r in results:
        if r.get("error") is None:
            by_point.setdefault(_key(r), {})[r["form"]] = r
    checks = []
    for rows in by_point.values():
        any_row = next(iter(rows.values()))
        where = _point(any_row)
        if "lora-merged" in rows:
            q = rows["lora-merged"]["ratio_to_base"]
            if q["within_noise"] or abs(q["median"] - 1) <= 0.01:
                verdict = "met"
            elif q["median"] < 1:
                verdict = "met (faster than base beyond noise: a measurement artefact, e.g. cache or layout)"
            else:
                verdict = "not met"
            checks.append({"target": "merged LoRA costs nothing (ratio 1.00 +- noise)", "where": where,
                           "value": _fmt(q), "verdict": verdict})
        for name, row in rows.items():
            m = re.fullmatch(r"lora-stack-(\d+)-fused", name)
            if m and f"lora-stack-{m.group(1)}" in rows and int(m.group(1)) > 1:
                naive = rows[f"lora-stack-{m.group(1)}"]["ratio_to_base"]
                fused = row["ratio_to_base"]
                over_n, over_f = naive["median"] - 1, fused["median"] - 1
                if over_n <= naive["spread"]:
                    verdict = "undecided (naive overhead within noise)"
                else:
                    verdict = "met" if over_f <= 0.5 * over_n else "not met"
                checks.append({"target": f"stack of {m.group(1)} fused: overhead <= half the naive (peft) one",
                               "where": where, "verdict": verdict,
                               "value": f"overhead fused {over_f:+.3f} vs naive {over_n:+.3f} "
                                        f"(fused/naive time {_fmt(row['ratio_to_reference'])})"})
            m = re.fullmatch(r"lora-mixed-(\d+)(-gathered)?", name)
            if m and row.get("ratio_to_reference"):
                q = row["ratio_to_reference"]  # time(mixed) / time(lora on one adapter)
                frac = 1 / q["median"]
                verdict = "met" if frac >= 0.9 else ("undecided (within noise)" if 1 / q["p10"] >= 0.9 else "not met")
                checks.append({"target": f"{name}: >= 90% of the throughput of one LoRA adapter", "where": where,
                               "value": f"{frac:.1%} (time ratio {_fmt(q)})", "verdict": verdict})
        if any_row["device"] == "cuda" and any_row["batch_size"] == 1 and any_row["dtype"] in ("bf16", "fp16"):
            for name in ("lora", "lora-fast"):
                if name in rows:
                    q = rows[name]["ratio_to_base"]
                    checks.append({"target": f"{name} on GPU at batch 1 costs <= 10% over the base", "where": where,
                                   "value": _fmt(q), "verdict": "met" if q["median"] <= 1.10 else "not met"})
    return checks
