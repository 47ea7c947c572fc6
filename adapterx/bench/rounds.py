"""How many rounds a grid point gets: a fixed number, or (``--target-ci``) as many as it takes for every ratio's
bootstrap interval to be that narrow, within the point's share of the time budget."""

from __future__ import annotations

import time
from collections.abc import Callable

from adapterx.bench.config import BenchConfig
from adapterx.bench.timing import Clock, Timed, ci_half_width, paired_ratio, run_interleaved

FIXED, REACHED, BUDGET = "fixed rounds", "target reached", "budget ended"


def widest_interval(times: dict[str, list[float]], references: dict[str, str | None], seed: int = 0) -> float:
    """The largest bootstrap half-width over every ratio a point reports (each form to base, and to its
    reference where it has one)."""
    widest = 0.0
    for name, ref in references.items():
        for other in ("base", ref):
            if other and other != name and other in times and name in times:
                widest = max(widest, ci_half_width(paired_ratio(times[name], times[other], seed=seed)))
    return widest


def measure_rounds(
    fns: dict[str, Timed],
    references: dict[str, str | None],
    cfg: BenchConfig,
    clock: Clock,
    deadline: float,
    progress: Callable[[int], None] | None = None,
    grow: Callable[[int], None] | None = None,
) -> tuple[dict[str, list[float]], str, float]:
    """Time `fns` interleaved: `cfg.iterations` rounds after warm-up, then, with ``cfg.target_ci``, more rounds
    in chunks until the widest ratio interval is within +-target_ci or time.monotonic() passes `deadline`.

    Returns (seconds per form per round, why it stopped, widest half-width). `grow(n)` is told of rounds added
    beyond the planned ones (for a progress bar's total)."""
    times = run_interleaved(fns, warmup=cfg.warmup, iterations=cfg.iterations, clock=clock, progress=progress)
    if not cfg.target_ci:
        return times, FIXED, widest_interval(times, references, cfg.seed)
    while True:
        widest = widest_interval(times, references, cfg.seed)
        if widest <= cfg.target_ci:
            return times, REACHED, widest
        left = deadline - time.monotonic()
        if left <= 0:
            return times, BUDGET, widest
        per_round = sum(min(t) for t in times.values())
        chunk = max(1, min(max(5, len(times["base"]) // 4), int(left / max(per_round, 1e-9))))
        if grow is not None:
            grow(chunk)
        more = run_interleaved(fns, warmup=0, iterations=chunk, clock=clock, progress=progress)
        for name, values in more.items():
            times[name].extend(values)


def point_deadline(run_deadline: float, points_left: int) -> float:
    """This point's share of what is left of the run's budget."""
    now = time.monotonic()
    return now + max(0.0, run_deadline - now) / max(1, points_left)


def target_ci_summary(cfg: BenchConfig, results: list[dict]) -> dict:
    """How the --target-ci run ended, over the grid points: reached everywhere, or where the budget ran out."""
    points: dict[tuple, dict] = {}
    for r in results:
        if r.get("error") is None and "stop" in r:
            key = (r["device"], r["dtype"], r["mode"], r["threads"], r["batch_size"], r["seq_len"])
            points[key] = {"stop": r["stop"], "rounds": r["iterations"], "widest": r["widest_half_ci"]}
    short = {k: v for k, v in points.items() if v["stop"] != REACHED}
    if not short:
        summary = (
            f"--target-ci {cfg.target_ci:g}: reached at every grid point ({len(points)}): every ratio's 95% "
            f"bootstrap interval is within +-{cfg.target_ci:g}."
        )
    else:
        where = "; ".join(
            f"{k[0]} {k[1]} {k[2]} t={k[3]} b={k[4]} s={k[5]}: +-{v['widest']:.4f} after {v['rounds']} rounds"
            for k, v in short.items()
        )
        summary = (
            f"--target-ci {cfg.target_ci:g}: the time budget (--max-seconds {cfg.max_seconds:g}) ended "
            f"before every interval was that narrow at {len(short)} of {len(points)} grid points ({where})."
        )
    return {
        "target": cfg.target_ci,
        "max_seconds": cfg.max_seconds,
        "reached": len(points) - len(short),
        "budget_ended": len(short),
        "points": [
            dict(zip(("device", "dtype", "mode", "threads", "batch_size", "seq_len"), k), **v)
            for k, v in points.items()
        ],
        "summary": summary,
    }
