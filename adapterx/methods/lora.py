"""LoRA (Hu et al. 2021) through peft: a low-rank update B·A beside chosen linear layers; mergeable."""

from __future__ import annotations

from dataclasses import dataclass

from peft import LoraConfig

from adapterx.core.errors import AdapterxError
from adapterx.methods._peft_family import PeftMethod
from adapterx.methods.base import AdapterSpec


@dataclass(frozen=True)
class LoraSpec(AdapterSpec):
    kind = "lora"
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("query", "value")

    def __post_init__(self):
        object.__setattr__(self, "target_modules", tuple(self.target_modules))

    def validate(self, where: str) -> None:
        if not isinstance(self.r, int) or self.r < 1:
            raise AdapterxError(f"{where}.r: rank must be a positive integer, got {self.r!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise AdapterxError(f"{where}.dropout: must be in [0, 1), got {self.dropout!r}")
        if not self.target_modules:
            raise AdapterxError(f"{where}.target_modules: name at least one module, e.g. [query, value]")


class LoraMethod(PeftMethod):
    kind = "lora"
    spec_type = LoraSpec
    mergeable = True

    def peft_config(self, spec: LoraSpec) -> LoraConfig:
        return LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                          target_modules=list(spec.target_modules), bias="none")
