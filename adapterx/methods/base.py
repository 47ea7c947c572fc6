"""The adapter-method interface. A kind = a spec dataclass + a `Method` that wires it into the model.

Kinds are grouped by the library that implements them (their *family*): the family owns activation, saving and
loading, the kind owns its config. One model holds adapters of one family, and the family may narrow that
further (peft holds one adapter type per model: LoRA and (IA)³ adapters cannot be attached to one model);
`shares_model_with` says which kinds can be in one model, and why not.

Everything the rest of adapterx knows about a kind is asked of its Method, never of its name:

  can it                 mergeable (+ not_mergeable_reason), stackable, fusable, mixes_per_row,
                         composition_blocks / weighted_methods / composition_problem, shares_model_with
  what it needs          check_backbone (target modules that exist, positions left), virtual_tokens
  what it is, as tensors weight_changes (mergeable kinds: merged and fused forms), is_low_rank +
                         lora_factors (gathered per-row products), bottleneck_weights
  the study's controls   capacity_scaled (one adapter as large as a stack of several)
  adapterx bench         bench_form (which form costs what a deployment costs), bench_options, bench_builders,
                         bench_default_forms / bench_quick_forms, bench_weights, train_bench_spec
  tests and docs         examples (small specs of each variant: the kind-matrix tests run every one)

The defaults below are those of a kind that can do little (one adapter active alone, or a plain stack); a kind
overrides what it can do more.

A composition *setup* is an adapter name or a tuple ``(block, [children], {options})``: blocks "stack" (bottom
first), "sum" (LoRA deltas added), "weighted" (options ``weights``, ``method``, ``density``), "fuse" (an
AdapterFusion layer over its children) and "batch_split" (options ``batch_sizes``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import torch

from adapterx.core.bottleneck import BottleneckWeights
from adapterx.core.errors import AdapterxError, CompositionError
from adapterx.core.lowrank import LoraFactors
from adapterx.methods._fields import typed_options

if TYPE_CHECKING:
    from adapterx.core.model import AdaptedModel
    from adapterx.core.shape import BackboneShape


@dataclass(frozen=True)
class AdapterSpec:
    """Base of every kind's spec. Subclasses add their own fields (with defaults)."""

    kind: ClassVar[str] = ""

    def to_json(self) -> dict:
        return {"kind": self.kind, **dataclasses.asdict(self)}

    @classmethod
    def from_options(cls, options: dict, where: str = "adapter") -> "AdapterSpec":
        """Build from a mapping, rejecting unknown fields by name (e.g. a typo in a recipe)."""
        names = {f.name for f in dataclasses.fields(cls)}
        extra = sorted(set(options) - names)
        if extra:
            raise AdapterxError(
                f"{where}: unknown field(s) {extra} for adapter kind {cls.kind!r}; fields: {', '.join(sorted(names))}"
            )
        options = typed_options(cls, options, where)
        try:
            spec = cls(**options)
        except TypeError as exc:
            raise AdapterxError(f"{where}: {exc}") from exc
        spec.validate(where)
        return spec

    def validate(self, where: str) -> None:
        """Check value ranges; raise AdapterxError naming `where` and the field."""


def setup_names(setup) -> list[str]:
    """The adapter names a setup mentions, in order (bottom first)."""
    if isinstance(setup, str):
        return [setup]
    return [n for child in setup[1] for n in setup_names(child)]


