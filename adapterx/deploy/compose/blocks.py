"""The composition algebra: blocks over adapter names, which blocks may nest in which, and the modes of
`adapterx compose --mode` (registries: `BLOCKS` for manifests, `MODES` for the CLI; a mode from outside the package
is one `MODES.register(name, CompositionMode(...))`). Pure data: nothing here loads a model or knows an adapter
kind; each kind says which blocks and weighted methods it supports (`Method.composition_blocks`,
`Method.weighted_methods`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from adapterx.core.errors import CompositionError
from adapterx.core.registry import Registry


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
        return {
            "block": self.kind,
            "children": [c if isinstance(c, str) else c.to_dict() for c in self.children],
            **self.options(),
        }

    def to_setup(self):
        """The block as a setup for `adapterx.store.activate_setup`: nested ``(block, [children], {options})``."""
        return (self.kind, [c if isinstance(c, str) else c.to_setup() for c in self.children], self.options())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Block) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        inner = ", ".join(map(str, self.children))
        opts = ", ".join(f"{k}={v}" for k, v in self.options().items() if v is not None)
        return f"{self.kind}[{inner}{'; ' + opts if opts else ''}]"


@dataclass(frozen=True)
class CompositionMode:
    """A `--mode` of `adapterx compose`: the block it builds over the parts (bottom first), the weights and the
    density given."""

    name: str
    about: str
    block: Callable[[Sequence[str], Sequence[float] | None, float | None], Block]


MODES: Registry[CompositionMode] = Registry("composition mode", group="adapterx.composition_modes")
BLOCKS: Registry[type[Block]] = Registry("composition block")


def register_block(cls: type[Block], about: str | None = None) -> type[Block]:
    """Register a block kind (as manifests name it); with `about`, also the mode of the same name (no weights)."""
    BLOCKS.register(cls.kind, cls)
    if about is not None:

        def build(names: Sequence[str], weights: Sequence[float] | None, density: float | None) -> Block:
            if weights is not None or density is not None:
                raise CompositionError(
                    f"mode {cls.kind!r} takes no weights or density (they belong to the weighted "
                    f"modes {', '.join(WEIGHTED_METHODS)})"
                )
            return cls(*names)

        MODES.register(cls.kind, CompositionMode(cls.kind, about, build))
    return cls


class Stack(Block):
    kind = "stack"


class Sum(Block):
    kind = "sum"


class Mixed(Block):
    kind = "mixed"


register_block(
    Stack,
    "every part active together, bottom first: each adapter reads the output of the one below "
    "(weight deltas simply add up)",
)
register_block(Sum, "every part's weight delta added at once (kinds that are a weight change)")
register_block(
    Mixed,
    "many adapters on one base: each row of a batch goes through its own adapter and head, in one "
    "forward pass (with --check: row i through the i-th part)",
)


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

    def __init__(
        self,
        *children: str,
        weights: Sequence[float] | None = None,
        method: str = "weighted",
        density: float | None = None,
    ):
        super().__init__(*children)
        n = len(children)
        self.weights: tuple[float, ...] = (
            tuple(float(w) for w in weights) if weights is not None else tuple(1.0 / n for _ in children) if n else ()
        )
        self.method = method
        self.density = density

    def options(self) -> dict:
        return {"weights": list(self.weights), "method": self.method, "density": self.density}


def _register_weighted_modes() -> None:
    """Each weighted method is a mode: a Weighted block over the parts (density 0.5 unless given, where needed)."""
    for method, entry in WEIGHTED_METHODS.items():

        def build(names, weights, density, method=method, entry=entry) -> Block:
            if entry.needs_density and density is None:
                density = 0.5
            return Weighted(*names, weights=weights, method=method, density=density)

        about = entry.about + (" (--density, default 0.5: the share kept)" if entry.needs_density else "")
        MODES.register(method, CompositionMode(method, about, build))


register_block(Weighted)
_register_weighted_modes()

ALLOWED_CHILDREN: dict[type[Block], tuple[type, ...]] = {
    Stack: (str, Weighted),
    Sum: (str,),
    Weighted: (str,),
    Mixed: (str,),
}


def from_mode(
    mode: str, names: Sequence[str], *, weights: Sequence[float] | None = None, density: float | None = None
) -> Block:
    """The block that `adapterx compose --mode MODE` over parts `names` (bottom first) means."""
    return MODES.get(mode).block(names, weights, density)


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
