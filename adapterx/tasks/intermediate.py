"""The nine English intermediate tasks of Phang et al. 2020: ANLI (trained, as there, on SNLI + MNLI + ANLI), CCG,
CommonsenseQA, Cosmos QA, HellaSwag, MNLI, QQP, SQuAD, SST-2. Each is one `Task` entry: its public dataset (or, for
CCG, local files only), the fields it reads, its head kind, labels and metric. QQP and SST-2 need no code: they are
declared in task files (``adapterx/tasks/qqp.yaml``, ``sst2.yaml``, shared parts in ``_glue.yaml``).

Local copies (``--data-dir``) sit at ``<data_dir>/<task>/<split>.en.<ext>`` in the public formats: GLUE TSV or
the hub's JSON lines for MNLI/QQP/SST-2, ANLI's JSON lines, SQuAD v1.1 JSON, the JSON lines of HellaSwag,
Cosmos QA and CommonsenseQA, and CoNLL-style ``token<TAB>supertag`` files for CCG.
"""

from __future__ import annotations

import datasets

from adapterx.tasks import register_task
from adapterx.tasks.base import DataRequest, Task
from adapterx.tasks.sources import Concat, Source, classification, label_index, require_fields, span_qa, tagging

NLI_LABELS = ("entailment", "neutral", "contradiction")
CHOICES_4 = ("0", "1", "2", "3")
CHOICES_5 = ("A", "B", "C", "D", "E")
QA_OPTIONS = {"doc_stride": 128, "max_query_length": 64, "max_answer_length": 30, "n_best": 20}

# CCGbank supertags. jiant's CCG task uses every category seen in CCGbank's training sections; CCGbank is
# LDC-licensed, so this list is the frequent categories (from the CCG literature) and every other category maps
# to "<other>". The list is part of the task: changing it changes the head's shape.
CCG_LABELS = (
    "N",
    "NP",
    "N/N",
    "NP[nb]/N",
    ",",
    ".",
    "conj",
    ":",
    ";",
    "LRB",
    "RRB",
    "LQU",
    "RQU",
    "PP",
    "PP/NP",
    "(NP\\NP)/NP",
    "NP\\NP",
    "((S\\NP)\\(S\\NP))/NP",
    "(S\\NP)\\(S\\NP)",
    "(S\\NP)/(S\\NP)",
    "S/S",
    "S\\S",
    "(S/S)/NP",
    "(S[dcl]\\NP)/NP",
    "S[dcl]\\NP",
    "(S[b]\\NP)/NP",
    "S[b]\\NP",
    "(S[to]\\NP)/(S[b]\\NP)",
    "(S[dcl]\\NP)/(S[b]\\NP)",
    "(S[dcl]\\NP)/(S[pt]\\NP)",
    "(S[dcl]\\NP)/(S[pss]\\NP)",
    "(S[dcl]\\NP)/(S[ng]\\NP)",
    "(S[dcl]\\NP)/(S[adj]\\NP)",
    "(S[dcl]\\NP)/(S[to]\\NP)",
    "(S[dcl]\\NP)/S[dcl]",
    "(S[dcl]\\NP)/PP",
    "((S[dcl]\\NP)/PP)/NP",
    "(S[dcl]\\NP)/S[em]",
    "S[pss]\\NP",
    "(S[pss]\\NP)/PP",
    "(S[pss]\\NP)/NP",
    "S[ng]\\NP",
    "(S[ng]\\NP)/NP",
    "(S[ng]\\NP)/PP",
    "S[pt]\\NP",
    "(S[pt]\\NP)/NP",
    "(S[pt]\\NP)/(S[pss]\\NP)",
    "(S[b]\\NP)/PP",
    "(S[b]\\NP)/(S[pss]\\NP)",
    "(S[b]\\NP)/(S[adj]\\NP)",
    "S[adj]\\NP",
    "(S[adj]\\NP)/PP",
    "(S[adj]\\NP)/(S[adj]\\NP)",
    "(N/N)/(N/N)",
    "(NP\\NP)/(S[dcl]\\NP)",
    "(NP\\NP)/(S[dcl]/NP)",
    "(NP\\NP)/S[dcl]",
    "(NP/N)\\NP",
    "NP/NP",
    "N/PP",
    "(N/N)\\NP",
    "S[em]/S[dcl]",
    "((S\\NP)\\(S\\NP))/S[dcl]",
    "((S\\NP)\\(S\\NP))/((S\\NP)\\(S\\NP))",
    "(S\\NP)\\((S\\NP)/NP)",
    "((S\\NP)\\(S\\NP))/N",
    "S[wq]/(S[q]/NP)",
    "S[wq]/(S[dcl]\\NP)",
    "(S[q]/(S[b]\\NP))/NP",
    "S[dcl]",
    "S[dcl]/S[dcl]",
    "S[dcl]\\S[dcl]",
    "(S[dcl]\\S[dcl])\\NP",
    "(S[dcl]\\S[dcl])/NP",
    "(S/S)/S[dcl]",
    "((N/N)/(N/N))/((N/N)/(N/N))",
    "<other>",
)


