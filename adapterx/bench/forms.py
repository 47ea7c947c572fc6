"""Deployment forms: each a callable model over one batch, all sharing one backbone's weights.

A form is named by a string; the registry (`BENCH_FORMS`) maps a name pattern to a builder and a help line, so
adding a form is one function plus one ``@form(pattern, help=...)`` line. Every adapter kind has the generic forms
KIND and KIND-stack-K (``adapterx.bench.adapted``); a kind's own forms live in the modules its Method names
(`bench_builders`); forms from outside the package come through the ``adapterx.bench_forms`` entry-point group or a
module a recipe lists under ``plugins:``. Forms share the base weights (a structural copy whose parameters are the
same tensors), so twenty forms of XLM-R base cost little more memory than one; the base form is always the plain
transformers model (never an adapters-initialised one: ``adapters.init`` alone costs 1-3%).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from adapterx.bench.config import BenchConfig
from adapterx.core.errors import AdapterxError, UnknownNameError, did_you_mean
from adapterx.core.registry import Registry
from adapterx.core.sharing import share_copy  # noqa: F401  (re-exported: the bench forms take it from here)
from adapterx.methods import AdapterSpec, get_method, kinds


@dataclass
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor

    @property
    def size(self) -> int:
        return self.input_ids.shape[0]


@dataclass
class Form:
    """One deployment form. ``run(module, batch)`` returns the last hidden state; ``module`` is what
    ``torch.compile`` wraps and what parameters are counted over. ``reference`` names the form it is compared
    with besides ``base`` (e.g. a fused stack with the naive one)."""

    name: str
    description: str
    module: nn.Module
    run: Callable[[nn.Module, Batch], torch.Tensor]
    reference: str | None = None

    def __call__(self, batch: Batch) -> torch.Tensor:
        return self.run(self.module, batch)


@dataclass
class FormContext:
    """What builders need: the base model (already on its device and dtype) and adapter settings."""

    base: nn.Module
    rank: int = 8
    reduction_factor: int = 16
    seed: int = 0
    targets: tuple[str, ...] = ("query", "value")
    _lora: dict[int, dict[str, tuple[torch.Tensor, torch.Tensor]]] = field(default_factory=dict, repr=False)

    @property
    def alpha(self) -> int:
        return 2 * self.rank

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank

    def lora_weights(self, i: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """LoRA adapter number i: {module name: (A (r, in), B (out, r))}, small random values (B non-zero, so
        outputs differ from the base), drawn in float32 from (seed, i) and cast to the base's device/dtype."""
        if i not in self._lora:
            gen = torch.Generator().manual_seed(self.seed * 1000 + 17 + i)
            w = next(self.base.parameters())
            weights = {}
            for name, mod in self.base.named_modules():
                if isinstance(mod, nn.Linear) and name.rsplit(".", 1)[-1] in self.targets:
                    a = torch.randn(self.rank, mod.in_features, generator=gen) * 0.02
                    b = torch.randn(mod.out_features, self.rank, generator=gen) * 0.02
                    weights[name] = (a.to(w.device, w.dtype), b.to(w.device, w.dtype))
            self._lora[i] = weights
        return self._lora[i]


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())


