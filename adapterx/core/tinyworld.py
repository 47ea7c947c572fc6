"""A tiny synthetic multilingual world: clauses, their grammar in five languages, and the tokenizer's pieces.

Why it exists: the real backbone (XLM-R) and the real datasets cannot be downloaded on every machine (CI,
offline laptops). The built-in backbone and tasks come from this one world. The languages differ from English
in more than the word list, so that cross-lingual transfer is not a matter of swapping tokens:

  en  the happy teacher buys the hat today          the happy teacher does not buy the hat today
  de  der gluckliche lehrer kauft heute den hut     der gluckliche lehrer kauft heute den hut nicht
  es  el maestro feliz compra el sombrero hoy       el maestro feliz no compra el sombrero hoy
  fr  le professeur heureux achete le chapeau ...   le professeur heureux ne achete pas le chapeau ...
  tr  mutlu ogretmen bugun sapkayi alir             mutlu ogretmen bugun sapkayi almaz

word order (German puts the time before the object and the negation last; Turkish is subject-object-verb,
Spanish and French put the adjective after the noun), inflection (German articles and adjective endings by case
and gender, Spanish/French gender agreement, Turkish accusative and negative suffixes that the tokenizer splits
off as pieces of their own), and partial vocabulary overlap (a few words are the same string in several
languages). The built-in backbone pulls the embeddings of translation-equivalent pieces together, less so for
Turkish (adapterx.core.tinylexicon.ALIGNMENT): a small, honest stand-in for multilingual pretraining.
Nothing here pretends to be real data; the tasks built from it are in adapterx.tasks.tinytasks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from adapterx.core.tinylexicon import (
    ADJECTIVES,
    ALIGNMENT,
    ARTICLES,
    CONJUNCTION,
    GRAMMAR_WORDS,
    LANGUAGES,
    NEGATION,
    NOUNS,
    TIMES,
    VERBS,
)

__all__ = [
    "LANGUAGES",
    "Clause",
    "render",
    "render_passive",
    "render_copula",
    "word_pieces",
    "suffix_pieces",
    "aligned_piece_groups",
    "nouns",
    "verbs",
    "adjectives",
    "TIME_WORDS",
]

_NOUN = {n.concept: n for n in NOUNS}
_VERB = {v.concept: v for v in VERBS}
_ADJ = {a.concept: a for a in ADJECTIVES}
TIME_WORDS: tuple[str, ...] = tuple(TIMES)


@dataclass(frozen=True)
class Clause:
    """Who does what to whom: the meaning a sentence renders, the same in every language."""

    subject: str  # noun concept (a person or animal)
    verb: str  # verb concept
    obj: str  # noun concept
    adjective: str | None = None  # adjective concept, on the subject
    negated: bool = False
    time: str | None = None  # time concept

    def replace(self, **changes) -> "Clause":
        return dataclasses.replace(self, **changes)


def nouns(pools: tuple[str, ...], animate: bool | None = None) -> list[str]:
    return [n.concept for n in NOUNS if n.pool in pools and (animate is None or n.animate == animate)]


def verbs(pools: tuple[str, ...]) -> list[str]:
    return [v.concept for v in VERBS if v.pool in pools]


def adjectives(pools: tuple[str, ...], polarity: int | None = None) -> list[str]:
    return [a.concept for a in ADJECTIVES if a.pool in pools and (polarity is None or a.polarity == polarity)]


def takes_animate(verb: str) -> bool:
    return _VERB[verb].takes_animate


def polarity(adjective: str) -> int:
    return _ADJ[adjective].polarity


def _time(concept: str | None, language: str) -> list[str]:
    return [TIMES[concept][LANGUAGES.index(language)]] if concept else []


# ------------------------------------------------------------------------------------------- grammar
def _en(c: Clause) -> list[str]:
    verb = _VERB[c.verb].en
    subject = ["the", *([_ADJ[c.adjective].en] if c.adjective else []), _NOUN[c.subject].en]
    predicate = ["does", "not", verb[1]] if c.negated else [verb[0]]
    return [*subject, *predicate, "the", _NOUN[c.obj].en, *_time(c.time, "en")]


_DE_NOMINATIVE = {"m": "der", "f": "die", "n": "das"}
_DE_ACCUSATIVE = {"m": "den", "f": "die", "n": "das"}


def _de(c: Clause) -> list[str]:
    # verb second; the time before the object; "nicht" at the end; adjective ending -e after der/die/das
    subject, gender = _NOUN[c.subject].de
    obj, obj_gender = _NOUN[c.obj].de
    adjective = [_ADJ[c.adjective].de + "e"] if c.adjective else []
    return [
        _DE_NOMINATIVE[gender],
        *adjective,
        subject,
        _VERB[c.verb].de,
        *_time(c.time, "de"),
        _DE_ACCUSATIVE[obj_gender],
        obj,
        *(["nicht"] if c.negated else []),
    ]


def _romance(c: Clause, language: str) -> list[str]:
    # the adjective follows the noun and agrees in gender; es: "no" before the verb and "a" before a person
    # object (a + el = al); fr: "ne ... pas" around the verb
    articles = {"es": {"m": "el", "f": "la"}, "fr": {"m": "le", "f": "la"}}[language]
    subject, gender = getattr(_NOUN[c.subject], language)
    obj, obj_gender = getattr(_NOUN[c.obj], language)
    adjective = []
    if c.adjective:
        masculine, feminine = getattr(_ADJ[c.adjective], language)
        adjective = [feminine if gender == "f" else masculine]
    verb = getattr(_VERB[c.verb], language)
    if language == "es":
        predicate = ["no", verb] if c.negated else [verb]
    else:
        predicate = ["ne", verb, "pas"] if c.negated else [verb]
    obj_phrase = [articles[obj_gender], obj]
    if language == "es" and _NOUN[c.obj].animate:
        obj_phrase = ["al", obj] if obj_gender == "m" else ["a", "la", obj]
    return [articles[gender], subject, *adjective, *predicate, *obj_phrase, *_time(c.time, language)]


def _tr(c: Clause) -> list[str]:
    # subject, time, object with accusative suffix, verb last; negation is a suffix of the verb stem
    stem, accusative = _NOUN[c.obj].tr
    aorist, negative_stem, negative = _VERB[c.verb].tr
    adjective = [_ADJ[c.adjective].tr] if c.adjective else []
    verb = negative_stem + negative if c.negated else aorist
    return [*adjective, _NOUN[c.subject].tr[0], *_time(c.time, "tr"), stem + accusative, verb]


_RENDER = {"en": _en, "de": _de, "es": lambda c: _romance(c, "es"), "fr": lambda c: _romance(c, "fr"), "tr": _tr}


def render(clause: Clause, language: str) -> str:
    """The clause as a sentence in `language` (lower case, no punctuation)."""
    if language not in _RENDER:
        raise KeyError(f"unknown language {language!r}; languages: {', '.join(LANGUAGES)}")
    return " ".join(_RENDER[language](clause))


def render_passive(clause: Clause) -> str:
    """English passive: the object first ("the apple is not eaten by the happy dog today")."""
    verb = _VERB[clause.verb].en
    agent = ["the", *([_ADJ[clause.adjective].en] if clause.adjective else []), _NOUN[clause.subject].en]
    return " ".join(
        [
            "the",
            _NOUN[clause.obj].en,
            "is",
            *(["not"] if clause.negated else []),
            verb[2],
            "by",
            *agent,
            *_time(clause.time, "en"),
        ]
    )


def render_copula(subject: str, adjective: str, negated: bool, time: str | None = None) -> str:
    """English "the dog is (not) happy (today)"."""
    return " ".join(
        ["the", _NOUN[subject].en, "is", *(["not"] if negated else []), _ADJ[adjective].en, *_time(time, "en")]
    )


def front_time(sentence: str, time: str) -> str:
    """Move an English sentence's final time adverb to the front ("today the dog eats the apple")."""
    word = TIMES[time][0]
    assert sentence.endswith(" " + word), sentence
    return f"{word} {sentence[: -len(word) - 1]}"


