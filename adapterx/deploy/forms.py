"""Deployment forms: how a trained setup runs at inference, one `DeploymentForm` entry each in
`DEPLOYMENT_FORMS` -- how the form is built from a loaded model and how many adapter modules it runs. Evaluation
(`adapterx evaluate`, the study runner), the summary's modules-at-inference column and the CLI's --forms read
this one table; which `adapterx bench` form costs what a form costs is the adapter kind's to say
(`Method.bench_form(spec, strategy, form)`).

  unmerged  the adapter modules active, as trained (any kind)
  fused     the active adapters as plain modules, no adapter library at inference: a mergeable kind's weight
            changes as one plain module per layer (LoRA: one low-rank product, adapterx.deploy.fastlora; (IA)³:
            one vector per side, adapterx.deploy.fastscaling), a stack of bottleneck adapters as one module per
            sub-layer applying them in order (adapterx.deploy.fastbottleneck)
  merged    a mergeable kind's weight changes (LoRA deltas, (IA)³ vectors) folded into the weights: no adapter
            module left
  mixed     many adapters on one base, each row of a batch through its own (`adapterx compose --mode mixed`);
            served and benched, not evaluated per task

`fused` and `merged` are new AdaptedModels over a plain transformers encoder with a copy of the head.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from adapterx.core.backbone import Backbone, fingerprint_tensors, freeze
from adapterx.core.errors import AdapterxError, CompositionError
from adapterx.core.model import AdaptedModel
from adapterx.core.registry import Registry
from adapterx.deploy import fastbottleneck
from adapterx.deploy.plain import apply_plain_layers, collect_weight_changes, merge_into_base, plain_base_copy
from adapterx.deploy.setup import load_for_inference


@dataclass(frozen=True)
class DeploymentForm:
    """One deployment form.

    `build` turns a loaded (unmerged) model into this form, or gives None when the model's adapters cannot take
    it (`needs` says what it needs); a form with no `build` is not evaluated per task. `modules` maps the adapter
    modules the setup runs unmerged (see adapterx.training.strategies.modules_at_inference) to those this form
    runs."""

    name: str
    about: str
    build: Callable[[AdaptedModel], AdaptedModel | None] | None
    modules: Callable[[int], int]
    needs: str = ""

    @property
    def evaluable(self) -> bool:
        return self.build is not None


DEPLOYMENT_FORMS: Registry[DeploymentForm] = Registry("deployment form", group="adapterx.deployment_forms")


def register_form(form: DeploymentForm) -> DeploymentForm:
    return DEPLOYMENT_FORMS.register(form.name, form)


def evaluable_forms() -> list[str]:
    """The forms a trained setup can be evaluated in (recipe ``evaluate.forms``, ``adapterx evaluate --forms``)."""
    return [name for name, form in DEPLOYMENT_FORMS.items() if form.evaluable]


def check_evaluable(form: str) -> DeploymentForm:
    """The entry of `form` if a setup can be evaluated in it; else an error naming those that can."""
    entry = DEPLOYMENT_FORMS.get(form)
    if not entry.evaluable:
        raise AdapterxError(
            f"form {form!r} ({entry.about}) is not evaluated per task; evaluable forms: {', '.join(evaluable_forms())}"
        )
    return entry


def deployed(backbone: Backbone, adapter_dir: Path, form: str) -> AdaptedModel | None:
    """The saved setup in `adapter_dir` (with everything it rests on) on a fresh copy of `backbone`, in `form`;
    None if its adapters cannot take that form."""
    entry = DEPLOYMENT_FORMS.get(form)
    return entry.build(load_for_inference(backbone.fresh_copy(), adapter_dir))


def merged_form(model: AdaptedModel) -> AdaptedModel | None:
    """The same model with its active adapters folded into the base weights (None if one cannot be merged): the
    deployment form with no adapter modules left at inference."""
    return _plain_form(model, "merged", lambda names: merge_into_base(model, names))


def fused_form(model: AdaptedModel) -> AdaptedModel | None:
    """The same model with its active adapters run as plain modules on a plain copy of the base, no adapter
    library at inference. Mergeable kinds: one plain module per changed layer (LoRA: ONE low-rank product, A and
    B factors concatenated, adapterx.deploy.fastlora, so a stack of k adapters costs one rank-k·r LoRA with no
    peft loop over adapters; (IA)³: the vectors multiplied into one per side). Bottleneck adapters active as a
    plain stack: one module per sub-layer applying them in order (adapterx.deploy.fastbottleneck), with no
    library hooks. None otherwise (other kinds, a bottleneck average or fusion)."""
    names = list(model.active_adapters)
    if names and all(model.adapters[n].method.mergeable for n in names):
        return _plain_form(
            model,
            "fused",
            lambda names: apply_plain_layers(plain_base_copy(model), collect_weight_changes(model, names)),
        )
    methods = {model.adapters[n].method.kind: model.adapters[n].method for n in names}
    if len(methods) != 1:
        return None
    try:
        weights = next(iter(methods.values())).bottleneck_weights(model, names)
    except CompositionError:  # not a bottleneck kind, or not a plain stack
        return None
    return _plain_form(
        model,
        "fused",
        lambda names: fastbottleneck.apply_fast_bottleneck(plain_base_copy(model), weights),
        mergeable=False,
    )


def _plain_form(model: AdaptedModel, what: str, build, mergeable: bool = True) -> AdaptedModel | None:
    """A new AdaptedModel whose encoder is `build(active adapter names)` (a plain module holding the adapters'
    effect) and whose head is a copy of `model`'s active head. None without active adapters, or (`mergeable`)
    when one cannot be merged."""
    names = list(model.active_adapters)
    if not names or (mergeable and not all(model.adapters[n].method.mergeable for n in names)):
        return None
    encoder = build(names)
    freeze(encoder)
    tensors = dict(encoder.named_parameters())
    source = model.backbone
    backbone = Backbone(
        encoder,
        source.tokenizer,
        f"{source.name}+{what}({','.join(names)})",
        source.pretrained,
        f"{source.description}; adapters {names} {what}",
        fingerprint_tensors(tensors),
        tensors,
    )
    result = AdaptedModel(backbone)
    result.heads[model.active_head] = copy.deepcopy(model.head)
    result.set_head(model.active_head)
    return result.eval()


# ============================================================================================ the forms
register_form(
    DeploymentForm(
        "unmerged", "adapter modules active, as trained (any kind)", build=lambda model: model, modules=lambda n: n
    )
)
register_form(
    DeploymentForm(
        "fused",
        "the active adapters as plain modules, no adapter library: LoRA as one low-rank product per layer "
        "(fastlora), (IA)³ as one vector per side (fastscaling), a bottleneck stack as one module per sub-layer "
        "(fastbottleneck)",
        build=fused_form,
        modules=lambda n: 1,
        needs="adapters of a mergeable kind or a plain stack of bottleneck adapters",
    )
)
register_form(
    DeploymentForm(
        "merged",
        "the adapters' weight changes (LoRA deltas, (IA)³ vectors) folded into the weights: no adapter module left",
        build=merged_form,
        modules=lambda n: 0,
        needs="adapters of a mergeable kind (these cannot be merged)",
    )
)
register_form(
    DeploymentForm(
        "mixed",
        "many adapters on one base, each row of a batch through its own (adapterx compose --mode mixed)",
        build=None,
        modules=lambda n: n,
    )
)
