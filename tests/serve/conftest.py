"""Saved adapters of every kind and head for the serving tests, built once per session in a temporary directory
(random trainable tensors, so that each adapter changes the outputs), and an engine over them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from adapterx import store
from adapterx.core.heads import HeadSpec
from adapterx.core.model import AdaptedModel
from adapterx.methods import parse_spec
from adapterx.tasks import get_task

NLI = ["entailment", "neutral", "contradiction"]


def save_adapter(backbone, directory, spec: dict, head: HeadSpec | None, *, task, labels=(), seed=0, on_top_of=None):
    """Save an adapter of `spec` whose trainable tensors are random, with `head` (None: no head), optionally
    stacked on the saved adapter `on_top_of` (recorded in ``requires`` as training with strategy 'stack' does)."""
    model = AdaptedModel(backbone)
    names, requires = ["x"], []
    if on_top_of is not None:
        record = store.load_adapter(model, on_top_of, name="inter", with_head=False)
        names = ["inter", "x"]
        requires = [
            {
                "name": "inter",
                "path": str(Path(on_top_of).resolve()),
                "weights_digest": record.metadata["weights_digest"],
                "role": "stacked",
            }
        ]
    store.add_adapter(model, "x", parse_spec(spec))
    store.activate(model, names, trainable="x")
    if head is not None:
        model.add_head("x", head)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters(), key=lambda item: item[0]):
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    return store.save_adapter(
        model,
        "x",
        directory,
        task=task,
        labels=labels,
        head="x" if head is not None else None,
        requires=requires,
    )


@pytest.fixture(scope="session")
def save_served():
    """`save_adapter(backbone, directory, spec, head, *, task, labels, seed, on_top_of)` -> directory."""
    return save_adapter


@pytest.fixture(scope="session")
def served_dir(tmp_path_factory, pristine_backbone):
    """An artifacts-like directory of saved adapters: {name: directory} (names as the engine gives them)."""
    root = tmp_path_factory.mktemp("served")
    pos, nli = list(get_task("udpos").labels), HeadSpec("classification", 3)
    tagging, qa = HeadSpec("tagging", len(pos)), HeadSpec("span_qa", 0)
    lora_a = {"kind": "lora", "r": 4}
    made = {
        "nli-a": (lora_a, nli, "tiny-xnli", NLI, None),
        "nli-b": ({"kind": "lora", "r": 8, "target_modules": ["query", "value", "dense"]}, nli, "tiny-xnli", NLI, None),
        "nli-bottleneck": ({"kind": "bottleneck"}, nli, "tiny-xnli", NLI, None),
        "nli-prompt": ({"kind": "prompt", "num_virtual_tokens": 4}, nli, "tiny-xnli", NLI, None),
        "nli-prefix": ({"kind": "prefix", "num_virtual_tokens": 4}, nli, "tiny-xnli", NLI, None),
        "pos-lora": (lora_a, tagging, "udpos", pos, None),
        "pos-bottleneck": ({"kind": "bottleneck"}, tagging, "udpos", pos, None),
        "qa-lora": (lora_a, qa, "xquad", (), None),
        "qa-prompt": ({"kind": "prompt", "num_virtual_tokens": 4}, qa, "xquad", (), None),
        "encoder": (lora_a, None, "tatoeba", (), None),
    }
    dirs = {}
    for seed, (name, (spec, head, task, labels, _)) in enumerate(made.items(), start=1):
        dirs[name] = save_adapter(
            pristine_backbone.fresh_copy(), root / name, spec, head, task=task, labels=labels, seed=seed
        )
    dirs["nli-stacked"] = save_adapter(
        pristine_backbone.fresh_copy(),
        root / "nli-stacked",
        lora_a,
        nli,
        task="tiny-xnli",
        labels=NLI,
        seed=99,
        on_top_of=dirs["nli-a"],
    )
    return root, dirs


@pytest.fixture(scope="module")
def engine(served_dir, pristine_backbone):
    from adapterx.serve import Engine

    root, _ = served_dir
    return Engine.from_sources([root], backbone=pristine_backbone, adapter_root=root)
