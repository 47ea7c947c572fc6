"""Load-time composition: several saved adapters on one frozen base, described as a small tree of blocks.

A composition names adapter *parts* (saved adapter directories, each given a name) and combines them:

  Stack(a, b)        bottom first; the head of the last part is used.
                     bottleneck: the adapters library's Stack (b reads a's output);
                     LoRA: all active at once, every layer gets W + ΔW_a + ΔW_b (order does not matter).
  Sum(a, b)          LoRA only: every delta added at once (the math of a LoRA stack, said explicitly).
  Weighted(a, b, weights=(.5, .5), method="weighted")   one adapter made from several:
                     LoRA, through peft's ``add_weighted_adapter``:
                       weighted         exact Σ w_i ΔW_i (peft "cat": factors concatenated, ranks add up)
                       linear           peft "linear": A's and B's averaged separately (an approximation)
                       ties, dare_linear, dare_ties, magnitude_prune   peft's task-vector merges of the factors
                                        (need `density` and equal ranks)
                     bottleneck, method "weighted" only: Σ w_i · adapter_i(x) on each layer's output (the
                       adapters library's Average), weights summing to 1.
                     Parts that carry heads must share one label set: the merged adapter is read by one head.
  Mixed(a, b, c)     many adapters on one base: each row of a batch names its adapter (and is read by that
                     adapter's head), one forward pass (peft's per-row ``adapter_names``, or
                     ``adapterx.deploy.fastlora``'s gathered LoRA with ``fast=True``; the adapters library's BatchSplit).

Allowed nestings (`ALLOWED_CHILDREN`): a Stack holds names and Weighted blocks (e.g. a language adapter under
an average of task adapters); every other block holds names only. `validate` checks a composition against the
parts' saved metadata before any weight is loaded; `compose` builds it; `save_manifest` / `load_manifest` keep
it as one JSON file naming every part, its path and its file digests (DESIGN.md: composed setups saved as
loose files break on reload).
"""

from __future__ import annotations

import math
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import ClassVar, Mapping, Sequence

import torch

from adapterx import store
from adapterx.core.backbone import Backbone, load_backbone
from adapterx.core.errors import AdapterFileError, BackboneMismatchError, CompositionError, unknown
from adapterx.core.io import atomic_directory, atomic_write_json, read_json_file
from adapterx.core.model import AdaptedModel, AdapterRecord
from adapterx.deploy import fastlora
from adapterx.deploy.plain import plain_base_copy
from adapterx.methods import get_method, spec_from_json

MANIFEST_FILE = "composition.json"
MANIFEST_FORMAT = "adapterx.composition"
MANIFEST_VERSION = 1
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_PEFT_PREFIX = "lora_"   # peft warns, and may reinitialise weights, for adapter names inside its prefix


# ================================================================================================= blocks
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
    peft_type: str          # combination_type of peft's add_weighted_adapter
    needs_density: bool
    same_rank: bool
    bottleneck: bool        # also defined for bottleneck adapters (as an output average)
    about: str


