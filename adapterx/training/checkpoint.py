"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint directory ``step-<N>/`` holds trainable.safetensors (adapter + head tensors),
optimizer.safetensors + optimizer.json (AdamW moments; param groups), and state.json (step, epoch,
position in the epoch, loss and eval history, scheduler state). Written atomically.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from adapterx.core.errors import AdapterFileError
from adapterx.core.io import atomic_directory
from adapterx.store import check_safetensors


def save_checkpoint(directory: Path, trainable: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
                    state: dict, keep: int) -> Path:
    path = directory / f"step-{state['step']}"
    opt_state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, entries in opt_state["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{index}.{key}"] = value
    tensors["rng.cpu"] = torch.get_rng_state()   # dropout draws continue exactly where they stopped
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    with atomic_directory(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in trainable.items()}, str(tmp / "trainable.safetensors"))
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        (tmp / "optimizer.json").write_text(json.dumps({"param_groups": opt_state["param_groups"],
                                                        "scalars": scalars}))
        (tmp / "state.json").write_text(json.dumps(state, indent=1))
    _prune(directory, keep)
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


def _prune(directory: Path, keep: int) -> None:
    for _, path in _checkpoints(directory)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)
