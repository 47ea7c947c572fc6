"""One seed for everything a training run draws: adapter and head initialisation, data order, dropout.

`seed_everything` is called before any module of a run is created (adapterx.training.workflow and
adapterx.training.multitask), so a run's result depends on its seed only, not on what ran earlier in the process.
Data order uses generators of its own, seeded from the same seed (adapterx.training.loop.SeededBatchSampler).
`derived_seed` gives further, independent streams (e.g. the label permutation of a shuffled-label control) that
are stable across processes and Python versions (no use of ``hash()``).
"""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (torch's covers every CUDA device too)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derived_seed(seed: int, *purpose: str) -> int:
    """A seed for one named purpose of run `seed`: the same in every process, different per purpose."""
    digest = hashlib.sha256(":".join([str(seed), *purpose]).encode()).digest()
    return int.from_bytes(digest[:4], "little")
