"""Prefix tuning / deep prompts (Li & Liang 2021; P-tuning v2, Liu et al. 2022) through peft: every attention
layer attends to `num_virtual_tokens` trainable key/value pairs in front of the input's own. This is the form
Tu et al. 2022 (arXiv 2210.12360) use for zero-shot cross-lingual transfer with XLM-R (prefix length 32 for
XNLI, 16 for PAWS-X and UDPOS; see recipes/presets/). Not mergeable: a prefix is extra attention context, not a
weight.

peft passes the prefix as a key/value cache (`past_key_values`) into the encoder: the attention mask is
extended by peft with ones for the prefix, the output has one position per input token (no stripping), and the
input's positions start after the prefix, as in P-tuning v2 (so an input may have at most
`usable_positions` - num_virtual_tokens tokens: 510 - n on XLM-R, 512 - n on BERT). `prefix_projection`
reparametrises the prefix by a two-layer MLP during training (P-tuning v2's option); peft saves the projected
prefix, so a saved adapter holds num_virtual_tokens x (2 * layers * hidden) values either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from peft import PrefixTuningConfig, TaskType

from adapterx.core.errors import AdapterxError, CompositionError
from adapterx.methods.base import AdapterSpec
from adapterx.methods.peft_base import PromptLearningMethod

if TYPE_CHECKING:
    from adapterx.core.model import AdaptedModel


@dataclass(frozen=True)
class PrefixSpec(AdapterSpec):
    kind = "prefix"
    num_virtual_tokens: int = 16
    prefix_projection: bool = False
    projection_hidden_size: int = 512  # P-tuning v2's prefix_hidden_size; used only with prefix_projection

    def validate(self, where: str) -> None:
        if not isinstance(self.num_virtual_tokens, int) or self.num_virtual_tokens < 1:
            raise AdapterxError(
                f"{where}.num_virtual_tokens: must be a positive integer, got {self.num_virtual_tokens!r}"
            )
        if not isinstance(self.prefix_projection, bool):
            raise AdapterxError(f"{where}.prefix_projection: must be true or false, got {self.prefix_projection!r}")
        if not isinstance(self.projection_hidden_size, int) or self.projection_hidden_size < 1:
            raise AdapterxError(
                f"{where}.projection_hidden_size: must be a positive integer, got {self.projection_hidden_size!r}"
            )


class PrefixMethod(PromptLearningMethod):
    kind = "prefix"
    spec_type = PrefixSpec
    examples: ClassVar[tuple[dict, ...]] = ({"num_virtual_tokens": 4},)

    def peft_config(self, spec: PrefixSpec) -> PrefixTuningConfig:
        return PrefixTuningConfig(
            task_type=TaskType.FEATURE_EXTRACTION,
            num_virtual_tokens=spec.num_virtual_tokens,
            prefix_projection=spec.prefix_projection,
            encoder_hidden_size=spec.projection_hidden_size,
        )

    def copy_weights(self, model: "AdaptedModel", source: str, target: str) -> None:
        try:
            super().copy_weights(model, source, target)
        except CompositionError as exc:
            if model.adapters[target].spec.prefix_projection:
                raise CompositionError(
                    f"prefix adapter {target!r} cannot start from {source!r}: a saved prefix holds the projected "
                    f"prefix only (peft folds the projection MLP into it), so training on from it needs "
                    f"prefix_projection: false"
                ) from exc
            raise
