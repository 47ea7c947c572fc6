"""A fifth adapter kind, defined in this file and registered with `register_method`, goes through the whole
flow -- train, save, load, evaluate, compose, bench -- with no change to any file of adapterx: proof that a kind
is one file.

The kind: a learned affine map (a scale and a shift per hidden unit) on the embeddings' output, implemented by
hand as its own minimal "library" (a forward hook on the embeddings module), saved as safetensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from adapterx import store
from adapterx.bench.config import BenchConfig
from adapterx.bench.runner import run_bench
from adapterx.core.errors import AdapterxError, CompositionError, UnknownNameError
from adapterx.deploy.compose import compose
from adapterx.deploy.merge import merge_adapters
from adapterx.deploy.setup import load_for_inference
from adapterx.methods import AdapterSpec, Method, get_method, kinds, parse_spec, register_method, unregister_method
from adapterx.study.evaluate import evaluate_languages
from adapterx.tasks import get_task
from adapterx.training.loop import TrainConfig
from adapterx.training.workflow import train_task

KIND = "toyaffine"
WEIGHTS_FILE = "toy_affine.safetensors"


@dataclass(frozen=True)
class AffineSpec(AdapterSpec):
    kind = KIND
    scale_init: float = 1.0

    def validate(self, where: str) -> None:
        if not isinstance(self.scale_init, (int, float)):
            raise AdapterxError(f"{where}.scale_init: must be a number, got {self.scale_init!r}")


class _Affine(nn.Module):
    def __init__(self, hidden: int, scale: float):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([torch.full((hidden,), float(scale)), torch.zeros(hidden)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight[0] + self.weight[1]


class AffineMethod(Method):
    """Adapters held in a ModuleDict under the embeddings; a hook applies the active ones, in order."""

    kind = KIND
    family = "toy"
    spec_type = AffineSpec
    weights_file = WEIGHTS_FILE
    not_mergeable_reason: ClassVar[str] = "the toy kind has no merge"

    @staticmethod
    def _table(model) -> nn.ModuleDict:
        embeddings = model.backbone.model.embeddings
        if not hasattr(embeddings, "toy_affine"):
            model.use_library("toy")
            embeddings.toy_affine = nn.ModuleDict()
            embeddings.toy_affine.active = []
            embeddings.register_forward_hook(lambda module, args, out: _apply(module.toy_affine, out))
        return embeddings.toy_affine

    def add(self, model, name, spec):
        w = next(model.backbone.model.parameters())
        self._table(model)[name] = _Affine(model.backbone.hidden_size, spec.scale_init).to(w.device, w.dtype)

    def save(self, model, name, directory: Path):
        save_file(
            {"weight": self._table(model)[name].weight.detach().contiguous().cpu()}, str(directory / WEIGHTS_FILE)
        )

    def load(self, model, name, directory: Path):
        self.add(model, name, AffineSpec())
        self.load_adapter_state(model, name, load_file(str(directory / WEIGHTS_FILE)))

    def activate(self, model, names, trainable):
        table = self._table(model)
        table.active = list(names)
        for n, module in table.items():
            module.weight.requires_grad_(n == trainable)

    def delete(self, model, name):
        del self._table(model)[name]

    def adapter_state(self, model, name):
        return {"weight": self._table(model)[name].weight.detach()}

    def load_adapter_state(self, model, name, state):
        if set(state) != {"weight"}:
            raise CompositionError(f"adapter {name!r}: state does not match its parameters")
        with torch.no_grad():
            self._table(model)[name].weight.copy_(state["weight"])

    def copy_weights(self, model, source, target):
        self.load_adapter_state(model, target, self.adapter_state(model, source))


def _apply(table: nn.ModuleDict, out: torch.Tensor) -> torch.Tensor:
    for name in table.active:
        out = table[name](out)
    return out


@pytest.fixture(scope="module")
def toy_kind():
    with pytest.raises(UnknownNameError):
        get_method(KIND)
    method = register_method(AffineMethod)
    yield method
    unregister_method(KIND)
    assert KIND not in kinds()


@pytest.fixture(scope="module")
def trained(toy_kind, pristine_backbone, tmp_path_factory):
    spec = parse_spec({"kind": KIND, "scale_init": 1.0})
    assert isinstance(spec, AffineSpec)
    return train_task(
        pristine_backbone,
        get_task("tiny-nli"),
        spec,
        TrainConfig(max_steps=4, batch_size=16),
        tmp_path_factory.mktemp("toy"),
        train_limit=32,
        eval_limit=16,
        progress=False,
    )


def test_train_save_load_evaluate(toy_kind, trained, pristine_backbone):
    metadata = store.read_metadata(trained.directory)
    assert metadata["kind"] == KIND and (trained.directory / WEIGHTS_FILE).is_file()
    model = load_for_inference(pristine_backbone.fresh_copy(), trained.directory)
    weight = toy_kind.adapter_state(model, "target")["weight"]
    assert weight.shape == (2, pristine_backbone.hidden_size)
    assert not torch.equal(weight[0], torch.ones_like(weight[0]))  # training moved the scale
    task = get_task("tiny-nli")
    scores = evaluate_languages(
        model,
        task,
        pristine_backbone.tokenizer,
        split="validation",
        languages=[task.train_language],
        limit=16,
        progress=False,
    )
    # the reloaded adapter scores exactly what the trained one scored on the same rows before it was saved
    assert scores[task.train_language] == metadata["metrics"]["validation"]


def test_compose_and_merge_follow_the_kinds_word(toy_kind, trained, pristine_backbone, probe, tmp_path):
    alone = load_for_inference(pristine_backbone.fresh_copy(), trained.directory)
    composed = compose(pristine_backbone.fresh_copy(), {"t": trained.directory}, "stack")
    with torch.inference_mode():
        torch.testing.assert_close(composed(probe["input_ids"], probe["attention_mask"]), alone(**probe).logits)
    with pytest.raises(CompositionError, match="toyaffine adapters cannot be combined by 'mixed'"):
        compose(pristine_backbone.fresh_copy(), {"t": trained.directory}, "mixed")
    with pytest.raises(CompositionError, match="the toy kind has no merge"):
        merge_adapters(pristine_backbone.fresh_copy(), {"t": trained.directory}, tmp_path / "merged")
    assert toy_kind.bench_form(AffineSpec(), "stack", "unmerged") == f"{KIND}-stack-2"


def test_bench(toy_kind, tmp_path):
    doc = run_bench(
        BenchConfig(
            shape="builtin:tiny-xlmr",
            forms=("base", KIND, f"{KIND}-stack-2"),
            batch_sizes=(2,),
            seq_lens=(8,),
            threads=(1,),
            iterations=3,
            warmup=0,
            progress=False,
            output=str(tmp_path),
        ),
        log=lambda message: None,
    )
    hidden = doc["backbone"]["hidden_size"]
    assert doc["forms"][KIND]["params_added"] == 2 * hidden
    assert doc["forms"][f"{KIND}-stack-2"]["params_added"] == 4 * hidden
    rows = [r for r in doc["results"] if r["form"] == KIND]
    assert rows and rows[0]["error"] is None and rows[0]["time_ms"]["median"] > 0
