"""Wiring shared by every kind implemented through peft (LoRA, prompt and prefix tuning, ...).

The encoder is wrapped once in a `peft.PeftModel` (task_type=None: heads stay in adapterx, DESIGN.md
pitfalls) and further adapters are added to that wrapper. Several active adapters need
``base_model.set_adapter([...])`` plus explicit ``requires_grad`` (peft #2749): done in `activate`.

Rules peft imposes, checked here so they fail as CompositionError instead of deep in peft:
  * one peft type per wrapper ("Cannot combine adapters with different peft types"): LoRA and prefix tuning,
    or prompt and prefix tuning, cannot be attached to one model;
  * prompt-learning adapters (prompt / prefix tuning) run one at a time (``PeftModel.set_adapter``), and their
    state lives on the wrapper (``prompt_encoder[name]``), not in the base model's modules. Their wrapper must
    be a task-specific PeftModel class (a kind sets `peft_model_class`): plain ``PeftModel`` forwards straight
    to the base model and silently ignores the prompt.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from peft import PeftConfig, PeftModel, PeftModelForFeatureExtraction
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

from adapterx.core.errors import CompositionError
from adapterx.methods.base import AdapterSpec, Method

if TYPE_CHECKING:
    from adapterx.core.model import AdaptedModel

PEFT_CONFIG_FILE = "adapter_config.json"
PEFT_WEIGHTS_FILE = "adapter_model.safetensors"


class PeftMethod(Method):
    family: ClassVar[str] = "peft"
    weights_file: ClassVar[str] = PEFT_WEIGHTS_FILE
    peft_model_class: ClassVar[type[PeftModel]] = PeftModel

    def peft_config(self, spec: AdapterSpec) -> PeftConfig:
        raise NotImplementedError

    # -------------------------------------------------------------- attach
    def add(self, model: "AdaptedModel", name: str, spec: AdapterSpec) -> None:
        config = self.peft_config(spec)
        config.base_model_name_or_path = model.backbone.name
        _check_joinable(model, name, config)
        if self._wrapper(model) is None:
            model.encoder = self.peft_model_class(model.backbone.model, config, adapter_name=name)
            model.family = self.family
        else:
            model.encoder.add_adapter(name, config)

    def load(self, model: "AdaptedModel", name: str, directory: Path) -> None:
        wrapper = self._wrapper(model)
        if wrapper is not None:
            _check_joinable(model, name, PeftConfig.from_pretrained(str(directory)))
        if wrapper is None:
            model.encoder = self.peft_model_class.from_pretrained(
                model.backbone.model, str(directory), adapter_name=name, is_trainable=False)
            model.family = self.family
        else:
            wrapper.load_adapter(str(directory), adapter_name=name, is_trainable=False)

    def save(self, model: "AdaptedModel", name: str, directory: Path) -> None:
        # peft writes an adapter not named "default" into <dir>/<name>/: write to a scratch dir, move up.
        with tempfile.TemporaryDirectory(dir=directory) as scratch:
            model.encoder.save_pretrained(scratch, selected_adapters=[name], safe_serialization=True,
                                         save_embedding_layers=False)
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
                    f"exactly one prompt-learning adapter at a time, alone; activate one of them")
            model.encoder.set_adapter(names[0])
        else:
            model.encoder.base_model.set_adapter(list(names))
        for param_name, param in model.encoder.named_parameters():
            if param_name in _base_names(model):
                continue
            param.requires_grad_(trainable is not None and _belongs_to(param_name, trainable))

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
                f"added to the same model (one adapter library per model)")
        return model.encoder if isinstance(model.encoder, PeftModel) else None


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
            f"'continue'), or train the target adapter alone")


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
    not_mergeable_reason: ClassVar[str] = ("prompt/prefix adapters add virtual tokens; they cannot be folded into "
                                           "weights")
    stackable: ClassVar[bool] = False   # peft runs one prompt-learning adapter at a time, with nothing beside it
    peft_model_class: ClassVar[type[PeftModel]] = PeftModelForFeatureExtraction
