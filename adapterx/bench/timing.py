"""Timing harness: warm-up, interleaved rounds (A B C, B C A, ...) so drift cancels, paired ratios.

No assertion here is about speed: these functions only measure and summarise.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence

import torch

from adapterx.bench.hygiene import CI_LEVEL, bootstrap_ci

Timed = Callable[[], object]


class Clock:
    """Seconds one call takes: wall clock on CPU; CUDA events (with synchronisation) on GPU.

    ``kind="cpu"`` measures the process's CPU time instead of wall time (CPU device only): on a machine shared
    with other processes, time spent waiting for a core is not counted. It is exact with one thread; with
    several, idle threads spinning at OpenMP barriers are counted too.
    """

    def __init__(self, device: str, kind: str = "wall"):
        self.cuda = device.startswith("cuda")
        self.now = time.process_time if kind == "cpu" and not self.cuda else time.perf_counter

    def __call__(self, fn: Timed) -> float:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1000.0
        t0 = self.now()
        fn()
        return self.now() - t0


def run_interleaved(
    fns: dict[str, Timed], *, warmup: int, iterations: int, clock: Clock, progress: Callable[[int], None] | None = None
) -> dict[str, list[float]]:
    """Run every callable `warmup` rounds untimed, then `iterations` timed rounds; each round calls every form
    once, the starting form rotating each round so no form always runs first. Returns seconds per form,
    one entry per round, in round order (so entry i of two forms form a pair)."""
    names = list(fns)
    with torch.inference_mode():
        for _ in range(warmup):
            for name in names:
                fns[name]()
        times: dict[str, list[float]] = {n: [] for n in names}
        for i in range(iterations):
            k = i % len(names)
            for name in names[k:] + names[:k]:
                times[name].append(clock(fns[name]))
            if progress is not None:
                progress(1)
    return times


def quantile(xs: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default) of a non-empty sequence."""
    s = sorted(xs)
    pos = (len(s) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summarize(xs: Sequence[float]) -> dict[str, float]:
    """median, p10, p90, mean and coefficient of variation (std / mean)."""
    mean = statistics.fmean(xs)
    std = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return {
        "median": statistics.median(xs),
        "p10": quantile(xs, 0.1),
        "p90": quantile(xs, 0.9),
        "mean": mean,
        "cv": std / mean if mean else float("nan"),
    }


def paired_ratio(num: Sequence[float], den: Sequence[float], seed: int = 0) -> dict[str, float | bool | str]:
    """Ratio of two forms timed in the same rounds: median, p10 and p90 of the per-round ratios num_i / den_i,
    and the 95% bootstrap interval of the median (``ci_low``/``ci_high``, rounds resampled; `seed` fixes it).

    ``within_noise`` is true when the p10-p90 interval contains 1.0, or when the claimed difference
    |median - 1| is smaller than the spread (half the p10-p90 width): such a ratio does not show a difference.
    """
    ratios = [a / b for a, b in zip(num, den)]
    med, p10, p90 = statistics.median(ratios), quantile(ratios, 0.1), quantile(ratios, 0.9)
    spread = (p90 - p10) / 2
    within = p10 <= 1.0 <= p90 or abs(med - 1.0) < spread
    low, high = bootstrap_ci(ratios, seed=seed)
    return {
        "median": med,
        "p10": p10,
        "p90": p90,
        "spread": spread,
        "within_noise": within,
        "label": "within noise" if within else ("slower" if med > 1 else "faster"),
        "ci_low": low,
        "ci_high": high,
        "ci_level": CI_LEVEL,
        "rounds": len(ratios),
    }


def ci_half_width(ratio: dict) -> float:
    """Half the width of a ratio's bootstrap interval (how precisely its median is known)."""
    return (ratio["ci_high"] - ratio["ci_low"]) / 2
