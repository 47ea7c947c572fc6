"""The bench guarding its own conditions: how busy the machine was while it measured, and how sure a ratio is.

* :class:`LoadMonitor` samples the 1-minute load average before the run, every few seconds during it (a daemon
  thread) and after it, and warns when the machine was busy: the load before the run, or any later sample less
  the bench's own compute threads, above half the cores. Timings from a busy machine drift and spread.
* :func:`bootstrap_ci` is the percentile-bootstrap interval of the median of per-round paired ratios
  (resampling rounds with replacement): how precisely the median is known, which narrows as rounds are added,
  unlike p10-p90, which describes the spread of single rounds and does not.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

CI_LEVEL = 0.95
BOOTSTRAP_RESAMPLES = 2000


def bootstrap_ci(
    ratios: Sequence[float], *, level: float = CI_LEVEL, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap `level` interval of the median of `ratios` (one per round), resampling rounds."""
    values = np.asarray(ratios, dtype=np.float64)
    if values.size < 2:
        return float(values[0]), float(values[0])
    rng = np.random.default_rng(seed)
    medians = np.median(values[rng.integers(0, values.size, size=(resamples, values.size))], axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(medians, [tail, 100 - tail])
    return float(low), float(high)


def _loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


class LoadMonitor:
    """Samples the 1-minute load average before, during (every `interval` s) and after a run.

    `own_threads`: compute threads of the bench itself; subtracted from the samples taken while it runs (the
    sample before the run is taken before it computes anything). Use as a context manager, then `record()`.
    """

    def __init__(
        self,
        own_threads: int,
        *,
        interval: float = 5.0,
        cores: int | None = None,
        read: Callable[[], float | None] = _loadavg,
    ):
        self.own_threads = max(0, int(own_threads))
        self.cores = cores or os.cpu_count() or 1
        self.interval = interval
        self._read = read
        self._t0 = time.monotonic()
        self.samples: list[tuple[str, float, float]] = []  # (phase, seconds since start, load)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self, phase: str) -> None:
        value = self._read()
        if value is not None:
            self.samples.append((phase, round(time.monotonic() - self._t0, 1), round(float(value), 2)))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample("during")

    def __enter__(self) -> "LoadMonitor":
        self._sample("before")
        self._thread = threading.Thread(target=self._loop, name="bench-load-monitor", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 1)
        self._sample("after")

    @property
    def threshold(self) -> float:
        return self.cores / 2

    def others(self) -> list[float]:
        """Load attributable to other processes, per sample (own threads taken off samples during/after)."""
        return [load if phase == "before" else load - self.own_threads for phase, _, load in self.samples]

    def record(self) -> dict:
        """What results.json keeps: the samples, the rule, and a warning (None on a quiet machine)."""
        others = self.others()
        worst = max(others) if others else None
        busy = worst is not None and worst > self.threshold
        warning = None
        if busy:
            warning = (
                f"the machine was busy: the 1-minute load average from other processes reached {worst:.2f} "
                f"(> half of the {self.cores} cores) while the bench ran; its timings drift and spread. Rerun "
                f"with nothing else running, or compare ratios only (forms are interleaved), or use "
                f"--clock cpu / --clock instructions"
            )
        elif worst is None:
            warning = "the load average could not be read on this platform; the machine's load is unknown"
        return {
            "samples": [{"phase": p, "t_s": t, "load_1m": v} for p, t, v in self.samples],
            "cores": self.cores,
            "own_threads": self.own_threads,
            "threshold": self.threshold,
            "max_other_load": worst,
            "busy": busy,
            "warning": warning,
            "rule": "busy when the load before the run, or any later sample minus the bench's own compute "
            "threads, exceeds half the cores",
        }
