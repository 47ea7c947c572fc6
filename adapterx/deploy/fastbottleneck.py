"""Fast bottleneck-adapter inference: trained adapters as plain modules in a plain transformers encoder.

A (sequential) bottleneck adapter sits after a sub-layer's output projection (BERT/RoBERTa ``*SelfOutput`` after
attention, ``*Output`` after the FFN). With ``h = dense(hidden)`` the sub-layer's projected output, ``r`` its
residual input and ``LN`` the sub-layer's layer norm, the adapters library (1.3) computes for a Stack of
adapters ``a_1 .. a_K`` at that location (``Adapter.pre_forward`` / ``forward`` / ``post_forward``)::

    x = h
    for each adapter a (bottom first):
        res = x                                      if residual_before_ln is True
        if original_ln_before: x = x + r  (res = x   if residual_before_ln == "post_add");  x = LN(x)
        res = x                                      if residual_before_ln is False
        y = scaling * up(f(down(LN_a_before(x))))    (LN_a_before only with ln_before)
        y = LN_a_after(y + res) or LN_a_after(y) + res   (adapter_residual_before_ln; LN_a_after with ln_after)
        x = y
    out = LN(x + r)  if the last adapter's original_ln_after  else x

Pfeiffer (SeqBnConfig: after the FFN only) has ``original_ln_before``, residual before LN, relu; Houlsby
(DoubleSeqBnConfig: after attention and FFN) has no ``original_ln_before`` and swish. The library runs this
through per-layer composition machinery (a forward context, setup lookup, state tuples, a recursive composer)
on every call. :class:`FastBottleneckOutput` replaces the sub-layer module and runs the same arithmetic for the
whole stack in one forward with plain tensor ops: the K adapters of a layer are applied in sequence (each reads
the previous one's output, so they cannot be merged into one product), nothing else. Inference only: dropout
and stochastic depth are off, the weights are frozen.

The weights come as :class:`BottleneckWeights` (plain tensors and the config flags above); reading them from a
model of the adapters library is an operation of the bottleneck method
(``Method.bottleneck_weights``; the tensors are ``adapterx.core.bottleneck.BottleneckWeights``). Example::

    weights = get_method("bottleneck").bottleneck_weights(model, ["lang", "task"])   # {module name: [...]}
    fast = apply_fast_bottleneck(plain_base_copy, weights)              # a plain transformers model
    out = fast(input_ids=ids, attention_mask=mask)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import get_activation

from adapterx.core.bottleneck import BottleneckWeights
from adapterx.core.errors import CompositionError

__all__ = ["FastBottleneckOutput", "apply_fast_bottleneck", "activation"]


def activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The non-linearity the adapters library builds for `name` (``Activation_Function_Class``); relu in place
    (its input is a fresh tensor)."""
    key = name.lower()
    if key == "relu":
        return torch.relu_
    if key == "leakyrelu":
        return F.leaky_relu
    try:
        return get_activation(key)
    except KeyError as exc:
        raise CompositionError(f"unknown bottleneck non-linearity {name!r}") from exc


