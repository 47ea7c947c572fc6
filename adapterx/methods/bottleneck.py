"""Bottleneck adapters through the adapters library: Pfeiffer (SeqBn, after the FFN) or Houlsby
(DoubleSeqBn, after attention and FFN). Not mergeable: the non-linearity sits between the projections.
Composable as the library allows (adapterx.methods._adapters_family): stacked, averaged (weights summing to 1),
fused, and one adapter per row of a batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping

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
    not_mergeable_reason: ClassVar[str] = (
        "a bottleneck adapter computes up(f(down(h))) with a non-linearity f between its projections, so no change "
        "of a linear weight equals it")
    bench_builders: ClassVar[tuple[str, ...]] = ("adapterx.bench.bottleneck_forms",)

    def composition_problem(self, block: str, specs: Mapping[str, dict], options: Mapping) -> str:
        if block == "sum":
            return ("'sum' adds LoRA weight deltas; a bottleneck adapter is a small network, not a weight delta. Use "
                    "'stack' (the adapters library's Stack) or 'weighted' (its Average of the adapters' outputs)")
        problem = super().composition_problem(block, specs, options)
        if problem or block != "weighted":
            return problem
        weights = list(options["weights"])
        if abs(sum(weights) - 1.0) > 1e-6:
            return (f"a weighted average of bottleneck adapters needs weights that sum to 1 (each adapter's output "
                    f"carries the layer's residual); got {weights} (sum {sum(weights):g})")
        return ""

    def bench_options(self, spec: BottleneckSpec) -> dict:
        return {"reduction_factor": spec.reduction_factor}

    def library_config(self, spec: BottleneckSpec):
        return _ARCHITECTURES[spec.architecture](reduction_factor=spec.reduction_factor,
                                                 non_linearity=spec.non_linearity)
