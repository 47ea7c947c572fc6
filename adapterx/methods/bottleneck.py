"""Bottleneck adapters through the adapters library: Pfeiffer (SeqBn, after the FFN) or Houlsby
(DoubleSeqBn, after attention and FFN). Not mergeable: the non-linearity sits between the projections."""

from __future__ import annotations

from dataclasses import dataclass

from adapters import DoubleSeqBnConfig, SeqBnConfig

from adapterx.core.errors import AdapterxError
from adapterx.methods._adapters_family import AdaptersMethod
from adapterx.methods.base import AdapterSpec

_ARCHITECTURES = {"pfeiffer": SeqBnConfig, "houlsby": DoubleSeqBnConfig}


@dataclass(frozen=True)
class BottleneckSpec(AdapterSpec):
    kind = "bottleneck"
    architecture: str = "pfeiffer"
    reduction_factor: int = 16
    non_linearity: str = "relu"

    def validate(self, where: str) -> None:
        if self.architecture not in _ARCHITECTURES:
            raise AdapterxError(f"{where}.architecture: {self.architecture!r} is not one of "
                                f"{', '.join(_ARCHITECTURES)}")
        if not isinstance(self.reduction_factor, int) or self.reduction_factor < 1:
            raise AdapterxError(f"{where}.reduction_factor: must be a positive integer, got {self.reduction_factor!r}")


class BottleneckMethod(AdaptersMethod):
    kind = "bottleneck"
    spec_type = BottleneckSpec
    mergeable = False

    def library_config(self, spec: BottleneckSpec):
        return _ARCHITECTURES[spec.architecture](reduction_factor=spec.reduction_factor,
                                                 non_linearity=spec.non_linearity)
