"""Prompt tuning (Lester et al. 2021) through peft: `num_virtual_tokens` trainable embeddings put in front of
the input embeddings; the encoder itself is untouched. Tu et al. 2022 (arXiv 2210.12360) find that prompts
transfer across languages better than fine-tuning. Not mergeable: a prompt is extra input, not a weight.

The encoder's output is `num_virtual_tokens` positions longer than the input; `encoder_output_offset` tells
`AdaptedModel.encode` to drop them, so heads see (batch, input tokens, hidden) aligned with the attention mask.
The virtual tokens take the first positions (the encoder numbers positions of embeddings in order), so an input
may have at most `usable_positions` - num_virtual_tokens tokens (510 - n on XLM-R, which reserves 2 positions;
512 - n on BERT).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from peft import PromptTuningConfig, PromptTuningInit, TaskType

from adapterx.core.errors import AdapterxError
from adapterx.methods.base import AdapterSpec
from adapterx.methods.peft_base import PromptLearningMethod

if TYPE_CHECKING:
    from adapterx.core.model import AdaptedModel

_INITS = {"random": PromptTuningInit.RANDOM, "vocab": PromptTuningInit.SAMPLE_VOCAB, "text": PromptTuningInit.RANDOM}


@dataclass(frozen=True)
class PromptSpec(AdapterSpec):
    """init: 'random' (soft tokens), 'vocab' (embeddings of random vocabulary tokens) or 'text' (embeddings of
    `init_text`'s tokens, repeated to fill the prompt, as peft does; done here with the backbone's tokenizer, so
    it also works offline and for the built-in backbone)."""

    kind = "prompt"
    num_virtual_tokens: int = 16
    init: str = "random"
    init_text: str = ""

    def validate(self, where: str) -> None:
        if not isinstance(self.num_virtual_tokens, int) or self.num_virtual_tokens < 1:
            raise AdapterxError(
                f"{where}.num_virtual_tokens: must be a positive integer, got {self.num_virtual_tokens!r}"
            )
        if self.init not in _INITS:
            raise AdapterxError(f"{where}.init: {self.init!r} is not one of {', '.join(_INITS)}")
        if (self.init == "text") != bool(self.init_text):
            raise AdapterxError(
                f"{where}.init_text: give a text exactly when init is 'text' (init={self.init!r}, "
                f"init_text={self.init_text!r})"
            )


class PromptMethod(PromptLearningMethod):
    kind = "prompt"
    spec_type = PromptSpec
    examples: ClassVar[tuple[dict, ...]] = ({"num_virtual_tokens": 4},)

    def peft_config(self, spec: PromptSpec) -> PromptTuningConfig:
        return PromptTuningConfig(
            task_type=TaskType.FEATURE_EXTRACTION,
            num_virtual_tokens=spec.num_virtual_tokens,
            prompt_tuning_init=_INITS[spec.init],
        )

    def add(self, model: "AdaptedModel", name: str, spec: PromptSpec) -> None:
        super().add(model, name, spec)
        if spec.init == "text":
            self._init_from_text(model, name, spec)

    def encoder_output_offset(self, model: "AdaptedModel", name: str) -> int:
        return model.adapters[name].spec.num_virtual_tokens

    @staticmethod
    @torch.no_grad()
    def _init_from_text(model: "AdaptedModel", name: str, spec: PromptSpec) -> None:
        tokenizer = model.backbone.tokenizer
        if tokenizer is None:
            raise AdapterxError(f"prompt adapter {name!r}: init 'text' needs a backbone with a tokenizer")
        ids = tokenizer(spec.init_text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise AdapterxError(f"prompt adapter {name!r}: init_text {spec.init_text!r} has no tokens")
        n = spec.num_virtual_tokens
        ids = (ids * (n // len(ids) + 1))[:n]
        embeddings = model.backbone.model.get_input_embeddings()
        table = model.encoder.prompt_encoder[name].embedding.weight
        table.copy_(embeddings(torch.tensor(ids, device=table.device)).to(table.dtype))
