"""The public base of every adapter kind implemented through peft (LoRA, (IA)³, prompt and prefix tuning, and a
plugin's own): subclass `PeftMethod`, set `kind`, `spec_type` and (if the spec names backbone modules)
`module_fields`, and return the peft config of a spec from `peft_config`; attaching, saving in peft's own format,
loading, activation, weights and checks come from here. docs/extending.md has a worked example.

The encoder is wrapped once in a `peft.PeftModel` (task_type=None: the heads stay in adapterx, so peft never
adds or saves one of its own) and further adapters are added to that wrapper. Several active adapters need
``base_model.set_adapter([...])`` plus explicit ``requires_grad`` (peft #2749): done in `activate`.

Rules peft imposes, checked here so they fail as CompositionError instead of deep in peft:
  * one peft type per wrapper ("Cannot combine adapters with different peft types"): LoRA and (IA)³, LoRA and
    prefix tuning, or prompt and prefix tuning, cannot be attached to one model (`shares_model_with` says so
    before anything is loaded);
  * peft attaches an adapter to every module whose dotted name ends in a target name and silently ignores
    names that match nothing (if at least one matches): the spec fields listed in `module_fields` are checked
    against the backbone's modules (`check_backbone`, also run by ``adapterx run --dry-run``);
  * prompt-learning adapters (prompt / prefix tuning) run one at a time (``PeftModel.set_adapter``), and their
    state lives on the wrapper (``prompt_encoder[name]``), not in the base model's modules. Their wrapper must
    be a task-specific PeftModel class (a kind sets `peft_model_class`): plain ``PeftModel`` forwards straight
    to the base model and silently ignores the prompt;
  * peft finds an adapter's tensors by its type's parameter prefix ("lora_", "prompt_tuning_", ...): an adapter
    name beginning with that prefix (e.g. "lora_A") is mistaken for peft's own modules, and its weights are not
    loaded back. Such names are refused (`check_name`). peft also warns about names merely contained in the
    prefix (e.g. "a" in "lora_"), which load correctly; that warning is silenced where the name was checked.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from peft import PeftConfig, PeftModel, PeftModelForFeatureExtraction
from peft.mapping import PEFT_TYPE_TO_PREFIX_MAPPING
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

from adapterx.core.backbone import usable_positions
from adapterx.core.errors import AdapterxError, CompositionError
from adapterx.core.shape import BackboneShape, shape_of_config
from adapterx.methods.base import AdapterSpec, Method

if TYPE_CHECKING:
    from adapterx.core.model import AdaptedModel

PEFT_CONFIG_FILE = "adapter_config.json"
PEFT_WEIGHTS_FILE = "adapter_model.safetensors"


class PeftMethod(Method):
    """A kind implemented by peft. A subclass sets `kind`, `spec_type`, `module_fields` where its spec names
    backbone modules, and implements `peft_config`."""

    family: ClassVar[str] = "peft"
    weights_file: ClassVar[str] = PEFT_WEIGHTS_FILE
    peft_model_class: ClassVar[type[PeftModel]] = PeftModel
    # spec fields holding module names peft matches by dotted suffix (e.g. LoRA's target_modules): each name must
    # select at least one linear module of the backbone
    module_fields: ClassVar[tuple[str, ...]] = ()

    def peft_config(self, spec: AdapterSpec) -> PeftConfig:
        """peft's config for an adapter of `spec` (task_type None: adapterx keeps the heads)."""
        raise NotImplementedError

    def check_backbone(self, spec: AdapterSpec, shape: BackboneShape, where: str) -> None:
        """Every name in the spec's `module_fields` selects a linear module of the backbone (peft would silently
        ignore one that does not, as long as another matches)."""
        known = shape.module_suffixes()
        for field_name in self.module_fields:
            missing = [m for m in getattr(spec, field_name) if m not in known]
            if missing:
                raise AdapterxError(
                    f"{where}.{field_name}: {', '.join(map(repr, missing))} matches no linear module of "
                    f"{shape.name}; its linear modules are named {', '.join(shape.leaf_names())} "
                    f"(or a dotted path ending in one, e.g. attention.self.query)"
                )

    def shares_model_with(self, other: Method) -> str:
        """peft holds adapters of one peft type per model."""
        problem = super().shares_model_with(other)
        if problem or not isinstance(other, PeftMethod):
            return problem
        mine, theirs = self._peft_type(), other._peft_type()
        if mine != theirs:
            return (
                f"peft holds adapters of one type per model: {self.kind} ({mine}) and {other.kind} ({theirs}) "
                f"cannot be attached to one model"
            )
        return ""

    def _peft_type(self) -> str:
        return str(self.peft_config(self.spec_type()).peft_type.value)

    @property
    def parameter_prefix(self) -> str:
        """The prefix peft gives this kind's parameters (and finds them by)."""
        return PEFT_TYPE_TO_PREFIX_MAPPING.get(self.peft_config(self.spec_type()).peft_type, "")

    def check_name(self, name: str) -> None:
        prefix = self.parameter_prefix
        if prefix and name.startswith(prefix):
            raise CompositionError(
                f"adapter name {name!r} begins with {prefix!r}, the prefix peft gives the "
                f"parameters of {self.kind} adapters: peft would mistake its weights for its "
                f"own modules and not load them back; pick another name"
            )

    # -------------------------------------------------------------- attach
    def add(self, model: "AdaptedModel", name: str, spec: AdapterSpec) -> None:
        self.check_name(name)
        self.check_backbone(
            spec, shape_of_config(model.backbone.name, model.backbone.model.config), f"adapter {name!r}"
        )
        config = self.peft_config(spec)
        config.base_model_name_or_path = model.backbone.name
        _check_joinable(model, name, config)
        with _checked_name():
            if self._wrapper(model) is None:
                model.use_library(self.family, self.peft_model_class(model.backbone.model, config, adapter_name=name))
            else:
                model.encoder.add_adapter(name, config)

    def load(self, model: "AdaptedModel", name: str, directory: Path) -> None:
        self.check_name(name)
        wrapper = self._wrapper(model)
        if wrapper is not None:
            _check_joinable(model, name, PeftConfig.from_pretrained(str(directory)))
        with _checked_name():
            if wrapper is None:
                model.use_library(
                    self.family,
                    self.peft_model_class.from_pretrained(
                        model.backbone.model, str(directory), adapter_name=name, is_trainable=False
                    ),
                )
            else:
                wrapper.load_adapter(str(directory), adapter_name=name, is_trainable=False)

    def save(self, model: "AdaptedModel", name: str, directory: Path) -> None:
        # peft writes an adapter not named "default" into <dir>/<name>/: write to a scratch dir, move up.
        with tempfile.TemporaryDirectory(dir=directory) as scratch:
            model.encoder.save_pretrained(
                scratch, selected_adapters=[name], safe_serialization=True, save_embedding_layers=False
            )
            source = Path(scratch) / name if name != "default" else Path(scratch)
            for file in (PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE):
                shutil.move(str(source / file), str(directory / file))

    # -------------------------------------------------------------- activation
    def activate(self, model: "AdaptedModel", names: list[str], trainable: str | None) -> None:
        prompt_learning = [n for n in names if _is_prompt_learning(model, n)]
        if prompt_learning:
            if len(names) > 1:
                raise CompositionError(
                    f"adapters {list(names)} cannot be active together: {prompt_learning[0]!r} is a "
                    f"{model.adapters[prompt_learning[0]].kind} adapter (peft prompt learning), and peft runs "
                    f"exactly one prompt-learning adapter at a time, alone; activate one of them"
                )
            model.encoder.set_adapter(names[0])
        else:
            model.encoder.base_model.set_adapter(list(names))
        for param_name, param in model.encoder.named_parameters():
            if param_name in _base_names(model):
                continue
            param.requires_grad_(trainable is not None and _belongs_to(param_name, trainable))

    def activate_setup(self, model: "AdaptedModel", setup, trainable: Sequence[str] = ()) -> list[str]:
        """A name, a "stack" or "sum" of names and "weighted" blocks (all adapters active at once: for LoRA the
        deltas add, in any order), or one "weighted" block. A weighted block becomes a new adapter first
        (`combine`), named ``<method>_<names>``."""
        block, children = ("stack", [setup]) if isinstance(setup, str) else (setup[0], setup[1])
        if block == "weighted":
            block, children = "stack", [setup]
        if block not in ("stack", "sum"):
            raise CompositionError(f"{self.kind} adapters cannot be combined as {block!r}")
        if len(trainable) > 1:
            raise CompositionError(f"peft adapters train one at a time, not {list(trainable)}")
        names = [self._realize(model, child) for child in children]
        self.activate(model, names, trainable[0] if trainable else None)
        return names

    def _realize(self, model: "AdaptedModel", child) -> str:
        if isinstance(child, str):
            return child
        block, names, options = child
        if block != "weighted" or not all(isinstance(n, str) for n in names):
            raise CompositionError(f"a stack of peft adapters holds adapter names and weighted blocks, not {block!r}")
        return self.combine(model, list(names), options)

    def combine(self, model: "AdaptedModel", names: list[str], options: dict) -> str:
        """Attach one new adapter made from `names` as a "weighted" block with `options` says; returns its name."""
        raise CompositionError(f"{self.kind} adapters cannot be combined into one by a weighted merge")

    def delete(self, model: "AdaptedModel", name: str) -> None:
        model.encoder.delete_adapter(name)

    # -------------------------------------------------------------- weights
    def adapter_state(self, model: "AdaptedModel", name: str) -> dict:
        if _is_prompt_learning(model, name):
            # the raw trainable tensors (peft's own state dict folds a prefix projection into its output, which
            # cannot be trained on or loaded back into a training-mode adapter)
            return {f"prompt_encoder.{k}": v for k, v in model.encoder.prompt_encoder[name].state_dict().items()}
        return get_peft_model_state_dict(model.encoder, adapter_name=name, save_embedding_layers=False)

    def load_adapter_state(self, model: "AdaptedModel", name: str, state: dict) -> None:
        if _is_prompt_learning(model, name):
            own = {k.removeprefix("prompt_encoder."): v for k, v in state.items()}
            try:
                model.encoder.prompt_encoder[name].load_state_dict(own, strict=True)
            except RuntimeError as exc:
                raise CompositionError(f"adapter {name!r}: state does not fit its prompt encoder: {exc}") from exc
            return
        result = set_peft_model_state_dict(model.encoder, state, adapter_name=name)
        missing = [k for k in result.missing_keys if _belongs_to(k, name)]
        if missing:
            raise CompositionError(f"adapter {name!r}: state has no tensors for {missing[:3]}")

    def copy_weights(self, model: "AdaptedModel", source: str, target: str) -> None:
        self.load_adapter_state(model, target, self.adapter_state(model, source))

    @staticmethod
    def _wrapper(model: "AdaptedModel") -> PeftModel | None:
        if model.family not in (None, "peft"):
            raise CompositionError(
                f"this model already carries {model.family!r}-library adapters; peft-based kinds cannot be "
                f"added to the same model (one adapter library per model)"
            )
        return model.encoder if isinstance(model.encoder, PeftModel) else None


