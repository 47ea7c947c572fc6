"""Build a composition: load the frozen base once, attach the parts, and let their kind realise the blocks
(`adapterx.store.activate_setup`); and rebuild one from its manifest."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from adapterx import store
from adapterx.core.backbone import Backbone, load_backbone
from adapterx.core.errors import AdapterFileError, BackboneMismatchError, CompositionError
from adapterx.core.model import AdaptedModel
from adapterx.deploy.compose.blocks import Block, Mixed, from_dict, from_mode
from adapterx.deploy.compose.manifest import checked_parts, read_manifest
from adapterx.deploy.compose.parts import read_parts
from adapterx.deploy.compose.runtime import ComposedModel
from adapterx.deploy.compose.validate import head_part, validate


def compose(
    backbone: Backbone | str,
    parts: Mapping[str, str | Path] | Sequence[tuple[str, str | Path]],
    composition: Block | str = "stack",
    *,
    weights: Sequence[float] | None = None,
    density: float | None = None,
    head: str | None = None,
) -> ComposedModel:
    """Load the frozen base once and attach the saved adapters `parts` ({name: directory}, bottom first),
    combined as `composition` (a Block, or a mode name of `MODES` over all parts in order)."""
    read = read_parts(parts)
    block = (
        composition
        if isinstance(composition, Block)
        else from_mode(composition, list(read), weights=weights, density=density)
    )
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
        store.load_adapter(
            model, part.path, name=part.name, with_head=bool(part.head) and (mixed or part.name == head_name)
        )
    # a mixed batch names its adapters row by row at each call; everything else is activated once
    active = [] if mixed else store.activate_setup(model, block.to_setup())
    if head_name is not None:
        model.set_head(head_name)
    model.eval()
    return ComposedModel(model, block, read, head_name, active)


def load_manifest(path: str | Path, backbone: Backbone | str | None = None) -> ComposedModel:
    """Rebuild a composition from its manifest, checking every part's files against the recorded digests
    (and the backbone against the recorded fingerprint) first."""
    data, root = read_manifest(path)
    parts = checked_parts(data, root, path)
    if backbone is None:
        backbone = data["backbone"]["name"]
    if isinstance(backbone, str):
        backbone = load_backbone(backbone)
    if data["backbone"].get("fingerprint") != backbone.fingerprint:
        raise BackboneMismatchError(
            f"{path}: composed on backbone {data['backbone'].get('name')!r} "
            f"({data['backbone'].get('fingerprint')}), but the backbone given is "
            f"{backbone.name!r} ({backbone.fingerprint})"
        )
    block = from_dict(data["composition"])
    if not isinstance(block, Block):
        raise AdapterFileError(path, "composition is a bare name, not a block")
    return compose(backbone, parts, block, head=data.get("head"))
