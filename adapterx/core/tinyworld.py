"""A tiny synthetic multilingual world: lexicon, tokenizer vocabulary and sentence generators.

Why it exists: the real backbone (XLM-R) and the real datasets cannot be downloaded on every machine
(CI, offline laptops). The built-in backbone and built-in tasks are generated from this one lexicon, so
that a translation of a word is a single token in every language and the built-in backbone can give
translations nearby embeddings -- a small, honest stand-in for the cross-lingual alignment that
multilingual pretraining provides. Nothing here pretends to be real data.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

LANGUAGES: tuple[str, ...] = ("en", "de", "es", "fr")

# concept -> word per language, in LANGUAGES order. Word order of generated sentences is shared.
_LEXICON: dict[str, dict[str, tuple[str, ...]]] = {
    "article": {"the": ("the", "der", "el", "le")},
    "negation": {"not": ("not", "nicht", "no", "pas")},
    "subject": {
        "dog": ("dog", "hund", "perro", "chien"),
        "cat": ("cat", "katze", "gato", "chat"),
        "child": ("child", "kind", "nino", "enfant"),
        "woman": ("woman", "frau", "mujer", "femme"),
        "man": ("man", "mann", "hombre", "homme"),
        "teacher": ("teacher", "lehrer", "maestro", "professeur"),
        "doctor": ("doctor", "arzt", "medico", "medecin"),
        "bird": ("bird", "vogel", "pajaro", "oiseau"),
    },
    "verb": {
        "eats": ("eats", "isst", "come", "mange"),
        "sees": ("sees", "sieht", "ve", "voit"),
        "buys": ("buys", "kauft", "compra", "achete"),
        "likes": ("likes", "mag", "quiere", "aime"),
        "carries": ("carries", "tragt", "lleva", "porte"),
        "finds": ("finds", "findet", "encuentra", "trouve"),
    },
    "object": {
        "apple": ("apple", "apfel", "manzana", "pomme"),
        "bread": ("bread", "brot", "pan", "pain"),
        "book": ("book", "buch", "libro", "livre"),
        "ball": ("ball", "ball", "pelota", "balle"),
        "house": ("house", "haus", "casa", "maison"),
        "car": ("car", "auto", "coche", "voiture"),
        "letter": ("letter", "brief", "carta", "lettre"),
        "flower": ("flower", "blume", "flor", "fleur"),
    },
    "adjective_positive": {
        "good": ("good", "gut", "bueno", "bon"),
        "happy": ("happy", "glucklich", "feliz", "heureux"),
        "kind": ("friendly", "freundlich", "amable", "gentil"),
        "great": ("great", "grossartig", "genial", "formidable"),
    },
    "adjective_negative": {
        "bad": ("bad", "schlecht", "malo", "mauvais"),
        "sad": ("sad", "traurig", "triste", "malheureux"),
        "angry": ("angry", "wutend", "enojado", "fache"),
        "awful": ("awful", "furchtbar", "horrible", "affreux"),
    },
    "time": {
        "today": ("today", "heute", "hoy", "aujourdhui"),
        "yesterday": ("yesterday", "gestern", "ayer", "hier"),
    },
}

NLI_LABELS: tuple[str, ...] = ("entailment", "neutral", "contradiction")
SENTIMENT_LABELS: tuple[str, ...] = ("negative", "positive")


def word(concept: str, language: str) -> str:
    """The word for `concept` in `language` (raises KeyError for unknown ones)."""
    for entries in _LEXICON.values():
        if concept in entries:
            return entries[concept][LANGUAGES.index(language)]
    raise KeyError(f"unknown concept {concept!r}")


def concepts(category: str) -> list[str]:
    return list(_LEXICON[category])


def aligned_word_groups() -> list[tuple[str, ...]]:
    """Each concept's words in all languages: the groups the built-in backbone embeds close together."""
    return [words for entries in _LEXICON.values() for words in entries.values()]


def vocabulary() -> list[str]:
    """Every word of every language, sorted, without duplicates."""
    return sorted({w for group in aligned_word_groups() for w in group})


@dataclass(frozen=True)
class _Scene:
    subject: str
    verb: str
    obj: str
    adjective: str


def _random_scene(rng: random.Random, adjectives: list[str]) -> _Scene:
    return _Scene(
        subject=rng.choice(concepts("subject")),
        verb=rng.choice(concepts("verb")),
        obj=rng.choice(concepts("object")),
        adjective=rng.choice(adjectives),
    )


def _render(parts: list[str], language: str) -> str:
    return " ".join(word(p, language) for p in parts)


def nli_example(rng: random.Random, language: str, label: int) -> dict:
    """One premise/hypothesis pair with XNLI's label ids (0 entailment, 1 neutral, 2 contradiction).

    entailment: the hypothesis drops the premise's adjective; contradiction: it negates the verb;
    neutral: it states the same about a different object (or adds a time the premise does not give).
    """
    adjectives = concepts("adjective_positive") + concepts("adjective_negative")
    s = _random_scene(rng, adjectives)
    premise = _render(["the", s.adjective, s.subject, s.verb, "the", s.obj], language)
    if label == 0:
        hyp = ["the", s.subject, s.verb, "the", s.obj]
    elif label == 2:
        hyp = ["the", s.subject, "not", s.verb, "the", s.obj]
    elif label == 1:
        if rng.random() < 0.5:
            other = rng.choice([o for o in concepts("object") if o != s.obj])
            hyp = ["the", s.subject, s.verb, "the", other]
        else:
            hyp = ["the", s.subject, s.verb, "the", s.obj, rng.choice(concepts("time"))]
    else:
        raise ValueError(f"NLI label must be 0, 1 or 2, got {label}")
    return {"premise": premise, "hypothesis": _render(hyp, language), "label": label}


def sentiment_example(rng: random.Random, language: str, label: int) -> dict:
    """One SST-2-style sentence (0 negative, 1 positive), decided by its adjective and an optional negation."""
    negate = rng.random() < 0.3
    polarity = label if not negate else 1 - label
    adjectives = concepts("adjective_positive" if polarity == 1 else "adjective_negative")
    s = _random_scene(rng, adjectives)
    parts = ["the", s.subject, s.verb, "the", s.adjective, s.obj]
    if negate:
        parts.insert(2, "not")
    return {"sentence": _render(parts, language), "label": label}


def balanced_examples(make, n: int, n_labels: int, language: str, seed: int) -> list[dict]:
    """n examples from `make(rng, language, label)`, labels balanced and shuffled, reproducible by seed."""
    rng = random.Random(f"{seed}-{language}")
    rows = [make(rng, language, i % n_labels) for i in range(n)]
    rng.shuffle(rows)
    return rows
