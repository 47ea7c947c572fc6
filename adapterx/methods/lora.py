"""LoRA (Hu et al. 2021) through peft: a low-rank update B·A beside chosen linear layers; mergeable.

``use_dora: true`` makes it DoRA (Liu et al. 2024, arXiv 2402.09353; peft's ``use_dora``): the adapted weight
``W + s B A`` is split into a direction, normalised per output row, and a learned magnitude vector. Still a change
of the weight alone, so still mergeable (merged and fused forms, exactly: `adapterx.core.lowrank.fold_stack`);
its unmerged forward recomputes the weight's row norms on every call, which is what the bench's lora-dora forms
measure. DoRA adapters cannot serve a mixed batch (peft refuses ``adapter_names`` with DoRA) or take part in a
weighted merge.

What LoRA can do beyond other kinds, all here: its factors as plain tensors (`lora_factors`, for merging and the
fused / gathered inference layers of adapterx.deploy.fastlora), weighted merges into one new adapter through
peft's ``add_weighted_adapter``, mixed batches through peft's per-row ``adapter_names``, and its bench forms.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from peft import LoraConfig
from peft.tuners.lora import LoraLayer

from adapterx.core.errors import AdapterxError, CompositionError
from adapterx.core.lowrank import LoraFactors
from adapterx.core.model import AdapterRecord
from adapterx.methods.base import AdapterSpec
from adapterx.methods.peft_base import PeftMethod

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
    use_dora: bool = False

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
    module_fields: ClassVar[tuple[str, ...]] = ("target_modules",)
    bench_builders: ClassVar[tuple[str, ...]] = ("adapterx.bench.lora_forms",)
    bench_default_forms: ClassVar[tuple[str, ...]] = (
        "lora",
        "lora-fast",
        "lora-merged",
        "lora-stack-2",
        "lora-stack-2-fused",
        "lora-stack-3",
        "lora-stack-3-fused",
        "lora-stack-4",
        "lora-stack-4-fused",
        "lora-mixed-8",
        "lora-mixed-8-gathered",
    )
    bench_quick_forms: ClassVar[tuple[str, ...]] = (
        "lora",
        "lora-fast",
        "lora-merged",
        "lora-stack-2",
        "lora-stack-2-fused",
        "lora-mixed-4",
        "lora-mixed-4-gathered",
    )
    examples: ClassVar[tuple[dict, ...]] = ({"r": 4}, {"r": 4, "use_dora": True})

    def peft_config(self, spec: LoraSpec) -> LoraConfig:
        return LoraConfig(
            r=spec.r,
            lora_alpha=spec.alpha,
            lora_dropout=spec.dropout,
            target_modules=list(spec.target_modules),
            bias="none",
            use_dora=spec.use_dora,
        )

    def is_low_rank(self, spec: LoraSpec) -> bool:
        return not spec.use_dora

    def capacity_scaled(self, spec: LoraSpec, factor: int) -> tuple[AdapterSpec | None, str]:
        """Rank and alpha times `factor` (alpha / rank, the scaling, is kept)."""
        return dataclasses.replace(spec, r=spec.r * factor, alpha=spec.alpha * factor), ""

    def train_bench_spec(self, settings: Mapping[str, int]) -> LoraSpec:
        rank = settings["rank"]
        return LoraSpec(r=rank, alpha=2.0 * rank)

    # -------------------------------------------------------------- factors
    def lora_factors(self, model: "AdaptedModel", name: str) -> dict[str, LoraFactors]:
        """Read from every peft LoRA ``Linear`` that carries adapter `name`; module names are relative to the
        backbone's encoder, so they address the same layers of a plain copy of it. LoRA and DoRA (its magnitude
        vector comes along); no other variants, no ``fan_in_fan_out``."""
        out: dict[str, LoraFactors] = {}
        for module_name, module in _lora_layers(model):
            if name not in module.lora_A:
                continue
            dora = name in getattr(module, "lora_magnitude_vector", {})
            if getattr(module, "fan_in_fan_out", False) or (name in getattr(module, "lora_variant", {}) and not dora):
                raise CompositionError(
                    f"layer {module_name!r}: only LoRA and DoRA (no other variants, no fan_in_fan_out) give plain "
                    f"factors"
                )
            magnitude = module.lora_magnitude_vector[name].weight.detach() if dora else None
            out[module_name] = LoraFactors(
                module.lora_A[name].weight.detach(),
                module.lora_B[name].weight.detach(),
                float(module.scaling[name]),
                magnitude,
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
            if f.magnitude is not None:
                layer.lora_magnitude_vector[name].weight.copy_(f.magnitude)

    # -------------------------------------------------------------- composition
    def composition_problem(self, block: str, specs: Mapping[str, dict], options: Mapping) -> str:
        problem = super().composition_problem(block, specs, options)
        dora = sorted(name for name, spec in specs.items() if spec.get("use_dora"))
        if not problem and dora and block in ("mixed", "weighted"):
            return (
                f"{', '.join(map(repr, dora))} {'is a DoRA adapter' if len(dora) == 1 else 'are DoRA adapters'}: "
                f"DoRA rescales the whole weight, so it can neither serve a {block} batch per row nor be merged "
                f"by weight into one adapter; use 'stack' (or 'sum')"
                if block == "mixed"
                else f"{', '.join(map(repr, dora))}: DoRA adapters cannot be combined by a weighted merge (peft has "
                f"none for them); use 'stack' (or 'sum')"
            )
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
    def bench_form(self, spec: LoraSpec, strategy: str, form: str) -> str | None:
        """The generic names (lora, lora-fast, lora-merged, lora-stack-2, lora-stack-2-fused); DoRA's forms carry
        ``-dora`` after the kind (lora-dora, lora-dora-merged, ...)."""
        name = super().bench_form(spec, strategy, form)
        return name.replace("lora", "lora-dora", 1) if name and spec.use_dora else name

    def bench_options(self, spec: LoraSpec) -> dict:
        return {"rank": spec.r}


def _lora_layers(model: "AdaptedModel"):
    """(module name relative to the backbone's encoder, peft LoraLayer) for every LoRA layer of the model."""
    encoder = model.encoder
    base = encoder.get_base_model() if hasattr(encoder, "get_base_model") else encoder
    return [(n, m) for n, m in base.named_modules() if isinstance(m, LoraLayer)]
