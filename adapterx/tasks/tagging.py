"""Word-level tagging (UDPOS, PAN-X, CCG) as XTREME encodes and scores it.

Each word is tokenised on its own and its tag sits on its first sub-word (-100 on the other sub-words and on
the special tokens), as XTREME's ``utils_tag.convert_examples_to_features``; a word with no sub-word, or with
more sub-words than fit in a window, becomes the unknown token, as there. A sentence longer than the window is
cut into consecutive parts that each fit, as XTREME's ``*_tokenize_preprocess`` does, so that every word gets a
prediction; scoring joins the parts of a sentence again. A word left without a prediction is an error, never a
silent "O".
"""

from __future__ import annotations

import datasets
from transformers import PreTrainedTokenizerBase

from adapterx.core.errors import AdapterxError
from adapterx.tasks.base import Task
from adapterx.tasks.metrics import get_metric
from adapterx.tasks.processor import PadCollator, Processor, max_length_for, require_columns


def word_pieces(tokenizer: PreTrainedTokenizerBase, words: list[str], budget: int) -> list[list[int]]:
    """The sub-word ids of each word, tokenised alone; the unknown token for a word with none or too many."""
    pieces = tokenizer(list(words), add_special_tokens=False)["input_ids"] if words else []
    return [ids if 0 < len(ids) <= budget else [tokenizer.unk_token_id] for ids in pieces]


def split_sentence(lengths: list[int], budget: int) -> list[tuple[int, int]]:
    """[start, end) word ranges of consecutive parts whose sub-word counts each fit in `budget` (greedy, a new
    part when the next word would overflow: XTREME's preprocessing)."""
    parts, start, used = [], 0, 0
    for i, n in enumerate(lengths):
        if used + n > budget and i > start:
            parts.append((start, i))
            start, used = i, 0
        used += n
    if lengths:
        parts.append((start, len(lengths)))
    return parts


def _special_template(tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[int]]:
    """The special tokens before and after a single sequence (<s> … </s> for XLM-R)."""
    template = tokenizer.build_inputs_with_special_tokens([-1])
    at = template.index(-1)
    return template[:at], template[at + 1 :]


def word_budget(tokenizer: PreTrainedTokenizerBase, max_length: int) -> int:
    """How many sub-words of words fit in one sequence of `max_length` tokens (the special tokens take the rest)."""
    before, after = _special_template(tokenizer)
    return max_length - len(before) - len(after)


def sentence_parts(
    tokenizer: PreTrainedTokenizerBase, words: list[str], budget: int
) -> list[tuple[list[int], list[int]]]:
    """A sentence as the model sequences it is tagged in: (input_ids, word_index) of each part, word_index holding
    the word's index on its first sub-word and -1 on its other sub-words and the special tokens. Evaluation
    (`TaggingProcessor`) and serving (`adapterx.serve`) both encode through here."""
    before, after = _special_template(tokenizer)
    pieces = word_pieces(tokenizer, words, budget)
    parts = []
    for start, end in split_sentence([len(p) for p in pieces], budget):
        ids, word_index = [], []
        for w in range(start, end):
            ids += pieces[w]
            word_index += [w] + [-1] * (len(pieces[w]) - 1)
        parts.append((before + ids + after, [-1] * len(before) + word_index + [-1] * len(after)))
    return parts


class TaggingProcessor(Processor):
    """Tags on first sub-words; long sentences in parts; scoring on words with the task's metric."""

    def encode(self, task: Task, rows: datasets.Dataset, tokenizer: PreTrainedTokenizerBase) -> datasets.Dataset:
        require_columns(task, rows, ("tokens", "tags"))
        n = task.num_labels
        budget = word_budget(tokenizer, max_length_for(task, tokenizer))
        if budget < 1:
            raise AdapterxError(f"task {task.name!r}: max_length {task.max_length} leaves no room for words")

        def tokenize(batch, indices):
            out: dict[str, list] = {
                "input_ids": [],
                "attention_mask": [],
                "labels": [],
                "word_index": [],
                "sentence": [],
            }
            for index, words, tags in zip(indices, batch["tokens"], batch["tags"]):
                if len(tags) != len(words):
                    raise AdapterxError(f"task {task.name!r}: a sentence has {len(words)} words and {len(tags)} tags")
                bad = [t for t in tags if not 0 <= t < n]
                if bad:
                    raise AdapterxError(f"task {task.name!r}: tag {bad[0]} outside 0..{n - 1}")
                for ids, word_index in sentence_parts(tokenizer, words, budget):
                    out["input_ids"].append(ids)
                    out["attention_mask"].append([1] * len(ids))
                    out["labels"].append([tags[w] if w >= 0 else -100 for w in word_index])
                    out["word_index"].append(word_index)
                    out["sentence"].append(index)
            return out

        return rows.map(
            tokenize, batched=True, with_indices=True, remove_columns=rows.column_names, desc=f"encode {task.name}"
        )

    def collator(self, tokenizer):
        return PadCollator(tokenizer, token_labels=True)

    def score(self, task, predictions, encoded, rows) -> dict:
        by_sentence: dict[int, dict[int, int]] = {}
        for preds, words, sentence in zip(predictions, encoded["word_index"], encoded["sentence"]):
            by_sentence.setdefault(sentence, {}).update((w, p) for w, p in zip(words, preds) if w >= 0)
        predicted, gold = [], []
        for i, tags in enumerate(rows["tags"]):
            found = by_sentence.get(i, {})
            missing = [w for w in range(len(tags)) if w not in found]
            if missing:
                raise AdapterxError(
                    f"task {task.name!r}: sentence {i} has no prediction for word(s) {missing[:5]}; "
                    "every word must be scored (this is a bug in adapterx, please report)"
                )
            predicted.append([task.labels[found[w]] for w in range(len(tags))])
            gold.append([task.labels[t] for t in tags])
        return get_metric(task.metric)(predicted, gold)
