"""The adapter-method interface. A kind = a spec dataclass + a `Method` that wires it into the model.

Kinds are grouped by the library that implements them (their *family*): kinds of one family can be active
together in one model; the family owns activation, saving and loading, the kind owns its config.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from adapterx.core.errors import AdapterxError

if TYPE_CHECKING:
    from adapterx.core.model import AdaptedModel


@dataclass(frozen=True)
class AdapterSpec:
    """Base of every kind's spec. Subclasses add their own fields (with defaults)."""

    kind: ClassVar[str] = ""

    def to_json(self) -> dict:
        return {"kind": self.kind, **dataclasses.asdict(self)}

    @classmethod
    def from_options(cls, options: dict, where: str = "adapter") -> "AdapterSpec":
        """Build from a mapping, rejecting unknown fields by name (e.g. a typo in a recipe)."""
        names = {f.name for f in dataclasses.fields(cls)}
        extra = sorted(set(options) - names)
        if extra:
            raise AdapterxError(f"{where}: unknown field(s) {extra} for adapter kind {cls.kind!r}; "
                                f"fields: {', '.join(sorted(names))}")
        try:
            spec = cls(**options)
        except TypeError as exc:
            raise AdapterxError(f"{where}: {exc}") from exc
        spec.validate(where)
        return spec

    def validate(self, where: str) -> None:
        """Check value ranges; raise AdapterxError naming `where` and the field."""


class Method:
    """How one adapter kind is attached, saved, loaded, activated and (maybe) merged."""

    kind: ClassVar[str]
    family: ClassVar[str]
    spec_type: ClassVar[type[AdapterSpec]]
    mergeable: ClassVar[bool] = False
    # Why merge refuses this kind, in the user's words (a kind with mergeable = False sets it in its own file;
    # adapterx.deploy.merge.check_mergeable shows it)
    not_mergeable_reason: ClassVar[str] = ""
    # Whether an adapter of this kind can be active together with others (a stack: transfer strategy 'stack',
    # compose). False for kinds their library runs one at a time; activation then raises CompositionError, and
    # recipe checks can refuse strategy 'stack' before any training.
    stackable: ClassVar[bool] = True
    weights_file: ClassVar[str]

    def encoder_output_offset(self, model: "AdaptedModel", name: str) -> int:
        """How many positions adapter `name`, while active, puts in front of the encoder's output sequence
        (e.g. the virtual tokens of prompt tuning). `AdaptedModel.encode` drops them, so heads always see one
        position per input token, aligned with the attention mask. Most kinds add none."""
        return 0

    def add(self, model: "AdaptedModel", name: str, spec: AdapterSpec) -> None:
        """Attach a new, freshly initialised adapter named `name`."""
        raise NotImplementedError

    def save(self, model: "AdaptedModel", name: str, directory: Path) -> None:
        """Write the adapter in its library's own format into `directory` (which exists and is empty)."""
        raise NotImplementedError

    def load(self, model: "AdaptedModel", name: str, directory: Path) -> None:
        """Attach the adapter saved in `directory` under `name` (files were checked to exist)."""
        raise NotImplementedError

    def activate(self, model: "AdaptedModel", names: list[str], trainable: str | None) -> None:
        """Make `names` active, bottom first (a stack), and only `trainable` (if any) trainable."""
        raise NotImplementedError

    def copy_weights(self, model: "AdaptedModel", source: str, target: str) -> None:
        """Initialise adapter `target` with the weights of `source` (same spec): transfer strategy 'continue'."""
        raise NotImplementedError

    def delete(self, model: "AdaptedModel", name: str) -> None:
        raise NotImplementedError

    def adapter_state(self, model: "AdaptedModel", name: str) -> dict:
        """The adapter's own tensors by name (for checkpoints, equality checks, fingerprints)."""
        raise NotImplementedError

    def load_adapter_state(self, model: "AdaptedModel", name: str, state: dict) -> None:
        raise NotImplementedError