# ------------------------------------------------------------------------------------------------ normalisers
def _hellaswag(rows: datasets.Dataset, request: DataRequest) -> datasets.Dataset:
    """HellaSwag: context ctx_a; each choice is ctx_b (the start of the next sentence) + an ending."""
    require_fields(rows, request, ("ctx_a",), ("ctx_b",), ("endings",), ("label",))
    labels = request.task.labels
    return datasets.Dataset.from_dict(
        {
            "context": rows["ctx_a"],
            "choices": [[f"{b} {e}".strip() for e in endings] for b, endings in zip(rows["ctx_b"], rows["endings"])],
            "label": [label_index(v, labels, request) for v in rows["label"]],
        }
    )


def _cosmosqa(rows: datasets.Dataset, request: DataRequest) -> datasets.Dataset:
    """Cosmos QA: context; each choice is the question followed by one of answer0..answer3."""
    require_fields(
        rows, request, ("context",), ("question",), ("answer0",), ("answer1",), ("answer2",), ("answer3",), ("label",)
    )
    labels = request.task.labels
    return datasets.Dataset.from_dict(
        {
            "context": rows["context"],
            "choices": [[f"{r['question']} {r[f'answer{k}']}" for k in range(4)] for r in rows],
            "label": [label_index(v, labels, request) for v in rows["label"]],
        }
    )


def _commonsenseqa(rows: datasets.Dataset, request: DataRequest) -> datasets.Dataset:
    """CommonsenseQA: the question is the context, the five choice texts the second segments. Reads the hub
    rows (question: str, choices{label, text}, answerKey) and the original files (question{stem, choices})."""
    require_fields(rows, request, ("question",), ("answerKey",))
    contexts, choices = [], []
    for row in rows:
        q = row["question"]
        if isinstance(q, dict):  # original release: {"stem": ..., "choices": [{"label", "text"}, ...]}
            contexts.append(q["stem"])
            options = sorted(q["choices"], key=lambda c: c["label"])
            choices.append([c["text"] for c in options])
        else:
            contexts.append(q)
            pairs = sorted(zip(row["choices"]["label"], row["choices"]["text"]))
            choices.append([text for _, text in pairs])
    return datasets.Dataset.from_dict(
        {
            "context": contexts,
            "choices": choices,
            "label": [label_index(v, request.task.labels, request) for v in rows["answerKey"]],
        }
    )


