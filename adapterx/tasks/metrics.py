"""Metrics by name, with XTREME's official semantics. Each takes predictions and references and returns named
scores on a 0-100 scale (as XTREME reports them), the primary score first. Add one with
``@register_metric("name")`` (from outside the package: the ``adapterx.metrics`` entry-point group).

  accuracy       classification, multiple choice, Tatoeba (top-1 retrieval)
  pos_f1         UDPOS as XTREME's evaluate.py scores it: seqeval F1 over the tag sequences, token accuracy beside
  pos_accuracy   token accuracy over words (CCG)
  ner_f1         entity-level F1 (seqeval, IOB2), as XTREME's PAN-X
  squad          SQuAD v1.1 F1 / exact match (SQuAD, XQuAD, TyDiQA-GoldP)
  mlqa           F1 / exact match with MLQA's language-specific normalisation
  bucc_f1        F1 of mined pairs above a score threshold; the threshold maximises F1 on the dev set
"""

from __future__ import annotations

import re
import string
import sys
import unicodedata
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from adapterx.core.registry import Registry

Metric = Callable[..., dict[str, float]]
METRICS: Registry[Metric] = Registry("metric", group="adapterx.metrics")


def register_metric(name: str) -> Callable[[Metric], Metric]:
    return METRICS.register(name)


def get_metric(name: str) -> Metric:
    return METRICS.get(name)


def _check_lengths(predictions: Sequence, references: Sequence) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not references:
        raise ValueError("a metric over an empty set is undefined")


@register_metric("accuracy")
def accuracy(predictions: Sequence, references: Sequence) -> dict[str, float]:
    _check_lengths(predictions, references)
    correct = sum(int(p == r) for p, r in zip(predictions, references))
    return {"accuracy": 100.0 * correct / len(references)}


# ------------------------------------------------------------------------------------------------ tagging
def _check_sentences(predictions: Sequence[Sequence], references: Sequence[Sequence]) -> None:
    _check_lengths(predictions, references)
    for pred, gold in zip(predictions, references):
        if len(pred) != len(gold):
            raise ValueError(f"a sentence has {len(pred)} predicted tags for {len(gold)} words")


@register_metric("pos_accuracy")
def pos_accuracy(predictions: Sequence[Sequence], references: Sequence[Sequence]) -> dict[str, float]:
    """Accuracy over all words of all sentences (CCG; UDPOS's second column)."""
    _check_sentences(predictions, references)
    total = correct = 0
    for pred, gold in zip(predictions, references):
        total += len(gold)
        correct += sum(int(p == g) for p, g in zip(pred, gold))
    if not total:
        raise ValueError("token accuracy over zero words is undefined")
    return {"accuracy": 100.0 * correct / total}


