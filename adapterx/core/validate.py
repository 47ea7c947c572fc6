"""Range checks for numbers a user gives (CLI options, recipe fields, adapter specs), each failing with an
AdapterxError that names the option or field: a count of 0 would loop forever or train nothing, a NaN rate
would train garbage, and neither should get past the first line of a run."""

from __future__ import annotations

import math
from collections.abc import Iterable

from adapterx.core.errors import AdapterxError


def is_int(value: object) -> bool:
    """An integer that is not a bool (YAML's `true` and argparse's bools are ints to Python)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def count(value: object, name: str, minimum: int = 1) -> int:
    """An integer >= `minimum` (counts, sizes, steps, limits)."""
    if not is_int(value) or value < minimum:
        raise AdapterxError(f"{name}: must be an integer >= {minimum}, got {value!r}")
    return value


def optional_count(value: object, name: str, minimum: int = 1) -> int | None:
    return None if value is None else count(value, name, minimum)


def number(
    value: object,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite number within [low, high] (or open at either end)."""
    if not is_number(value) or not math.isfinite(value):
        raise AdapterxError(f"{name}: must be a finite number, got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "-inf" if low is None else f"{low:g}"
        right = "inf" if high is None else f"{high:g}"
        interval = (
            f"{'(' if low_open or low is None else '['}{left}, {right}{')' if high_open or high is None else ']'}"
        )
        raise AdapterxError(f"{name}: must be in {interval}, got {value!r}")
    return float(value)


def counts(values: Iterable[object], name: str, minimum: int = 1, maximum: int | None = None) -> list[int]:
    """A non-empty list of integers in [minimum, maximum]."""
    values = list(values)
    if not values:
        raise AdapterxError(f"{name}: must name at least one value")
    for value in values:
        count(value, name, minimum)
        if maximum is not None and value > maximum:
            raise AdapterxError(f"{name}: {value} exceeds {maximum}")
    return values


def choice(value: object, name: str, known: Iterable[str]) -> str:
    known = list(known)
    if value not in known:
        raise AdapterxError(f"{name}: {value!r} is not one of {', '.join(map(str, known))}")
    return value