def freeze_eval(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()


def make_batch(vocab: int, batch_size: int, seq_len: int, device: str, seed: int) -> Batch:
    """Random token ids (every row full length, <s> ... </s>), drawn from (seed, batch size, seq len)."""
    gen = torch.Generator().manual_seed(seed + 31 * batch_size + seq_len)
    ids = torch.randint(5, vocab, (batch_size, seq_len), generator=gen)
    ids[:, 0], ids[:, -1] = 0, 2  # <s> ... </s>
    return Batch(ids.to(device), torch.ones_like(ids).to(device))


def plain_run(module: nn.Module, batch: Batch) -> torch.Tensor:
    return module(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state


# ----------------------------------------------------------------------------------------------- registry
Builder = Callable[..., Form]
_GENERIC: list[Builder] = []
_GENERIC_NAME = re.compile(r"(?P<kind>.+?)(?:-stack-(?P<k>\d+))?(?:-(?P<plain>fast|fused|merged))?\Z")
GENERIC_HELP = (
    "KIND, KIND-stack-K",
    "any adapter kind (e.g. one registered by a plugin): one adapter of its default spec, or K of them stacked, "
    "with small random weights, served through adapterx.store; a mergeable kind also has KIND-fast and "
    "KIND-stack-K-fused (its weight changes as plain modules, no adapter library) and KIND-merged / "
    "KIND-stack-K-merged (folded into the weights)",
)


@dataclass(frozen=True)
class BenchForm:
    """A family of bench forms: names matching `pattern` (named groups become int keyword arguments of `build`),
    listed as `name` (groups in capitals: lora-stack-K) with a one-line `help`."""

    name: str
    pattern: re.Pattern
    build: Builder
    help: str
    # the adapter spec the form's adapters have, from the name's groups (None: the form has no adapter or does not
    # say); checks made before building read it, e.g. how many positions virtual tokens take
    spec: Callable[..., AdapterSpec] | None = None


def builder_modules() -> list[str]:
    """The modules whose builders register themselves, imported on first lookup (they import this module, so
    importing them here at the top would be a cycle): the generic forms, and the forms each kind names
    (`Method.bench_builders`)."""
    return list(dict.fromkeys(["adapterx.bench.adapted", *(m for k in kinds() for m in get_method(k).bench_builders)]))


def _import_builders() -> None:
    # every lookup: a kind registered since the last one may name modules of its own
    for module in builder_modules():
        importlib.import_module(module)


BENCH_FORMS: Registry[BenchForm] = Registry("bench form", group="adapterx.bench_forms", loader=_import_builders)


def form(pattern: str, help: str = "", spec: Callable[..., AdapterSpec] | None = None) -> Callable[[Builder], Builder]:
    """Register a builder for form names matching `pattern`, e.g. ``r"lora-stack-(?P<k>\\d+)"`` (listed as
    lora-stack-K; named groups become int keyword arguments, of `spec` too: the adapter spec the form builds)."""
    name = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: m.group(1).upper(), pattern)

    def register(fn: Builder) -> Builder:
        BENCH_FORMS.register(name, BenchForm(name, re.compile(pattern + r"\Z"), fn, help, spec))
        return fn

    return register


def default_forms(quick: bool = False) -> tuple[str, ...]:
    """What `adapterx bench` times without --forms: 'base' and each kind's own default forms
    (`Method.bench_default_forms`, or `bench_quick_forms` with --quick), in the registry's order."""
    own = (
        f for k in kinds() for f in (get_method(k).bench_quick_forms if quick else get_method(k).bench_default_forms)
    )
    return ("base", *dict.fromkeys(own))


def train_kinds() -> tuple[str, ...]:
    """What `adapterx bench --train` can measure: 'full' (full fine-tuning) and every registered kind."""
    return ("full", *kinds())


def with_defaults(cfg: BenchConfig) -> BenchConfig:
    """`cfg` with an empty --forms / --train-kinds filled from the registry (`default_forms`, `train_kinds`), and
    its train kinds checked against it."""
    forms = cfg.forms or default_forms(cfg.quick)
    measured = cfg.train_kinds or train_kinds()
    unknown_kinds = [k for k in measured if k not in train_kinds()]
    if unknown_kinds:
        raise AdapterxError(
            f"bench: --train-kinds {list(cfg.train_kinds)}: unknown {unknown_kinds}; known: {', '.join(train_kinds())}"
        )
    if (forms, measured) == (cfg.forms, cfg.train_kinds):
        return cfg
    return dataclasses.replace(cfg, forms=forms, train_kinds=measured)


def virtual_tokens(name: str) -> int:
    """Positions in front of the input that form `name`'s adapters take (prompt / prefix tuning), as their kind
    says (`Method.virtual_tokens`) of the spec the form builds."""
    spec = _form_spec(name)
    return get_method(spec.kind).virtual_tokens(spec) if spec is not None else 0


def _form_spec(name: str) -> AdapterSpec | None:
    _import_builders()
    for entry in BENCH_FORMS.values():
        m = entry.pattern.match(name)
        if m:
            return entry.spec(**{k: int(v) for k, v in m.groupdict().items()}) if entry.spec else None
    m = _GENERIC_NAME.match(name)
    return get_method(m["kind"]).spec_type() if m and m["kind"] in kinds() else None


def generic_form(fn: Builder) -> Builder:
    """Register the builder of the forms every adapter kind has: ``fn(ctx, kind, k, plain)`` for the names KIND
    and KIND-stack-K (plain None), KIND-fast and KIND-stack-K-fused (plain "fused"), KIND-merged and
    KIND-stack-K-merged (plain "merged"); used where no registered pattern matches."""
    _GENERIC[:] = [fn]
    return fn


def form_help() -> str:
    """The registered forms, one per line (for --help and errors)."""
    _import_builders()
    entries = [(e.name, e.help) for e in BENCH_FORMS.values()] + [GENERIC_HELP]
    width = max(len(name) for name, _ in entries) + 2
    return "\n".join(
        textwrap.fill(text, 116, initial_indent=f"  {name:<{width}}", subsequent_indent=" " * (width + 2))
        for name, text in entries
    )


def _lookup(name: str) -> tuple[Builder, dict[str, int]]:
    _import_builders()
    for entry in BENCH_FORMS.values():
        m = entry.pattern.match(name)
        if m:
            return entry.build, {k: int(v) for k, v in m.groupdict().items()}
    m = _GENERIC_NAME.match(name)
    if m and m["kind"] in kinds() and _GENERIC and _generic_shape(m["k"], m["plain"]):
        plain = {"fast": "fused", "fused": "fused", "merged": "merged"}.get(m["plain"] or "")
        return functools.partial(_GENERIC[0], kind=m["kind"], plain=plain), {"k": int(m["k"] or 1)}
    raise UnknownNameError(
        f"unknown bench form {name!r}{did_you_mean(name, BENCH_FORMS.names() + kinds())}; known forms:\n{form_help()}"
    )


def _generic_shape(k: str | None, plain: str | None) -> bool:
    """KIND-fast is one adapter, KIND-stack-K-fused a stack; -merged goes with either."""
    return not ((plain == "fast" and k) or (plain == "fused" and not k))


def check_form_names(names) -> None:
    for name in names:
        _, params = _lookup(name)
        if any(v < 1 or v > 64 for v in params.values()):
            raise AdapterxError(f"bench form {name!r}: depth / adapter count must lie in 1..64")


def build_form(name: str, ctx: FormContext) -> Form:
    fn, params = _lookup(name)
    f = fn(ctx, **params)
    f.name = name
    freeze_eval(f.module)
    return f


@form("base", help="the plain transformers model (no adapter code at all)")
def _base(ctx: FormContext) -> Form:
    return Form("base", "plain transformers model", ctx.base, plain_run)
