"""A backbone's shape without its weights: how many input positions it has and which linear modules it holds.

`adapterx run --dry-run` checks a recipe against this (LoRA target modules that exist, prompt lengths and
bench sequence lengths that fit the positions) without loading any weights: the built-in and random backbones
are described by their configs, a hub or local backbone by its config.json; the modules come from building the
model on the meta device (no memory, well under a second even for XLM-R large).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, BertConfig, PretrainedConfig, XLMRobertaConfig

from adapterx.core.backbone import (
    ARCHITECTURES,
    PRETRAINED_SOURCES,
    REAL_SHAPES,
    TINY_BERT_NAME,
    TINY_CONFIG,
    TINY_NAME,
    _arch,
    check_builtin_name,
    usable_positions,
)
from adapterx.core.errors import AdapterxError


@dataclass(frozen=True)
class BackboneShape:
    name: str
    positions: int  # input tokens that fit, specials (and virtual tokens) included
    linear_modules: tuple[str, ...]  # dotted names of the encoder's nn.Linear modules

    def module_suffixes(self) -> set[str]:
        """Every name that selects modules the way peft's `target_modules` list does (a whole dotted suffix)."""
        out = set()
        for name in self.linear_modules:
            parts = name.split(".")
            out.update(".".join(parts[i:]) for i in range(len(parts)))
        return out

    def leaf_names(self) -> list[str]:
        return sorted({n.rsplit(".", 1)[-1] for n in self.linear_modules})


def backbone_config(name: str) -> PretrainedConfig:
    """The config of backbone `name` (see adapterx.core.backbone for the forms), without loading weights."""
    check_builtin_name(name)
    if name == TINY_NAME or name.startswith(TINY_NAME + "@"):
        return XLMRobertaConfig(vocab_size=8, **TINY_CONFIG)  # the vocabulary's size does not matter here
    if name == TINY_BERT_NAME or name.startswith(TINY_BERT_NAME + "@"):
        return BertConfig(
            vocab_size=8,
            **{
                **TINY_CONFIG,
                "type_vocab_size": 2,
                "max_position_embeddings": TINY_CONFIG["max_position_embeddings"] - 2,
            },
        )
    known = {source: shape for shape, source in PRETRAINED_SOURCES.items()}
    shape = _arch(name) if name.startswith("random:") else known.get(name, name.removeprefix("FacebookAI/"))
    if shape in REAL_SHAPES:  # the public checkpoints' config.json, known offline
        config_class, sizes = REAL_SHAPES[shape]
        return config_class(**sizes)
    if name.startswith((".", "/", "~")) and not Path(name).expanduser().is_dir():
        raise AdapterxError(f"backbone directory {name} does not exist")
    try:
        config = AutoConfig.from_pretrained(name, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise AdapterxError(
            f"cannot read the config of backbone {name!r}: {first}. Offline? Use a local "
            f"directory or {TINY_NAME!r} (built in, no network)."
        ) from exc
    if config.model_type not in ARCHITECTURES:
        raise AdapterxError(
            f"backbone {name!r} is a {config.model_type!r} model; adapterx drives encoders of "
            f"types {', '.join(ARCHITECTURES)}"
        )
    return config


def backbone_shape(name: str) -> BackboneShape:
    return shape_of_config(name, backbone_config(name))


def shape_of_config(name: str, config: PretrainedConfig) -> BackboneShape:
    """The shape of a plain encoder built from `config` (a model an adapter library wrapped has other module
    names; its config still describes the plain one). Remembered per (name, config)."""
    key = (name, config.to_json_string())
    if key not in _SHAPES:
        with torch.device("meta"):
            model = AutoModel.from_config(config, add_pooling_layer=False)
        linear = tuple(n for n, m in model.named_modules() if isinstance(m, nn.Linear))
        _SHAPES[key] = BackboneShape(name, usable_positions(config), linear)
    return _SHAPES[key]


_SHAPES: dict[tuple[str, str], BackboneShape] = {}
