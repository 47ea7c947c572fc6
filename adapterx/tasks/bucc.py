"""BUCC 2018 bitext mining data, read from the shared task's original files.

BUCC is mined among tens to hundreds of thousands of sentences per side, of which only a few thousand pairs are
translations. The hub copy (``google/xtreme`` ``bucc18.<lang>``) holds the gold pairs alone, one pair a row, so
mining there runs among sentences that are all parallel and F1 is inflated; adapterx refuses it and reads the
original files under ``--data-dir``:

    <data_dir>/bucc2018/<lang>-en.<split>.<lang>   ``<lang>-000001<TAB>sentence`` per line
    <data_dir>/bucc2018/<lang>-en.<split>.en       ``en-000001<TAB>sentence`` per line
    <data_dir>/bucc2018/<lang>-en.<split>.gold     ``<lang>-000001<TAB>en-000007`` per gold pair

as unpacked from ``bucc2018-<lang>-en.sample-gold.tar.bz2`` and ``...training-gold.tar.bz2``
(comparable.limsi.fr/bucc2018). As XTREME: the "sample" files are the dev split (adapterx's `validation`) and
the "training" files the test split; XTREME's renamed copies (``dev``, ``test``) are read as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import datasets

from adapterx.core.errors import AdapterxError
from adapterx.tasks.base import DataRequest
from adapterx.tasks.sources import Source

SPLIT_NAMES = {"validation": ("sample", "dev"), "test": ("training", "test")}
HUB_REFUSAL = (
    "google/xtreme's bucc18 configs hold only the gold pairs (one translation pair a row), so mining "
    "among them finds translations without the distractor sentences BUCC is about and F1 is inflated"
)


def read_sentences(path: Path) -> list[tuple[str, str]]:
    """(id, sentence) per line of a BUCC sentence file."""
    out = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) != 2 or not parts[0].strip():
                raise AdapterxError(f"{path}:{n}: expected 'id<TAB>sentence', got {line[:80]!r}")
            out.append((parts[0].strip(), parts[1].strip()))
    if not out:
        raise AdapterxError(f"{path}: no sentences")
    return out


def read_gold(path: Path, source: set[str], target: set[str]) -> list[tuple[str, str]]:
    """(source id, English id) per line of a BUCC gold file; every id must name a sentence of the files."""
    pairs = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.strip().split("\t")
        if len(parts) != 2:
            raise AdapterxError(f"{path}:{n}: expected 'source_id<TAB>english_id', got {line[:80]!r}")
        if parts[0] not in source or parts[1] not in target:
            raise AdapterxError(f"{path}:{n}: gold pair {tuple(parts)} names a sentence absent from the sentence files")
        pairs.append((parts[0], parts[1]))
    return pairs


def bucc_rows(
    source: list[tuple[str, str]], target: list[tuple[str, str]], gold: list[tuple[str, str]]
) -> datasets.Dataset:
    """Retrieval rows (see adapterx.tasks.retrieval): one per gold pair, then the unpaired sentences of each side.
    Every sentence appears once; an id in several gold pairs carries its sentence on its first row only."""
    src, trg = dict(source), dict(target)
    rows, placed_s, placed_t = [], set(), set()
    for s, t in gold:
        rows.append(
            {
                "source_id": s,
                "source_sentence": "" if s in placed_s else src[s],
                "target_id": t,
                "target_sentence": "" if t in placed_t else trg[t],
            }
        )
        placed_s.add(s)
        placed_t.add(t)
    rows += [
        {"source_id": s, "source_sentence": x, "target_id": "", "target_sentence": ""}
        for s, x in source
        if s not in placed_s
    ]
    rows += [
        {"source_id": "", "source_sentence": "", "target_id": t, "target_sentence": x}
        for t, x in target
        if t not in placed_t
    ]
    return datasets.Dataset.from_list(rows)


def bucc_files(folder: Path, split: str, language: str) -> tuple[Path, Path, Path]:
    """The (source, English, gold) files of `split`, under BUCC's names or XTREME's; a clear error if absent."""
    pair = f"{language}-en"
    for name in SPLIT_NAMES[split]:
        paths = tuple(folder / f"{pair}.{name}.{ext}" for ext in (language, "en", "gold"))
        if paths[0].is_file() or paths[1].is_file():
            missing = [p.name for p in paths if not p.is_file()]
            if missing:
                raise AdapterxError(
                    f"{folder}: BUCC {split} needs {', '.join(missing)} beside "
                    f"{', '.join(p.name for p in paths if p.is_file())} (gold pairs are needed to "
                    "score, and to choose the threshold on dev)"
                )
            return paths
    present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    wanted = " or ".join(f"{pair}.{n}.{{{language},en,gold}}" for n in SPLIT_NAMES[split])
    raise AdapterxError(
        f"no BUCC 2018 {split!r} files for {language!r}: expected {folder}/{wanted} (the original "
        f"shared-task files); present: {', '.join(present) or 'nothing'}"
    )


@dataclass(frozen=True)
class BuccFiles(Source):
    """BUCC's loader: the original files under ``--data-dir`` only (see the module docstring)."""

    def __call__(self, request: DataRequest) -> datasets.Dataset:
        if request.data_dir is None:
            raise AdapterxError(
                f"task {request.task.name!r} is not scored from the hub: {HUB_REFUSAL}. Pass --data-dir with the "
                f"original BUCC 2018 files: {request.task.name}/{request.language}-en.sample."
                f"{{{request.language},en,gold}} (dev) and {request.language}-en.training.{{{request.language},"
                f"en,gold}} (test), from comparable.limsi.fr/bucc2018"
            )
        if request.split not in SPLIT_NAMES:
            raise AdapterxError(f"task {request.task.name!r} has no split {request.split!r}")
        source_path, target_path, gold_path = bucc_files(
            request.data_dir / request.task.name, request.split, request.language
        )
        source, target = read_sentences(source_path), read_sentences(target_path)
        gold = read_gold(gold_path, {s for s, _ in source}, {t for t, _ in target})
        if not gold:
            raise AdapterxError(f"{gold_path}: no gold pairs")
        return bucc_rows(source, target, gold)


BUCC_SOURCE = BuccFiles(
    None,
    hub_note="the original BUCC 2018 files, <lang>-en.{sample,training}.{<lang>,en,gold}; "
    "google/xtreme's bucc18 holds only the gold pairs",
)
