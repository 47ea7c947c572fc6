"""LoRA (Hu et al. 2021) through peft: a low-rank update B·A beside chosen linear layers; mergeable.

What LoRA can do beyond other kinds, all here: its factors as plain tensors (`lora_factors`, for merging and the
fused / gathered inference layers of adapterx.deploy.fastlora), weighted merges into one new adapter through
peft's ``add_weighted_adapter``, mixed batches through peft's per-row ``adapter_names``, and its bench forms.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from peft import LoraConfig
from peft.tuners.lora import LoraLayer

from adapterx.core.errors import AdapterxError, CompositionError
from adapterx.core.lowrank import LoraFactors
from adapterx.core.model import AdapterRecord
from adapterx.core.shape import BackboneShape, shape_of_config
from adapterx.methods._peft_family import PeftMethod
from adapterx.methods.base import AdapterSpec

if TYPE_CHECKING:
    from adapterx.core.model import AdaptedModel

# compose's weighted methods -> (peft's combination_type in add_weighted_adapter, needs adapters of one rank)
_COMBINATIONS: dict[str, tuple[str, bool]] = {
    "weighted": ("cat", False),  # factors concatenated: exactly Σ w_i ΔW_i, ranks add up
    "linear": ("linear", True),
    "ties": ("ties", True),
    "dare_linear": ("dare_linear", True),
    "dare_ties": ("dare_ties", True),
    "magnitude_prune": ("magnitude_prune", True),
}


@dataclass(frozen=True)
class LoraSpec(AdapterSpec):
    kind = "lora"
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("query", "value")

    def __post_init__(self):
        modules = self.target_modules
        object.__setattr__(self, "target_modules", (modules,) if isinstance(modules, str) else tuple(modules))

    def validate(self, where: str) -> None:
        if not isinstance(self.r, int) or self.r < 1:
            raise AdapterxError(f"{where}.r: rank must be a positive integer, got {self.r!r}")
        if (
            not isinstance(self.alpha, (int, float))
            or isinstance(self.alpha, bool)
            or not 0 < self.alpha < float("inf")
        ):
            raise AdapterxError(f"{where}.alpha: must be a finite number > 0, got {self.alpha!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise AdapterxError(f"{where}.dropout: must be in [0, 1), got {self.dropout!r}")
        if not self.target_modules:
            raise AdapterxError(f"{where}.target_modules: name at least one module, e.g. [query, value]")


class LoraMethod(PeftMethod):
    kind = "lora"
    title = "LoRA"
    spec_type = LoraSpec
    mergeable = True
    composition_blocks: ClassVar[frozenset[str]] = frozenset({"stack", "sum", "weighted", "mixed"})
    weighted_methods: ClassVar[tuple[str, ...]] = tuple(_COMBINATIONS)
    bench_builders: ClassVar[tuple[str, ...]] = ("adapterx.bench.lora_forms",)

    def check_backbone(self, spec: LoraSpec, shape: BackboneShape, where: str) -> None:
        """peft attaches LoRA to every module whose dotted name ends in a target name and silently ignores names
        that match nothing (if at least one matches): refuse those here, naming them."""
        known = shape.module_suffixes()
        missing = [m for m in spec.target_modules if m not in known]
        if missing:
            raise AdapterxError(
                f"{where}.target_modules: {', '.join(map(repr, missing))} matches no linear module of "
                f"{shape.name}; its linear modules are named {', '.join(shape.leaf_names())} "
                f"(or a dotted path ending in one, e.g. attention.self.query)"
            )

    def add(self, model: "AdaptedModel", name: str, spec: LoraSpec) -> None:
        self.check_backbone(
            spec, shape_of_config(model.backbone.name, model.backbone.model.config), f"adapter {name!r}"
        )
        super().add(model, name, spec)

    def peft_config(self, spec: LoraSpec) -> LoraConfig:
        return LoraConfig(
            r=spec.r,
            lora_alpha=spec.alpha,
            lora_dropout=spec.dropout,
            target_modules=list(spec.target_modules),
            bias="none",
        )

    # -------------------------------------------------------------- factors
    def lora_factors(self, model: "AdaptedModel", name: str) -> dict[str, LoraFactors]:
        """Read from every peft LoRA ``Linear`` that carries adapter `name`; module names are relative to the
        backbone's encoder, so they address the same layers of a plain copy of it. Vanilla LoRA only (no DoRA or
        other variants, no ``fan_in_fan_out``)."""
        out: dict[str, LoraFactors] = {}
        for module_name, module in _lora_layers(model):
            if name not in module.lora_A:
                continue
            if getattr(module, "fan_in_fan_out", False) or name in getattr(module, "lora_variant", {}):
                raise CompositionError(
                    f"layer {module_name!r}: only vanilla LoRA (no DoRA/variants/fan_in_fan_out) gives plain factors"
                )
            out[module_name] = LoraFactors(
                module.lora_A[name].weight.detach(), module.lora_B[name].weight.detach(), float(module.scaling[name])
            )
        if not out:
            raise CompositionError(f"no LoRA layer carries adapter {name!r}")
        return out

    @torch.no_grad()
    def set_lora_factors(self, model: "AdaptedModel", name: str, factors: Mapping[str, LoraFactors]) -> None:
        """Give adapter `name` the factors `factors` ({module name: LoraFactors}, every module it adapts, scalings
        equal to its own): the inverse of `lora_factors`, e.g. for weights drawn outside peft."""
        layers = {n: m for n, m in _lora_layers(model) if name in m.lora_A}
        if set(layers) != set(factors):
            raise CompositionError(
                f"adapter {name!r} adapts {sorted(layers)[:3]}..., the factors given are for {sorted(factors)[:3]}..."
            )
        for module_name, f in factors.items():
            layer = layers[module_name]
            if abs(float(layer.scaling[name]) - f.scaling) > 1e-12:
                raise CompositionError(
                    f"{module_name}: factors of scaling {f.scaling} for an adapter of scaling {layer.scaling[name]}"
                )
            layer.lora_A[name].weight.copy_(f.A)
            layer.lora_B[name].weight.copy_(f.B)

    # -------------------------------------------------------------- composition
    def composition_problem(self, block: str, specs: Mapping[str, dict], options: Mapping) -> str:
        problem = super().composition_problem(block, specs, options)
        if problem or block != "weighted":
            return problem
        ranks = {name: spec.get("r") for name, spec in specs.items()}
        if _COMBINATIONS[options["method"]][1] and len(set(ranks.values())) > 1:
            return (
                f"method {options['method']!r} needs adapters of one rank, got {ranks}; use method 'weighted' "
                f"(exact, any ranks)"
            )
        return ""

    def combine(self, model: "AdaptedModel", names: list[str], options: dict) -> str:
        """peft's ``add_weighted_adapter`` over `names` (a new LoRA adapter, recorded in the model)."""
        new = f"{options['method']}_{'_'.join(names)}"
        if new in model.adapters:
            return new
        combination, _ = _COMBINATIONS[options["method"]]
        density = options.get("density")
        kwargs = {"density": float(density)} if density is not None else {}
        model.encoder.base_model.add_weighted_adapter(
            adapters=names, weights=list(options["weights"]), adapter_name=new, combination_type=combination, **kwargs
        )
        config = model.encoder.peft_config[new]
        spec = LoraSpec(
            r=int(config.r), alpha=float(config.lora_alpha), target_modules=tuple(sorted(config.target_modules))
        )
        model.adapters[new] = AdapterRecord(
            name=new,
            kind=self.kind,
            spec=spec,
            method=self,
            metadata={"made_by": {"block": "weighted", "children": names, **options}},
        )
        return new

    def encode_rows(
        self,
        model: "AdaptedModel",
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        rows: Sequence[str],
        encoder=None,
    ) -> torch.Tensor:
        """peft's per-row ``adapter_names`` (it runs one sub-batch per adapter, peft #2283)."""
        encoder = model.encoder if encoder is None else encoder
        return encoder(input_ids=input_ids, attention_mask=attention_mask, adapter_names=list(rows)).last_hidden_state

    # -------------------------------------------------------------- bench
    def bench_form(self, spec: AdapterSpec, strategy: str, form: str) -> str | None:
        if form == "merged":
            return "lora-merged"
        if form == "fused":
            return "lora-stack-2-fused" if strategy == "stack" else "lora-fast"
        return super().bench_form(spec, strategy, form)

    def bench_options(self, spec: LoraSpec) -> dict:
        return {"rank": spec.r}


def _lora_layers(model: "AdaptedModel"):
    """(module name relative to the backbone's encoder, peft LoraLayer) for every LoRA layer of the model."""
    encoder = model.encoder
    base = encoder.get_base_model() if hasattr(encoder, "get_base_model") else encoder
    return [(n, m) for n, m in base.named_modules() if isinstance(m, LoraLayer)]
