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
        raise AdapterFileError(path, f"format_version {metadata['format_version']} is newer than this adapterx "
                                     f"reads ({FORMAT_VERSION}); upgrade adapterx")
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
            f"{model.backbone.fingerprint}); load the backbone it was trained on")