WEIGHTED_METHODS: dict[str, WeightedMethod] = {
    "weighted": WeightedMethod("cat", False, False, True, "exact Σ w_i ΔW_i (LoRA), Σ w_i adapter_i(x) (bottleneck)"),
    "linear": WeightedMethod("linear", False, True, False, "peft linear: A and B factors averaged separately"),
    "ties": WeightedMethod("ties", True, True, False, "TIES: trim to density, elect sign, disjoint mean"),
    "dare_linear": WeightedMethod("dare_linear", True, True, False, "DARE: drop at rate 1-density, rescale, sum"),
    "dare_ties": WeightedMethod("dare_ties", True, True, False, "DARE drop + TIES sign election"),
    "magnitude_prune": WeightedMethod("magnitude_prune", True, True, False, "keep the largest `density` share"),
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
        if mode in WEIGHTED_METHODS and WEIGHTED_METHODS[mode].needs_density and density is None:
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


# ================================================================================================= parts
@dataclass(frozen=True)
class Part:
    """A saved adapter taking part in a composition: its name there, directory and saved metadata."""

    name: str
    path: Path
    metadata: dict = field(repr=False)

    @property
    def kind(self) -> str:
        return self.metadata["kind"]

    @property
    def family(self) -> str:
        return get_method(self.kind).family

    @property
    def mergeable(self) -> bool:
        return get_method(self.kind).mergeable

    @property
    def labels(self) -> list[str]:
        return list(self.metadata.get("labels") or [])

    @property
    def head(self) -> dict | None:
        return self.metadata.get("head")

    def files(self) -> list[Path]:
        """The files this part is made of (checked by digest when a manifest is loaded)."""
        names = [store.METADATA_FILE, self.metadata["weights_file"]]
        if (self.path / "adapter_config.json").is_file():
            names.append("adapter_config.json")
        if self.head:
            names.append(store.HEAD_FILE)
        return [self.path / n for n in names]


def read_part(name: str, path: str | Path) -> Part:
    """Read and check a saved adapter's metadata and files (errors name the file at fault)."""
    _check_name(name)
    path = Path(path).expanduser()
    metadata = store.read_metadata(path)
    store.check_safetensors(path / metadata["weights_file"])
    if metadata.get("head"):
        store.check_safetensors(path / store.HEAD_FILE)
    get_method(metadata["kind"])  # unknown kind: names the known ones
    return Part(name, path, metadata)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise CompositionError(f"adapter name {name!r}: use letters, digits, '_' and '-', starting with a letter")
    if name in _PEFT_PREFIX:
        raise CompositionError(f"adapter name {name!r} is part of peft's parameter prefix {_PEFT_PREFIX!r}, which "
                               f"makes peft mistake its weights for others; pick another name")


def read_parts(parts: Mapping[str, str | Path] | Sequence[tuple[str, str | Path]]) -> dict[str, Part]:
    items = list(parts.items()) if isinstance(parts, Mapping) else list(parts)
    out: dict[str, Part] = {}
    for name, path in items:
        if name in out:
            raise CompositionError(f"adapter name {name!r} is given twice ({out[name].path} and {path}); "
                                   f"name each part once, e.g. --adapter inter=DIR --adapter target=DIR")
        out[name] = read_part(name, path)
    check_requirements(out)
    return out


def check_requirements(parts: Mapping[str, Part]) -> None:
    """A target adapter trained on top of others (transfer strategy stack, fuse, merge-then-train) computes what
    it was trained to compute only with them: each adapter it sits on must be a part too (matched by weight
    digest); a merged base or a fusion layer compose cannot rebuild is an error that says where to go instead."""
    digests = {p.metadata.get("weights_digest") for p in parts.values()}
    for part in parts.values():
        for need in part.metadata.get("requires", []):
            role = need.get("role", "stacked")
            if role in ("stacked", "fused") and need.get("weights_digest") not in digests:
                raise CompositionError(
                    f"{part.path}: this adapter was trained on top of {need.get('path')} ({role}); without it the "
                    f"composition computes something else. Add it below: --adapter {need.get('name')}="
                    f"{need.get('path')} before --adapter {part.name}={part.path}")
            if role in ("merged_into_base", "fusion"):
                what = ("a base with that adapter merged into its weights (strategy merge-then-train)"
                        if role == "merged_into_base" else "an AdapterFusion layer (strategy fuse)")
                raise CompositionError(
                    f"{part.path}: this adapter was trained on {what}: {need.get('path')}; compose cannot rebuild "
                    f"that. Evaluate it with `adapterx evaluate --adapter {part.path}` "
                    f"(adapterx.deploy.setup.load_for_inference rebuilds it)")


def kinds_summary(parts: Sequence[Part]) -> str:
    """'LoRA, mergeable: a, b; bottleneck, not mergeable: c' -- what each part can do."""
    groups: dict[str, list[str]] = {}
    for p in parts:
        label = f"{p.kind} ({'mergeable' if p.mergeable else 'not mergeable'}, {p.family} library)"
        groups.setdefault(label, []).append(f"{p.name!r} ({p.path})")
    return "; ".join(f"{label}: {', '.join(names)}" for label, names in groups.items())


# ============================================================================================ validation
def validate(block: Block, parts: Mapping[str, Part] | None = None, *, head: str | None = None) -> None:
    """Check the shape of `block` and, given the parts' metadata, that it can be built. Raises
    CompositionError (or UnknownNameError) saying what is wrong and what would work."""
    _validate_shape(block, level=0)
    names = block.names()
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise CompositionError(f"{block}: part(s) {dup} appear more than once")
    if parts is None:
        return
    for n in names:
        if n not in parts:
            raise unknown("adapter", n, parts)
    used = [parts[n] for n in names]
    families = {p.family for p in used}
    if len(families) > 1:
        raise CompositionError(
            f"{block}: these adapters come from two adapter libraries and cannot be composed in one model "
            f"(one library per model): {kinds_summary(used)}. Compose adapters of one kind; only LoRA parts "
            f"can be merged into the base weights")
    bases = {(p.metadata["base_model"].get("fingerprint"), p.metadata["base_model"].get("name")) for p in used}
    if len(bases) > 1:
        listing = "; ".join(f"{p.path}: {p.metadata['base_model'].get('name')!r} "
                            f"{p.metadata['base_model'].get('fingerprint')}" for p in used)
        raise BackboneMismatchError(f"{block}: adapters were trained on different backbones ({listing}); "
                                    f"compose adapters trained on one backbone")
    for w in _weighted_blocks(block):
        _validate_weighted(w, parts)
    if isinstance(block, Mixed) and used[0].family == "peft":
        for p in used:
            if p.kind != "lora":
                raise CompositionError(f"mixed batches (per-row adapters) need LoRA adapters; {p.name!r} "
                                       f"({p.path}) is {p.kind}")
    if isinstance(block, Sum) and used[0].family != "peft":
        raise CompositionError(
            f"{block}: 'sum' adds LoRA weight deltas; {kinds_summary(used)} cannot be summed that way (a "
            f"bottleneck adapter is a small network, not a weight delta). Use 'stack' (the adapters library's "
            f"Stack) or 'weighted' (its Average of the adapters' outputs)")
    if head is not None:
        head_part(block, parts, head)


def _validate_shape(block: Block, level: int) -> None:
    if not isinstance(block, Block) or type(block) not in ALLOWED_CHILDREN:
        raise CompositionError(f"not a composition block: {block!r}; blocks: {', '.join(BLOCKS)}")
    if not block.children:
        raise CompositionError(f"{block}: names no adapters")
    allowed = ALLOWED_CHILDREN[type(block)]
    for child in block.children:
        if not isinstance(child, allowed):
            kinds = ", ".join("adapter names" if t is str else t.kind for t in allowed)
            raise CompositionError(f"{block}: cannot hold {child}; a {block.kind} holds {kinds}")
        if isinstance(child, Block):
            _validate_shape(child, level + 1)
        else:
            _check_name(child)
    if isinstance(block, Weighted):
        if block.method not in WEIGHTED_METHODS:
            raise unknown("weighted method", block.method, WEIGHTED_METHODS)
        if len(block.weights) != len(block.children):
            raise CompositionError(f"{block}: {len(block.weights)} weights for {len(block.children)} adapters; "
                                   f"give one weight per adapter, e.g. --weights "
                                   f"{','.join(['0.5'] * len(block.children))}")
        if not all(math.isfinite(w) for w in block.weights):
            raise CompositionError(f"{block}: weights must be finite numbers")
        needs = WEIGHTED_METHODS[block.method].needs_density
        if needs and not (block.density is not None and 0.0 < float(block.density) <= 1.0):
            raise CompositionError(f"{block}: method {block.method!r} needs a density in (0, 1] (the share of "
                                   f"each delta kept), e.g. --density 0.5")
        if not needs and block.density is not None:
            raise CompositionError(f"{block}: method {block.method!r} takes no density")


def _weighted_blocks(block: Block) -> list[Weighted]:
    found = [block] if isinstance(block, Weighted) else []
    for c in block.children:
        if isinstance(c, Block):
            found += _weighted_blocks(c)
    return found


def _validate_weighted(block: Weighted, parts: Mapping[str, Part]) -> None:
    used = [parts[n] for n in block.names()]
    method = WEIGHTED_METHODS[block.method]
    if used[0].family != "peft":
        if not method.bottleneck:
            raise CompositionError(
                f"{block}: method {block.method!r} merges LoRA weight deltas; for {used[0].kind} adapters only "
                f"'weighted' exists (a weighted average of the adapters' outputs). {kinds_summary(used)}")
        if abs(sum(block.weights) - 1.0) > 1e-6:
            raise CompositionError(
                f"{block}: a weighted average of bottleneck adapters needs weights that sum to 1 (each adapter's "
                f"output carries the layer's residual); got {list(block.weights)} (sum {sum(block.weights):g})")
    else:
        for p in used:
            if p.kind != "lora":
                raise CompositionError(f"{block}: weighted merges need LoRA adapters; {p.name!r} ({p.path}) is "
                                       f"{p.kind}")
        ranks = {p.name: p.metadata["spec"].get("r") for p in used}
        if method.same_rank and len(set(ranks.values())) > 1:
            raise CompositionError(f"{block}: method {block.method!r} needs adapters of one rank, got {ranks}; "
                                   f"use method 'weighted' (exact, any ranks)")
    with_heads = [p for p in used if p.head]
    label_sets = {(p.head.get("kind"), p.head.get("num_labels"), tuple(p.labels)) for p in with_heads}
    if len(label_sets) > 1:
        listing = "; ".join(f"{p.name!r} ({p.path / store.METADATA_FILE}): {p.head.get('kind')} head, labels "
                            f"{p.labels or p.head.get('num_labels')}" for p in with_heads)
        raise CompositionError(
            f"{block}: a weighted merge gives one adapter, read by one head, but these adapters' heads have "
            f"different label sets: {listing}. Merge adapters of one task, or compose them as a stack (the last "
            f"adapter's head is used)")


def head_part(block: Block, parts: Mapping[str, Part], head: str | None = None) -> str | None:
    """The part whose head reads the composition: `head` if given, else the last part (the target); None for
    Mixed (each row uses its own adapter's head) or when that part carries no head."""
    if isinstance(block, Mixed):
        if head is not None:
            raise CompositionError("a mixed composition reads each row with its own adapter's head; drop head=")
        return None
    names = block.names()
    if head is not None:
        if head not in names:
            raise unknown("head (a part of the composition)", head, names)
        if not parts[head].head:
            raise AdapterFileError(parts[head].path / store.METADATA_FILE,
                                   f"adapter {head!r} was saved without a head; pick another part's head")
        return head
    return names[-1] if parts[names[-1]].head else None


# ================================================================================================ model
@dataclass
class ComposedModel:
    """The frozen base with the composition's adapters attached and active, and the head that reads it."""

    model: AdaptedModel
    composition: Block
    parts: dict[str, Part]
    head: str | None
    active: list[str]                       # adapter names active in `model` (a weighted merge adds one)
    _gathered: object = field(default=None, repr=False)

    @property
    def backbone(self) -> Backbone:
        return self.model.backbone

    @torch.no_grad()
    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **batch) -> torch.Tensor:
        """Logits of the composition's head (for Mixed, use `forward_rows`)."""
        if isinstance(self.composition, Mixed):
            raise CompositionError("a mixed composition needs the adapter of each row: call forward_rows(...)")
        if self.head is None:
            raise CompositionError(f"{self.composition}: no part carries a head; use encode() for hidden states")
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **batch).logits

    @torch.no_grad()
    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.encode(input_ids, attention_mask).last_hidden_state

    @torch.no_grad()
    def forward_rows(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, row_adapters: Sequence[str],
                     *, fast: bool = False) -> list[torch.Tensor]:
        """One encoder pass over a batch whose row j uses adapter ``row_adapters[j]``; row j's logits come
        from that adapter's head. ``fast=True`` (LoRA) uses `adapterx.deploy.fastlora`'s gathered low-rank product
        instead of peft's per-adapter sub-batches (peft #2283); it builds a second, plain copy of the base once."""
        names = self.composition.names()
        if len(row_adapters) != input_ids.shape[0]:
            raise CompositionError(f"{len(row_adapters)} row adapters for a batch of {input_ids.shape[0]} rows")
        for n in row_adapters:
            if n not in names:
                raise unknown("adapter", n, names)
        hidden = _ROW_ENCODERS[self.model.family](self, input_ids, attention_mask, list(row_adapters), fast)
        out: list[torch.Tensor | None] = [None] * len(row_adapters)
        for name in dict.fromkeys(row_adapters):
            rows = [j for j, n in enumerate(row_adapters) if n == name]
            if name not in self.model.heads:
                raise AdapterFileError(self.parts[name].path / store.METADATA_FILE,
                                       f"adapter {name!r} was saved without a head, so its rows have no logits")
            index = torch.tensor(rows, device=hidden.device)
            logits = self.model.heads[name](hidden.index_select(0, index), attention_mask.index_select(0, index))
            for k, j in enumerate(rows):
                out[j] = logits[k]
        return out  # type: ignore[return-value]

    def parameter_counts(self) -> dict:
        """Base, per-part adapter and head parameter counts, and what is active."""
        base = sum(t.numel() for t in self.backbone.base_tensors.values())
        adapters = {n: _adapter_size(self.model, n) for n in self.model.adapters}
        heads = {n: sum(p.numel() for p in h.parameters()) for n, h in self.model.heads.items()}
        active = sum(adapters[n] for n in self.active)
        return {"base": base, "adapters": adapters, "heads": heads, "active_adapters": active,
                "head": heads.get(self.head, 0) if self.head else sum(heads.values())}

    def describe(self) -> str:
        lines = [f"{self.composition} on {self.backbone.name} ({self.backbone.fingerprint})"]
        counts = self.parameter_counts()
        for p in self.parts.values():
            role = "head used" if p.name == self.head else ("own head per row" if isinstance(
                self.composition, Mixed) and p.head else ("head ignored" if p.head else "no head"))
            spec = ", ".join(f"{k}={v}" for k, v in p.metadata["spec"].items() if k in ("r", "alpha",
                             "architecture", "reduction_factor"))
            lines.append(f"  {p.name:<12} {p.kind} ({spec}) task {p.metadata.get('task')!r} labels "
                         f"{p.labels or '-'}: {counts['adapters'][p.name]:,} adapter params, {role}  [{p.path}]")
        for n in self.active:
            if n not in self.parts:
                lines.append(f"  {n:<12} (made by the weighted merge) {counts['adapters'][n]:,} adapter params")
        if isinstance(self.composition, Mixed):
            per_row = max(counts["adapters"].values())
            share = 100.0 * (sum(counts["adapters"].values()) + counts["head"]) / counts["base"]
            lines.append(f"parameters: base {counts['base']:,}; adapters {sum(counts['adapters'].values()):,} "
                         f"(one per row, at most {per_row:,}); heads {counts['head']:,} (+{share:.2f}% over the "
                         f"base, all adapters and heads held)")
        else:
            share = 100.0 * (counts["active_adapters"] + counts["head"]) / counts["base"]
            lines.append(f"parameters: base {counts['base']:,}; active adapters {counts['active_adapters']:,}; "
                         f"head {counts['head']:,} (+{share:.2f}% over the base)")
        return "\n".join(lines)

    def save(self, path: str | Path, *, copy_parts: bool | None = None) -> Path:
        return save_manifest(self, path, copy_parts=copy_parts)


