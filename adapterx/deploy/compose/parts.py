"""The saved adapters a composition is made of (its *parts*): read and checked from their metadata before any
weight is loaded, and the adapters a part must sit on (a target trained on top of others)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from adapterx import store
from adapterx.core.errors import CompositionError
from adapterx.methods import Method, get_method

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


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
    def method(self) -> Method:
        return get_method(self.kind)

    @property
    def family(self) -> str:
        return self.method.family

    @property
    def mergeable(self) -> bool:
        return self.method.mergeable

    @property
    def labels(self) -> list[str]:
        return list(self.metadata.get("labels") or [])

    @property
    def head(self) -> dict | None:
        return self.metadata.get("head")

    def files(self) -> list[Path]:
        """The files this part is made of (checked by digest when a manifest is loaded)."""
        names = [store.METADATA_FILE, get_method(self.metadata["kind"]).weights_file]
        if (self.path / "adapter_config.json").is_file():
            names.append("adapter_config.json")
        if self.head:
            names.append(store.HEAD_FILE)
        return [self.path / n for n in names]


def read_part(name: str, path: str | Path) -> Part:
    """Read and check a saved adapter's metadata and files (errors name the file at fault)."""
    check_name(name)
    path = Path(path).expanduser()
    metadata = store.read_metadata(path)
    method = get_method(metadata["kind"])  # an unknown kind names the known ones
    store.check_weights(path, metadata, method.weights_file)
    if metadata.get("head"):
        store.check_safetensors(path / store.HEAD_FILE)
    method.check_name(name)
    return Part(name, path, metadata)


def check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise CompositionError(f"adapter name {name!r}: use letters, digits, '_' and '-', starting with a letter")


def read_parts(parts: Mapping[str, str | Path] | Sequence[tuple[str, str | Path]]) -> dict[str, Part]:
    items = list(parts.items()) if isinstance(parts, Mapping) else list(parts)
    out: dict[str, Part] = {}
    for name, path in items:
        if name in out:
            raise CompositionError(
                f"adapter name {name!r} is given twice ({out[name].path} and {path}); "
                f"name each part once, e.g. --adapter inter=DIR --adapter target=DIR"
            )
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
            need = {**need, "path": os.path.normpath(part.path / need.get("path", "?"))}  # recorded relative
            if role in ("stacked", "fused") and need.get("weights_digest") not in digests:
                raise CompositionError(
                    f"{part.path}: this adapter was trained on top of {need.get('path')} ({role}); without it the "
                    f"composition computes something else. Add it below: --adapter {need.get('name')}="
                    f"{need.get('path')} before --adapter {part.name}={part.path}"
                )
            if role in ("merged_into_base", "fusion"):
                what = (
                    "a base with that adapter merged into its weights (strategy merge-then-train)"
                    if role == "merged_into_base"
                    else "an AdapterFusion layer (strategy fuse)"
                )
                raise CompositionError(
                    f"{part.path}: this adapter was trained on {what}: {need.get('path')}; compose cannot rebuild "
                    f"that. Evaluate it with `adapterx evaluate --adapter {part.path}` "
                    f"(adapterx.deploy.setup.load_for_inference rebuilds it)"
                )


def kinds_summary(parts: Sequence[Part]) -> str:
    """'lora (mergeable, peft library): 'a' (DIR), 'b' (DIR); bottleneck (not mergeable, ...): ...' -- what each
    part can do."""
    groups: dict[str, list[str]] = {}
    for p in parts:
        label = f"{p.kind} ({'mergeable' if p.mergeable else 'not mergeable'}, {p.family} library)"
        groups.setdefault(label, []).append(f"{p.name!r} ({p.path})")
    return "; ".join(f"{label}: {', '.join(names)}" for label, names in groups.items())
