"""The serving engine answers as `adapterx evaluate` does: per head kind, on the built-in task data, rows of
different adapters mixed in one batch and each row alone give the predictions evaluation gives, with logits
within 1e-5 (fp32). Evaluation's side is computed here by its own code: the setup loaded by
`load_for_inference` (what `adapterx evaluate --forms unmerged` runs) and the task's processor."""

from __future__ import annotations

import random

import datasets
import pytest
import torch
from torch.utils.data import DataLoader

from adapterx.deploy.setup import load_for_inference
from adapterx.serve import Row
from adapterx.study.predictions import predict_language
from adapterx.tasks import get_task
from adapterx.tasks.data import load_split
from adapterx.tasks.processing import processor_for
from adapterx.tasks.retrieval import RetrievalProcessor

pytestmark = pytest.mark.usefixtures("one_thread")
FIXTURES = "tests/fixtures"
ATOL = 1e-5


def evaluated_logits(model, task, rows, tokenizer):
    """(encoded rows, per-sequence logits) as the task's processor computes them in evaluation."""
    processor = processor_for(task)
    encoded = processor.encode(task, rows, tokenizer)
    loader = DataLoader(encoded, batch_size=32, collate_fn=processor.collator(tokenizer))
    out = []
    with torch.inference_mode():
        for batch in loader:
            batch.pop("labels", None)
            logits = model(**batch).logits
            for i in range(len(logits)):
                length = int(batch["attention_mask"][i].sum())
                out.append(logits[i, :length] if logits.dim() == 3 else logits[i])
    return encoded, out


def mixed_and_alone(engine, rows):
    """Answers of `rows` as one shuffled batch (back in order), and of each row alone."""
    order = list(range(len(rows)))
    random.Random(0).shuffle(order)
    mixed = engine.infer([rows[i] for i in order])
    together = [None] * len(rows)
    for k, i in enumerate(order):
        together[i] = mixed[k]
    return together, [engine.infer([row])[0] for row in rows]


def close(a, b) -> float:
    return float((torch.as_tensor(a, dtype=torch.float32) - torch.as_tensor(b, dtype=torch.float32)).abs().max())