def _adapter_size(model: AdaptedModel, name: str) -> int:
    state = get_method(model.adapters[name].kind).adapter_state(model, name)
    return sum(t.numel() for t in state.values())


# ================================================================================================ build
def compose(backbone: Backbone | str, parts: Mapping[str, str | Path] | Sequence[tuple[str, str | Path]],
            composition: Block | str = "stack", *, weights: Sequence[float] | None = None,
            density: float | None = None, head: str | None = None) -> ComposedModel:
    """Load the frozen base once and attach the saved adapters `parts` ({name: directory}, bottom first),
    combined as `composition` (a Block, or a mode name of `MODES` over all parts in order)."""
    read = read_parts(parts)
    block = composition if isinstance(composition, Block) else \
        from_mode(composition, list(read), weights=weights, density=density)
    if isinstance(composition, Block) and (weights is not None or density is not None):
        raise CompositionError("weights/density belong inside a Weighted block when a Block is given")
    validate(block, read, head=head)
    unused = [n for n in read if n not in block.names()]
    if unused:
        raise CompositionError(f"{block}: part(s) {unused} are loaded but not used in the composition")
    if isinstance(backbone, str):
        backbone = load_backbone(backbone)
    model = AdaptedModel(backbone)
    head_name = head_part(block, read, head)
    mixed = isinstance(block, Mixed)
    for part in read.values():
        store.load_adapter(model, part.path, name=part.name,
                           with_head=bool(part.head) and (mixed or part.name == head_name))
    active = _BUILDERS[model.family](model, block, read)
    if head_name is not None:
        model.set_head(head_name)
    model.eval()
    return ComposedModel(model, block, read, head_name, active)


