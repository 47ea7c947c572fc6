"""The tokenisation-sensitive paths on XLM-R's real vocabulary (builtin:multilingual-e5-small's tokenizer):
span QA offsets, windows and answers across window borders on the XQuAD/MLQA/TyDiQA/SQuAD fixtures and on
contexts in Chinese, Japanese, Korean, Arabic, Thai, Hindi and decomposed French; tagging labels on first
sub-words on the PAN-X/UDPOS fixtures and on words in several scripts (fast: tokenizer only). Then (slow) the kind
matrix and merge on the real encoder, retrieval's layer choice, and `adapterx train` / `adapterx merge` from the
command line with the merged checkpoint loaded by plain transformers in a fresh process. (Every fixture end to end
through the real encoder: test_tasks_paths.py with -m slow.)"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import torch
from torch.utils.data import DataLoader

from adapterx import store
from adapterx.core.heads import HeadSpec
from adapterx.core.model import AdaptedModel
from adapterx.deploy.merge import TOLERANCE, merge_adapters
from adapterx.methods import parse_spec
from adapterx.tasks import get_task
from adapterx.tasks.data import load_split
from adapterx.tasks.offsets import cover_absorbed_marks
from adapterx.tasks.processing import RetrievalProcessor, evaluate_language, processor_for

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
QA_FIXTURES = [
    ("xquad", "test", "de"),
    ("xquad", "validation", "en"),
    ("mlqa", "test", "de"),
    ("mlqa", "validation", "de"),
    ("tydiqa", "test", "fi"),
    ("squad", "validation", "en"),
]
# written for this test: (language, context, question, answer as it appears in the context)
MULTILINGUAL_QA = [
    ("zh", "小明昨天在图书馆读了一本关于中国历史的书。", "小明在哪里读书？", "图书馆"),
    ("ja", "田中さんは毎朝七時に駅まで歩きます。", "田中さんはどこまで歩きますか？", "駅"),
    ("ko", "민수는 어제 부산에서 오랜 친구를 만났다.", "민수는 어디에서 친구를 만났나?", "부산"),
    ("ar", "يعيش أحمد في مدينة القاهرة منذ عشر سنوات.", "أين يعيش أحمد؟", "القاهرة"),
    ("th", "สมชายไปเที่ยวเชียงใหม่กับครอบครัวเมื่อเดือนที่แล้ว", "สมชายไปเที่ยวที่ไหน", "เชียงใหม่"),
    ("hi", "राम ने कल दिल्ली में एक नई किताब खरीदी।", "राम ने किताब कहाँ खरीदी?", "दिल्ली"),
    (
        "fr",
        "Nous avons de\u0301jeune\u0301 au cafe\u0301 pre\u0300s de la gare.",
        "Où avons-nous déjeuné ?",
        "cafe\u0301",
    ),
]


def _oracle(encoded, processor, tokenizer, make) -> list:
    """Predictions from logits `make(batch)` that put all mass on the gold labels."""
    predictions = []
    for batch in DataLoader(encoded, batch_size=4, collate_fn=processor.collator(tokenizer)):
        predictions.extend(processor.predict(make(batch), batch))
    return predictions


def _one_hot(labels, n):
    return torch.nn.functional.one_hot(labels.clamp(min=0), n).float() * 10


def _qa_task(name: str, max_length: int | None = None, stride: int | None = None):
    """The task, or the task with short windows (questions cut to 12 tokens, so that contexts get windows)."""
    task = get_task(name)
    if max_length is None:
        return task
    options = {**task.options, "doc_stride": stride, "max_query_length": 12}
    return dataclasses.replace(task, max_length=max_length, options=options)


def _labelled_spans(task, rows, tokenizer):
    """{example: [(window, start char, end char)]} of the windows whose labels point at an answer."""
    processor = processor_for(task)
    encoded = processor.encode(task, rows, tokenizer)
    spans: dict[int, list] = {}
    for w, enc in enumerate(encoded):
        assert len(enc["input_ids"]) <= task.max_length
        start, end = enc["labels"]
        if (start, end) != (0, 0):
            spans.setdefault(enc["example_index"], []).append(
                (w, enc["offset_mapping"][start][0], enc["offset_mapping"][end][1])
            )
    return processor, encoded, spans


def _span_qa_oracle(processor, task, encoded, rows, tokenizer) -> list[str]:
    def make(batch):
        logits = torch.full((*batch["input_ids"].shape, 2), -10.0)
        for i, (s, e) in enumerate(batch["labels"].tolist()):
            if (s, e) != (0, 0):
                logits[i, s, 0] = logits[i, e, 1] = 10.0
        return logits

    return processor.postprocess(task, _oracle(encoded, processor, tokenizer, make), encoded, rows)


@pytest.mark.parametrize("window", [None, (16, 4)], ids=["task-window", "small-windows"])
@pytest.mark.parametrize("name, split, language", QA_FIXTURES)
def test_span_qa_fixtures_on_the_real_tokenizer(e5_tokenizer, name, split, language, window):
    task = _qa_task(name, *(window or (None, None)))
    rows = load_split(task, split, language, FIXTURES)
    processor, encoded, spans = _labelled_spans(task, rows, e5_tokenizer)
    answers = [a["text"][0] for a in rows["answers"]]
    assert sorted(spans) == list(range(len(rows)))  # every answer is labelled in some window
    for example, found in spans.items():
        context = rows[example]["context"]
        assert all(context[s:e].strip() == answers[example] for _, s, e in found)
    assert _span_qa_oracle(processor, task, encoded, rows, e5_tokenizer) == answers
    if window:  # several windows per context, overlapping
        assert len(encoded) > len(rows)


def test_answers_across_window_borders(e5_tokenizer):
    """With small windows some window holds part of an answer only: it is labelled (0, 0), and the answer is
    labelled in a window that holds all of it."""
    cut = 0
    for name, split, language in QA_FIXTURES:
        task = _qa_task(name, 16, 4)
        rows = load_split(task, split, language, FIXTURES)
        _, encoded, spans = _labelled_spans(task, rows, e5_tokenizer)
        assert sorted(spans) == list(range(len(rows)))
        for enc in encoded:
            answers = rows[enc["example_index"]]["answers"]
            first = answers["answer_start"][0]
            last = first + len(answers["text"][0])
            context = [o for o in enc["offset_mapping"] if o[0] >= 0]
            if any(s < last and e > first for s, e in context) and (context[0][0] > first or context[-1][1] < last):
                cut += 1
                assert enc["labels"] == [0, 0]
    assert cut >= 3


def test_span_qa_offsets_in_many_scripts(e5_tokenizer):
    """Each answer is labelled by the smallest run of whole tokens that covers it, and the oracle returns that
    text; when token borders fall on the answer's borders that is the answer itself."""
    contexts = [c for _, c, _, _ in MULTILINGUAL_QA]
    starts = [c.index(a) for _, c, _, a in MULTILINGUAL_QA]
    rows = datasets.Dataset.from_dict(
        {
            "context": contexts,
            "question": [q for _, _, q, _ in MULTILINGUAL_QA],
            "answers": [{"text": [a], "answer_start": [s]} for (_, _, _, a), s in zip(MULTILINGUAL_QA, starts)],
        }
    )
    task = _qa_task("xquad")
    processor, encoded, spans = _labelled_spans(task, rows, e5_tokenizer)
    predicted = _span_qa_oracle(processor, task, encoded, rows, e5_tokenizer)
    exact = 0
    for i, (language, context, _, answer) in enumerate(MULTILINGUAL_QA):
        tokens = e5_tokenizer(context, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        covering = [
            (s, e) for s, e in cover_absorbed_marks(context, tokens) if s < starts[i] + len(answer) and e > starts[i]
        ]
        expected = context[covering[0][0] : covering[-1][1]].strip()
        assert [context[s:e].strip() for _, s, e in spans[i]] == [expected], language
        assert predicted[i] == expected and answer in expected, language
        exact += expected == answer
    assert exact >= 5  # most answers here are whole tokens (the Korean one carries its case particle)


@pytest.mark.parametrize(
    "name, split, language",
    [("panx", "test", "de"), ("udpos", "test", "de"), ("udpos", "train", "en"), ("panx", "train", "en")],
)
def test_tagging_labels_sit_on_first_subwords_of_the_real_tokenizer(e5_tokenizer, name, split, language):
    task = get_task(name)
    processor = processor_for(task)
    rows = load_split(task, split, language, FIXTURES)
    encoded = processor.encode(task, rows, e5_tokenizer)
    for enc, words in zip(encoded, rows["tokens"]):
        assert sum(label != -100 for label in enc["labels"]) == len(words)
        assert [w for w in enc["word_index"] if w >= 0] == list(range(len(words)))
    predictions = _oracle(encoded, processor, e5_tokenizer, lambda b: _one_hot(b["labels"], task.num_labels))
    assert next(iter(processor.score(task, predictions, encoded, rows).values())) == 100.0


def test_tagging_words_in_many_scripts(e5_tokenizer):
    sentences = [
        ["Москва", "—", "столица", "России", "."],
        ["我", "住", "在", "北京", "。"],
        ["القاهرة", "مدينة", "كبيرة", "جدا"],
        ["กรุงเทพ", "เป็น", "เมืองหลวง"],
        ["दिल्ली", "भारत", "की", "राजधानी", "है", "।"],
        ["Cafe\u0301", "de", "Flore", "👍🏽"],
    ]
    task = get_task("panx")
    tags = [[(3 * i + j) % task.num_labels for j in range(len(s))] for i, s in enumerate(sentences)]
    rows = datasets.Dataset.from_dict({"tokens": sentences, "tags": tags})
    processor = processor_for(task)
    encoded = processor.encode(task, rows, e5_tokenizer)
    for enc, gold in zip(encoded, tags):
        assert [label for label in enc["labels"] if label != -100] == gold
    predictions = _oracle(encoded, processor, e5_tokenizer, lambda b: _one_hot(b["labels"], task.num_labels))
    assert processor.score(task, predictions, encoded, rows)["f1"] == 100.0


# ============================================================================================ slow: the model
@pytest.mark.slow
def test_retrieval_layer_choice_on_the_real_encoder(e5_backbone):
    task = get_task("tatoeba")
    assert RetrievalProcessor.layer(task, e5_backbone.model.config.num_hidden_layers) == 7  # 14/24 of 12
    for layer in (None, -1, 12):
        scores = evaluate_language(
            e5_backbone.model, task, e5_backbone.tokenizer, "test", "de", data_dir=FIXTURES, layer=layer
        )
        assert 0.0 <= scores["accuracy"] <= 100.0


E5_KINDS = {
    "lora": {"kind": "lora", "r": 4, "target_modules": ["query", "key", "value", "dense"]},
    "pfeiffer": {"kind": "bottleneck", "reduction_factor": 16},
    "prompt": {"kind": "prompt", "num_virtual_tokens": 8},
    "prefix": {"kind": "prefix", "num_virtual_tokens": 8},
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(E5_KINDS))
def test_kind_matrix_on_the_real_encoder(e5_backbone, kind, tmp_path):
    tok = e5_backbone.tokenizer
    enc = tok(
        ["Der Hund schläft.", "猫が寝ている。"], ["The dog sleeps.", "A cat sleeps."], padding=True, return_tensors="pt"
    )
    batch = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    torch.manual_seed(0)
    model = AdaptedModel(e5_backbone.fresh_copy())
    store.add_adapter(model, "target", parse_spec(E5_KINDS[kind]))
    store.activate(model, ["target"], trainable="target")
    model.add_head("target", HeadSpec("classification", 3))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    model(**batch, labels=torch.tensor([0, 1])).loss.backward()
    optimizer.step()
    model.eval()
    assert model.backbone.current_fingerprint() == e5_backbone.fingerprint
    with torch.inference_mode():
        expected = model(**batch).logits
    directory = store.save_adapter(model, "target", tmp_path / kind, task="xnli", labels=["e", "n", "c"], head="target")
    reloaded = AdaptedModel(e5_backbone.fresh_copy())
    store.load_adapter(reloaded, directory)
    store.activate(reloaded, ["target"])
    with torch.inference_mode():
        assert torch.equal(reloaded.eval()(**batch).logits, expected)
    if kind == "lora":
        report = merge_adapters(e5_backbone.fresh_copy(), [("target", directory)], tmp_path / "merged")
        assert report.loader == "AutoModelForSequenceClassification" and report.max_abs_diff <= TOLERANCE


def _cli(*argv: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "adapterx.cli.main", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_cli_train_and_merge_offline_and_the_checkpoint_loads_in_plain_transformers(
    e5_cache, tmp_path, plain_transformers_logits
):
    out = _cli(
        "train",
        "--backbone",
        "builtin:multilingual-e5-small",
        "--task",
        "xnli",
        "--data-dir",
        str(FIXTURES),
        "--adapter",
        "kind=lora,r=8,target_modules=query+value",
        "--max-steps",
        "3",
        "--batch-size",
        "4",
        "--output",
        str(tmp_path / "run"),
    )
    assert "trained xnli adapter" in out
    metadata = store.read_metadata(tmp_path / "run" / "adapter")
    assert metadata["base_model"]["name"] == "builtin:multilingual-e5-small"
    out = _cli("merge", "--adapter", str(tmp_path / "run" / "adapter"), "--output", str(tmp_path / "merged"))
    assert "into builtin:multilingual-e5-small weights" in out and "AutoModelForSequenceClassification" in out
    config = json.loads((tmp_path / "merged" / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"] and config["model_type"] == "bert"
    data = plain_transformers_logits(tmp_path / "merged", ["Der Hund schläft im Garten.", "猫が寝ている。"], tmp_path)
    assert data["installed"] == [] and data["imported"] == []
    assert len(data["logits"]) == 2 and len(data["logits"][0]) == 3