def _seqeval(predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """seqeval's default-mode precision/recall/F1, as XTREME's evaluate.py calls it (``f1``)."""
    from seqeval.metrics import f1_score, precision_score, recall_score

    preds, golds = [list(p) for p in predictions], [list(g) for g in references]
    with warnings.catch_warnings():  # seqeval warns on tags without a B-/I- prefix (every UPOS tag)
        warnings.simplefilter("ignore", UserWarning)
        return {
            "f1": 100.0 * float(f1_score(golds, preds)),
            "precision": 100.0 * float(precision_score(golds, preds)),
            "recall": 100.0 * float(recall_score(golds, preds)),
        }


@register_metric("ner_f1")
def ner_f1(predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Entity-level precision/recall/F1 over IOB2 tag strings (seqeval's default mode, as XTREME uses it)."""
    _check_sentences(predictions, references)
    return _seqeval(predictions, references)


@register_metric("pos_f1")
def pos_f1(predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """XTREME's UDPOS score: the same seqeval F1 as PAN-X over the raw UPOS tags (seqeval reads a tag's first
    letter as its chunk prefix, so neighbouring equal tags form one chunk), then token accuracy."""
    _check_sentences(predictions, references)
    scores = _seqeval(predictions, references)
    return {
        "f1": scores["f1"],
        "accuracy": pos_accuracy(predictions, references)["accuracy"],
        "precision": scores["precision"],
        "recall": scores["recall"],
    }


# ------------------------------------------------------------------------------------------------ span QA
def squad_normalize(text: str) -> str:
    """SQuAD v1.1's normalize_answer: lower case, drop punctuation and English articles, squeeze spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


MLQA_PUNCT = {chr(i) for i in range(sys.maxunicode) if unicodedata.category(chr(i)).startswith("P")} | set(
    string.punctuation
)
MLQA_WHITESPACE_LANGS = ("en", "es", "hi", "vi", "de", "ar")
MLQA_MIXED_SEGMENTATION_LANGS = ("zh",)
MLQA_ARTICLES = {
    "en": r"\b(a|an|the)\b",
    "es": r"\b(un|una|unos|unas|el|la|los|las)\b",
    "vi": r"\b(của|là|cái|chiếc|những)\b",
    "de": r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b",
    "ar": r"\sال^|ال",
    "hi": None,  # Hindi has no formal articles
    "zh": None,  # nor has Chinese
}


def _mixed_segmentation(text: str) -> list[str]:
    """MLQA's segmentation for Chinese: every CJK character and punctuation mark is a token."""
    out, run = [], ""
    for ch in text:
        if re.search(r"[\u4e00-\u9fa5]", ch) or ch in MLQA_PUNCT:
            out.extend(run.split())
            run = ""
            out.append(ch)
        else:
            run += ch
    out.extend(run.split())
    return out


def mlqa_normalize(text: str, language: str) -> str:
    """MLQA's normalize_answer(s, lang): lower, drop Unicode punctuation, drop the language's articles, then
    re-tokenise (whitespace, or mixed segmentation for Chinese)."""
    if language not in MLQA_ARTICLES:
        raise ValueError(f"MLQA has no normalisation for language {language!r}; languages: {', '.join(MLQA_ARTICLES)}")
    text = "".join(ch for ch in text.lower() if ch not in MLQA_PUNCT)
    if MLQA_ARTICLES[language]:
        text = re.sub(MLQA_ARTICLES[language], " ", text)
    tokens = _mixed_segmentation(text) if language in MLQA_MIXED_SEGMENTATION_LANGS else text.split()
    return " ".join(t for t in tokens if t.strip())


def _f1(prediction_tokens: list[str], gold_tokens: list[str]) -> float:
    common = Counter(prediction_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(prediction_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _qa_scores(
    predictions: Sequence[str], references: Sequence[Sequence[str]], normalize: Callable[[str], str]
) -> dict[str, float]:
    _check_lengths(predictions, references)
    f1 = em = 0.0
    for pred, golds in zip(predictions, references):
        if isinstance(golds, str):
            golds = [golds]
        if not golds:
            raise ValueError("a question has no gold answer")
        norm_pred = normalize(pred)
        f1 += max(_f1(norm_pred.split(), normalize(g).split()) for g in golds)
        em += max(float(norm_pred == normalize(g)) for g in golds)
    return {"f1": 100.0 * f1 / len(references), "exact_match": 100.0 * em / len(references)}


@register_metric("squad")
def squad(
    predictions: Sequence[str], references: Sequence[Sequence[str]], language: str | None = None
) -> dict[str, float]:
    """SQuAD v1.1: per question the best F1 / exact match over its gold answers, averaged (`language` unused)."""
    return _qa_scores(predictions, references, squad_normalize)


@register_metric("mlqa")
def mlqa(predictions: Sequence[str], references: Sequence[Sequence[str]], language: str = "en") -> dict[str, float]:
    """MLQA's official F1 / exact match: as SQuAD, with the answer normalisation of the context language."""
    return _qa_scores(predictions, references, lambda s: mlqa_normalize(s, language))


# ------------------------------------------------------------------------------------------------ retrieval
Pair = tuple[str, str]


def bucc_optimize_threshold(candidates: dict[Pair, float], gold: set[Pair]) -> float:
    """XTREME's ``bucc_optimize``: walk the candidates by falling score; where F1 improves, the threshold is the
    midpoint between that score and the next. It starts at 0, so with no correct candidate every pair scoring
    >= 0 is kept. Where the last candidate gives the best F1 the official code indexes past the end (and
    fails); here the threshold is then that last score, which keeps every candidate as the walk intended."""
    items = sorted(candidates.items(), key=lambda kv: -kv[1])
    best_f1, threshold, correct = 0.0, 0.0, 0
    for i, (pair, score) in enumerate(items):
        correct += int(pair in gold)
        if correct == 0:
            continue
        precision, recall = correct / (i + 1), correct / len(gold)
        f1 = 2 * precision * recall / (precision + recall)
        if f1 > best_f1:
            best_f1 = f1
            threshold = (score + items[i + 1][1]) / 2 if i + 1 < len(items) else score
    return threshold


@register_metric("bucc_f1")
def bucc_f1(candidates: dict[Pair, float], gold: Iterable[Pair], threshold: float | None = None) -> dict[str, float]:
    """F1 of the candidate pairs scoring >= threshold against the gold pairs. With no threshold, it is chosen
    on these same candidates and gold (XTREME does this on the dev set, then applies it to the test set)."""
    gold = set(map(tuple, gold))
    if not gold:
        raise ValueError("BUCC F1 needs at least one gold pair")
    if threshold is None:
        threshold = bucc_optimize_threshold(candidates, gold)
    mined = {pair for pair, score in candidates.items() if score >= threshold}
    correct = len(mined & gold)
    if correct == 0:
        precision = recall = f1 = 0.0
    else:
        precision, recall = correct / len(mined), correct / len(gold)
        f1 = 2 * precision * recall / (precision + recall)
    return {"f1": 100.0 * f1, "precision": 100.0 * precision, "recall": 100.0 * recall, "threshold": float(threshold)}


@register_metric("tatoeba_accuracy")
def tatoeba_accuracy(predictions: Sequence[int], references: Sequence[int]) -> dict[str, float]:
    """Top-1 retrieval accuracy: the nearest English sentence is the translation (XTREME's Tatoeba score)."""
    return accuracy(predictions, references)