# ---- peft (LoRA)
def _peft_realize(model: AdaptedModel, child: str | Block) -> str:
    if isinstance(child, str):
        return child
    assert isinstance(child, Weighted)
    names = child.names()
    method = WEIGHTED_METHODS[child.method]
    new = f"{child.method}_{'_'.join(names)}"
    lora_model = model.encoder.base_model
    kwargs = {"density": float(child.density)} if method.needs_density else {}
    lora_model.add_weighted_adapter(adapters=names, weights=list(child.weights), adapter_name=new,
                                    combination_type=method.peft_type, **kwargs)
    config = model.encoder.peft_config[new]
    spec = spec_from_json({"kind": "lora", "r": int(config.r), "alpha": float(config.lora_alpha),
                           "target_modules": sorted(config.target_modules)})
    model.adapters[new] = AdapterRecord(name=new, kind="lora", spec=spec, method=get_method("lora"),
                                        metadata={"made_by": child.to_dict()})
    return new


def _build_peft(model: AdaptedModel, block: Block, parts: Mapping[str, Part]) -> list[str]:
    if isinstance(block, Mixed):
        return []  # rows name their adapters at each call
    children = [block] if isinstance(block, Weighted) else block.children
    names = [_peft_realize(model, c) for c in children]
    store.activate(model, names)
    return names