# ------------------------------------------------------------------------------------------- pieces
def _entries(language: str) -> list[tuple[str, tuple[str, ...]]]:
    """(concept, forms) of every aligned group's members in `language`."""
    i = LANGUAGES.index(language)

    def forms(x) -> tuple[str, ...]:
        value = getattr(x, language)
        return (value,) if isinstance(value, str) else tuple(value)

    out = [(f"noun:{n.concept}", (forms(n)[0],)) for n in NOUNS]
    for v in VERBS:
        if language in ("en", "tr"):
            out += [
                (f"verb:{v.concept}", (v.en[0] if language == "en" else v.tr[0],)),
                (f"verb-base:{v.concept}", (v.en[1] if language == "en" else v.tr[1],)),
            ]
        else:
            out.append((f"verb:{v.concept}", forms(v)))
    out += [(f"adjective:{a.concept}", forms(a)) for a in ADJECTIVES]
    out += [(f"time:{t}", (TIMES[t][i],)) for t in TIMES]
    out += [("negation", NEGATION[language]), ("article", ARTICLES[language]), ("conjunction", CONJUNCTION[language])]
    return out


def _piece(form: str) -> str:
    return form[1:] if form.startswith("-") else "\u2581" + form


def aligned_piece_groups() -> list[list[tuple[str, float]]]:
    """Tokenizer pieces that mean the same thing, each with its language's alignment strength (the highest
    where languages share the piece). The built-in backbone embeds each group around one shared vector."""
    groups: dict[str, dict[str, float]] = {}
    for language in LANGUAGES:
        for concept, forms in _entries(language):
            members = groups.setdefault(concept, {})
            for form in forms:
                members[_piece(form)] = max(members.get(_piece(form), 0.0), ALIGNMENT[language])
    owner: dict[str, str] = {}
    for concept, members in groups.items():
        for piece in members:
            if owner.setdefault(piece, concept) != concept:
                raise ValueError(f"tiny lexicon: piece {piece!r} belongs to {owner[piece]!r} and {concept!r}")
    return [sorted(members.items()) for members in groups.values() if members]


def _all_forms() -> set[str]:
    forms = {f for language in LANGUAGES for _, group in _entries(language) for f in group}
    forms |= {f for words in GRAMMAR_WORDS.values() for f in words}
    forms |= {v.en[2] for v in VERBS}
    forms |= {"-" + n.tr[1] for n in NOUNS} | {"-" + v.tr[2] for v in VERBS}
    return forms


def word_pieces() -> list[str]:
    """Whole-word pieces of the tokenizer (with the word-start mark), sorted."""
    return sorted(_piece(f) for f in _all_forms() if not f.startswith("-"))


def suffix_pieces() -> list[str]:
    """Pieces that continue a word (inflectional endings), sorted."""
    return sorted(_piece(f) for f in _all_forms() if f.startswith("-"))
