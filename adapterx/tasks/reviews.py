"""Built-in review tasks in natural language, written for adapterx (``adapterx/data/reviews/clauses.tsv``):
a small multilingual target for a real pretrained encoder, and two English intermediate tasks that are related
to it but not made from it.

  reviews            target: sentiment (negative / positive) of short reviews of restaurants, hotels and online
                     shops. English training data (128 rows: a low-resource target); dev and test in
                     en, de, fr, ru (Cyrillic) and zh (Chinese): the same items in every language, translated.
  reviews-sentiment  intermediate, English: sentiment of reviews of films, books and apps (another domain)
  reviews-topic      intermediate, English: the SAME sentences as reviews-sentiment, labelled by what they
                     review (film / book / app): same inputs, a different task

A review is one clause, two clauses of one polarity, or a contrast ("A. But B.", labelled by B). The target's
clauses are split once into a training pool and an evaluation pool, so no test sentence (nor any clause of
one) occurs in any training set; the intermediate tasks use other domains' clauses altogether. Test items
share clauses with each other (combinations of 8 clauses per domain and polarity), so they are not
independent draws: an interval over test examples is narrower than over fresh reviews would be.

Everything is derived deterministically from the clause table: ``python -m adapterx.tasks.reviews`` prints
the split sizes.
"""

from __future__ import annotations

import csv
import itertools
import random
from functools import cache, lru_cache
from pathlib import Path

import datasets

from adapterx.core.errors import AdapterxError
from adapterx.tasks import register_task
from adapterx.tasks.base import DataRequest, Task

CLAUSES = Path(__file__).resolve().parent.parent / "data" / "reviews" / "clauses.tsv"
LANGUAGES = ("en", "de", "fr", "ru", "zh")
TARGET_DOMAINS = ("restaurant", "hotel", "shop")
INTERMEDIATE_DOMAINS = ("film", "book", "app")
SENTIMENT = ("negative", "positive")
BUT = {"en": "But", "de": "Aber", "fr": "Mais", "ru": "Но", "zh": "但是"}
TRAIN_CLAUSES = 6  # per (target domain, polarity); the other 8 are evaluation clauses
SIZES = {
    "target": {"train": 128, "validation": 100, "test": 300},
    "intermediate": {"train": 1200, "validation": 200, "test": 200},
}
_POOLING = {"head": {"pooling": "mean"}}  # multilingual-e5 is trained with mean pooling


