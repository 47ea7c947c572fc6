"""Tasks declared in YAML files (adapterx.tasks.declarative): the built-in ones are the same tasks they were in
Python, a user's directory of task files (local JSON lines and TSV through a column mapping, shared parts by
`include:`, a hub config per language) trains and evaluates like a built-in task, and every bad file is a one-line
error naming the file and the field -- including includes that try to leave the directory and YAML bombs."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from adapterx.core import tinyworld
from adapterx.core.errors import AdapterxError
from adapterx.tasks import TASKS, get_task, load_tasks_dir
from adapterx.tasks import tinytasks as tt
from adapterx.tasks.base import DataRequest
from adapterx.tasks.data import load_split
from adapterx.tasks.declarative import read_task_dir
from adapterx.tasks.sources import describe_loader

NLI = ("entailment", "neutral", "contradiction")


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def forget_tasks():
    """Task names a test registers are removed afterwards."""
    before = set(TASKS.names())
    yield
    for name in set(TASKS.names()) - before:
        TASKS.unregister(name)


def test_the_builtin_task_files_declare_the_tasks_the_generator_writes():
    labels = {
        "tiny-xnli": tt.NLI_LABELS,
        "tiny-nli": tt.NLI_LABELS,
        "tiny-paraphrase": tt.PARAPHRASE_LABELS,
        "tiny-negation": tt.NEGATION_LABELS,
        "tiny-sst": tt.SENTIMENT_LABELS,
    }
    for name, expected in labels.items():
        task = get_task(name)
        assert task.labels == expected and task.options == {"head": {"pooling": "mean"}} and task.max_length == 48
        assert task.languages == (tinyworld.LANGUAGES if name == "tiny-xnli" else ("en",))
        assert task.role == ("target" if name == "tiny-xnli" else "intermediate")
    assert get_task("sst2").splits == ("train", "validation") and get_task("qqp").max_length == 128
    assert describe_loader(get_task("sst2").loader, "validation", "en") == "nyu-mll/glue / sst2 [validation]"
    assert "data/builtin/<task>/test.de.{jsonl}" in describe_loader(get_task("tiny-xnli").loader, "test", "de")
    rows = load_split(get_task("tiny-xnli"), "test", "tr", limit=3)
    assert rows.column_names == ["premise", "hypothesis", "label"] and len(rows) == 3


def test_a_directory_of_task_files_trains_like_a_builtin(tmp_path, forget_tasks):
    tasks = tmp_path / "tasks"
    _write(
        tasks / "_nli.yaml", "head: classification\nmetric: accuracy\nlabels: [entailment, neutral, contradiction]\n"
    )
    _write(
        tasks / "toy-nli.yaml",
        "task: toy-nli\ninclude: _nli.yaml\nlanguages: [en, de]\ntext_fields: [premise, hypothesis]\n"
        "source:\n  files: data\n  formats: [jsonl, tsv]\n"
        "  columns: {premise: [premise, sentence1], hypothesis: [hypothesis, sentence2], label: [label, gold]}\n"
        "  label_aliases: {e: entailment, n: neutral, c: contradiction}\n",
    )
    rows = [{"sentence1": f"the dog eats {i}", "sentence2": "the dog eats", "gold": "enc"[i % 3]} for i in range(6)]
    _write(tasks / "data" / "toy-nli" / "train.en.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    _write(tasks / "data" / "toy-nli" / "test.de.tsv", "premise\thypothesis\tlabel\nder hund\tder hund isst\t1\n")
    assert load_tasks_dir(tasks) == ["toy-nli"]
    task = get_task("toy-nli")
    assert (task.role, task.head, task.labels, task.languages) == ("target", "classification", NLI, ("en", "de"))
    train = load_split(task, "train")
    assert train.column_names == ["premise", "hypothesis", "label"] and train["label"] == [0, 1, 2] * 2
    assert load_split(task, "test", "de")["label"] == [1]
    # a --data-dir holding this task's directory comes first
    _write(
        tmp_path / "other" / "toy-nli" / "train.en.jsonl", json.dumps({"premise": "a", "hypothesis": "b", "label": 2})
    )
    assert load_split(task, "train", data_dir=tmp_path / "other")["label"] == [2]
    assert load_tasks_dir(tasks) == ["toy-nli"]  # reading the directory again replaces its tasks
    with pytest.raises(AdapterxError, match=r"task\(s\) \['tiny-nli'\] are registered already"):
        _write(
            tmp_path / "clash" / "t.yaml", "task: tiny-nli\nhead: classification\nmetric: accuracy\nsource: {hub: x}\n"
        )
        load_tasks_dir(tmp_path / "clash")


def test_a_hub_config_per_language(tmp_path, monkeypatch):
    _write(
        tmp_path / "xx.yaml",
        "task: xx-nli\nhead: classification\nmetric: accuracy\nlabels: [entailment, neutral, contradiction]\n"
        "text_fields: [premise, hypothesis]\nlanguages: [en, de]\n"
        "source: {hub: org/xx, config: {en: english, de: german}, splits: {test: [test_a, test_b]},\n"
        "         columns: {premise: premise, hypothesis: hypothesis, label: label}}\n",
    )
    (task,) = read_task_dir(tmp_path)
    calls = []

    def fake(path, name=None, split=None, **kwargs):
        calls.append((path, name, split, kwargs.get("trust_remote_code")))
        return datasets.Dataset.from_dict({"premise": ["a"], "hypothesis": ["b"], "label": [1]})

    monkeypatch.setattr(datasets, "load_dataset", fake)
    assert len(task.loader(DataRequest(task, "test", "de"))) == 2
    assert calls == [("org/xx", "german", "test_a", False), ("org/xx", "german", "test_b", False)]


@pytest.mark.parametrize(
    "files, error",
    [
        (
            {"t.yaml": "task: t\nhead: classification\nmetric: accuracy\nsource: {hub: x}\nlables: [a]\n"},
            r"t.yaml: unknown field\(s\) \['lables'\]",
        ),
        (
            {"t.yaml": "task: t\nhead: classification\nmetric: accuracy\nsource: {hub: x}\nlabels: a\n"},
            r"t.yaml: field 'labels': must be a list of strings, got 'a'",
        ),
        (
            {"t.yaml": "task: t\nhead: classification\nmetric: accuracy\nsource: {hub: x}\nmax_length: true\n"},
            r"field 'max_length': must be an integer",
        ),
        ({"t.yaml": "task: t\nhead: classification\nmetric: accuracy\n"}, r"t.yaml: field 'source' is missing"),
        (
            {"t.yaml": "task: t\nhead: classification\nmetric: accuracy\nsource: {url: x}\n"},
            r"field 'source': unknown field\(s\) \['url'\]",
        ),
        (
            {"t.yaml": "task: t\nhead: tagging\nmetric: f1\nsource: {hub: x, columns: {tokens: w}}\n"},
            r"source'.columns: column mappings are declared for classification heads",
        ),
        (
            {
                "t.yaml": "task: t\nhead: classification\nmetric: accuracy\ntext_fields: [s]\n"
                "source: {hub: x, columns: {s: text}}\n"
            },
            r"columns: map exactly the task's fields \['label', 's'\]",
        ),
        ({"t.yaml": "task: ../t\nhead: classification\nmetric: accuracy\nsource: {hub: x}\n"}, r"not a plain name"),
        ({"t.yaml": "include: /etc/passwd\ntask: t\n"}, r"field 'include': '/etc/passwd' must be relative"),
        ({"t.yaml": "include: ../outside.yaml\ntask: t\n"}, r"field 'include': .*outside.yaml lies outside"),
        ({"t.yaml": "include: _a.yaml\ntask: t\n", "_a.yaml": "include: t.yaml\n"}, r"includes itself"),
        ({"t.yaml": "include: _missing.yaml\ntask: t\n"}, r"'_missing.yaml' is not a file"),
        (
            {
                "a.yaml": "task: t\nhead: classification\nmetric: accuracy\nsource: {hub: x}\n",
                "b.yaml": "task: t\nhead: classification\nmetric: accuracy\nsource: {hub: x}\n",
            },
            r"b.yaml: task 't' is declared in .*a.yaml too",
        ),
        ({"t.yaml": "task: [unclosed\n"}, r"t.yaml: not valid YAML"),
    ],
)
def test_bad_task_files_are_named_with_their_field(tmp_path, files, error):
    root = tmp_path / "tasks"
    _write(tmp_path / "outside.yaml", "head: classification\n")
    for name, text in files.items():
        _write(root / name, text)
    with pytest.raises(AdapterxError, match=error):
        read_task_dir(root)


def test_a_symlink_cannot_carry_an_include_out_and_a_yaml_bomb_is_refused(tmp_path):
    root = tmp_path / "tasks"
    _write(tmp_path / "secret.yaml", "head: classification\n")
    _write(root / "t.yaml", "include: _link.yaml\ntask: t\n")
    (root / "_link.yaml").symlink_to(tmp_path / "secret.yaml")
    with pytest.raises(AdapterxError, match="lies outside"):
        read_task_dir(root)
    (root / "t.yaml").unlink()
    levels = ['a: &a ["x","x","x","x","x","x","x","x","x"]'] + [
        f"{chr(98 + i)}: &{chr(98 + i)} [{','.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(8)
    ]
    _write(root / "bomb.yaml", "\n".join(levels) + "\n")
    with pytest.raises(AdapterxError, match=r"bomb.yaml: the YAML expands to more than"):
        read_task_dir(root)
    _write(root / "bomb.yaml", "task: t\ndescription: " + "x" * (2 << 20) + "\n")
    with pytest.raises(AdapterxError, match=r"bomb.yaml: \d+ bytes; a YAML file here may have at most"):
        read_task_dir(root)