class Method:
    """How one adapter kind is attached, saved, loaded, activated and (maybe) merged."""

    kind: ClassVar[str]
    title: ClassVar[str] = ""  # the kind's name in prose (e.g. "LoRA"); default: `kind`
    family: ClassVar[str]
    spec_type: ClassVar[type[AdapterSpec]]
    mergeable: ClassVar[bool] = False
    # Why merge refuses this kind, in the user's words (a kind with mergeable = False sets it in its own file;
    # adapterx.deploy.merge.check_mergeable and the merge-then-train strategy show it)
    not_mergeable_reason: ClassVar[str] = ""
    # Whether an adapter of this kind can be active together with others (a stack: transfer strategy 'stack',
    # compose). False for kinds their library runs one at a time; activation then raises CompositionError, and
    # recipe checks can refuse strategy 'stack' before any training.
    stackable: ClassVar[bool] = True
    # Whether adapters of this kind can be fused by an AdapterFusion layer (transfer strategy 'fuse'; such a kind
    # implements add_fusion / save_fusion / load_fusion).
    fusable: ClassVar[bool] = False
    # Composition (adapterx.deploy.compose): the blocks an adapter of this kind may take part in, and the
    # methods of a "weighted" block it has (see compose's WEIGHTED_METHODS).
    composition_blocks: ClassVar[frozenset[str]] = frozenset({"stack"})
    weighted_methods: ClassVar[tuple[str, ...]] = ()
    # adapterx bench: modules that register this kind's own bench forms, imported by the bench on first lookup
    # (named, not imported here: the bench sits above methods). A kind without any gets the bench's generic
    # forms KIND and KIND-stack-K (its default spec, built through adapterx.store).
    bench_builders: ClassVar[tuple[str, ...]] = ()
    # adapterx bench: the forms of this kind `adapterx bench` times when --forms is not given, and with --quick
    bench_default_forms: ClassVar[tuple[str, ...]] = ()
    bench_quick_forms: ClassVar[tuple[str, ...]] = ()
    # small specs (options without 'kind') showing the kind's variants: the kind-matrix tests train, save, merge,
    # compose and bench each one
    examples: ClassVar[tuple[dict, ...]] = ({},)
    weights_file: ClassVar[str]

    def check_backbone(self, spec: AdapterSpec, shape: "BackboneShape", where: str) -> None:
        """Raise AdapterxError (naming `where` and the field) if `spec` cannot fit a backbone of `shape`, e.g.
        LoRA target modules it lacks; called by `adapterx run --dry-run` and before attaching."""

    @property
    def name(self) -> str:
        return self.title or self.kind

    @property
    def mixes_per_row(self) -> bool:
        """Whether one batch can run each row through another adapter of this kind (composition 'mixed')."""
        return "mixed" in self.composition_blocks

    def is_low_rank(self, spec: AdapterSpec) -> bool:
        """Whether an adapter of `spec` is exactly a plain low-rank weight change ``s B A`` (`lora_factors` gives
        it), so that gathered per-row products (fastlora, adapterx serve's bank) can run it. LoRA, not DoRA."""
        return False

    def virtual_tokens(self, spec: AdapterSpec) -> int:
        """Positions an adapter of `spec` takes from the input (prompt / prefix tuning's virtual tokens); the bench
        and `--dry-run` check that sequence lengths still fit."""
        return 0

    def shares_model_with(self, other: "Method") -> str:
        """Why adapters of this kind and of `other` cannot be attached to one model, or "" if they can: one model
        carries one adapter library (a family may narrow that further)."""
        if other.family != self.family:
            return (
                f"{self.kind} adapters ({self.family} library) and {other.kind} adapters ({other.family} library) "
                f"cannot be attached to one model (one adapter library per model)"
            )
        return ""

    def capacity_scaled(self, spec: AdapterSpec, factor: int) -> tuple[AdapterSpec | None, str]:
        """One adapter of this kind as large as `factor` adapters of `spec` stacked (the study's capacity-matched
        control), or (None, why there is none)."""
        if not self.stackable:
            return None, f"{self.kind} adapters cannot be stacked, so there is no stacked size to match"
        return None, f"{self.kind} adapters have no larger spec that matches {factor} of them stacked"

    def train_bench_spec(self, settings: Mapping[str, int]) -> AdapterSpec:
        """The spec `adapterx bench --train` trains for this kind, from the bench's settings (``rank``,
        ``reduction_factor``, ``virtual_tokens``); by default the kind's default spec."""
        return self.spec_type()

    # ------------------------------------------------------------------------------------------ attach
    def check_name(self, name: str) -> None:
        """Refuse an adapter name this kind's library would mistake for something else (CompositionError)."""

    def encoder_output_offset(self, model: "AdaptedModel", name: str) -> int:
        """How many positions adapter `name`, while active, puts in front of the encoder's output sequence
        (e.g. the virtual tokens of prompt tuning). `AdaptedModel.encode` drops them, so heads always see one
        position per input token, aligned with the attention mask. Most kinds add none."""
        return 0

    def add(self, model: "AdaptedModel", name: str, spec: AdapterSpec) -> None:
        """Attach a new, freshly initialised adapter named `name`."""
        raise NotImplementedError

    def save(self, model: "AdaptedModel", name: str, directory: Path) -> None:
        """Write the adapter in its library's own format into `directory` (which exists and is empty)."""
        raise NotImplementedError

    def load(self, model: "AdaptedModel", name: str, directory: Path) -> None:
        """Attach the adapter saved in `directory` under `name` (files were checked to exist)."""
        raise NotImplementedError

    def delete(self, model: "AdaptedModel", name: str) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------ activation
    def activate(self, model: "AdaptedModel", names: list[str], trainable: str | None) -> None:
        """Make `names` active, bottom first (a stack), and only `trainable` (if any) trainable."""
        raise NotImplementedError

    def activate_setup(self, model: "AdaptedModel", setup, trainable: Sequence[str] = ()) -> list[str]:
        """Activate a composition setup (see the module docstring) and return the adapters now active, bottom
        first. `trainable`: the adapters (and fusion layers) to train; none = inference. The default knows a
        name, or a stack of names; a kind whose library does more overrides it."""
        if not isinstance(setup, str) and (setup[0] != "stack" or not all(isinstance(c, str) for c in setup[1])):
            raise CompositionError(
                f"{self.kind} adapters cannot be combined as {setup[0]!r}: only a stack of adapter names"
            )
        if len(trainable) > 1:
            raise CompositionError(f"{self.kind} adapters train one at a time, not {list(trainable)}")
        names = setup_names(setup)
        self.activate(model, names, trainable[0] if trainable else None)
        return names

    def encode_rows(
        self,
        model: "AdaptedModel",
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        rows: Sequence[str],
        encoder=None,
    ) -> torch.Tensor:
        """Last hidden states of one pass over a batch whose row j runs through adapter ``rows[j]`` (a mixed
        batch). `encoder`: the module to call instead of ``model.encoder`` (e.g. a torch.compile wrapper of it)."""
        raise CompositionError(f"{self.kind} adapters cannot serve a batch whose rows use different adapters")

    # ------------------------------------------------------------------------------------------ composition
    def composition_problem(self, block: str, specs: Mapping[str, dict], options: Mapping) -> str:
        """Why the adapters `specs` ({name in the composition: saved spec}) of this kind cannot be combined by
        `block` with `options` (a "weighted" block's weights, method and density), or "" if they can."""
        if block not in self.composition_blocks:
            can = ", ".join(sorted(self.composition_blocks))
            return f"{self.kind} adapters cannot be combined by {block!r} (they can by: {can})"
        method = options.get("method")
        if block == "weighted" and method not in self.weighted_methods:
            have = " and ".join(map(repr, self.weighted_methods))
            return (
                f"method {method!r} is not defined for {self.kind} adapters: for them only {have} "
                f"exist{'s' if len(self.weighted_methods) == 1 else ''}"
            )
        return ""

    # ------------------------------------------------------------------------------------------ weights
    def copy_weights(self, model: "AdaptedModel", source: str, target: str) -> None:
        """Initialise adapter `target` with the weights of `source` (same spec): transfer strategy 'continue'."""
        raise NotImplementedError

    def adapter_state(self, model: "AdaptedModel", name: str) -> dict:
        """The adapter's own tensors by name (for checkpoints, equality checks, fingerprints)."""
        raise NotImplementedError

    def load_adapter_state(self, model: "AdaptedModel", name: str, state: dict) -> None:
        raise NotImplementedError

    def weight_changes(self, model: "AdaptedModel", name: str) -> dict[str, object]:
        """{module name (as in the backbone's encoder): what adapter `name` does to that linear layer, as plain
        tensors} -- what a mergeable kind is, for the merged and fused forms (adapterx.deploy.plain: LoRA/DoRA
        give `LoraFactors`, (IA)³ `FeatureScaling`; a new type registers itself there). By default the kind's
        low-rank factors."""
        return dict(self.lora_factors(model, name))

    def lora_factors(self, model: "AdaptedModel", name: str) -> dict[str, LoraFactors]:
        """{module name (as in the backbone's encoder): the low-rank factors adapter `name` adds there} -- what a
        mergeable kind is, as plain tensors (merging, fused and gathered inference use them)."""
        raise CompositionError(
            f"a {self.kind} adapter is not a low-rank weight change "
            f"({self.not_mergeable_reason or 'it cannot be merged'})"
        )

    def bottleneck_weights(self, model: "AdaptedModel", names: Sequence[str]) -> dict[str, list[BottleneckWeights]]:
        """{sub-layer module name (as in the backbone's encoder): [the sequential bottleneck adapters of `names`
        there, bottom first, as plain tensors]} -- what a bottleneck kind is, for the fast inference form
        (adapterx.deploy.fastbottleneck). `names` must be the active stack."""
        raise CompositionError(
            f"a {self.kind} adapter is not a sequential bottleneck adapter; it has no fast bottleneck form"
        )

    # ------------------------------------------------------------------------------------------ bench
    def bench_form(self, spec: AdapterSpec, strategy: str, form: str) -> str | None:
        """The `adapterx bench` form that costs, at inference, what an adapter of `spec` trained by transfer
        `strategy` costs in evaluation form `form` (unmerged / fused / merged); None: no form stands for it. The
        defaults are the bench's generic forms: KIND and KIND-stack-2, and for a mergeable kind KIND-merged,
        KIND-fast and KIND-stack-2-fused."""
        if strategy == "fuse":
            return None
        if form == "unmerged":
            return f"{self.kind}-stack-2" if strategy == "stack" else self.kind
        if not self.mergeable:
            return None
        if form == "merged":
            return f"{self.kind}-merged"
        if form == "fused":
            return f"{self.kind}-stack-2-fused" if strategy == "stack" else f"{self.kind}-fast"
        return None

    def bench_weights(self, state: Mapping[str, torch.Tensor], generator: torch.Generator) -> dict:
        """Small random weights for a bench adapter whose freshly initialised tensors are `state`: they must change
        the output a little. Default: every matrix N(0, 0.02²), every vector zero (LoRA, bottleneck adapters)."""
        return {
            k: torch.randn(t.shape, generator=generator) * 0.02 if t.dim() > 1 else torch.zeros(t.shape)
            for k, t in state.items()
        }

    def bench_options(self, spec: AdapterSpec) -> dict:
        """`BenchConfig` settings that make the bench's adapters of this kind look like `spec`."""
        return {}