@contextmanager
def _checked_name():
    """Silence peft's warning about adapter names contained in its parameter prefix (e.g. "a" in "lora_"): those
    load correctly, and the names that do not (beginning with the prefix) were refused by `check_name`."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message=r"Adapter name .* should not be contained in the prefix .*"
            r"This may lead to reinitialization",
        )
        yield


def _is_prompt_learning(model: "AdaptedModel", name: str) -> bool:
    config = getattr(model.encoder, "peft_config", {}).get(name)
    return bool(config is not None and config.is_prompt_learning)


def _check_joinable(model: "AdaptedModel", name: str, config: PeftConfig) -> None:
    """peft keeps adapters of one peft type per wrapper: say so before peft fails half-way."""
    wrapper = model.encoder if isinstance(model.encoder, PeftModel) else None
    if wrapper is None or not wrapper.peft_config:
        return
    present = next(iter(wrapper.peft_config.values())).peft_type
    if config.peft_type != present:
        others = ", ".join(f"{n!r} ({r.kind})" for n, r in model.adapters.items())
        raise CompositionError(
            f"cannot attach adapter {name!r} ({config.peft_type.value}) to a model that carries {others} "
            f"({present.value}): peft holds adapters of only one type in one model and refuses to combine "
            f"{present.value} with {config.peft_type.value}; use one kind for both (e.g. transfer strategy "
            f"'continue'), or train the target adapter alone"
        )


def _belongs_to(param_name: str, adapter: str) -> bool:
    return f".{adapter}." in param_name or param_name.endswith(f".{adapter}")


def _base_names(model: "AdaptedModel") -> set[str]:
    # names of base tensors as seen through the peft wrapper are unknown up front; frozen base tensors are
    # recognised by identity instead
    ids = {id(t) for t in model.backbone.base_tensors.values()}
    return {n for n, p in model.encoder.named_parameters() if id(p) in ids}


class PromptLearningMethod(PeftMethod):
    """Shared traits of peft's prompt-learning kinds (prompt tuning, prefix tuning): virtual tokens that cannot be
    folded into weights, one such adapter active at a time, and the feature-extraction wrapper (plain PeftModel
    ignores prompts in forward; this wrapper applies them and still returns hidden states for adapterx's heads)."""

    mergeable: ClassVar[bool] = False
    not_mergeable_reason: ClassVar[str] = (
        "prompt/prefix adapters add virtual tokens; they cannot be folded into weights"
    )
    stackable: ClassVar[bool] = False  # peft runs one prompt-learning adapter at a time, with nothing beside it
    peft_model_class: ClassVar[type[PeftModel]] = PeftModelForFeatureExtraction
    bench_builders: ClassVar[tuple[str, ...]] = ("adapterx.bench.prompt_forms",)

    def virtual_tokens(self, spec: AdapterSpec) -> int:
        return int(spec.num_virtual_tokens)

    def check_backbone(self, spec: AdapterSpec, shape: BackboneShape, where: str) -> None:
        super().check_backbone(spec, shape, where)
        if spec.num_virtual_tokens >= shape.positions:
            raise AdapterxError(
                f"{where}.num_virtual_tokens: {spec.num_virtual_tokens} leaves no positions for the "
                f"input: {shape.name} has {shape.positions}, shared by virtual and input tokens"
            )

    def add(self, model: "AdaptedModel", name: str, spec: AdapterSpec) -> None:
        _check_position_budget(model, spec.num_virtual_tokens)
        super().add(model, name, spec)

    def bench_form(self, spec: AdapterSpec, strategy: str, form: str) -> str | None:
        """The bench's KIND-N form (N virtual tokens), whatever the strategy: one such adapter runs alone."""
        if form != "unmerged" or strategy == "fuse":
            return None
        return f"{self.kind}-{spec.num_virtual_tokens}"

    def train_bench_spec(self, settings: Mapping[str, int]) -> AdapterSpec:
        return self.spec_type.from_options({"num_virtual_tokens": settings["virtual_tokens"]}, f"bench {self.kind}")


def _check_position_budget(model: "AdaptedModel", num_virtual_tokens: int) -> None:
    """Virtual tokens use up position embeddings (prompt tuning's come first; a prefix shifts the input's positions
    by its length; XLM-R reserves 2, BERT none): fail early if none would be left for the input."""
    positions = usable_positions(model.backbone.model.config)
    if num_virtual_tokens >= positions:
        raise AdapterxError(
            f"num_virtual_tokens={num_virtual_tokens} leaves no positions for the input: "
            f"{model.backbone.name} has {positions}, shared by virtual and input tokens"
        )
