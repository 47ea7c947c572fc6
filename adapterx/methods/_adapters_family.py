"""Wiring shared by kinds implemented through the adapters library (bottleneck adapters, ...).

`adapters.init` swaps module classes in place and pins transformers; everything that touches it stays in
this file. Always save with ``use_safetensors=True`` (the default writes a pickle).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import adapters
import torch
from adapters.composition import Average, BatchSplit, Stack

from adapterx.errors import CompositionError
from adapterx.methods.base import AdapterSpec, Method

if TYPE_CHECKING:
    from adapterx.model import AdaptedModel

ADAPTERS_WEIGHTS_FILE = "adapter.safetensors"


class AdaptersMethod(Method):
    family: ClassVar[str] = "adapters"
    weights_file: ClassVar[str] = ADAPTERS_WEIGHTS_FILE

    def library_config(self, spec: AdapterSpec):
        raise NotImplementedError

    def _ready(self, model: "AdaptedModel"):
        if model.family not in (None, "adapters"):
            raise CompositionError(
                f"this model already carries {model.family!r}-library adapters; kinds of the adapters library "
                f"cannot be added to the same model (one adapter library per model)")
        if model.family is None:
            adapters.init(model.backbone.model)
            model.family = self.family
        return model.encoder

    def add(self, model: "AdaptedModel", name: str, spec: AdapterSpec) -> None:
        self._ready(model).add_adapter(name, config=self.library_config(spec))

    def load(self, model: "AdaptedModel", name: str, directory: Path) -> None:
        self._ready(model).load_adapter(str(directory), load_as=name, with_head=False, use_safetensors=True,
                                        set_active=False)

    def save(self, model: "AdaptedModel", name: str, directory: Path) -> None:
        model.encoder.save_adapter(str(directory), name, with_head=False, use_safetensors=True)

    def activate(self, model: "AdaptedModel", names: list[str], trainable: str | None) -> None:
        setup = Stack(*names) if len(names) > 1 else names[0]
        if trainable is not None:
            model.encoder.train_adapter(trainable)   # freezes every other adapter and the base
        model.encoder.set_active_adapters(setup)
        for param_name, param in self._adapter_params(model, None):
            param.requires_grad_(trainable is not None and f".adapters.{trainable}." in param_name)

    def activate_setup(self, model: "AdaptedModel", setup) -> None:
        """Activate a composition given as nested ``(block, [children], {options})`` tuples over adapter names
        (blocks: "stack", "average" with ``weights``, "batch_split" with ``batch_sizes``), so that callers never
        touch the library's composition classes. Inference only: nothing is made trainable."""
        model.encoder.set_active_adapters(_library_setup(setup))

    def delete(self, model: "AdaptedModel", name: str) -> None:
        model.encoder.delete_adapter(name)

    def adapter_state(self, model: "AdaptedModel", name: str) -> dict:
        return {n: p.detach() for n, p in self._adapter_params(model, name)}

    def load_adapter_state(self, model: "AdaptedModel", name: str, state: dict) -> None:
        params = dict(self._adapter_params(model, name))
        if set(params) != set(state):
            raise CompositionError(f"adapter {name!r}: state does not match its parameters")
        with torch.no_grad():
            for n, tensor in state.items():
                params[n].copy_(tensor)

    def copy_weights(self, model: "AdaptedModel", source: str, target: str) -> None:
        renamed = {n.replace(f".adapters.{source}.", f".adapters.{target}."): t
                   for n, t in self.adapter_state(model, source).items()}
        self.load_adapter_state(model, target, renamed)

    @staticmethod
    def _adapter_params(model: "AdaptedModel", name: str | None):
        marker = f".adapters.{name}." if name else ".adapters."
        return [(n, p) for n, p in model.encoder.named_parameters() if marker in n]


def _average(children: list, options: dict) -> Average:
    # adapters 1.3's bottleneck Average returns mean_i(w_i * out_i) = (1/n) * sum_i w_i out_i; passing n * w_i
    # (unnormalised) makes it the weighted average sum_i w_i out_i that the weights describe
    # (adapterx.compose's tests check the result against a hand-built reference).
    n = len(children)
    return Average(*children, weights=[n * float(w) for w in options["weights"]], normalize_weights=False)


_SETUP_BLOCKS = {
    "stack": lambda children, options: Stack(*children),
    "average": _average,
    "batch_split": lambda children, options: BatchSplit(*children, batch_sizes=list(options["batch_sizes"])),
}


def _library_setup(setup):
    if isinstance(setup, str):
        return setup
    block, children, options = setup
    if block not in _SETUP_BLOCKS:
        raise CompositionError(f"unknown composition block {block!r}; known: {', '.join(_SETUP_BLOCKS)}")
    return _SETUP_BLOCKS[block]([_library_setup(c) for c in children], options)
