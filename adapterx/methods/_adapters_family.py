"""Wiring shared by kinds implemented through the adapters library (bottleneck adapters, ...).

`adapters.init` swaps module classes in place and pins transformers; everything that touches it stays in
this file. Always save with ``use_safetensors=True`` (the default writes a pickle).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import adapters
import torch
from adapters.composition import Average, BatchSplit, Fuse, Stack
from adapters.utils import ADAPTERFUSION_CONFIG_NAME, ADAPTERFUSION_WEIGHTS_NAME, SAFE_ADAPTERFUSION_WEIGHTS_NAME
from safetensors.torch import load_file

from adapterx.core.errors import CompositionError
from adapterx.methods.base import AdapterSpec, Method, setup_names

if TYPE_CHECKING:
    from adapterx.core.model import AdaptedModel

ADAPTERS_WEIGHTS_FILE = "adapter.safetensors"
FUSION_CONFIG = "dynamic"  # Pfeiffer et al. 2021: query/key/value attention over the fused adapters' outputs


class AdaptersMethod(Method):
    family: ClassVar[str] = "adapters"
    weights_file: ClassVar[str] = ADAPTERS_WEIGHTS_FILE
    fusion_weights_file: ClassVar[str] = SAFE_ADAPTERFUSION_WEIGHTS_NAME
    fusable: ClassVar[bool] = True
    # the library's composition blocks: Stack, Average (a weighted average of outputs), BatchSplit (mixed rows)
    composition_blocks: ClassVar[frozenset[str]] = frozenset({"stack", "weighted", "mixed"})
    weighted_methods: ClassVar[tuple[str, ...]] = ("weighted",)

    def library_config(self, spec: AdapterSpec):
        raise NotImplementedError

    def _ready(self, model: "AdaptedModel"):
        if model.family not in (None, "adapters"):
            raise CompositionError(
                f"this model already carries {model.family!r}-library adapters; kinds of the adapters library "
                f"cannot be added to the same model (one adapter library per model)"
            )
        if model.family is None:
            adapters.init(model.backbone.model)
            model.use_library(self.family)
        return model.encoder

    def add(self, model: "AdaptedModel", name: str, spec: AdapterSpec) -> None:
        self._ready(model).add_adapter(name, config=self.library_config(spec))

    def load(self, model: "AdaptedModel", name: str, directory: Path) -> None:
        self._ready(model).load_adapter(
            str(directory), load_as=name, with_head=False, use_safetensors=True, set_active=False
        )

    def save(self, model: "AdaptedModel", name: str, directory: Path) -> None:
        model.encoder.save_adapter(str(directory), name, with_head=False, use_safetensors=True)

    def activate(self, model: "AdaptedModel", names: list[str], trainable: str | None) -> None:
        setup = Stack(*names) if len(names) > 1 else names[0]
        if trainable is not None:
            model.encoder.train_adapter(trainable)  # freezes every other adapter and the base
        model.encoder.set_active_adapters(setup)
        for param_name, param in self._adapter_params(model, None):
            param.requires_grad_(trainable is not None and f".adapters.{trainable}." in param_name)

    def activate_setup(self, model: "AdaptedModel", setup, trainable: Sequence[str] = ()) -> list[str]:
        """Any setup of "stack", "weighted" (the library's Average of the adapters' outputs), "batch_split" and
        "fuse" blocks (over adapters that have a fusion layer, see `add_fusion`), so that callers never touch the
        library's composition classes; a top-level "weighted" block sits in a Stack. With no `trainable`
        (inference) nothing's trainability changes; else exactly the adapters and fusion layers named in
        `trainable` are trainable (the base stays frozen)."""
        if not isinstance(setup, str) and setup[0] == "weighted":
            setup = ("stack", [setup], {})
        model.encoder.set_active_adapters(_library_setup(setup))
        if trainable:
            markers = [f".adapters.{t}." for t in trainable] + [f".adapter_fusion_layer.{t}." for t in trainable]
            for param_name, param in model.encoder.named_parameters():
                if ".adapters." in param_name or ".adapter_fusion_layer." in param_name:
                    param.requires_grad_(any(m in param_name for m in markers))
        return setup_names(setup)

    def encode_rows(
        self,
        model: "AdaptedModel",
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        rows: Sequence[str],
        encoder=None,
    ) -> torch.Tensor:
        """The library's BatchSplit over the rows sorted by adapter (in order of first appearance), unsorted after.
        It changes the library's active setup; activate again to serve whole batches."""
        order = sorted(range(len(rows)), key=lambda j: rows.index(rows[j]))
        groups = list(dict.fromkeys(rows[j] for j in order))
        sizes = [list(rows).count(g) for g in groups]
        index = torch.tensor(order, device=input_ids.device)
        model.encoder.set_active_adapters(_library_setup(("batch_split", groups, {"batch_sizes": sizes})))
        encoder = model.encoder if encoder is None else encoder
        hidden = encoder(
            input_ids=input_ids.index_select(0, index), attention_mask=attention_mask.index_select(0, index)
        ).last_hidden_state
        return hidden.index_select(0, torch.argsort(index))

    # -------------------------------------------------------------- AdapterFusion (Pfeiffer et al. 2021)
    def add_fusion(self, model: "AdaptedModel", names: Sequence[str]) -> str:
        """Add a fusion layer over the attached adapters `names`; returns its name (for `activate_setup`)."""
        fuse = Fuse(*names)
        model.encoder.add_adapter_fusion(fuse, FUSION_CONFIG)
        return fuse.name

    def save_fusion(self, model: "AdaptedModel", names: Sequence[str], directory: Path) -> Path:
        """Write the fusion layer over `names` to `directory` (config + safetensors); returns the weights file."""
        model.encoder.save_adapter_fusion(str(directory), Fuse(*names), use_safetensors=True)
        return Path(directory) / SAFE_ADAPTERFUSION_WEIGHTS_NAME

    def load_fusion(self, model: "AdaptedModel", directory: Path) -> list[str]:
        """Attach the fusion layer saved in `directory` (its adapters must be attached already, under the names
        they had when it was saved); returns those names. Every fusion tensor must come from the safetensors
        file: a pickle (.bin) is refused, a missing or extra tensor is an error (the library loads leniently)."""
        directory = Path(directory)
        weights = directory / SAFE_ADAPTERFUSION_WEIGHTS_NAME
        if (directory / ADAPTERFUSION_WEIGHTS_NAME).exists() or not weights.is_file():
            raise ValueError(
                f"expected {SAFE_ADAPTERFUSION_WEIGHTS_NAME} (safetensors) and no "
                f"{ADAPTERFUSION_WEIGHTS_NAME} (pickle, never loaded) in {directory}"
            )
        name = model.encoder.load_adapter_fusion(str(directory), use_safetensors=True, set_active=False)
        saved = load_file(str(weights))
        marker = f".adapter_fusion_layer.{name}."
        params = {n: p for n, p in model.encoder.named_parameters() if marker in n}
        if set(params) != set(saved):
            raise ValueError(
                f"fusion layer {name!r}: the file's tensors {sorted(set(saved) - set(params))[:2]} and "
                f"the model's {sorted(set(params) - set(saved))[:2]} do not match"
            )
        if not all(torch.equal(params[n].detach().cpu(), saved[n]) for n in params):
            raise ValueError(f"fusion layer {name!r}: weights were not loaded from {weights}")
        config = json.loads((directory / ADAPTERFUSION_CONFIG_NAME).read_text(encoding="utf-8"))
        return list(config.get("adapter_names") or name.split(","))

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
        renamed = {
            n.replace(f".adapters.{source}.", f".adapters.{target}."): t
            for n, t in self.adapter_state(model, source).items()
        }
        self.load_adapter_state(model, target, renamed)

    @staticmethod
    def _adapter_params(model: "AdaptedModel", name: str | None):
        marker = f".adapters.{name}." if name else ".adapters."
        return [(n, p) for n, p in model.encoder.named_parameters() if marker in n]


def _average(children: list, options: dict) -> Average:
    # adapters 1.3's bottleneck Average returns mean_i(w_i * out_i) = (1/n) * sum_i w_i out_i; passing n * w_i
    # (unnormalised) makes it the weighted average sum_i w_i out_i that the weights describe
    # (adapterx.deploy.compose's tests check the result against a hand-built reference).
    n = len(children)
    return Average(*children, weights=[n * float(w) for w in options["weights"]], normalize_weights=False)


_SETUP_BLOCKS = {
    "stack": lambda children, options: Stack(*children),
    "fuse": lambda children, options: Fuse(*children),
    "weighted": _average,
    "batch_split": lambda children, options: BatchSplit(*children, batch_sizes=list(options["batch_sizes"])),
}


def _library_setup(setup):
    if isinstance(setup, str):
        return setup
    block, children, options = setup
    if block not in _SETUP_BLOCKS:
        raise CompositionError(f"unknown composition block {block!r}; known: {', '.join(_SETUP_BLOCKS)}")
    return _SETUP_BLOCKS[block]([_library_setup(c) for c in children], options)
