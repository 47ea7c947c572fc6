"""Checks of a composition against its parts' saved metadata, before any weight is loaded: the shape of the
block tree, kinds that can share one model (`Method.shares_model_with`) and one backbone, what each kind can take part in (asked of its Method), and
which part's head reads the result. Every error says what is wrong and what would work."""

from __future__ import annotations

import math
from collections.abc import Mapping

from adapterx import store
from adapterx.core.errors import AdapterFileError, BackboneMismatchError, CompositionError, unknown
from adapterx.deploy.compose.blocks import (
    ALLOWED_CHILDREN,
    BLOCKS,
    WEIGHTED_METHODS,
    Block,
    Mixed,
    Stack,
    Sum,
    Weighted,
    weighted_blocks,
)
from adapterx.deploy.compose.parts import Part, check_name, kinds_summary
from adapterx.methods import get_method, kinds


def validate(block: Block, parts: Mapping[str, Part] | None = None, *, head: str | None = None) -> None:
    """Check the shape of `block` and, given the parts' metadata, that it can be built. Raises
    CompositionError (or UnknownNameError) saying what is wrong and what would work."""
    _validate_shape(block)
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
    methods = {p.kind: get_method(p.kind) for p in used}
    clash = next((why for a in methods.values() for b in methods.values() if (why := a.shares_model_with(b))), "")
    if clash:
        mergeable = " and ".join(get_method(k).name for k in kinds() if get_method(k).mergeable)
        raise CompositionError(
            f"{block}: these adapters cannot be composed in one model: {clash}. Parts: {kinds_summary(used)}. "
            f"Compose adapters of one kind; {mergeable} parts can be merged into the base weights one kind at a time"
        )
    bases = {(p.metadata["base_model"].get("fingerprint"), p.metadata["base_model"].get("name")) for p in used}
    if len(bases) > 1:
        listing = "; ".join(
            f"{p.path}: {p.metadata['base_model'].get('name')!r} {p.metadata['base_model'].get('fingerprint')}"
            for p in used
        )
        raise BackboneMismatchError(
            f"{block}: adapters were trained on different backbones ({listing}); "
            f"compose adapters trained on one backbone"
        )
    for b in [block, *(w for w in weighted_blocks(block) if w is not block)]:
        _check_kinds(b, parts)
    for w in weighted_blocks(block):
        _check_labels(w, parts)
    if head is not None:
        head_part(block, parts, head)


def _validate_shape(block: Block) -> None:
    if not isinstance(block, Block) or type(block) not in ALLOWED_CHILDREN:
        raise CompositionError(f"not a composition block: {block!r}; blocks: {', '.join(BLOCKS)}")
    if not block.children:
        raise CompositionError(f"{block}: names no adapters")
    allowed = ALLOWED_CHILDREN[type(block)]
    for child in block.children:
        if not isinstance(child, allowed):
            kinds_ = ", ".join("adapter names" if t is str else t.kind for t in allowed)
            raise CompositionError(f"{block}: cannot hold {child}; a {block.kind} holds {kinds_}")
        if isinstance(child, Block):
            _validate_shape(child)
        else:
            check_name(child)
    if isinstance(block, Weighted):
        _validate_weights(block)


def _validate_weights(block: Weighted) -> None:
    if block.method not in WEIGHTED_METHODS:
        raise unknown("weighted method", block.method, WEIGHTED_METHODS)
    if len(block.weights) != len(block.children):
        raise CompositionError(
            f"{block}: {len(block.weights)} weights for {len(block.children)} adapters; "
            f"give one weight per adapter, e.g. --weights "
            f"{','.join(['0.5'] * len(block.children))}"
        )
    if not all(math.isfinite(w) for w in block.weights):
        raise CompositionError(f"{block}: weights must be finite numbers")
    needs = WEIGHTED_METHODS[block.method].needs_density
    if needs and not (block.density is not None and 0.0 < float(block.density) <= 1.0):
        raise CompositionError(
            f"{block}: method {block.method!r} needs a density in (0, 1] (the share of "
            f"each delta kept), e.g. --density 0.5"
        )
    if not needs and block.density is not None:
        raise CompositionError(f"{block}: method {block.method!r} takes no density")


def _check_kinds(block: Block, parts: Mapping[str, Part]) -> None:
    """Ask each kind in `block` whether its adapters can be combined so (`Method.composition_problem`)."""
    by_kind: dict[str, list[Part]] = {}
    for n in block.names():
        by_kind.setdefault(parts[n].kind, []).append(parts[n])
    for kind, group in by_kind.items():
        method = get_method(kind)
        problem = method.composition_problem(block.kind, {p.name: p.metadata["spec"] for p in group}, block.options())
        if problem:
            raise CompositionError(f"{block}: {problem}. Parts: {kinds_summary(group)}")
        if isinstance(block, (Stack, Sum)) and len(block.children) > 1 and not method.stackable:
            raise CompositionError(
                f"{block}: {kind} adapters run alone, never beside another adapter; compose one "
                f"of them at a time. Parts: {kinds_summary(group)}"
            )


def _check_labels(block: Weighted, parts: Mapping[str, Part]) -> None:
    with_heads = [parts[n] for n in block.names() if parts[n].head]
    label_sets = {(p.head.get("kind"), p.head.get("num_labels"), tuple(p.labels)) for p in with_heads}
    if len(label_sets) > 1:
        listing = "; ".join(
            f"{p.name!r} ({p.path / store.METADATA_FILE}): {p.head.get('kind')} head, labels "
            f"{p.labels or p.head.get('num_labels')}"
            for p in with_heads
        )
        raise CompositionError(
            f"{block}: a weighted merge gives one adapter, read by one head, but these adapters' heads have "
            f"different label sets: {listing}. Merge adapters of one task, or compose them as a stack (the last "
            f"adapter's head is used)"
        )


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
            raise AdapterFileError(
                parts[head].path / store.METADATA_FILE,
                f"adapter {head!r} was saved without a head; pick another part's head",
            )
        return head
    return names[-1] if parts[names[-1]].head else None