def test_classification_rows_of_six_setups_in_one_batch_equal_evaluate(engine, served_dir, pristine_backbone):
    _, dirs = served_dir
    task, tok = get_task("tiny-xnli"), pristine_backbone.tokenizer
    names = ["nli-a", "nli-b", "nli-stacked", "nli-bottleneck", "nli-prompt", "nli-prefix"]
    rows_by_lang = {lang: load_split(task, "test", lang, limit=6) for lang in ("en", "de")}
    expected, rows = [], []
    for name in names:
        model = load_for_inference(pristine_backbone.fresh_copy(), dirs[name])
        for lang, data in rows_by_lang.items():
            _, logits = evaluated_logits(model, task, data, tok)
            _, kept = predict_language(model, task, tok, "test", lang, limit=6)
            assert kept["predicted"].tolist() == [int(x.argmax()) for x in logits]
            for i, example in enumerate(data):
                rows.append(Row("predict", name, text=example["premise"], text_pair=example["hypothesis"]))
                expected.append((int(kept["predicted"][i]), logits[i]))
    mixed, alone = mixed_and_alone(engine, rows)
    for (label, logits), m, a in zip(expected, mixed, alone):
        assert m["label_id"] == a["label_id"] == label
        assert m["label"] == engine.get(m["adapter"]).labels[label]
        assert close(m["logits"], logits) <= ATOL and close(a["logits"], logits) <= ATOL
        assert sum(m["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    # the adapters matter: the same input gets other logits from each setup
    first = {m["adapter"]: m["logits"] for m in mixed[:: len(rows) // len(names)]}
    assert min(close(first[x], first[y]) for x in first for y in first if x < y) > 1e-3


def test_tagging_rows_equal_evaluate_with_word_offsets(engine, served_dir, pristine_backbone):
    _, dirs = served_dir
    task, tok = get_task("udpos"), pristine_backbone.tokenizer
    data = load_split(task, "test", "de", FIXTURES)
    long = [w for _ in range(30) for w in data["tokens"][0]]  # more sub-words than one sequence takes
    data = datasets.concatenate_datasets(
        [data, datasets.Dataset.from_dict({"tokens": [long], "tags": [[0] * len(long)]})]
    )
    rows, expected = [], []
    for name in ("pos-lora", "pos-bottleneck"):
        model = load_for_inference(pristine_backbone.fresh_copy(), dirs[name])
        encoded, logits = evaluated_logits(model, task, data, tok)
        assert encoded["sentence"].count(len(data) - 1) > 1, "the long sentence is tagged in parts"
        words_logits: dict[tuple[int, int], torch.Tensor] = {}
        for seq_logits, word_index, sentence in zip(logits, encoded["word_index"], encoded["sentence"]):
            words_logits.update(((sentence, w), seq_logits[i]) for i, w in enumerate(word_index) if w >= 0)
        for s, words in enumerate(data["tokens"]):
            text = "  ".join(words) + " "  # spaces of any width between words
            rows.append(Row("tag", name, text=text))
            expected.append((text, words, [words_logits[(s, w)] for w in range(len(words))]))
    mixed, alone = mixed_and_alone(engine, rows)
    for (text, words, logits), m, a in zip(expected, mixed, alone):
        assert [t["word"] for t in m["tags"]] == words
        assert [text[t["start"] : t["end"]] for t in m["tags"]] == words
        for tag, tag_alone, want in zip(m["tags"], a["tags"], logits):
            assert tag["tag"] == tag_alone["tag"] == task.labels[int(want.argmax())]
            assert close(tag["logits"], want) <= ATOL and close(tag_alone["logits"], want) <= ATOL


def test_span_qa_rows_equal_evaluate_over_windows(engine, served_dir, pristine_backbone):
    _, dirs = served_dir
    task, tok = get_task("xquad"), pristine_backbone.tokenizer
    short = load_split(task, "test", "de", FIXTURES)
    long = short[0] | {"id": "long", "context": " ".join([short[0]["context"]] * 20)}  # several windows
    data_with_long = datasets.concatenate_datasets([short, datasets.Dataset.from_list([long]).cast(short.features)])
    processor = processor_for(task)
    rows, expected = [], []
    # (evaluation cannot run a prompt adapter on full windows of the tiny backbone: 128 tokens + 4 virtual
    # tokens overflow its 130 positions; serving shortens the windows of such an adapter instead)
    for name, data in (("qa-lora", data_with_long), ("qa-prompt", short)):
        model = load_for_inference(pristine_backbone.fresh_copy(), dirs[name])
        encoded, logits = evaluated_logits(model, task, data, tok)
        answers = processor.postprocess(task, [x.float().numpy() for x in logits], encoded, data)
        for i, example in enumerate(data):
            windows = [w for w, e in zip(logits, encoded["example_index"]) if e == i]
            rows.append(Row("answer", name, question=example["question"], context=example["context"]))
            expected.append((answers[i], windows, example["context"]))
    assert any(len(w) > 1 for _, w, _ in expected), "a context long enough for several windows"
    mixed, alone = mixed_and_alone(engine, rows)
    for (answer, windows, context), m, a in zip(expected, mixed, alone):
        assert m["answer"] == a["answer"] == answer
        if answer:
            assert context[m["start"] : m["end"]] == answer
        assert len(m["logits"]) == len(windows)
        for got, got_alone, want in zip(m["logits"], a["logits"], windows):
            assert close(got, want) <= ATOL and close(got_alone, want) <= ATOL


def test_embeddings_equal_retrieval_pooling_at_any_layer(engine, served_dir, pristine_backbone):
    _, dirs = served_dir
    task, tok = get_task("tatoeba"), pristine_backbone.tokenizer
    data = load_split(task, "test", "de", FIXTURES)
    processor = RetrievalProcessor()
    encoded = processor.encode(task, data, tok)
    texts = [t for pair in zip(data["source_sentence"], data["target_sentence"]) for t in pair]
    rows, expected = [], []
    setups = {
        None: pristine_backbone.fresh_copy().model,
        "encoder": load_for_inference(pristine_backbone.fresh_copy(), dirs["encoder"]),
        "nli-prompt": load_for_inference(pristine_backbone.fresh_copy(), dirs["nli-prompt"]),
    }
    for adapter, model in setups.items():
        for layer in (-1, 1):
            with torch.inference_mode():
                vectors = processor.embed(model, task, encoded, tok, 32, layer)
            for text, vector in zip(texts, vectors):
                rows.append(Row("embed", adapter, text=text, layer=layer, normalize=False))
                expected.append(vector)
    mixed, alone = mixed_and_alone(engine, rows)
    for want, m, a in zip(expected, mixed, alone):
        assert close(m["embedding"], want) <= ATOL and close(a["embedding"], want) <= ATOL
    normalised = engine.infer([Row("embed", "encoder", text=texts[0])])[0]["embedding"]
    assert torch.linalg.norm(torch.tensor(normalised)) == pytest.approx(1.0, abs=1e-6)
