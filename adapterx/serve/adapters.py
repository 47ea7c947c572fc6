"""A served adapter: a saved setup loaded once, checked as `adapterx evaluate` loads it, and the form its rows run
in. Serving forms are entries of `SERVING_FORMS`:

  gathered  LoRA adapters (and stacks of them, as trained with strategy 'stack') share ONE forward with every
            other gathered row: their factors go into the engine's bank (adapterx.serve.bank); nothing per adapter
            but the factors and the head is kept
  unmerged  the setup as `adapterx evaluate` runs it (adapter library modules active), on its own module tree over
            the shared base weights; its rows run as one sub-batch per adapter ("grouped"). Every kind takes it:
            bottleneck, prompt, prefix, fusion and merge-then-train setups are served this way
  merged    LoRA folded into a private copy of the base weights, one sub-batch per adapter (a full copy of the
            base per adapter: for comparison, see `adapterx bench`)
  fused     the active adapters as plain modules on a private copy of the base (adapterx.deploy.forms.fused_form),
            one sub-batch per adapter

An engine asks for one form; an adapter that cannot take it (a bottleneck adapter cannot be gathered or merged)
falls back to ``unmerged``, and its `info()` says which form it got.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from adapterx import store
from adapterx.core.backbone import Backbone
from adapterx.core.errors import UnknownNameError
from adapterx.core.heads import Head
from adapterx.core.lowrank import LoraFactors
from adapterx.core.model import AdaptedModel
from adapterx.core.registry import Registry
from adapterx.core.sharing import shared_backbone
from adapterx.deploy.forms import fused_form, merged_form
from adapterx.deploy.setup import MERGED, STACKED, load_for_inference, required_parts
from adapterx.serve.errors import Forbidden
from adapterx.tasks import Task, get_task


@dataclass(frozen=True)
class ServingForm:
    """How a served adapter's rows run. `shared`: in the one gathered forward; else `build` turns the loaded
    setup into the model that runs its sub-batch (None: this setup cannot take the form)."""

    name: str
    about: str
    shared: bool = False
    build: Callable[[AdaptedModel], AdaptedModel | None] = lambda model: model


SERVING_FORMS: Registry[ServingForm] = Registry("serving form", group="adapterx.serving_forms")
SERVING_FORMS.register(
    "gathered", ServingForm("gathered", "LoRA rows of all adapters in one forward (gathered factors)", shared=True)
)
SERVING_FORMS.register("unmerged", ServingForm("unmerged", "adapter modules active, one sub-batch per adapter"))
SERVING_FORMS.register(
    "merged", ServingForm("merged", "LoRA merged into a copy of the base, one sub-batch per adapter", build=merged_form)
)
SERVING_FORMS.register(
    "fused", ServingForm("fused", "adapters as plain modules on a copy of the base, one sub-batch", build=fused_form)
)
FALLBACK = "unmerged"


@dataclass(eq=False)
class ServedAdapter:
    """One loaded adapter setup (an adapter and everything it was trained on), ready to serve."""

    name: str
    path: Path
    metadata: dict
    form: str
    slots: tuple[str, ...] = ()  # gathered: its bank keys, bottom first (the adapters it is stacked on, then itself)
    factors: dict[str, dict[str, LoraFactors]] = field(default_factory=dict, repr=False)  # gathered: key -> factors
    model: AdaptedModel | None = field(default=None, repr=False)  # other forms: what runs its sub-batch
    head: Head | None = field(default=None, repr=False)
    task: Task | None = None  # the registered task it was trained on, if known here (QA windows, tagging parts)
    virtual_tokens: int = 0  # positions its prompt or prefix takes from the input
    inflight: int = 0  # rows prepared and not yet released
    draining: bool = False  # being removed: no new rows

    @property
    def shared(self) -> bool:
        return SERVING_FORMS.get(self.form).shared

    @property
    def head_kind(self) -> str | None:
        return self.head.spec.kind if self.head is not None else None

    @property
    def labels(self) -> list[str]:
        labels = list(self.metadata.get("labels") or [])
        if self.head is not None and len(labels) != self.head.spec.num_labels:
            return [f"LABEL_{i}" for i in range(self.head.spec.num_labels)]
        return labels

    def info(self) -> dict:
        """What GET /adapters says of it."""
        base = self.metadata.get("base_model", {})
        return {
            "name": self.name,
            "kind": self.metadata.get("kind"),
            "task": self.metadata.get("task"),
            "head": self.head_kind,
            "labels": self.labels if self.head_kind in ("classification", "tagging") else [],
            "base_model": base.get("name"),
            "base_fingerprint": base.get("fingerprint"),
            "digest": self.metadata.get("weights_digest"),
            "head_digest": self.metadata.get("head_digest"),
            "requires": [p.get("name") for p in self.metadata.get("requires", [])],
            "served_as": self.form,
            "path": str(self.path),
        }


def _check_parts_inside(parts: list[tuple[dict, Path]], root: Path | None, directory: Path) -> None:
    if root is None:
        return
    real_root = Path(root).resolve()
    for part, path in parts:
        if not path.resolve().is_relative_to(real_root):
            raise Forbidden(
                f"{directory}: it rests on {part.get('name')!r} at {path}, which lies outside the adapter root "
                f"{real_root}",
                param="path",
            )


def _task(metadata: dict) -> Task | None:
    try:
        return get_task(str(metadata.get("task")))
    except UnknownNameError:
        return None


def load_served(name: str, directory: Path, backbone: Backbone, form: str, root: Path | None = None) -> ServedAdapter:
    """Load the setup saved in `directory` as `adapterx evaluate` does (its files, digests, head and the backbone
    fingerprint checked) on a structural copy of `backbone` sharing its weights, and prepare it for `form` (or
    the fallback form, if it cannot take that one). `root`: everything it rests on must lie under it."""
    directory = Path(directory).resolve()
    metadata = store.read_metadata(directory)
    roles = required_parts(metadata, directory)
    parts = [item for role in roles.values() for item in role]
    _check_parts_inside(parts, root, directory)
    merged = bool(roles[MERGED])
    # a merge writes into its base: give it a copy of its own; everything else shares the weights
    model = load_for_inference(backbone.fresh_copy() if merged else shared_backbone(backbone), directory)
    entry = ServedAdapter(
        name,
        directory,
        metadata,
        form,
        head=model.heads[model.active_head] if model.active_head else None,
        task=_task(metadata),
        virtual_tokens=sum(
            model.adapters[n].method.virtual_tokens(model.adapters[n].spec) for n in model.active_adapters
        ),
    )
    chosen = SERVING_FORMS.get(form)
    if chosen.shared and _gatherable(model, roles):
        keys = [f"{path}@{part.get('weights_digest')}" for part, path in roles[STACKED]] + [
            f"{directory}@{metadata.get('weights_digest')}"
        ]
        entry.slots = tuple(keys)
        entry.factors = {
            key: model.adapters[n].method.lora_factors(model, n) for key, n in zip(keys, model.active_adapters)
        }
        return entry
    built = None if chosen.shared else chosen.build(model)
    entry.form, entry.model = (form, built) if built is not None else (FALLBACK, model)
    if entry.model is not model and entry.model is not None:
        entry.head = entry.model.head if entry.model.active_head else None
    return entry


def _gatherable(model: AdaptedModel, roles: dict[str, list]) -> bool:
    """A plain stack of LoRA adapters on the original base: each adapter a plain low-rank weight change (as its kind
    says: not DoRA, not (IA)³)."""
    plain_stack = all(not items for role, items in roles.items() if role != STACKED)
    records = [model.adapters[n] for n in model.active_adapters]
    return plain_stack and all(r.method.is_low_rank(r.spec) for r in records)
