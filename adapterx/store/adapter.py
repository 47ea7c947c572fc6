"""Save and load adapters with their head and provenance; safetensors only; atomic directory writes.

An adapter directory holds the library's own files (peft: adapter_config.json + adapter_model.safetensors,
loadable by plain ``PeftModel.from_pretrained``; adapters: adapter_config.json + adapter.safetensors), the
task head (head.safetensors) and ``adapterx.json``: kind and spec, task, labels, languages, head spec, base
model name and weight fingerprint, metrics, library versions, and the adapters it must sit on (a stack).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

from safetensors.torch import load_file, save_file

from adapterx.core.errors import AdapterFileError, CompositionError, unknown
from adapterx.core.heads import HeadSpec
from adapterx.core.io import atomic_directory, atomic_write_json
from adapterx.core.model import AdaptedModel, AdapterRecord
from adapterx.methods import AdapterSpec, Method, get_method, spec_from_json
from adapterx.methods.base import setup_names
from adapterx.store.files import (
    FORMAT_VERSION,
    HEAD_FILE,
    METADATA_FILE,
    check_backbone,
    check_safetensors,
    check_weights,
    file_digest,
    library_versions,
    read_metadata,
)


# ------------------------------------------------------------------------------------------------ attach
def add_adapter(model: AdaptedModel, name: str, spec: AdapterSpec) -> AdapterRecord:
    """Attach a new trainable adapter of `spec`'s kind under `name`."""
    if name in model.adapters:
        raise AdapterFileError(name, "an adapter of this name is already attached")
    get_method(spec.kind).add(model, name, spec)
    record = AdapterRecord(name=name, kind=spec.kind, spec=spec, method=get_method(spec.kind))
    model.adapters[name] = record
    return record


def activate(model: AdaptedModel, names: list[str], trainable: str | None = None) -> None:
    """Activate `names` (bottom first) and make only `trainable` trainable; heads stay as they are."""
    method = _one_family(model, names)
    method.activate(model, names, trainable)
    model.active_adapters = list(names)


def activate_setup(model: AdaptedModel, setup, trainable: Sequence[str] = ()) -> list[str]:
    """Activate a composition setup: an adapter name or nested ``(block, [children], {options})`` tuples (see
    `adapterx.methods.base`), realised by the adapters' kind (e.g. a LoRA weighted merge becomes one new adapter,
    a bottleneck one an average of outputs). Only `trainable` (adapters or fusion layers) train; none: inference.
    Returns the adapters now active, bottom first, as the model records them."""
    method = _one_family(model, setup_names(setup))
    active = method.activate_setup(model, setup, tuple(trainable))
    model.active_adapters = list(active)
    return list(active)


def _one_family(model: AdaptedModel, names: Sequence[str]) -> Method:
    for n in names:
        if n not in model.adapters:
            raise unknown("adapter", n, model.adapters)
    if not names:
        raise CompositionError("no adapters to activate")
    methods = [model.adapters[n].method for n in names]
    if any(m.family != methods[0].family for m in methods):
        raise CompositionError(f"adapters {list(names)} come from different libraries and cannot be active together")
    return methods[0]


# ------------------------------------------------------------------------------------------------ save
def save_adapter(
    model: AdaptedModel,
    name: str,
    directory: str | Path,
    *,
    task: str | None = None,
    labels: list[str] | tuple[str, ...] = (),
    languages: list[str] | tuple[str, ...] = (),
    head: str | None = None,
    metrics: dict | None = None,
    training: dict | None = None,
    requires: list[dict] | None = None,
    save_extra: Callable[[Path], list[dict]] | None = None,
) -> Path:
    """Write adapter `name` (and head `head`, if given) to `directory`, atomically.

    `save_extra`, if given, is called with the (temporary) directory to write further parts trained with the
    adapter (e.g. an AdapterFusion layer, transfer strategy 'fuse') and returns their ``requires`` entries, paths
    relative to the directory; they are written in the same atomic step."""
    directory = Path(directory)
    record = model.adapters[name]
    method = get_method(record.kind)
    head_spec = None
    requires = [relative_requirement(r, directory) for r in requires or []]
    with atomic_directory(directory) as tmp:
        method.save(model, name, tmp)
        if save_extra is not None:
            requires += save_extra(tmp)
        if head is not None:
            head_module = model.heads[head]
            save_file(
                {k: v.detach().contiguous().cpu() for k, v in head_module.state_dict().items()}, str(tmp / HEAD_FILE)
            )
            head_spec = head_module.spec.to_json()
        metadata = {
            "format_version": FORMAT_VERSION,
            "name": name,
            "kind": record.kind,
            "spec": record.spec.to_json(),
            "weights_file": method.weights_file,
            "weights_digest": file_digest(tmp / method.weights_file),
            "head_digest": file_digest(tmp / HEAD_FILE) if head is not None else None,
            "task": task,
            "labels": list(labels),
            "languages": list(languages),
            "head": head_spec,
            "base_model": {
                "name": model.backbone.name,
                "fingerprint": model.backbone.fingerprint,
                "pretrained": model.backbone.pretrained,
            },
            "requires": requires,
            "metrics": metrics or {},
            "training": training or {},
            "library_versions": library_versions(),
            "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        atomic_write_json(tmp / METADATA_FILE, metadata)
    record.metadata = metadata
    return directory


def relative_requirement(requirement: dict, directory: Path) -> dict:
    """A ``requires`` entry whose path is relative to the adapter's own directory: the artifacts can then be
    moved or copied as a whole (the loader resolves it against the directory it finds the adapter in)."""
    path = requirement.get("path")
    if path is None or not Path(path).is_absolute():
        return dict(requirement)
    return {**requirement, "path": Path(os.path.relpath(path, Path(directory).resolve())).as_posix()}


def load_adapter(
    model: AdaptedModel,
    directory: str | Path,
    *,
    name: str | None = None,
    with_head: bool = True,
    head_name: str | None = None,
) -> AdapterRecord:
    """Attach the adapter saved in `directory` (and its head) after checking files and backbone."""
    directory = Path(directory)
    metadata = read_metadata(directory)
    check_backbone(model, metadata, directory)
    spec = spec_from_json(metadata["spec"])
    check_weights(directory, metadata, get_method(spec.kind).weights_file)
    name = name or metadata.get("name") or directory.name
    if name in model.adapters:
        raise AdapterFileError(directory, f"an adapter named {name!r} is already attached; pass another name")
    method = get_method(spec.kind)
    try:
        method.load(model, name, directory)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise AdapterFileError(directory, f"cannot be loaded as a {spec.kind} adapter: {exc}") from exc
    record = AdapterRecord(name=name, kind=spec.kind, spec=spec, method=method, metadata=metadata)
    model.adapters[name] = record
    if with_head and metadata.get("head"):
        load_head(model, directory, metadata, head_name or name)
    return record


def load_head(model: AdaptedModel, directory: Path, metadata: dict, head_name: str) -> None:
    path = directory / HEAD_FILE
    check_safetensors(path)
    head = model.add_head(head_name, HeadSpec.from_json(metadata["head"]))
    state = load_file(str(path), device=str(model.device))
    try:
        head.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise AdapterFileError(path, f"head weights do not fit head {metadata['head']}: {exc}") from exc