def _frozen(t: torch.Tensor, like: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(t.detach().to(like.device, like.dtype).clone(), requires_grad=False)


class _Adapter(nn.Module):
    """The tensors of one adapter, cast to the base's dtype and device (a holder: the parent runs the math)."""

    def __init__(self, w: BottleneckWeights, like: torch.Tensor):
        super().__init__()
        self.down_weight, self.down_bias = _frozen(w.down_weight, like), _frozen(w.down_bias, like)
        self.up_weight, self.up_bias = _frozen(w.up_weight, like), _frozen(w.up_bias, like)
        self.scaling = _frozen(w.scaling, like) if isinstance(w.scaling, torch.Tensor) else float(w.scaling)
        for which, ln in (("ln_before", w.ln_before), ("ln_after", w.ln_after)):
            setattr(self, f"{which}_weight", _frozen(ln.weight, like) if ln else None)
            setattr(self, f"{which}_bias", _frozen(ln.bias, like) if ln else None)
            setattr(self, f"{which}_eps", ln.eps if ln else 0.0)
        self.act = activation(w.non_linearity)
        self.name, self.non_linearity = w.name, w.non_linearity
        self.residual_before_ln, self.original_ln_before = w.residual_before_ln, w.original_ln_before
        self.original_ln_after, self.adapter_residual_before_ln = w.original_ln_after, w.adapter_residual_before_ln

    def extra_repr(self) -> str:
        return (
            f"{self.name!r}: {self.up_weight.shape[0]} -> {self.down_weight.shape[0]} -> "
            f"{self.up_weight.shape[0]}, {self.non_linearity}"
        )


class FastBottleneckOutput(nn.Module):
    """A BERT/RoBERTa ``*SelfOutput`` / ``*Output`` sub-layer (``dense``, ``LayerNorm``) followed by a stack of
    bottleneck adapters, as plain tensor ops (see the module docstring for the arithmetic). The base module's
    ``dense`` and ``LayerNorm`` are kept, not copied; its dropout is skipped (inference only)."""

    def __init__(self, base: nn.Module, adapters: Sequence[BottleneckWeights]):
        super().__init__()
        if not isinstance(getattr(base, "dense", None), nn.Linear) or not isinstance(
            getattr(base, "LayerNorm", None), nn.LayerNorm
        ):
            raise CompositionError(
                f"FastBottleneckOutput wraps a module with `dense` (Linear) and `LayerNorm`, got {type(base).__name__}"
            )
        if not adapters:
            raise CompositionError("FastBottleneckOutput needs at least one adapter")
        size = base.dense.out_features
        wrong = [a.name for a in adapters if a.hidden_size != size]
        if wrong:
            raise CompositionError(f"bottleneck adapter(s) {wrong} do not fit hidden size {size}")
        self.dense, self.LayerNorm = base.dense, base.LayerNorm
        self.adapters = nn.ModuleList(_Adapter(a, base.dense.weight) for a in adapters)
        self._plan = tuple(self.adapters)
        self.ln_after_stack = adapters[-1].original_ln_after

    def _layer_norm(self, x: torch.Tensor) -> torch.Tensor:
        ln = self.LayerNorm
        return F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        x = F.linear(hidden_states, self.dense.weight, self.dense.bias)
        r = input_tensor
        for a in self._plan:
            res = x if a.residual_before_ln is True else None
            if a.original_ln_before:
                x = x + r
                if a.residual_before_ln == "post_add":
                    res = x
                x = self._layer_norm(x)
            if a.residual_before_ln is False:
                res = x
            z = (
                x
                if a.ln_before_weight is None
                else F.layer_norm(x, x.shape[-1:], a.ln_before_weight, a.ln_before_bias, a.ln_before_eps)
            )
            y = F.linear(a.act(F.linear(z, a.down_weight, a.down_bias)), a.up_weight, a.up_bias)
            if not (isinstance(a.scaling, float) and a.scaling == 1.0):
                y = y * a.scaling
            if a.adapter_residual_before_ln:
                y = y.add_(res)
            if a.ln_after_weight is not None:
                y = F.layer_norm(y, y.shape[-1:], a.ln_after_weight, a.ln_after_bias, a.ln_after_eps)
            if not a.adapter_residual_before_ln:
                y = y.add_(res)
            x = y
        if self.ln_after_stack:
            x = self._layer_norm(x.add_(r))
        return x

    def extra_repr(self) -> str:
        return f"adapters={[a.name for a in self._plan]}"


def apply_fast_bottleneck(model: nn.Module, weights_by_module: Mapping[str, Sequence[BottleneckWeights]]) -> nn.Module:
    """Replace each named sub-layer of `model` (in place; names as in ``model.named_modules()``, e.g.
    ``encoder.layer.3.output``) by a :class:`FastBottleneckOutput` over its stack of adapters; returns `model`."""
    if not weights_by_module:
        raise CompositionError("no bottleneck adapter weights given")
    for name, adapters in weights_by_module.items():
        parent_name, _, child = name.rpartition(".")
        try:
            parent = model.get_submodule(parent_name) if parent_name else model
            old = getattr(parent, child)
        except AttributeError as exc:
            raise CompositionError(f"model has no module {name!r} for bottleneck adapters") from exc
        setattr(parent, child, FastBottleneckOutput(old, adapters))
    return model