# ------------------------------------------------------------------------------------------------ tasks
GLUE_FORMATS = ("jsonl", "tsv")
NLI_FIELDS = {"premise": ("premise", "sentence1", "context"), "hypothesis": ("hypothesis", "sentence2")}
MNLI_SOURCE = Source(
    "nyu-mll/glue",
    config="mnli",
    splits={"validation": "validation_matched", "test": "validation_mismatched"},
    formats=GLUE_FORMATS,
    normalise=classification(NLI_FIELDS, label=("label", "gold_label")),
)
ANLI_SOURCE = Source(
    "facebook/anli",
    splits={
        "train": ("train_r1", "train_r2", "train_r3"),
        "validation": ("dev_r1", "dev_r2", "dev_r3"),
        "test": ("test_r1", "test_r2", "test_r3"),
    },
    formats=("jsonl",),
    normalise=classification(NLI_FIELDS, aliases={"e": "entailment", "n": "neutral", "c": "contradiction"}),
)
# SNLI marks pairs without a gold label with -1: they are left out, as in every use of SNLI for training
SNLI_TRAIN = Source(
    "stanfordnlp/snli", normalise=classification(NLI_FIELDS), hub_filter=lambda row, language: row["label"] >= 0
)

register_task(
    Task(
        name="anli",
        role="intermediate",
        head="classification",
        metric="accuracy",
        labels=NLI_LABELS,
        text_fields=("premise", "hypothesis"),
        max_length=256,
        loader=Concat({"train": (SNLI_TRAIN, MNLI_SOURCE, ANLI_SOURCE)}, default=ANLI_SOURCE),
        description="ANLI as Phang et al. 2020 trained it: SNLI + MNLI + ANLI rounds 1-3 (jiant's full ANLI, one NLI "
        "head); dev and test: ANLI rounds 1-3. Locally: anli/train.en.* holds that combination",
    )
)
register_task(
    Task(
        name="ccg",
        role="intermediate",
        head="tagging",
        metric="pos_accuracy",
        labels=CCG_LABELS,
        text_fields=("tokens",),
        label_field="tags",
        max_length=128,
        loader=Source(
            None,
            formats=("conll",),
            normalise=tagging(other="<other>"),
            hub_note="CCGbank is LDC-licensed (LDC2005T13); convert it to 'token<TAB>supertag' lines",
        ),
        description="CCG supertagging (CCGbank; local files only)",
    )
)
register_task(
    Task(
        name="commonsenseqa",
        role="intermediate",
        head="multiple_choice",
        metric="accuracy",
        labels=CHOICES_5,
        text_fields=("context", "choices"),
        max_length=80,
        splits=("train", "validation"),
        loader=Source("tau/commonsense_qa", formats=("jsonl",), normalise=_commonsenseqa),
        description="CommonsenseQA, 5-way multiple choice (tau/commonsense_qa; test answers are hidden)",
    )
)
register_task(
    Task(
        name="cosmosqa",
        role="intermediate",
        head="multiple_choice",
        metric="accuracy",
        labels=CHOICES_4,
        text_fields=("context", "choices"),
        max_length=256,
        splits=("train", "validation"),
        loader=Source("allenai/cosmos_qa", formats=("jsonl",), normalise=_cosmosqa),
        description="Cosmos QA, 4-way reading comprehension (allenai/cosmos_qa; test answers are hidden)",
    )
)
register_task(
    Task(
        name="hellaswag",
        role="intermediate",
        head="multiple_choice",
        metric="accuracy",
        labels=CHOICES_4,
        text_fields=("context", "choices"),
        max_length=128,
        splits=("train", "validation"),
        loader=Source("Rowan/hellaswag", formats=("jsonl",), normalise=_hellaswag),
        description="HellaSwag, 4-way sentence completion (Rowan/hellaswag; test answers are hidden)",
    )
)
register_task(
    Task(
        name="mnli",
        role="intermediate",
        head="classification",
        metric="accuracy",
        labels=NLI_LABELS,
        text_fields=("premise", "hypothesis"),
        max_length=256,
        loader=MNLI_SOURCE,
        description="MultiNLI (nyu-mll/glue mnli); validation = matched dev, test = mismatched dev",
    )
)
register_task(
    Task(
        name="squad",
        role="intermediate",
        head="span_qa",
        metric="squad",
        max_length=384,
        text_fields=("question", "context"),
        label_field="answers",
        splits=("train", "validation"),
        loader=Source("rajpurkar/squad", formats=("json", "jsonl"), normalise=span_qa),
        options=dict(QA_OPTIONS),
        description="SQuAD v1.1 extractive QA (rajpurkar/squad)",
    )
)
