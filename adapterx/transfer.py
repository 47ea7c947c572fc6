"""Transfer strategies: how a target-task adapter builds on an intermediate-task adapter.

  none      target adapter alone, trained from scratch (the baseline "target-only")
  stack     the intermediate adapter, frozen, stays beneath a new target adapter (two modules at inference)
  continue  the target adapter starts from the intermediate adapter's weights and trains on: Phang et al.'s
            sequential fine-tuning, done with an adapter (one module at inference)

A strategy is a function registered by name; adding one is adding a function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from adapterx import store
from adapterx.backbone import Backbone
from adapterx.errors import AdapterxError, CompositionError, unknown
from adapterx.methods import AdapterSpec, get_method
from adapterx.model import AdaptedModel

TARGET = "target"
INTERMEDIATE = "intermediate"


@dataclass
class PreparedModel:
    """A model ready to train adapter `trainable`, and what its saved metadata must record."""

    model: AdaptedModel
    trainable: str
    requires: list[dict] = field(default_factory=list)


Strategy = Callable[[Backbone, AdapterSpec, Path | None], PreparedModel]
STRATEGIES: dict[str, Strategy] = {}


def register_strategy(name: str):
    def decorate(fn: Strategy) -> Strategy:
        STRATEGIES[name] = fn
        return fn
    return decorate


def prepare(strategy: str, backbone: Backbone, spec: AdapterSpec, intermediate: Path | None) -> PreparedModel:
    if strategy not in STRATEGIES:
        raise unknown("transfer strategy", strategy, STRATEGIES)
    if strategy != "none" and intermediate is None:
        raise AdapterxError(f"transfer strategy {strategy!r} needs an intermediate adapter")
    return STRATEGIES[strategy](backbone, spec, intermediate)


@register_strategy("none")
def _none(backbone: Backbone, spec: AdapterSpec, intermediate: Path | None) -> PreparedModel:
    model = AdaptedModel(backbone)
    store.add_adapter(model, TARGET, spec)
    store.activate(model, [TARGET], trainable=TARGET)
    return PreparedModel(model, TARGET)


@register_strategy("stack")
def _stack(backbone: Backbone, spec: AdapterSpec, intermediate: Path) -> PreparedModel:
    model = AdaptedModel(backbone)
    record = store.load_adapter(model, intermediate, name=INTERMEDIATE, with_head=False)
    if get_method(record.kind).family != get_method(spec.kind).family:
        raise CompositionError(f"cannot stack a {spec.kind} target adapter on the {record.kind} adapter "
                               f"{intermediate}: they come from different adapter libraries")
    store.add_adapter(model, TARGET, spec)
    store.activate(model, [INTERMEDIATE, TARGET], trainable=TARGET)
    digest = record.metadata["weights_digest"]
    return PreparedModel(model, TARGET, requires=[{"name": INTERMEDIATE, "path": str(Path(intermediate).resolve()),
                                                   "weights_digest": digest}])


@register_strategy("continue")
def _continue(backbone: Backbone, spec: AdapterSpec, intermediate: Path) -> PreparedModel:
    model = AdaptedModel(backbone)
    record = store.load_adapter(model, intermediate, name=INTERMEDIATE, with_head=False)
    if record.spec != spec:
        raise CompositionError(f"strategy 'continue' trains the intermediate adapter on: its spec "
                               f"{record.spec} (from {intermediate}) must equal the target spec {spec}")
    store.add_adapter(model, TARGET, spec)
    method = get_method(spec.kind)
    method.copy_weights(model, INTERMEDIATE, TARGET)
    method.delete(model, INTERMEDIATE)
    del model.adapters[INTERMEDIATE]
    store.activate(model, [TARGET], trainable=TARGET)
    return PreparedModel(model, TARGET)


def load_for_inference(backbone: Backbone, adapter_dir: Path, name: str = TARGET) -> AdaptedModel:
    """A model with the saved adapter, everything it sits on (a stack) beneath it, and its head active."""
    model = AdaptedModel(backbone)
    metadata = store.read_metadata(adapter_dir)
    beneath = []
    for part in metadata.get("requires", []):
        path = Path(part["path"])
        if not path.is_absolute():
            path = (Path(adapter_dir) / path).resolve()
        record = store.load_adapter(model, path, name=part["name"], with_head=False)
        if record.metadata.get("weights_digest") != part.get("weights_digest"):
            raise CompositionError(f"{adapter_dir}: it was trained on top of {path} with weights "
                                   f"{part.get('weights_digest')}, but that file now holds "
                                   f"{record.metadata.get('weights_digest')}")
        beneath.append(part["name"])
    store.load_adapter(model, adapter_dir, name=name)
    store.activate(model, [*beneath, name])
    model.set_head(name)
    model.eval()
    return model
