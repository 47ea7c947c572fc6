"""Transfer strategies: how a target-task adapter builds on intermediate-task adapters.

  strategy          intermediates  modules active at inference
  none              0              1: the target adapter alone, trained from scratch (the baseline "target-only")
  stack             1              2: the intermediate adapter, frozen, stays beneath a new target adapter
  continue          1              1: the target adapter starts from the intermediate adapter's weights and trains
                                   on (Phang et al.'s sequential fine-tuning, done with an adapter)
  merge-then-train  1 (LoRA)       1: the intermediate LoRA is folded into the base weights (a new, merged
                                   backbone with its own fingerprint) and a new target adapter of any kind trains
                                   on that base; the intermediate costs nothing at inference, and a LoRA target
                                   can be merged too (0 modules)
  fuse              n >= 2         n + 2: AdapterFusion (Pfeiffer et al. 2021) over n frozen bottleneck adapters,
                    (bottleneck)   with a new bottleneck target adapter stacked on the fusion:
                                   ``Stack(Fuse(i_1, ..., i_n), target)``; n adapters + the fusion layer + target

`modules_at_inference(strategy, n)` gives the last column as a number (for reports).

A strategy is a function registered by name (`register_strategy`, one `TransferStrategy` entry in `STRATEGIES`)
with the number of intermediate adapters it takes and the modules it leaves at inference; adding one is adding a
function (from outside the package: the ``adapterx.strategies`` entry-point group). What a target rests on is recorded in its adapterx.json ``requires`` (each entry with a
``role``: "stacked", "merged_into_base", "fused" or "fusion"), and `load_for_inference` rebuilds it from there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from adapterx import store
from adapterx.core.backbone import Backbone
from adapterx.core.errors import AdapterxError, CompositionError
from adapterx.core.model import AdaptedModel
from adapterx.core.registry import Registry
from adapterx.deploy.setup import (
    FUSED,
    FUSION,
    FUSION_DIR,
    INTERMEDIATE,
    MERGED,
    STACKED,
    TARGET,
    fuse_setup,
    merged_backbone,
)
from adapterx.methods import AdapterSpec, get_method, kinds


@dataclass
class PreparedModel:
    """A model ready to train adapter `trainable`, and what its saved metadata must record.

    `save_extra`, if set, writes further trained parts (e.g. a fusion layer) into the adapter's directory when it
    is saved and returns their ``requires`` entries (see `store.save_adapter`)."""

    model: AdaptedModel
    trainable: str
    requires: list[dict] = field(default_factory=list)
    save_extra: Callable[[Path], list[dict]] | None = None


Build = Callable[[Backbone, AdapterSpec, list[Path]], PreparedModel]


@dataclass(frozen=True)
class TransferStrategy:
    """One strategy: how it builds the model to train, how many intermediate adapters it takes ((fewest, most);
    most None = no upper bound), the adapter modules active at inference for n intermediates (unmerged), the
    same in words (for reports), and what it does in one line (for --help)."""

    name: str
    build: Build
    intermediates: tuple[int, int | None]
    modules: Callable[[int], int]
    inference: str
    about: str = ""


STRATEGIES: Registry[TransferStrategy] = Registry("transfer strategy", group="adapterx.strategies")


def register_strategy(
    name: str, *, intermediates: tuple[int, int | None], modules: Callable[[int], int], inference: str, about: str = ""
) -> Callable[[Build], Build]:
    def decorate(fn: Build) -> Build:
        STRATEGIES.register(name, TransferStrategy(name, fn, intermediates, modules, inference, about))
        return fn

    return decorate


def modules_at_inference(strategy: str, n_intermediates: int = 1) -> int:
    """Adapter modules (adapters and fusion layers) active at inference for a target trained by `strategy` on
    `n_intermediates` intermediate adapters, unmerged. 'merge-then-train' counts 1 (the target; the intermediate
    is in the weights), 0 once a LoRA target is merged too."""
    return STRATEGIES.get(strategy).modules(n_intermediates)


def as_paths(intermediates: Path | str | Sequence[Path | str] | None) -> list[Path]:
    """One path, several, or none, as a list."""
    if intermediates is None:
        return []
    if isinstance(intermediates, (str, Path)):
        return [Path(intermediates)]
    return [Path(p) for p in intermediates]


def prepare(
    strategy: str, backbone: Backbone, spec: AdapterSpec, intermediates: Path | str | Sequence[Path | str] | None
) -> PreparedModel:
    """The model to train for `strategy`; `intermediates` is a list of adapter directories (one path or None
    are accepted too). The count is checked against the strategy before anything is loaded."""
    paths = check_intermediates(strategy, intermediates)
    return STRATEGIES.get(strategy).build(backbone, spec, paths)


def check_intermediates(strategy: str, intermediates: Path | str | Sequence[Path | str] | None) -> list[Path]:
    """The intermediate adapter directories as a list, after checking that `strategy` takes that many."""
    fewest, most = STRATEGIES.get(strategy).intermediates
    paths = as_paths(intermediates)
    if not fewest <= len(paths) <= (most if most is not None else len(paths)):
        if most == 0:
            wants = "no intermediate adapter (it trains the target alone)"
        elif fewest == most:
            wants = f"exactly {fewest} intermediate adapter{'s' if fewest > 1 else ''}"
        else:
            wants = f"at least {fewest} intermediate adapters"
        hint = " (several intermediate adapters: strategy 'fuse')" if len(paths) > 1 and most == 1 else ""
        raise AdapterxError(
            f"transfer strategy {strategy!r} takes {wants}, got {len(paths)}"
            f"{': ' + ', '.join(map(str, paths)) if paths else ''}{hint}"
        )
    return paths


def _requirement(record, path: Path, role: str, **more) -> dict:
    return {
        "name": record.name,
        "path": str(Path(path).resolve()),
        "weights_digest": record.metadata["weights_digest"],
        "role": role,
        **more,
    }


# ============================================================================================ strategies
@register_strategy(
    "none",
    intermediates=(0, 0),
    modules=lambda n: 1,
    inference="1 (target adapter)",
    about="the target adapter alone, trained from scratch (the target-only baseline)",
)
def _none(backbone: Backbone, spec: AdapterSpec, intermediates: list[Path]) -> PreparedModel:
    model = AdaptedModel(backbone)
    store.add_adapter(model, TARGET, spec)
    store.activate(model, [TARGET], trainable=TARGET)
    return PreparedModel(model, TARGET)


@register_strategy(
    "stack",
    intermediates=(1, 1),
    modules=lambda n: 2,
    inference="2 (intermediate + target adapter)",
    about="the intermediate adapter stays frozen beneath a new target adapter",
)
def _stack(backbone: Backbone, spec: AdapterSpec, intermediates: list[Path]) -> PreparedModel:
    [intermediate] = intermediates
    model = AdaptedModel(backbone)
    record = store.load_adapter(model, intermediate, name=INTERMEDIATE, with_head=False)
    if get_method(record.kind).family != get_method(spec.kind).family:
        raise CompositionError(
            f"cannot stack a {spec.kind} target adapter on the {record.kind} adapter "
            f"{intermediate}: they come from different adapter libraries"
        )
    store.add_adapter(model, TARGET, spec)
    store.activate(model, [INTERMEDIATE, TARGET], trainable=TARGET)
    return PreparedModel(model, TARGET, requires=[_requirement(record, intermediate, STACKED)])


@register_strategy(
    "continue",
    intermediates=(1, 1),
    modules=lambda n: 1,
    inference="1 (target adapter, initialised from the intermediate)",
    about="the target adapter starts from the intermediate adapter's weights and trains on",
)
def _continue(backbone: Backbone, spec: AdapterSpec, intermediates: list[Path]) -> PreparedModel:
    [intermediate] = intermediates
    model = AdaptedModel(backbone)
    record = store.load_adapter(model, intermediate, name=INTERMEDIATE, with_head=False)
    if record.spec != spec:
        raise CompositionError(
            f"strategy 'continue' trains the intermediate adapter on: its spec "
            f"{record.spec} (from {intermediate}) must equal the target spec {spec}"
        )
    store.add_adapter(model, TARGET, spec)
    method = get_method(spec.kind)
    method.copy_weights(model, INTERMEDIATE, TARGET)
    method.delete(model, INTERMEDIATE)
    del model.adapters[INTERMEDIATE]
    store.activate(model, [TARGET], trainable=TARGET)
    return PreparedModel(model, TARGET)


# -------------------------------------------------------------------------------------------- kind rules
def kind_problem(strategy: str, intermediate_kind: str, target_kind: str) -> str:
    """Why `strategy` cannot build a `target_kind` target on `intermediate_kind` intermediates, or "" if it can,
    as far as the kinds alone tell: 'merge-then-train' needs a mergeable intermediate, 'fuse' fusable
    intermediates and target (as each kind's Method says). A recipe can check this before training anything; the
    strategies raise it too. (stack/continue have further rules that depend on the saved adapters; they are
    checked when preparing.)"""
    intermediate, target = get_method(intermediate_kind), get_method(target_kind)
    if strategy == "merge-then-train" and not intermediate.mergeable:
        mergeable = " or ".join(f"{get_method(k).name} (kind={k})" for k in kinds() if get_method(k).mergeable)
        return (
            f"strategy 'merge-then-train' folds the intermediate adapter into the base weights, but a "
            f"{intermediate_kind} adapter cannot be merged "
            f"({intermediate.not_mergeable_reason or 'it is not a weight change'}). Train the intermediate "
            f"adapter as {mergeable}, or use strategy 'stack' or 'continue' (or 'fuse' over several adapters of "
            f"a fusable kind)"
        )
    fusable = " or ".join(k for k in kinds() if get_method(k).fusable)
    if strategy == "fuse" and not intermediate.fusable:
        return (
            f"strategy 'fuse' needs {fusable} intermediate adapters (AdapterFusion), not {intermediate_kind}; "
            f"train the intermediates as {fusable}, or use strategy 'stack', 'continue' or "
            f"'merge-then-train' with one intermediate"
        )
    if strategy == "fuse" and not target.fusable:
        return (
            f"strategy 'fuse' stacks the new target adapter on the fusion layer: the target must be a "
            f"{fusable} adapter, not {target_kind}"
        )
    return ""


def _check_kinds(strategy: str, intermediates: list[Path], spec: AdapterSpec) -> None:
    for path in intermediates:
        problem = kind_problem(strategy, store.read_metadata(path)["kind"], spec.kind)
        if problem:
            raise CompositionError(f"{path}: {problem}")


@register_strategy(
    "merge-then-train",
    intermediates=(1, 1),
    modules=lambda n: 1,
    inference="1 (target adapter; the intermediate is in the weights; 0 once a LoRA target is merged)",
    about="a LoRA intermediate is folded into the base weights; a new target adapter trains on them",
)
def _merge_then_train(backbone: Backbone, spec: AdapterSpec, intermediates: list[Path]) -> PreparedModel:
    [intermediate] = intermediates
    _check_kinds("merge-then-train", intermediates, spec)
    original = {"name": backbone.name, "fingerprint": backbone.fingerprint}
    merged = merged_backbone(backbone, intermediate)
    model = AdaptedModel(merged)
    store.add_adapter(model, TARGET, spec)
    store.activate(model, [TARGET], trainable=TARGET)
    metadata = store.read_metadata(intermediate)
    return PreparedModel(
        model,
        TARGET,
        requires=[
            {
                "name": INTERMEDIATE,
                "path": str(Path(intermediate).resolve()),
                "weights_digest": metadata["weights_digest"],
                "role": MERGED,
                "base_model": original,
            }
        ],
    )


# -------------------------------------------------------------------------------------------- fuse
@register_strategy(
    "fuse",
    intermediates=(2, None),
    modules=lambda n: n + 2,
    inference="n + 2 (n intermediate adapters + fusion layer + target adapter)",
    about="AdapterFusion over several bottleneck intermediates, a new target adapter on top",
)
def _fuse(backbone: Backbone, spec: AdapterSpec, intermediates: list[Path]) -> PreparedModel:
    """AdapterFusion (Pfeiffer et al. 2021, the adapters library's "dynamic" fusion) over the frozen intermediate
    bottleneck adapters, with a new target adapter stacked on it: ``Stack(Fuse(i_1, ..., i_n), target)`` (the
    library allows a Fuse block inside a Stack). Trained: the fusion layer, the target adapter and the head.
    The fusion layer is saved with the target (sub-folder ``fusion/``, safetensors). Not applied: the paper's
    regularisation of the fusion's value matrices towards identity (the library leaves it to its Trainer)."""
    _check_kinds("fuse", intermediates, spec)
    model = AdaptedModel(backbone)
    records = [
        store.load_adapter(model, path, name=f"{INTERMEDIATE}_{i}", with_head=False)
        for i, path in enumerate(intermediates, 1)
    ]
    names = [r.name for r in records]
    store.add_adapter(model, TARGET, spec)
    method = get_method(spec.kind)
    fusion = method.add_fusion(model, names)
    store.activate_setup(model, fuse_setup([], names, TARGET), trainable=[fusion, TARGET])

    def save_fusion(directory: Path) -> list[dict]:
        weights = method.save_fusion(model, names, Path(directory) / FUSION_DIR)
        return [
            {
                "name": fusion,
                "path": FUSION_DIR,
                "weights_digest": store.file_digest(weights),
                "role": FUSION,
                "fuses": names,
            }
        ]

    return PreparedModel(
        model,
        TARGET,
        requires=[_requirement(r, p, FUSED) for r, p in zip(records, intermediates)],
        save_extra=save_fusion,
    )
