"""The files of a saved adapter: names, provenance (library versions, digests) and checks of what is on disk.

It reads metadata and never attaches weights, so compose, merge and the study can inspect saved adapters
without loading a model.
"""

from __future__ import annotations

import hashlib
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from safetensors import SafetensorError, safe_open

from adapterx.core.errors import AdapterFileError, BackboneMismatchError
from adapterx.core.io import read_json_file

METADATA_FILE = "adapterx.json"
HEAD_FILE = "head.safetensors"
# weights formats that unpickle on load (arbitrary code): never read, and refused beside an adapter's files so
# that no library can fall back to them
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
FORMAT_VERSION = 1
_LIBRARIES = ("adapterx", "torch", "transformers", "peft", "adapters", "datasets", "safetensors", "accelerate")


def library_versions() -> dict[str, str]:
    """Versions of the libraries an artifact was made with, read from package metadata (nothing is imported)."""
    out = {}
    for name in _LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    out["python"] = platform.python_version()
    return out


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()[:32]


def read_metadata(directory: str | Path) -> dict:
    """The adapterx.json of a saved adapter, checked for presence and form."""
    directory = Path(directory)
    if not directory.is_dir():
        raise AdapterFileError(directory, "no such adapter directory")
    path = directory / METADATA_FILE
    if not path.is_file():
        raise AdapterFileError(path, "missing: not an adapterx adapter directory (expected adapterx.json)")
    metadata = read_json_file(path)
    for key in ("kind", "spec", "weights_file", "base_model"):
        if key not in metadata:
            raise AdapterFileError(path, f"field {key!r} is missing")
    if metadata.get("format_version", 0) > FORMAT_VERSION:
        raise AdapterFileError(
            path,
            f"format_version {metadata['format_version']} is newer than this adapterx "
            f"reads ({FORMAT_VERSION}); upgrade adapterx",
        )
    return metadata


def check_safetensors(path: Path) -> None:
    """Fail with the file's name if it is missing or not a readable safetensors file."""
    if not path.is_file():
        raise AdapterFileError(path, "missing weights file")
    try:
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                f.get_slice(key)
    except (SafetensorError, OSError, ValueError) as exc:
        raise AdapterFileError(path, f"corrupt safetensors file: {exc}") from exc


def check_backbone(model, metadata: dict, directory: Path) -> None:
    base = metadata["base_model"]
    if base.get("fingerprint") != model.backbone.fingerprint:
        raise BackboneMismatchError(
            f"{directory}: adapter was trained on backbone {base.get('name')!r} (fingerprint "
            f"{base.get('fingerprint')}), but is being loaded onto {model.backbone.name!r} (fingerprint "
            f"{model.backbone.fingerprint}); load the backbone it was trained on"
        )


def check_weights(directory: Path, metadata: dict, weights_file: str) -> Path:
    """The adapter's weights file, by the name its kind fixes (`weights_file`), after checking that
    adapterx.json names that same file, that no pickle lies beside it, that it is a readable safetensors file
    and that it holds the weights adapterx.json records (``weights_digest``): a file swapped in from another
    adapter would otherwise load silently."""
    directory = Path(directory)
    meta_path = directory / METADATA_FILE
    if metadata.get("weights_file") != weights_file:
        raise AdapterFileError(
            meta_path,
            f"field 'weights_file' is {metadata.get('weights_file')!r}, but a "
            f"{metadata.get('kind')} adapter's weights are {weights_file!r}; adapterx "
            f"reads only that file",
        )
    pickles = sorted(p.name for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise AdapterFileError(
            directory / pickles[0],
            "a pickle weights file (loading it could run code); adapterx "
            "reads safetensors only and refuses an adapter directory "
            "holding one: delete it",
        )
    weights = directory / weights_file
    check_safetensors(weights)
    _check_digest(weights, metadata.get("weights_digest"), "weights_digest", meta_path)
    if metadata.get("head_digest") and (directory / HEAD_FILE).is_file():
        _check_digest(directory / HEAD_FILE, metadata["head_digest"], "head_digest", meta_path)
    return weights


def _check_digest(path: Path, recorded: str | None, field: str, meta_path: Path) -> None:
    if not recorded:
        raise AdapterFileError(meta_path, f"field {field!r} is missing: the weights cannot be checked")
    actual = file_digest(path)
    if actual != recorded:
        raise AdapterFileError(
            path,
            f"holds other weights ({actual}) than {meta_path.name} records "
            f"({field} {recorded}): replaced or changed since it was saved",
        )


def check_fits_task(metadata: dict, directory: Path, task) -> None:
    """The adapter's head computes what `task` scores (same head kind, same labels in the same order); a task
    scored on the encoder alone (retrieval) takes any adapter. `task`: an adapterx.tasks Task."""
    if task.head == "retrieval":
        return
    where = Path(directory) / METADATA_FILE
    head = metadata.get("head")
    if not head:
        raise AdapterFileError(where, f"this adapter has no task head, but task {task.name!r} needs a {task.head} head")
    if head.get("kind") != task.head:
        raise AdapterFileError(
            where,
            f"this adapter's head is {head.get('kind')!r} (trained on "
            f"{metadata.get('task')!r}), but task {task.name!r} needs a {task.head} head",
        )
    labels = list(metadata.get("labels") or [])
    if task.labels and labels and labels != list(task.labels):
        raise AdapterFileError(
            where,
            f"this adapter's head predicts labels {labels} (task {metadata.get('task')!r}), "
            f"but task {task.name!r} has labels {list(task.labels)}",
        )
    if task.labels and head.get("num_labels") != len(task.labels):
        raise AdapterFileError(
            where,
            f"this adapter's head has {head.get('num_labels')} outputs, but task "
            f"{task.name!r} has {len(task.labels)} labels",
        )