@lru_cache(maxsize=1)
def clauses() -> tuple[dict, ...]:
    """The clause table: one dict per row (domain, polarity, and the text in each language it has)."""
    try:
        with open(CLAUSES, encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
    except OSError as exc:
        raise AdapterxError(f"{CLAUSES}: cannot read the built-in review clauses: {exc}") from exc
    return tuple({k: v for k, v in row.items() if v} for row in rows)


def _join(language: str, first: str, second: str, contrast: bool) -> str:
    if not contrast:
        return first + ("" if language == "zh" else " ") + second
    if language == "zh":
        return first + BUT[language] + second
    keep_case = language == "en" and second.split(" ", 1)[0] == "I"
    return f"{first} {BUT[language]} {second if keep_case else second[0].lower() + second[1:]}"


def _items(pool: dict[tuple[str, str], list[dict]], domains: tuple[str, ...]) -> list[tuple]:
    """Every review one pool can make, as (domain, label polarity, clause rows, contrast)."""
    out = []
    for domain in domains:
        for polarity in SENTIMENT:
            same = pool[domain, polarity]
            other = pool[domain, "negative" if polarity == "positive" else "positive"]
            out += [(domain, polarity, (c,), False) for c in same]
            out += [(domain, polarity, pair, False) for pair in itertools.permutations(same, 2)]
            out += [(domain, polarity, (a, b), True) for a in other for b in same]
    return out


def _pools() -> tuple[dict, dict, dict]:
    """(target training pool, target evaluation pool, intermediate pool), each {(domain, polarity): clauses}."""
    rng = random.Random(20201127)
    train, evaluation, intermediate = {}, {}, {}
    for domain, polarity in itertools.product(TARGET_DOMAINS + INTERMEDIATE_DOMAINS, SENTIMENT):
        rows = [c for c in clauses() if c["domain"] == domain and c["polarity"] == polarity]
        if domain in INTERMEDIATE_DOMAINS:
            intermediate[domain, polarity] = rows
            continue
        rows = rows[:]
        rng.shuffle(rows)
        train[domain, polarity], evaluation[domain, polarity] = rows[:TRAIN_CLAUSES], rows[TRAIN_CLAUSES:]
    return train, evaluation, intermediate


def _take(items: list[tuple], sizes: dict[str, int], seed: int) -> dict[str, list[tuple]]:
    items = items[:]
    random.Random(seed).shuffle(items)
    out, start = {}, 0
    for split, n in sizes.items():
        if start + n > len(items):
            raise AdapterxError(f"{CLAUSES}: {len(items)} reviews cannot fill splits {sizes}")
        out[split], start = items[start : start + n], start + n
    return out


@cache
def split_items(task: str, split: str) -> tuple[tuple, ...]:
    """The items of one split of one review task (the same items in every language)."""
    train, evaluation, intermediate = _pools()
    if task == "reviews":
        by_split = {
            "train": _take(_items(train, TARGET_DOMAINS), {"train": SIZES["target"]["train"]}, 1)["train"],
            **_take(_items(evaluation, TARGET_DOMAINS), {k: SIZES["target"][k] for k in ("validation", "test")}, 2),
        }
    else:
        by_split = _take(_items(intermediate, INTERMEDIATE_DOMAINS), SIZES["intermediate"], 3)
    return tuple(by_split[split])


def rows(task: str, split: str, language: str) -> list[dict]:
    """Rows in SST-2's format (``sentence``, integer ``label``) plus ``domain``."""
    labels = INTERMEDIATE_DOMAINS if task == "reviews-topic" else SENTIMENT
    out = []
    for domain, polarity, parts, contrast in split_items(task, split):
        texts = [p[language] for p in parts]
        sentence = texts[0] if len(texts) == 1 else _join(language, texts[0], texts[1], contrast)
        label = domain if task == "reviews-topic" else polarity
        out.append({"sentence": sentence, "label": labels.index(label), "domain": domain})
    return out


def _load(request: DataRequest) -> datasets.Dataset:
    # load_split has checked the split and language against the Task
    return datasets.Dataset.from_list(rows(request.task.name, request.split, request.language))


register_task(
    Task(
        name="reviews",
        role="target",
        head="classification",
        metric="accuracy",
        loader=_load,
        labels=SENTIMENT,
        text_fields=("sentence",),
        max_length=64,
        languages=LANGUAGES,
        options=_POOLING,
        description="built-in review sentiment in natural language: English training, en/de/fr/ru/zh evaluation",
    )
)
register_task(
    Task(
        name="reviews-sentiment",
        role="intermediate",
        head="classification",
        metric="accuracy",
        loader=_load,
        labels=SENTIMENT,
        text_fields=("sentence",),
        max_length=64,
        options=_POOLING,
        description="built-in English sentiment of film, book and app reviews (another domain than 'reviews')",
    )
)
register_task(
    Task(
        name="reviews-topic",
        role="intermediate",
        head="classification",
        metric="accuracy",
        loader=_load,
        labels=INTERMEDIATE_DOMAINS,
        text_fields=("sentence",),
        max_length=64,
        options=_POOLING,
        description="built-in English topic of the reviews-sentiment sentences (film / book / app)",
    )
)

if __name__ == "__main__":
    for name in ("reviews", "reviews-sentiment", "reviews-topic"):
        print(name, {s: len(split_items(name, s)) for s in ("train", "validation", "test")})
