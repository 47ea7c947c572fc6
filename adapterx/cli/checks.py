"""Checks of parsed command-line options before any work starts: numbers in range (a count of 0 would loop
forever or train nothing; NaN would train garbage) and outputs that can be written where they are named (a
file where a directory is expected). Each failure is an AdapterxError naming the option."""

from __future__ import annotations

import argparse
from pathlib import Path

from adapterx.core import validate as check
from adapterx.core.errors import AdapterxError

# per command: option dest -> minimum of an integer count
COUNTS: dict[str, dict[str, int]] = {
    "train": {"train_limit": 1},
    "evaluate": {"bootstrap": 1, "limit": 1},
    "run": {"job": 0},
}
# per command: option dest -> keyword arguments of adapterx.core.validate.number
NUMBERS: dict[str, dict[str, dict]] = {
    "evaluate": {"confidence": dict(low=0, high=1, low_open=True, high_open=True)},
    "compose": {"density": dict(low=0, high=1, low_open=True)},
    "merge": {"tolerance": dict(low=0)},
    "run": {"wait": dict(low=0)},
}
# per command: option dest -> what it names ("dir", "file", or "dir-or-json": a directory unless it ends in .json)
OUTPUTS: dict[str, dict[str, str]] = {
    "train": {"output": "dir"},
    "merge": {"output": "dir"},
    "compose": {"output": "dir-or-json"},
    "evaluate": {"output": "file"},
    "export-backbone": {"directory": "dir"},
}


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def check_args(args: argparse.Namespace) -> None:
    """Raise AdapterxError for the first option out of range or output that cannot be written."""
    command = getattr(args, "command", None)
    for dest, minimum in COUNTS.get(command, {}).items():
        if getattr(args, dest, None) is not None:
            check.count(getattr(args, dest), _flag(dest), minimum)
    for dest, bounds in NUMBERS.get(command, {}).items():
        if getattr(args, dest, None) is not None:
            check.number(getattr(args, dest), _flag(dest), **bounds)
    if command == "compose" and getattr(args, "weights", None):
        check_weights(args.weights)
    for dest, kind in OUTPUTS.get(command, {}).items():
        if getattr(args, dest, None):
            path = Path(getattr(args, dest))
            directory = kind == "dir" or (kind == "dir-or-json" and path.suffix != ".json")
            check_output(path, _flag(dest) if dest != "directory" else "DIR", directory=directory)


def check_output(path: Path, option: str, *, directory: bool) -> None:
    """`path` can be created (or replaced) as a directory (or a file): it is not the other kind, and the
    nearest existing folder above it is a folder."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        if directory and not path.is_dir():
            raise AdapterxError(f"{option} {path}: is an existing file; a directory is expected there")
        if not directory and path.is_dir():
            raise AdapterxError(f"{option} {path}: is an existing directory; a file name is expected there")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise AdapterxError(f"{option} {path}: {parent} is a file, not a directory")
            break


def check_weights(text: str) -> list[float]:
    """``--weights 0.7,0.3``: finite numbers, one per adapter."""
    try:
        weights = [float(w) for w in text.split(",") if w.strip()]
    except ValueError as exc:
        raise AdapterxError(f"--weights: expected numbers separated by commas, e.g. 0.5,0.5; got {text!r}") from exc
    for weight in weights:
        check.number(weight, "--weights")
    return weights
