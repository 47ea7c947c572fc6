"""Where a task's rows come from: the public dataset on the hub, or local copies of it in its own format.

A `Source` is a task's loader. With a `data_dir` it reads ``<data_dir>/<task>/<split>.<language>.<ext>`` with
the reader of that extension (jsonl, tsv, conll, conllu, SQuAD json, Tatoeba's aligned text; BUCC has a loader
of its own, `adapterx.tasks.bucc`); otherwise it calls
``datasets.load_dataset`` with the public id, the config of the language and the hub's split names. Either
way the rows then pass through the task's `normalise` function, which maps the public fields onto the fields
the head kind's processor reads (see `adapterx.tasks.processing`).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import datasets

from adapterx.core.errors import AdapterxError
from adapterx.tasks.base import DataRequest
from adapterx.tasks.files import available, find_file, load_jsonl

Normaliser = Callable[[datasets.Dataset, DataRequest], datasets.Dataset]


# ------------------------------------------------------------------------------------------------ readers
def read_tsv(path: Path) -> datasets.Dataset:
    """A tab-separated file with a header row (GLUE, XNLI, PAWS-X). Quotes are text, as in those files."""
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            header = next(reader)
        except StopIteration:
            raise AdapterxError(f"{path}: empty TSV file (a header row is expected)") from None
        rows = []
        for n, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise AdapterxError(f"{path}:{n}: {len(row)} columns, the header has {len(header)}")
            rows.append(dict(zip(header, row)))
    return datasets.Dataset.from_dict({name: [r[name] for r in rows] for name in header})


def read_conll(path: Path) -> datasets.Dataset:
    """One token per line, ``token<TAB>tag`` (the tag is the last column), sentences separated by blank lines;
    ``-DOCSTART-`` lines are skipped. Tokens are kept as they are (PAN-X's ``xx:`` prefixes: see read_panx)."""
    sentences, tokens, tags = [], [], []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            line = line.rstrip("\n")
            if not line.strip() or line.startswith("-DOCSTART-"):
                if tokens:
                    sentences.append({"tokens": tokens, "tags": tags})
                    tokens, tags = [], []
                continue
            parts = line.split("\t") if "\t" in line else line.split()
            if len(parts) < 2:
                raise AdapterxError(f"{path}:{n}: expected 'token<TAB>tag', got {line!r}")
            tokens.append(parts[0])
            tags.append(parts[-1])
    if tokens:
        sentences.append({"tokens": tokens, "tags": tags})
    return datasets.Dataset.from_list(sentences)


def read_conllu(path: Path) -> datasets.Dataset:
    """Universal Dependencies' CoNLL-U: 10 columns, FORM (2nd) and UPOS (4th) are read; comments, multi-word
    token ranges (``1-2``) and empty nodes (``1.1``) are skipped, as XTREME's UDPOS preprocessing does."""
    sentences, tokens, tags = [], [], []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            line = line.rstrip("\n")
            if not line.strip():
                if tokens:
                    sentences.append({"tokens": tokens, "tags": tags})
                    tokens, tags = [], []
                continue
            if line.startswith("#"):
                continue
            cols = line.split("\t")
            if len(cols) != 10:
                raise AdapterxError(f"{path}:{n}: CoNLL-U lines have 10 tab-separated columns, this has {len(cols)}")
            if "-" in cols[0] or "." in cols[0]:
                continue
            tokens.append(cols[1])
            tags.append(cols[3])
    if tokens:
        sentences.append({"tokens": tokens, "tags": tags})
    return datasets.Dataset.from_list(sentences)


def read_squad_json(path: Path) -> datasets.Dataset:
    """SQuAD v1.1 JSON (also XQuAD, MLQA, TyDiQA-GoldP): data → paragraphs → qas, flattened to one row per
    question with the fields of the hub copies (id, title, context, question, answers{text, answer_start})."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
    except (ValueError, KeyError, TypeError) as exc:
        raise AdapterxError(f"{path}: not SQuAD-format JSON ({{'data': [{{'paragraphs': ...}}]}}): {exc}") from exc
    rows = []
    for article in data:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                rows.append(
                    {
                        "id": str(qa["id"]),
                        "title": article.get("title", "").strip(),
                        "context": paragraph["context"],
                        "question": qa["question"].strip(),
                        "answers": {
                            "text": [a["text"] for a in qa["answers"]],
                            "answer_start": [int(a["answer_start"]) for a in qa["answers"]],
                        },
                    }
                )
    return datasets.Dataset.from_list(rows)


def read_panx(path: Path) -> datasets.Dataset:
    """PAN-X's original files: ``xx:token<TAB>tag`` lines (read_conll), the language prefix cut off at the first
    colon as XTREME's ``panx_preprocess`` does (``en:10:30`` → ``10:30``). The hub's copy has it cut already."""
    rows = read_conll(path)

    def strip(batch):
        return {
            "tokens": [
                [t[t.index(":") + 1 :].strip() if ":" in t else t for t in sentence] for sentence in batch["tokens"]
            ]
        }

    return rows.map(strip, batched=True, desc="strip language prefix")


def read_aligned_lines(path: Path) -> datasets.Dataset:
    """Tatoeba's two aligned files, ``<split>.<lang>.source.txt`` and ``<split>.<lang>.target.txt`` (English):
    line i of one is the translation of line i of the other."""
    target_path = path.with_name(path.name.removesuffix(".source.txt") + ".target.txt")
    if not target_path.is_file():
        raise AdapterxError(f"{path}: the English side {target_path} is missing")
    source = path.read_text(encoding="utf-8").splitlines()
    target = target_path.read_text(encoding="utf-8").splitlines()
    if len(source) != len(target):
        raise AdapterxError(f"{path} has {len(source)} lines but {target_path} has {len(target)}; they must align")
    return datasets.Dataset.from_dict({"source_sentence": source, "target_sentence": target})


Reader = Callable[[Path], datasets.Dataset]
READERS: dict[str, Reader] = {
    "jsonl": load_jsonl,
    "tsv": read_tsv,
    "conll": read_conll,
    "conllu": read_conllu,
    "json": read_squad_json,
    "source.txt": read_aligned_lines,
}


def read_local(
    root: Path, task: str, split: str, language: str, formats: tuple[str, ...], readers: dict[str, Reader] | None = None
) -> datasets.Dataset:
    """The file of (split, language) read by the reader of its extension (`readers` first, then READERS)."""
    path = find_file(root, task, split, language, formats)
    ext = next(e for e in formats if path.name == f"{split}.{language}.{e}")
    try:
        return {**READERS, **(readers or {})}[ext](path)
    except UnicodeDecodeError as exc:
        raise AdapterxError(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); adapterx reads data files "
            f"as UTF-8: convert it, e.g. with iconv -t utf-8"
        ) from exc


# ------------------------------------------------------------------------------------------------ the hub
@dataclass(frozen=True)
class Source:
    """A task's loader: the public dataset (id, per-language config, split names) and its local formats.

    `config` maps a language to the hub config (a string with ``{lang}``, or a function); `splits` maps
    adapterx's split names to the hub's (a tuple is concatenated, e.g. ANLI's three rounds); `hub_filter`
    keeps the rows of one language when a config mixes languages. `hub_id=None`: local files only."""

    hub_id: str | None
    config: str | Callable[[str], str | None] | None = None
    splits: dict[str, str | tuple[str, ...]] = field(default_factory=dict)
    formats: tuple[str, ...] = ("jsonl",)
    normalise: Normaliser | None = None
    hub_filter: Callable[[dict, str], bool] | None = None
    hub_note: str = ""  # why there is no hub copy, when hub_id is None; else what this source is
    languages: tuple[str, ...] | None = None  # languages this source has, when fewer than the task's
    readers: dict[str, Reader] | None = None  # extension → reader, where this task's files differ from READERS

    def __call__(self, request: DataRequest) -> datasets.Dataset:
        if self.languages is not None and request.language not in self.languages:
            raise AdapterxError(
                f"task {request.task.name!r} has no {request.split!r} data in {request.language!r}: that split "
                f"is {self.hub_note or self.hub_id} in {', '.join(self.languages)} only"
            )
        if request.data_dir is not None:
            rows = read_local(
                request.data_dir, request.task.name, request.split, request.language, self.formats, self.readers
            )
        else:
            rows = self.load_hub(request)
        return self.normalise(rows, request) if self.normalise else rows

    def hub_config(self, language: str) -> str | None:
        if callable(self.config):
            return self.config(language)
        return self.config.format(lang=language) if self.config else None

    def hub_splits(self, split: str, language: str) -> tuple[str, ...]:
        names = self.splits.get(split, split)
        if callable(names):
            names = names(language)
        return (names,) if isinstance(names, str) else tuple(names)

    def describe(self, language: str) -> str:
        if self.hub_id is None:
            return f"local files only ({self.hub_note})"
        config = self.hub_config(language)
        return self.hub_id + (f" / {config}" if config else "")

    def load_hub(self, request: DataRequest) -> datasets.Dataset:
        task = request.task
        if self.hub_id is None:
            raise AdapterxError(
                f"task {task.name!r} has no public copy on the hub ({self.hub_note}); pass --data-dir with "
                f"{task.name}/{request.split}.{request.language}.{{{','.join(self.formats)}}} in it"
            )
        config = self.hub_config(request.language)
        parts = []
        for hub_split in self.hub_splits(request.split, request.language):
            try:
                parts.append(datasets.load_dataset(self.hub_id, config, split=hub_split, trust_remote_code=False))
            except ValueError as exc:  # datasets: unknown split (its message lists the splits that exist)
                raise AdapterxError(
                    f"task {task.name!r}: {self.describe(request.language)} has no split {hub_split!r} ({exc})"
                ) from exc
            except Exception as exc:  # offline, unknown config, ...
                raise AdapterxError(
                    f"task {task.name!r}: cannot load {self.describe(request.language)} split {hub_split!r} "
                    f"from the hub: {type(exc).__name__}: {exc}. Offline? Pass --data-dir with local copies "
                    f"({task.name}/{request.split}.{request.language}.{{{','.join(self.formats)}}})"
                ) from exc
        rows = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
        if self.hub_filter is not None:
            language = request.language
            rows = rows.filter(lambda r: self.hub_filter(r, language), desc=f"{task.name}: keep {language}")
            if len(rows) == 0:
                raise AdapterxError(f"task {task.name!r}: {self.describe(language)} has no rows in {language!r}")
        return rows


@dataclass(frozen=True)
class BySplit:
    """A loader whose source depends on the split, e.g. XQuAD: trained on SQuAD, tested on XQuAD."""

    sources: dict[str, Source]
    default: Source

    def source(self, split: str) -> Source:
        return self.sources.get(split, self.default)

    def __call__(self, request: DataRequest) -> datasets.Dataset:
        return self.source(request.split)(request)


@dataclass(frozen=True)
class Concat:
    """A loader whose hub copy of some splits is several public datasets, each normalised, then concatenated
    (ANLI as Phang et al. trained it: SNLI + MNLI + ANLI's three rounds). With --data-dir, `default` reads the
    task's own local file, which then holds the combination."""

    parts: dict[str, tuple[Source, ...]]
    default: Source

    def __call__(self, request: DataRequest) -> datasets.Dataset:
        sources = self.parts.get(request.split) if request.data_dir is None else None
        if not sources:
            return self.default(request)
        return datasets.concatenate_datasets([source(request) for source in sources])


def describe_loader(loader, split: str, language: str) -> str:
    """Where the loader of a task reads `split` in `language` from (for `adapterx tasks`)."""
    if isinstance(loader, BySplit):
        loader = loader.source(split)
    if isinstance(loader, Concat):
        parts = loader.parts.get(split) or (loader.default,)
        return " + ".join(describe_loader(part, split, language) for part in parts)
    if isinstance(loader, Source):
        hub = loader.describe(language)
        names = loader.hub_splits(split, language) if loader.hub_id else ()
        return hub + (f" [{'+'.join(names)}]" if names else "")
    own = getattr(loader, "describe_split", None)  # a loader that says it itself (a task file's)
    return own(split, language) if own else getattr(loader, "__name__", type(loader).__name__)


# ------------------------------------------------------------------------------------------------ helpers
def require_fields(rows: datasets.Dataset, request: DataRequest, *alternatives: tuple[str, ...]) -> list[str]:
    """For each group of alternative field names, the first present; a clear error when none is."""
    chosen = []
    for names in alternatives:
        found = next((n for n in names if n in rows.column_names), None)
        if found is None:
            raise AdapterxError(
                f"task {request.task.name!r} ({request.split}.{request.language}): the data has "
                f"none of the fields {list(names)}; fields: {rows.column_names}"
            )
        chosen.append(found)
    return chosen


def label_index(value, labels: tuple[str, ...], request: DataRequest) -> int:
    """A label given as an index, a digit string or a label name, as an index into `labels`."""
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        index = value
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        index = int(value)
    elif value in labels:
        return labels.index(value)
    else:
        raise AdapterxError(
            f"task {request.task.name!r} ({request.split}.{request.language}): unknown label "
            f"{value!r}; labels: {', '.join(labels)}"
        )
    if not 0 <= index < len(labels):
        raise AdapterxError(
            f"task {request.task.name!r} ({request.split}.{request.language}): label {index} "
            f"outside 0..{len(labels) - 1} (unlabelled test data?)"
        )
    return index


def class_names(rows: datasets.Dataset, column: str) -> list[str] | None:
    """The names of a ClassLabel column (or of a sequence of ClassLabels), else None."""
    feature = rows.features.get(column)
    inner = getattr(feature, "feature", feature)
    return list(inner.names) if isinstance(inner, datasets.ClassLabel) else None


# ------------------------------------------------------------------------------------------------ normalisers
def classification(
    fields: dict[str, tuple[str, ...]], label: tuple[str, ...] = ("label",), aliases: dict[str, str] | None = None
) -> Normaliser:
    """Rows → the task's text fields (each from the first present alias) and an integer `label`."""
    aliases = aliases or {}

    def normalise(rows: datasets.Dataset, request: DataRequest) -> datasets.Dataset:
        chosen = require_fields(rows, request, *fields.values(), label)
        names = class_names(rows, chosen[-1])
        labels = request.task.labels

        def convert(batch):
            out = {name: [str(x) for x in batch[src]] for name, src in zip(fields, chosen)}
            values = [names[v] if names and isinstance(v, int) and v >= 0 else v for v in batch[chosen[-1]]]
            out["label"] = [label_index(aliases.get(v, v), labels, request) for v in values]
            return out

        return rows.map(convert, batched=True, remove_columns=rows.column_names, desc="normalise")

    return normalise


def tagging(
    tokens: tuple[str, ...] = ("tokens", "words"),
    tags: tuple[str, ...] = ("tags", "pos_tags", "ner_tags", "ner", "pos_tag"),
    other: str | None = None,
) -> Normaliser:
    """Rows → tokens (list[str], as they are) and tags (indices into the task's labels; tag names or ClassLabel
    ids in). `other`: the label for unknown tags."""

    def normalise(rows: datasets.Dataset, request: DataRequest) -> datasets.Dataset:
        tok_field, tag_field = require_fields(rows, request, tokens, tags)
        names = class_names(rows, tag_field)
        labels = request.task.labels
        index = {name: i for i, name in enumerate(labels)}

        def tag_id(tag) -> int:
            if names is not None and isinstance(tag, int):
                tag = names[tag]
            if isinstance(tag, str) and tag in index:
                return index[tag]
            if other is not None and isinstance(tag, str):
                return index[other]
            return label_index(tag, labels, request)

        def convert(batch):
            return {
                "tokens": [list(sentence) for sentence in batch[tok_field]],
                "tags": [[tag_id(t) for t in sentence] for sentence in batch[tag_field]],
            }

        return rows.map(convert, batched=True, remove_columns=rows.column_names, desc="normalise")

    return normalise


def span_qa(rows: datasets.Dataset, request: DataRequest) -> datasets.Dataset:
    """SQuAD-format rows, kept as they are, plus the `language` the metric normalises answers in."""
    require_fields(rows, request, ("id",), ("context",), ("question",), ("answers",))
    rows = rows.select_columns(["id", "context", "question", "answers"])
    return rows.add_column("language", [request.language] * len(rows))


def retrieval(rows: datasets.Dataset, request: DataRequest) -> datasets.Dataset:
    """Rows of (source_id, source_sentence, target_id, target_sentence). Tatoeba's rows are aligned pairs, whose
    ids are their row numbers (BUCC has a loader of its own: adapterx.tasks.bucc)."""
    src, trg = require_fields(rows, request, ("source_sentence",), ("target_sentence",))
    n = len(rows)
    if "source_id" in rows.column_names:
        src_ids, trg_ids = rows["source_id"], rows["target_id"]
    else:
        src_ids, trg_ids = [f"s{i}" for i in range(n)], [f"t{i}" for i in range(n)]
    return datasets.Dataset.from_dict(
        {
            "source_id": list(src_ids),
            "source_sentence": [s.strip() for s in rows[src]],
            "target_id": list(trg_ids),
            "target_sentence": [t.strip() for t in rows[trg]],
        }
    )


__all__ = [
    "READERS",
    "BySplit",
    "Concat",
    "Reader",
    "Source",
    "available",
    "class_names",
    "classification",
    "describe_loader",
    "label_index",
    "read_local",
    "read_panx",
    "require_fields",
    "retrieval",
    "span_qa",
    "tagging",
]