def _rows_peft(composed: ComposedModel, input_ids, attention_mask, rows: list[str], fast: bool) -> torch.Tensor:
    model = composed.model
    if not fast:
        return model.encoder(input_ids=input_ids, attention_mask=attention_mask,
                             adapter_names=rows).last_hidden_state
    if composed._gathered is None:
        names = composed.composition.names()
        composed._gathered = fastlora.apply_gathered_lora(plain_base_copy(model), _row_factors(model, names),
                                                          names).eval()
    gathered = composed._gathered
    return gathered(input_ids=input_ids, attention_mask=attention_mask,
                    adapter_ids=gathered.adapter_ids(rows)).last_hidden_state


def _row_factors(model: AdaptedModel, names: list[str]) -> dict:
    """Per module, the LoRA factors of every adapter in `names`, in order; an adapter that does not touch a
    module gets zero factors there (adds nothing), so adapters with different target modules share one batch."""
    each = {n: fastlora.lora_factors_from_peft(model.encoder, [n]) for n in names}
    modules = list(dict.fromkeys(m for n in names for m in each[n]))
    out = {}
    for m in modules:
        like = next(each[n][m][0] for n in names if m in each[n])
        zero = fastlora.LoraFactors(like.A.new_zeros(1, like.in_features), like.B.new_zeros(like.out_features, 1))
        out[m] = [each[n][m][0] if m in each[n] else zero for n in names]
    return out


