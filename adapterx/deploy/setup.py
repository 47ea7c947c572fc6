"""A trained setup rebuilt for inference from what its adapterx.json records: the adapters a target sits on
(stacked beneath it, fused with their fusion layer) and a base with an intermediate LoRA merged into it.

What a target rests on is recorded in its ``requires`` entries, each with a ``role``: "stacked",
"merged_into_base", "fused" or "fusion" (written by `adapterx.training.strategies`).
"""

from __future__ import annotations

from pathlib import Path

from adapterx import store
from adapterx.core.backbone import Backbone, fingerprint_tensors, freeze
from adapterx.core.errors import AdapterFileError, BackboneMismatchError, CompositionError
from adapterx.core.model import AdaptedModel
from adapterx.deploy.plain import merge_into_base
from adapterx.methods import get_method

TARGET = "target"
INTERMEDIATE = "intermediate"
FUSION_DIR = "fusion"  # sub-folder of a 'fuse' target's directory holding the fusion layer

# roles of the parts a target adapter requires (adapterx.json "requires"[i]["role"])
STACKED, MERGED, FUSED, FUSION = "stacked", "merged_into_base", "fused", "fusion"


def merged_backbone(backbone: Backbone, intermediate: Path | str, *, expected_digest: str | None = None) -> Backbone:
    """A new Backbone whose plain encoder (no adapter library) holds `backbone`'s weights with the LoRA adapter
    saved in `intermediate` folded in, named ``<name>+merged(<intermediate weights digest>)``, with its own
    fingerprint. Consumes `backbone` (pass a fresh copy). The merge is done on the CPU in float32 so that the
    fingerprint is the same wherever it is rebuilt; the merged model is then moved back to the backbone's device."""
    intermediate = Path(intermediate)
    metadata = store.read_metadata(intermediate)
    method = get_method(metadata["kind"])
    if not method.mergeable:
        raise CompositionError(
            f"{intermediate}: a {metadata['kind']} adapter cannot be folded into the base weights "
            f"({method.not_mergeable_reason or 'it is not a weight change'})"
        )
    digest = metadata.get("weights_digest")
    if expected_digest is not None and digest != expected_digest:
        raise CompositionError(
            f"the intermediate adapter {intermediate} now holds weights {digest}, but the target "
            f"was trained on a base with weights {expected_digest} merged in"
        )
    device = next(backbone.model.parameters()).device
    backbone.model.to("cpu")
    model = AdaptedModel(backbone)
    store.load_adapter(model, intermediate, name=INTERMEDIATE, with_head=False)
    plain = merge_into_base(model, [INTERMEDIATE])
    freeze(plain)
    plain.eval()
    tensors = dict(plain.named_parameters())
    fingerprint = fingerprint_tensors(tensors)
    plain.to(device)
    return Backbone(
        plain,
        backbone.tokenizer,
        f"{backbone.name}+merged({digest})",
        backbone.pretrained,
        f"{backbone.description}; LoRA adapter {intermediate} ({digest}) merged into the weights",
        fingerprint,
        dict(plain.named_parameters()),
    )


def fuse_setup(stacked: list[str], fused: list[str], top: str):
    return ("stack", [*stacked, ("fuse", list(fused), {}), top], {})


def _load_checked(model: AdaptedModel, part: dict, path: Path, adapter_dir: Path) -> None:
    record = store.load_adapter(model, path, name=part["name"], with_head=False)
    if record.metadata.get("weights_digest") != part.get("weights_digest"):
        raise CompositionError(
            f"{adapter_dir}: it was trained on top of {path} with weights "
            f"{part.get('weights_digest')}, but that file now holds "
            f"{record.metadata.get('weights_digest')}"
        )


def required_parts(metadata: dict, adapter_dir: Path) -> dict[str, list[tuple[dict, Path]]]:
    """{role: [(requires entry, its directory)]} of what the adapter saved in `adapter_dir` rests on (a relative
    path is resolved against `adapter_dir`); a role this adapterx does not know is an error."""
    parts: dict[str, list[tuple[dict, Path]]] = {STACKED: [], MERGED: [], FUSED: [], FUSION: []}
    for part in metadata.get("requires", []):
        role = part.get("role", STACKED)
        if role not in parts:
            raise AdapterFileError(
                adapter_dir / store.METADATA_FILE,
                f"requires an adapter in role {role!r}, which "
                f"this adapterx does not know ({', '.join(parts)}); upgrade adapterx",
            )
        path = Path(part["path"])
        parts[role].append((part, path if path.is_absolute() else (adapter_dir / path).resolve()))
    return parts


def load_for_inference(backbone: Backbone, adapter_dir: Path, name: str = TARGET) -> AdaptedModel:
    """A model with the saved adapter, everything it rests on, and its head (if it has one) active: adapters
    stacked beneath it, a merged base rebuilt from `backbone` (the original, unmerged one; its fingerprint is
    checked against the one the target was trained on), fused adapters and their fusion layer. Consumes
    `backbone`."""
    adapter_dir = Path(adapter_dir)
    metadata = store.read_metadata(adapter_dir)
    parts = required_parts(metadata, adapter_dir)
    for part, path in parts[MERGED]:
        backbone = merged_backbone(backbone, path, expected_digest=part.get("weights_digest"))
    if parts[MERGED]:
        trained_on = metadata["base_model"].get("fingerprint")
        if backbone.fingerprint != trained_on:
            raise BackboneMismatchError(
                f"{adapter_dir}: rebuilding its merged base ({backbone.name}) gave weights with fingerprint "
                f"{backbone.fingerprint}, but the adapter was trained on a merged base with fingerprint {trained_on}; "
                f"load the original backbone it was trained from "
                f"({parts[MERGED][0][0].get('base_model', {}).get('name')!r}) with the same intermediate adapter"
            )

    model = AdaptedModel(backbone)
    for part, path in parts[STACKED] + parts[FUSED]:
        _load_checked(model, part, path, adapter_dir)
    fused: list[str] = []
    method = get_method(metadata["kind"])
    for part, path in parts[FUSION]:
        if not method.fusable:
            raise CompositionError(f"{adapter_dir}: a {metadata['kind']} adapter cannot sit on a fusion layer")
        weights = path / method.fusion_weights_file
        store.check_safetensors(weights)
        if store.file_digest(weights) != part.get("weights_digest"):
            raise CompositionError(
                f"{adapter_dir}: its fusion layer {weights} holds other weights than it was "
                f"saved with ({part.get('weights_digest')})"
            )
        try:
            fused = method.load_fusion(model, path)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise AdapterFileError(path, f"cannot be loaded as an AdapterFusion layer: {exc}") from exc
        if fused != part.get("fuses"):
            raise AdapterFileError(path, f"fuses {fused}, but {adapter_dir} records {part.get('fuses')}")
    store.load_adapter(model, adapter_dir, name=name)
    stacked = [part["name"] for part, _ in parts[STACKED]]
    if fused:
        store.activate_setup(model, fuse_setup(stacked, fused, name))
    else:
        store.activate(model, [*stacked, name])
    if name in model.heads:  # an adapter saved without a head (an encoder for retrieval) leaves none active
        model.set_head(name)
    model.eval()
    return model
