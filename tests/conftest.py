"""Shared fixtures: the built-in tiny backbone (milliseconds to build) and small saved adapters."""

from __future__ import annotations

import logging
import os

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
logging.getLogger("adapters").setLevel(logging.ERROR)

from adapterx.core.backbone import load_backbone  # noqa: E402


@pytest.fixture(scope="session")
def pristine_backbone():
    """Never attach adapters to this one: take `backbone` (a fresh copy) instead."""
    return load_backbone("builtin:tiny-xlmr")


@pytest.fixture
def backbone(pristine_backbone):
    return pristine_backbone.fresh_copy()


@pytest.fixture
def probe(pristine_backbone):
    """A small tokenised batch in two languages, padded."""
    tok = pristine_backbone.tokenizer
    return dict(tok(["the happy dog eats the apple", "der hund isst nicht den apfel heute"],
                    ["the dog eats the apple", "der hund isst den apfel"], padding=True, return_tensors="pt"))


def perturb_trainable(model, scale: float = 0.1, seed: int = 0) -> None:
    """Give every trainable tensor random values, so that a LoRA B matrix is not zero and outputs change."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters(), key=lambda item: item[0]):
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * scale)
