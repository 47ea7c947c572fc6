"""Saved adapters on disk: attach / activate / save / load (`adapter`), and the files' names, provenance and
checks (`files`).

Owns the adapter directory format (adapterx.json + the kind's own weights file + head.safetensors). May import
`adapterx.core` and `adapterx.methods` (through their public functions only); never peft or the adapters
library directly: each kind saves and loads its own files.
"""

from adapterx.store.adapter import activate, activate_setup, add_adapter, load_adapter, load_head, save_adapter
from adapterx.store.files import (
    FORMAT_VERSION,
    HEAD_FILE,
    METADATA_FILE,
    check_backbone,
    check_fits_task,
    check_safetensors,
    check_weights,
    file_digest,
    library_versions,
    read_metadata,
)

__all__ = [
    "FORMAT_VERSION",
    "HEAD_FILE",
    "METADATA_FILE",
    "activate",
    "activate_setup",
    "add_adapter",
    "check_backbone",
    "check_fits_task",
    "check_safetensors",
    "check_weights",
    "file_digest",
    "library_versions",
    "load_adapter",
    "load_head",
    "read_metadata",
    "save_adapter",
]
