"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint directory ``step-<N>/`` holds trainable.safetensors (adapter + head tensors),
optimizer.safetensors + optimizer.json (AdamW moments; param groups), and state.json (step, epoch,
position in the epoch, loss and eval history, seconds trained so far, scheduler state, and the run's
configuration with its digest, see adapterx.training.run_config). Written atomically.

A run directory's checkpoints belong to one run: a fresh run refuses a directory that holds another run's
output (or, told to overwrite, clears its checkpoints first), and pruning only ever removes checkpoints of
the run that is writing.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from adapterx.core.errors import AdapterFileError, AdapterxError
from adapterx.core.io import atomic_directory
from adapterx.store import check_safetensors


def save_checkpoint(
    directory: Path, trainable: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer, state: dict, keep: int
) -> Path:
    path = directory / f"step-{state['step']}"
    opt_state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, entries in opt_state["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{index}.{key}"] = value
    tensors["rng.cpu"] = torch.get_rng_state()  # dropout draws continue exactly where they stopped
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    with atomic_directory(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in trainable.items()}, str(tmp / "trainable.safetensors"))
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        (tmp / "optimizer.json").write_text(json.dumps({"param_groups": opt_state["param_groups"], "scalars": scalars}))
        (tmp / "state.json").write_text(json.dumps(state, indent=1))
    _prune(directory, keep, state.get("run_digest"))
    return path


def latest_checkpoint(directory: Path) -> Path | None:
    steps = _checkpoints(directory)
    return steps[-1][1] if steps else None


def load_checkpoint(path: Path, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Restore the optimizer in place; return the trainable tensors and the training state."""
    for name in ("trainable.safetensors", "optimizer.safetensors"):
        check_safetensors(path / name)
    try:
        meta = json.loads((path / "optimizer.json").read_text())
        state = json.loads((path / "state.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise AdapterFileError(path, f"checkpoint is incomplete or corrupt: {exc}") from exc
    tensors = load_file(str(path / "optimizer.safetensors"))
    torch.set_rng_state(tensors.pop("rng.cpu"))
    if "rng.cuda" in tensors:
        cuda_state = tensors.pop("rng.cuda")
        if torch.cuda.is_available():
            torch.cuda.set_rng_state(cuda_state)
    entries: dict[int, dict] = {}
    for key, value in [*tensors.items(), *meta["scalars"].items()]:
        index, name = key.split(".", 1)
        entries.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": entries, "param_groups": meta["param_groups"]})
    return load_file(str(path / "trainable.safetensors")), state


def _checkpoints(directory: Path) -> list[tuple[int, Path]]:
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := re.fullmatch(r"step-(\d+)", p.name))]
    return sorted(found)


def _prune(directory: Path, keep: int, digest: str | None = None) -> None:
    """Remove all but the newest `keep` checkpoints of the run with `digest` (every checkpoint if None)."""
    own = [
        (step, path)
        for step, path in _checkpoints(directory)
        if digest is None or read_state(path).get("run_digest") == digest
    ]
    for _, path in own[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


def read_state(path: Path) -> dict:
    """A checkpoint's state.json (empty if unreadable: such a checkpoint belongs to no known run)."""
    try:
        return json.loads((Path(path) / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def prepare_run_directory(output_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Make sure a run starting in `output_dir` cannot mix with what is there: with `resume`, a finished run
    (an adapter and no checkpoint) is refused; without it, a directory holding anything is refused unless
    `overwrite`, which clears the old checkpoints (the old adapter is replaced when the new one is saved)."""
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise AdapterxError(f"{output_dir}: is a file; the run directory must be a directory")
    checkpoints = output_dir / "checkpoints"
    if resume:
        if latest_checkpoint(checkpoints) is None and (output_dir / "adapter").exists() and not overwrite:
            raise AdapterxError(
                f"{output_dir}: nothing to resume: the run finished (its adapter is saved and no "
                f"checkpoint is left); pass --overwrite to train it again"
            )
        return
    held = sorted(p.name for p in output_dir.iterdir()) if output_dir.is_dir() else []
    if held and not overwrite:
        raise AdapterxError(
            f"{output_dir}: is not empty (holds {', '.join(held[:4])}"
            f"{', ...' if len(held) > 4 else ''}); --resume continues the run it holds, "
            f"--overwrite replaces it"
        )
    if overwrite:
        shutil.rmtree(checkpoints, ignore_errors=True)
