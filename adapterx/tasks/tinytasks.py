"""Generators of the built-in tasks, from the tiny world (adapterx.core.tinyworld). Deterministic by seed.

The target, tiny-xnli, is NLI between two single clauses; its evaluation sets are one set of items rendered in
every language (parallel, as XNLI's). The English intermediate tasks are *related* to it but not generated from
it, and use their own share of the vocabulary (the "shared" and "intermediate" pools; the target uses "target"
and "shared"):

  tiny-nli         NLI with XNLI's labels over two-clause premises ("A and B"; the hypothesis is about one clause)
  tiny-paraphrase  PAWS-like: is the second sentence a paraphrase (passive, moved time adverb) or does it swap
                   roles or change a word?
  tiny-negation    is the sentence negated?
  tiny-sst         sentiment of "the dog is (not) happy" / "the happy dog eats ...": adjective polarity,
                   flipped by a negated copula

Every intermediate example whose text contains a target evaluation sentence (word for word, anywhere) is
dropped, and target training items never repeat an evaluation premise: no test sentence is seen in training.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from adapterx.core import tinyworld as tw
from adapterx.core.tinyworld import Clause

NLI_LABELS: tuple[str, ...] = ("entailment", "neutral", "contradiction")
PARAPHRASE_LABELS: tuple[str, ...] = ("different", "paraphrase")
NEGATION_LABELS: tuple[str, ...] = ("affirmative", "negated")
SENTIMENT_LABELS: tuple[str, ...] = ("negative", "positive")

TARGET_POOLS = ("target", "shared")
INTERMEDIATE_POOLS = ("shared", "intermediate")


def random_clause(
    rng: random.Random,
    pools: tuple[str, ...],
    *,
    adjective: float = 1.0,
    time: float = 0.4,
    negated: float = 0.3,
    animate_object: float = 0.4,
) -> Clause:
    verb = rng.choice(tw.verbs(pools))
    subject = rng.choice(tw.nouns(pools, animate=True))
    people = [n for n in tw.nouns(pools, animate=True) if n != subject]
    animate = tw.takes_animate(verb) and rng.random() < animate_object
    obj = rng.choice(people if animate else tw.nouns(pools, animate=False))
    return Clause(
        subject,
        verb,
        obj,
        rng.choice(tw.adjectives(pools)) if rng.random() < adjective else None,
        rng.random() < negated,
        rng.choice(tw.TIME_WORDS) if rng.random() < time else None,
    )


def _other(rng: random.Random, options: list[str], current: str) -> str:
    return rng.choice([o for o in options if o != current])


def neutral_change(rng: random.Random, c: Clause, pools: tuple[str, ...]) -> Clause:
    """A clause the premise `c` neither entails nor contradicts: another object or subject, the roles swapped
    (a person object), or a time the premise does not give."""
    kinds = ["object", "subject"] + (["swap"] if c.obj in tw.nouns(pools, animate=True) else [])
    kinds += ["time"] if c.time is None else []
    kind = rng.choice(kinds)
    if kind == "object":
        same_kind = tw.nouns(pools, animate=c.obj in tw.nouns(pools, animate=True))
        return c.replace(obj=_other(rng, [o for o in same_kind if o != c.subject], c.obj))
    if kind == "subject":
        return c.replace(subject=_other(rng, [s for s in tw.nouns(pools, animate=True) if s != c.obj], c.subject))
    if kind == "swap":
        return c.replace(subject=c.obj, obj=c.subject)
    return c.replace(time=rng.choice(tw.TIME_WORDS))


def hypothesis(rng: random.Random, premise: Clause, label: int, pools: tuple[str, ...]) -> Clause:
    """entailment: less specific (no adjective, maybe no time); contradiction: the negation flipped; neutral:
    see `neutral_change`. Hypotheses carry no adjective."""
    plain = premise.replace(adjective=None)
    if label == 0:
        return plain.replace(time=None) if plain.time and rng.random() < 0.5 else plain
    if label == 2:
        return plain.replace(negated=not plain.negated)
    if label == 1:
        return neutral_change(rng, plain, pools)
    raise ValueError(f"NLI label must be 0, 1 or 2, got {label}")


# ------------------------------------------------------------------------------------------- target
def xnli_item(rng: random.Random, label: int) -> tuple[Clause, Clause, int]:
    premise = random_clause(rng, TARGET_POOLS)
    return premise, hypothesis(rng, premise, label, TARGET_POOLS), label


def render_xnli(item: tuple[Clause, Clause, int], language: str) -> dict:
    premise, hyp, label = item
    return {"premise": tw.render(premise, language), "hypothesis": tw.render(hyp, language), "label": label}


# ------------------------------------------------------------------------------------------- intermediate
def nli_example(rng: random.Random, label: int) -> dict:
    """The target's rules of inference (as MNLI and XNLI share one protocol) over other material: the
    intermediate vocabulary, premises of one clause or two ("A and B", the hypothesis about one of them), and
    hypotheses also in the passive."""
    first = random_clause(rng, INTERMEDIATE_POOLS, adjective=0.6, time=0.3)
    about, premise = first, tw.render(first, "en")
    if rng.random() < 0.5:
        second = random_clause(rng, INTERMEDIATE_POOLS, adjective=0.5, time=0.2)
        about = rng.choice([first, second])
        premise = f"{premise} and {tw.render(second, 'en')}"
    hyp = hypothesis(rng, about, label, INTERMEDIATE_POOLS)
    return {
        "premise": premise,
        "hypothesis": tw.render_passive(hyp) if rng.random() < 0.3 else tw.render(hyp, "en"),
        "label": label,
    }


def _forms(c: Clause) -> list[str]:
    return ["active", "passive", "front"] if c.time else ["active", "passive"]


def _surface(rng: random.Random, c: Clause, form: str | None = None) -> str:
    """One English surface form of a clause: active, passive, or active with the time adverb in front."""
    form = form or rng.choice(_forms(c))
    if form == "passive":
        return tw.render_passive(c)
    sentence = tw.render(c, "en")
    return tw.front_time(sentence, c.time) if form == "front" else sentence


def paraphrase_example(rng: random.Random, label: int) -> dict:
    """1: the same clause, in another surface form or the same; 0: the roles swapped (word order matters:
    PAWS-like) or one word changed, with the same mix of forms (so that the form alone tells nothing)."""
    pools = INTERMEDIATE_POOLS
    c = random_clause(rng, pools, adjective=0.3, time=0.5, negated=0.2, animate_object=0.6)
    first_form = rng.choice(_forms(c))
    # another surface form, or the same one (then a paraphrase is the sentence itself), for both labels alike
    second_form = rng.choice(_forms(c)) if rng.random() < 0.4 else rng.choice([f for f in _forms(c) if f != first_form])
    first = _surface(rng, c, first_form)
    if label == 1:
        return {"sentence1": first, "sentence2": _surface(rng, c, second_form), "label": label}
    person_object = c.obj in tw.nouns(pools, animate=True)
    kind = rng.choice(["object", "subject", "verb"] + ["swap", "swap"] * person_object)
    if kind == "swap":
        other = c.replace(subject=c.obj, obj=c.subject)
    elif kind == "verb":
        verbs = [v for v in tw.verbs(pools) if tw.takes_animate(v) or not person_object]
        other = c.replace(verb=_other(rng, verbs, c.verb))
    elif kind == "object":
        other = c.replace(obj=_other(rng, [o for o in tw.nouns(pools, animate=person_object) if o != c.subject], c.obj))
    else:
        other = c.replace(subject=_other(rng, [s for s in tw.nouns(pools, animate=True) if s != c.obj], c.subject))
    return {"sentence1": first, "sentence2": _surface(rng, other, second_form), "label": label}


def negation_example(rng: random.Random, label: int) -> dict:
    """Is the sentence negated (active, passive, or "the dog is (not) happy")?"""
    if rng.random() < 0.25:
        pools = INTERMEDIATE_POOLS
        return {
            "sentence": tw.render_copula(
                rng.choice(tw.nouns(pools, animate=True)),
                rng.choice(tw.adjectives(pools)),
                bool(label),
                rng.choice([None, *tw.TIME_WORDS]),
            ),
            "label": label,
        }
    c = random_clause(rng, INTERMEDIATE_POOLS, adjective=0.5).replace(negated=bool(label))
    return {"sentence": _surface(rng, c), "label": label}


def sentiment_example(rng: random.Random, label: int) -> dict:
    """ "the dog is (not) ADJ": polarity of ADJ, flipped by "not"; "the ADJ dog eats ...": polarity of ADJ
    (negating the verb says nothing of the dog)."""
    pools = INTERMEDIATE_POOLS
    if rng.random() < 0.6:
        negated = rng.random() < 0.4
        adjective = rng.choice(tw.adjectives(pools, polarity=label if not negated else 1 - label))
        sentence = tw.render_copula(
            rng.choice(tw.nouns(pools, animate=True)), adjective, negated, rng.choice([None, *tw.TIME_WORDS])
        )
        return {"sentence": sentence, "label": label}
    c = random_clause(rng, pools).replace(adjective=rng.choice(tw.adjectives(pools, polarity=label)))
    return {"sentence": _surface(rng, c), "label": label}


# ------------------------------------------------------------------------------------------- sets
def balanced(
    make: Callable[[random.Random, int], object],
    n: int,
    n_labels: int,
    seed: int,
    keep: Callable[[object], bool] = lambda _: True,
) -> list:
    """n items from `make(rng, label)`, labels balanced and shuffled, without the ones `keep` rejects;
    reproducible by seed."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        while not keep(item := make(rng, i % n_labels)):
            pass
        items.append(item)
    rng.shuffle(items)
    return items


def contains_any(text: str, sentences: set[str], lengths: set[int]) -> bool:
    """Whether `text` contains one of `sentences` word for word (at word boundaries)."""
    words = text.split()
    return any(" ".join(words[i : i + n]) in sentences for n in lengths for i in range(len(words) - n + 1))


def texts(row: dict) -> list[str]:
    return [v for k, v in row.items() if k != "label" and isinstance(v, str)]