# ---- adapters library (bottleneck): library types stay in adapterx.methods (DESIGN.md)
def _library_tree(block: Block | str):
    if isinstance(block, str):
        return block
    kind = {"stack": "stack", "weighted": "average"}[block.kind]
    options = {"weights": list(block.weights)} if isinstance(block, Weighted) else {}
    return (kind, [_library_tree(c) for c in block.children], options)


def _build_adapters(model: AdaptedModel, block: Block, parts: Mapping[str, Part]) -> list[str]:
    names = block.names()
    if isinstance(block, Mixed):
        return []
    method = get_method(parts[names[0]].kind)
    tree = _library_tree(block)
    method.activate_setup(model, tree if isinstance(block, Stack) else ("stack", [tree], {}))
    model.active_adapters = names
    return names


def _rows_adapters(composed: ComposedModel, input_ids, attention_mask, rows: list[str], fast: bool) -> torch.Tensor:
    model = composed.model
    order = sorted(range(len(rows)), key=lambda j: composed.composition.names().index(rows[j]))
    groups = list(dict.fromkeys(rows[j] for j in order))
    sizes = [rows.count(g) for g in groups]
    index = torch.tensor(order, device=input_ids.device)
    method = get_method(composed.parts[groups[0]].kind)
    method.activate_setup(model, ("batch_split", groups, {"batch_sizes": sizes}))
    hidden = model.encoder(input_ids=input_ids.index_select(0, index),
                           attention_mask=attention_mask.index_select(0, index)).last_hidden_state
    return hidden.index_select(0, torch.argsort(index))


_BUILDERS = {"peft": _build_peft, "adapters": _build_adapters}
_ROW_ENCODERS = {"peft": _rows_peft, "adapters": _rows_adapters}


