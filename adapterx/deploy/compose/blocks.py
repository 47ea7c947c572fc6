"""The composition algebra: blocks over adapter names, which blocks may nest in which, and the modes of
`adapterx compose --mode`. Pure data: nothing here loads a model or knows an adapter kind; each kind says which
blocks and weighted methods it supports (`Method.composition_blocks`, `Method.weighted_methods`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

from adapterx.core.errors import CompositionError, unknown


class Block:
    """A composition block over part names (str) and, where `ALLOWED_CHILDREN` permits, other blocks."""

    kind: ClassVar[str] = ""

    def __init__(self, *children: "str | Block"):
        self.children: tuple[str | Block, ...] = tuple(children)

    def names(self) -> list[str]:
        """The part names under this block, in order (bottom first)."""
        out: list[str] = []
        for c in self.children:
            out.extend([c] if isinstance(c, str) else c.names())
        return out

    def options(self) -> dict:
        return {}

    def to_dict(self) -> dict:
        return {"block": self.kind, "children": [c if isinstance(c, str) else c.to_dict() for c in self.children],
                **self.options()}

    def to_setup(self):
        """The block as a setup for `adapterx.store.activate_setup`: nested ``(block, [children], {options})``."""
        return (self.kind, [c if isinstance(c, str) else c.to_setup() for c in self.children], self.options())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Block) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        inner = ", ".join(map(str, self.children))
        opts = ", ".join(f"{k}={v}" for k, v in self.options().items() if v is not None)
        return f"{self.kind}[{inner}{'; ' + opts if opts else ''}]"


class Stack(Block):
    kind = "stack"


class Sum(Block):
    kind = "sum"


class Mixed(Block):
    kind = "mixed"


@dataclass(frozen=True)
class WeightedMethod:
    needs_density: bool
    about: str


# The methods of a Weighted block. Which kinds have which: `Method.weighted_methods` (LoRA all, through peft's
# add_weighted_adapter; bottleneck "weighted" only, as an average of the adapters' outputs).
WEIGHTED_METHODS: dict[str, WeightedMethod] = {
    "weighted": WeightedMethod(False, "exact Σ w_i ΔW_i (LoRA), Σ w_i adapter_i(x) (bottleneck)"),
    "linear": WeightedMethod(False, "peft linear: A and B factors averaged separately"),
    "ties": WeightedMethod(True, "TIES: trim to density, elect sign, disjoint mean"),
    "dare_linear": WeightedMethod(True, "DARE: drop at rate 1-density, rescale, sum"),
    "dare_ties": WeightedMethod(True, "DARE drop + TIES sign election"),
    "magnitude_prune": WeightedMethod(True, "keep the largest `density` share"),
}


class Weighted(Block):
    kind = "weighted"

    def __init__(self, *children: str, weights: Sequence[float] | None = None, method: str = "weighted",
                 density: float | None = None):
        super().__init__(*children)
        n = len(children)
        self.weights: tuple[float, ...] = tuple(float(w) for w in weights) if weights is not None else \
            tuple(1.0 / n for _ in children) if n else ()
        self.method = method
        self.density = density

    def options(self) -> dict:
        return {"weights": list(self.weights), "method": self.method, "density": self.density}


BLOCKS: dict[str, type[Block]] = {b.kind: b for b in (Stack, Sum, Weighted, Mixed)}
ALLOWED_CHILDREN: dict[type[Block], tuple[type, ...]] = {
    Stack: (str, Weighted),
    Sum: (str,),
    Weighted: (str,),
    Mixed: (str,),
}
# `--mode` values of the CLI: a block kind, or a Weighted method
MODES = ("stack", "sum", "mixed", *WEIGHTED_METHODS)


def from_mode(mode: str, names: Sequence[str], *, weights: Sequence[float] | None = None,
              density: float | None = None) -> Block:
    """The block that `adapterx compose --mode MODE` over parts `names` (bottom first) means."""
    if mode not in MODES:
        raise unknown("composition mode", mode, MODES)
    if mode in WEIGHTED_METHODS:
        if WEIGHTED_METHODS[mode].needs_density and density is None:
            density = 0.5
        return Weighted(*names, weights=weights, method=mode, density=density)
    if weights is not None or density is not None:
        raise CompositionError(f"mode {mode!r} takes no weights or density (they belong to the weighted modes "
                               f"{', '.join(WEIGHTED_METHODS)})")
    return BLOCKS[mode](*names)


def from_dict(data: dict | str) -> Block | str:
    """Inverse of `Block.to_dict` (as stored in a manifest)."""
    if isinstance(data, str):
        return data
    if not isinstance(data, dict) or data.get("block") not in BLOCKS:
        raise CompositionError(f"not a composition block: {data!r}; blocks: {', '.join(BLOCKS)}")
    children = [from_dict(c) for c in data.get("children", [])]
    options = {k: v for k, v in data.items() if k not in ("block", "children")}
    return BLOCKS[data["block"]](*children, **options)


def weighted_blocks(block: Block) -> list[Weighted]:
    """Every Weighted block in `block` (itself included)."""
    found = [block] if isinstance(block, Weighted) else []
    for c in block.children:
        if isinstance(c, Block):
            found += weighted_blocks(c)
    return found
