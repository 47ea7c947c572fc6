"""The built-in world: its languages differ from English in more than words, its tasks keep the target's
evaluation sentences out of every training set, and the committed data files are what the generator writes."""

import functools
import json

import pytest

from adapterx.core import tinyworld as tw
from adapterx.core.backbone import tiny_tokenizer
from adapterx.core.tinylexicon import ADJECTIVES, NOUNS, VERBS
from adapterx.tasks import get_task
from adapterx.tasks import tinytasks as tt
from adapterx.tasks.builtin import BUILTIN_DATA, INTERMEDIATE_SIZES, write_builtin_data

INTERMEDIATES = tuple(INTERMEDIATE_SIZES)


@functools.cache
def _load(task: str, split: str, language: str) -> tuple[dict, ...]:
    # the committed files, read directly (the same rows `load_split` serves, without `datasets`' overhead)
    path = BUILTIN_DATA / task / f"{split}.{language}.jsonl"
    return tuple(json.loads(line) for line in path.read_text().splitlines())


def load_split(task, split: str, language: str = "en") -> tuple[dict, ...]:
    return _load(task.name, split, language)


def _held_out() -> set[str]:
    task = get_task("tiny-xnli")
    return {
        text
        for split in ("validation", "test")
        for lang in task.languages
        for row in load_split(task, split, lang)
        for text in (row["premise"], row["hypothesis"])
    }


def test_no_target_test_sentence_occurs_in_any_intermediate_training_set():
    held_out = _held_out()
    english = {s for s in held_out if s.startswith("the ")}
    lengths = {len(s.split()) for s in english}
    for name in INTERMEDIATES:
        task = get_task(name)
        for row in load_split(task, "train"):
            for text in tt.texts(row):
                assert text not in held_out, (name, text)
                assert not tt.contains_any(text, english, lengths), (name, text)  # not even inside a longer text


def test_target_training_repeats_no_evaluation_sentence():
    held_out = _held_out()
    for row in load_split(get_task("tiny-xnli"), "train"):
        assert row["premise"] not in held_out and row["hypothesis"] not in held_out


def _content_words(pool: str) -> set[str]:
    words = {n.en for n in NOUNS if n.pool == pool} | {a.en for a in ADJECTIVES if a.pool == pool}
    return words | {form for v in VERBS if v.pool == pool for form in v.en}


def test_vocabulary_pools_keep_target_and_intermediate_words_apart():
    target_only, intermediate_only = _content_words("target"), _content_words("intermediate")
    for name in INTERMEDIATES:
        words = {w for row in load_split(get_task(name), "train") for t in tt.texts(row) for w in t.split()}
        assert not words & target_only, name
    target_words = {
        w for row in load_split(get_task("tiny-xnli"), "test", "en") for t in tt.texts(row) for w in t.split()
    }
    assert not target_words & intermediate_only
    assert target_words & _content_words("shared")  # but they share some words


def test_committed_files_are_what_the_generator_writes(tmp_path):
    write_builtin_data(tmp_path)
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.jsonl"))
    committed = sorted(p.relative_to(BUILTIN_DATA) for p in BUILTIN_DATA.rglob("*.jsonl"))
    assert written == committed
    for path in written:
        assert (tmp_path / path).read_text() == (BUILTIN_DATA / path).read_text(), path


def test_labels_are_balanced_and_test_sets_are_parallel():
    task = get_task("tiny-xnli")
    by_language = {lang: load_split(task, "test", lang) for lang in task.languages}
    labels = [row["label"] for row in by_language["en"]]
    assert all([row["label"] for row in rows] == labels for rows in by_language.values())  # one item per index
    assert sorted(set(labels)) == [0, 1, 2] and max(labels.count(x) for x in range(3)) == len(labels) // 3
    for name in INTERMEDIATES:
        labels = [row["label"] for row in load_split(get_task(name), "train")]
        counts = [labels.count(x) for x in range(get_task(name).num_labels)]
        assert max(counts) - min(counts) <= 1, name


def test_languages_differ_in_word_order_and_inflection():
    c = tw.Clause("teacher", "buy", "hat", adjective="happy", negated=True, time="today")
    tok = tiny_tokenizer()
    assert tw.render(c, "en") == "the happy teacher does not buy the hat today"  # do-support, base form
    assert tw.render(c, "de").split()[-1] == "nicht"  # negation last
    assert tw.render(c, "de").split()[4] == "heute"  # time before the object
    assert tw.render(c, "es").split()[:3] == ["el", "maestro", "feliz"]  # adjective after the noun
    assert tw.render(c, "fr").split()[3:6] == ["ne", "achete", "pas"]  # negation around the verb
    assert tw.render(c.replace(obj="doctor", verb="see"), "es").split()[-3:-1] == ["al", "medico"]  # a + el
    assert tw.render(c, "tr").split()[-1] == "almaz"  # verb last, negated by suffix
    assert tok.tokenize(tw.render(c, "tr"))[-4:] == ["\u2581sapka", "yi", "\u2581al", "maz"]
    assert tok.tokenize(tw.render(c, "de"))[1:3] == ["\u2581glucklich", "e"]  # adjective ending
    assert tw.render(c.replace(subject="woman", adjective="angry"), "fr").split()[2] == "fachee"  # agreement


def test_every_builtin_text_is_made_of_known_pieces():
    tok = tiny_tokenizer()
    known = set(tok.convert_tokens_to_ids(tw.word_pieces() + tw.suffix_pieces()))
    for name in (*INTERMEDIATES, "tiny-xnli"):
        task = get_task(name)
        splits = [("train", "en")] + [(s, lang) for s in ("validation", "test") for lang in task.languages]
        for split, lang in splits:
            texts = [row[field] for row in load_split(task, split, lang) for field in task.text_fields]
            ids = {i for encoded in tok(texts, add_special_tokens=False)["input_ids"] for i in encoded}
            assert ids <= known, (name, lang, tok.convert_ids_to_tokens(sorted(ids - known)))


def test_translations_share_embedding_directions_and_no_piece_has_two_meanings():
    groups = tw.aligned_piece_groups()  # raises if a piece were in two groups
    pieces = [p for g in groups for p, _ in g]
    assert len(pieces) == len(set(pieces))
    shared = [g for g in groups if any(p == "\u2581radio" for p, _ in g)][0]
    assert ("\u2581radyo", 0.6) in shared  # Turkish is aligned less strongly


@pytest.mark.parametrize("name", INTERMEDIATES)
def test_generators_are_reproducible(name):
    make, n_labels, _ = INTERMEDIATE_SIZES[name]
    first = tt.balanced(make, 20, n_labels, seed=7)
    assert first == tt.balanced(make, 20, n_labels, seed=7) and first != tt.balanced(make, 20, n_labels, seed=8)
    json.dumps(first)