# ============================================================================================= manifest
def save_manifest(composed: ComposedModel, path: str | Path, *, copy_parts: bool | None = None) -> Path:
    """Save the composition as one JSON manifest naming its parts, their paths and file digests.

    `path` ending in ``.json``: the manifest alone, pointing at the parts where they are (paths relative to
    the manifest). Otherwise a self-contained directory: ``PATH/composition.json`` plus a copy of every part
    under ``PATH/parts/<name>/`` (written atomically). `copy_parts` overrides the choice."""
    path = Path(path)
    copy = (path.suffix != ".json") if copy_parts is None else copy_parts
    if not copy:
        manifest = _manifest(composed, path.parent, {n: p.path for n, p in composed.parts.items()})
        atomic_write_json(path, manifest)
        return path
    with atomic_directory(path) as tmp:
        for n, p in composed.parts.items():
            shutil.copytree(p.path, tmp / "parts" / n)
        manifest = _manifest(composed, path, {n: path / "parts" / n for n in composed.parts})
        atomic_write_json(tmp / MANIFEST_FILE, manifest)
    return path / MANIFEST_FILE


def _manifest(composed: ComposedModel, where: Path, locations: Mapping[str, Path]) -> dict:
    parts = []
    for n, p in composed.parts.items():
        location = Path(locations[n])
        rel = Path(_relative(location, where))
        parts.append({"name": n, "path": rel.as_posix(), "kind": p.kind, "task": p.metadata.get("task"),
                      "labels": p.labels,
                      "files": {f.name: store.file_digest(f) for f in p.files()}})
    return {"format": MANIFEST_FORMAT, "format_version": MANIFEST_VERSION,
            "backbone": {"name": composed.backbone.name, "fingerprint": composed.backbone.fingerprint},
            "composition": composed.composition.to_dict(), "head": composed.head, "parts": parts,
            "library_versions": store.library_versions(),
            "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _relative(target: Path, base: Path) -> str:
    import os
    try:
        return os.path.relpath(Path(target).resolve(), Path(base).resolve())
    except ValueError:  # another drive
        return str(Path(target).resolve())


def read_manifest(path: str | Path) -> tuple[dict, Path]:
    """The manifest's JSON and the directory its relative paths start from; checks presence and form."""
    path = Path(path)
    file = path / MANIFEST_FILE if path.is_dir() else path
    if not file.is_file():
        raise AdapterFileError(file, "no composition manifest here")
    data = read_json_file(file)
    if data.get("format") != MANIFEST_FORMAT:
        raise AdapterFileError(file, f"not an adapterx composition manifest (format {data.get('format')!r})")
    if data.get("format_version", 0) > MANIFEST_VERSION:
        raise AdapterFileError(file, f"format_version {data['format_version']} is newer than this adapterx reads")
    for key in ("backbone", "composition", "parts"):
        if key not in data:
            raise AdapterFileError(file, f"field {key!r} is missing")
    return data, file.parent


def load_manifest(path: str | Path, backbone: Backbone | str | None = None) -> ComposedModel:
    """Rebuild a composition from its manifest, checking every part's files against the recorded digests
    (and the backbone against the recorded fingerprint) first."""
    data, root = read_manifest(path)
    parts: list[tuple[str, Path]] = []
    for entry in data["parts"]:
        location = Path(entry["path"])
        location = location if location.is_absolute() else root / location
        for filename, digest in entry.get("files", {}).items():
            file = location / filename
            if not file.is_file():
                raise AdapterFileError(file, f"missing (part {entry['name']!r} of the composition in {path})")
            actual = store.file_digest(file)
            if actual != digest:
                raise CompositionError(f"{file}: changed since the composition {path} was saved (digest {actual}, "
                                       f"manifest has {digest}); re-save the composition or restore the file")
        parts.append((entry["name"], location))
    if backbone is None:
        backbone = data["backbone"]["name"]
    if isinstance(backbone, str):
        backbone = load_backbone(backbone)
    if data["backbone"].get("fingerprint") != backbone.fingerprint:
        raise BackboneMismatchError(f"{path}: composed on backbone {data['backbone'].get('name')!r} "
                                    f"({data['backbone'].get('fingerprint')}), but the backbone given is "
                                    f"{backbone.name!r} ({backbone.fingerprint})")
    block = from_dict(data["composition"])
    if not isinstance(block, Block):
        raise AdapterFileError(path, "composition is a bare name, not a block")
    return compose(backbone, parts, block, head=data.get("head"))
