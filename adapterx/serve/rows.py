"""What one request row asks for, and the model sequences it becomes.

A `Row` is one input of a request: its kind (what the caller wants back), the adapter, stack or bare encoder it
runs through, and its text. `ROW_KINDS` says per kind which head kinds can answer it and how its text is
tokenised -- through the same functions `adapterx evaluate` uses (adapterx.tasks), so that a served row is the
evaluated row:

  predict  classification head: text (and text_pair), tokenised as the classification processor does
  tag      tagging head: words (given, or the text split on white space, with character offsets), each word
           tokenised alone and the sentence cut into parts that fit, as XTREME's tagging does
  answer   span-QA head: question and context, cut into overlapping windows with the adapter's task settings
  embed    any adapter or none: text, mean-pooled hidden states of one layer

An input longer than the model takes is refused (413) unless the engine truncates (``auto_truncate``); tagging
and QA never are: they split the input as evaluation does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from transformers import PreTrainedTokenizerBase

from adapterx.serve.adapters import ServedAdapter
from adapterx.serve.errors import RequestError, TooLarge
from adapterx.tasks.processing import qa_settings, qa_windows
from adapterx.tasks.tagging import sentence_parts, word_budget

QA_DEFAULTS = {"max_length": 384, "doc_stride": 128, "max_query_length": 64, "max_answer_length": 30, "n_best": 20}
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Row:
    """One input. `adapter`: a name, a stack ("a+b" or a list, bottom first) or None (the bare encoder);
    `where`: its place in the request (e.g. "inputs[2]"), for error messages."""

    kind: str
    adapter: str | tuple[str, ...] | None = None
    text: str | None = None
    text_pair: str | None = None
    words: tuple[str, ...] | None = None
    question: str | None = None
    context: str | None = None
    layer: int = -1
    normalize: bool = True
    where: str = "inputs"


@dataclass(eq=False)
class Program:
    """What a row runs through: the adapters of its stack (bottom first; none: the bare encoder); the head is
    the top adapter's."""

    name: str
    entries: tuple[ServedAdapter, ...] = ()

    @property
    def top(self) -> ServedAdapter | None:
        return self.entries[-1] if self.entries else None

    @property
    def shared(self) -> bool:
        return all(e.shared for e in self.entries)

    @property
    def slots(self) -> tuple[str, ...]:
        return tuple(key for e in self.entries for key in e.slots)

    @property
    def virtual_tokens(self) -> int:
        return sum(e.virtual_tokens for e in self.entries)


@dataclass(eq=False)
class Work:
    """A prepared row: its program, the token ids of each model sequence it needs, what decoding needs."""

    row: Row
    program: Program
    sequences: list[list[int]]
    extra: dict = field(default_factory=dict)
    released: bool = False

    @property
    def longest(self) -> int:
        return max((len(s) for s in self.sequences), default=0)


@dataclass(frozen=True)
class Limits:
    max_tokens: int  # the longest input the backbone takes (positions), before virtual tokens
    auto_truncate: bool = False


@dataclass(frozen=True)
class RowKind:
    name: str
    heads: tuple[str, ...]  # head kinds that answer it; () = any adapter or none (the encoder's states)
    encode: Callable[[Row, Program, PreTrainedTokenizerBase, int, bool], tuple[list[list[int]], dict]]
    endpoint: str


def _too_long(row: Row, n: int, limit: int) -> TooLarge:
    return TooLarge(
        f"{row.where}: {n} tokens, more than the {limit} this model takes; shorten it, or start the server with "
        f"--auto-truncate",
        param=row.where,
    )


def _required(row: Row, field_name: str) -> str:
    value = getattr(row, field_name)
    if not isinstance(value, str):
        raise RequestError(f"{row.where}.{field_name}: required for {row.kind}", param=f"{row.where}.{field_name}")
    return value


def _encode_text(row: Row, program: Program, tok: PreTrainedTokenizerBase, limit: int, truncate: bool):
    text = _required(row, "text")
    pair = row.text_pair
    ids = tok(text, pair)["input_ids"] if pair is not None else tok(text)["input_ids"]
    if len(ids) > limit:
        if not truncate:
            raise _too_long(row, len(ids), limit)
        ids = tok(text, pair, truncation=True, max_length=limit)["input_ids"]
    return [ids], {}


def _encode_words(row: Row, program: Program, tok: PreTrainedTokenizerBase, limit: int, truncate: bool):
    if row.words is not None:
        words = list(row.words)
        text = " ".join(words)
        spans, at = [], 0
        for w in words:
            spans.append((at, at + len(w)))
            at += len(w) + 1
    else:
        text = _required(row, "text")
        found = list(_WORD.finditer(text))
        words, spans = [m.group() for m in found], [m.span() for m in found]
    task = program.top.task if program.top else None
    max_length = min(limit, min(task.max_length, tok.model_max_length) if task else limit)
    budget = word_budget(tok, max_length)
    parts = sentence_parts(tok, words, budget)
    return [ids for ids, _ in parts], {"words": words, "spans": spans, "word_index": [w for _, w in parts]}


def _encode_qa(row: Row, program: Program, tok: PreTrainedTokenizerBase, limit: int, truncate: bool):
    question, context = _required(row, "question"), _required(row, "context")
    task = program.top.task if program.top else None
    options = {**QA_DEFAULTS, **(task.options if task else {})}
    if task is not None:
        settings = qa_settings(task, tok)
    else:
        length = min(QA_DEFAULTS["max_length"], tok.model_max_length)
        settings = {"max_length": length, "stride": min(128, length // 3), "max_query": 64}
    if settings["max_length"] > limit:  # a prompt's virtual tokens take some of the positions
        settings = {**settings, "max_length": limit, "stride": min(settings["stride"], limit // 3)}
    windows = qa_windows(tok, [question], [context], **settings)
    extra = {"offsets": windows["offset_mapping"], "n_best": options["n_best"]}
    return windows["input_ids"], {**extra, "max_answer": options["max_answer_length"], "context": context}


ROW_KINDS: dict[str, RowKind] = {
    kind.name: kind
    for kind in (
        RowKind("predict", ("classification",), _encode_text, "/predict"),
        RowKind("tag", ("tagging",), _encode_words, "/tag"),
        RowKind("answer", ("span_qa",), _encode_qa, "/answer"),
        RowKind("embed", (), _encode_text, "/v1/embeddings"),
    )
}


def encode_row(row: Row, program: Program, tok: PreTrainedTokenizerBase, limits: Limits) -> Work:
    """The row's model sequences, after checking that its program's head answers its kind."""
    kind = ROW_KINDS[row.kind]
    top = program.top
    if kind.heads and (top is None or top.head_kind not in kind.heads):
        has = "the bare encoder has no head" if top is None else f"{top.name!r} has a {top.head_kind or 'no'} head"
        raise RequestError(
            f"{row.where}.adapter: {kind.endpoint} needs an adapter with a {' or '.join(kind.heads)} head; {has}",
            param=f"{row.where}.adapter",
        )
    limit = limits.max_tokens - program.virtual_tokens
    sequences, extra = kind.encode(row, program, tok, limit, limits.auto_truncate)
    return Work(row, program, sequences, extra)
