"""(IA)³ (Liu et al. 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than In-Context
Learning", arXiv 2205.05638) through peft: learned vectors that rescale the attention keys and values and the
feed-forward block's inner activations; mergeable.

One vector per adapted linear layer ``y = W x + b``: on the output of the key and value projections
(``y = l * (W x + b)``) and on the input of the feed-forward block's second layer (``output.dense``:
``y = W (l * x) + b``, peft's `feedforward_modules`). XLM-R and BERT name both the attention's output projection
and the feed-forward output ``...output.dense``; the paper scales only the feed-forward one, so the default spec
excludes ``attention.output.dense``. The vectors start at one (the adapter starts as the identity). That is
6 x hidden values per layer on XLM-R (key, value: hidden each; feed-forward: 4 x hidden), about 55k for
XLM-R base: the smallest of adapterx's kinds.

Several (IA)³ adapters active together multiply their vectors (peft's layer), so a stack folds exactly into one
vector per side, and any stack into the weights: the merged and fused forms (adapterx.deploy.fastscaling) compute
what peft computes. peft runs (IA)³ with no per-row adapter choice and holds one adapter type per model, so (IA)³
adapters neither serve mixed batches nor share a model with LoRA adapters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from peft import IA3Config
from peft.tuners.ia3 import IA3Layer

from adapterx.core.errors import AdapterxError, CompositionError
from adapterx.core.scaling import FeatureScaling
from adapterx.methods.base import AdapterSpec
from adapterx.methods.peft_base import PeftMethod

if TYPE_CHECKING:
    from adapterx.core.model import AdaptedModel


@dataclass(frozen=True)
class IA3Spec(AdapterSpec):
    """target_modules: layers that get a vector (matched by dotted suffix, as peft does); feedforward_modules:
    those of them whose INPUT is scaled (the rest: their output); exclude_modules: layers left out although a
    target name matches them."""

    kind = "ia3"
    target_modules: tuple[str, ...] = ("key", "value", "output.dense")
    feedforward_modules: tuple[str, ...] = ("output.dense",)
    exclude_modules: tuple[str, ...] = ("attention.output.dense",)

    def validate(self, where: str) -> None:
        if not self.target_modules:
            raise AdapterxError(f"{where}.target_modules: name at least one module, e.g. [key, value, output.dense]")
        stray = [m for m in self.feedforward_modules if m not in self.target_modules]
        if stray:
            raise AdapterxError(
                f"{where}.feedforward_modules: {', '.join(map(repr, stray))} not among target_modules "
                f"{list(self.target_modules)} (peft requires a subset)"
            )


class IA3Method(PeftMethod):
    kind = "ia3"
    title = "(IA)³"
    spec_type = IA3Spec
    mergeable = True
    module_fields: ClassVar[tuple[str, ...]] = ("target_modules", "feedforward_modules", "exclude_modules")
    bench_default_forms: ClassVar[tuple[str, ...]] = (
        "ia3",
        "ia3-fast",
        "ia3-merged",
        "ia3-stack-2",
        "ia3-stack-2-fused",
    )

    def peft_config(self, spec: IA3Spec) -> IA3Config:
        return IA3Config(
            target_modules=list(spec.target_modules),
            feedforward_modules=list(spec.feedforward_modules),
            exclude_modules=list(spec.exclude_modules) or None,
        )

    def weight_changes(self, model: "AdaptedModel", name: str) -> dict[str, FeatureScaling]:
        """{module name relative to the backbone's encoder: the vector adapter `name` multiplies there, and on
        which side}, read from every peft (IA)³ layer that carries it."""
        encoder = model.encoder
        base = encoder.get_base_model() if hasattr(encoder, "get_base_model") else encoder
        out = {
            module_name: FeatureScaling(
                module.ia3_l[name].detach().flatten(), "input" if module.is_feedforward else "output"
            )
            for module_name, module in base.named_modules()
            if isinstance(module, IA3Layer) and name in module.ia3_l
        }
        if not out:
            raise CompositionError(f"no (IA)³ layer carries adapter {name!r}")
        return out

    def capacity_scaled(self, spec: IA3Spec, factor: int) -> tuple[AdapterSpec | None, str]:
        return None, (
            "(IA)³ learns one vector per adapted layer, whose size the layer fixes: no single (IA)³ adapter is "
            f"{factor} times as large"
        )

    def bench_weights(self, state: Mapping[str, torch.Tensor], generator: torch.Generator) -> dict:
        """Vectors near one (1 + N(0, 0.02²)): zeros would silence the layers."""
        return {k: 1.0 + torch.randn(t.shape, generator=generator) * 0.02 for k, t in state.items()}
