"""The 18 tasks of the paper: registered by name, with XTREME's languages, the public dataset ids/configs,
clear errors for missing data, the `adapterx tasks` listing and recipes naming them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import datasets
import pytest

from adapterx.cli.tasks import add_tasks_parser
from adapterx.core.errors import AdapterxError, RecipeError
from adapterx.tasks import all_tasks, get_task
from adapterx.tasks.data import load_split

FIXTURES = Path(__file__).parent / "fixtures"
INTERMEDIATE = ("anli", "ccg", "commonsenseqa", "cosmosqa", "hellaswag", "mnli", "qqp", "squad", "sst2")
TARGETS = ("xnli", "pawsx", "udpos", "panx", "xquad", "mlqa", "tydiqa", "bucc2018", "tatoeba")
LANGUAGE_COUNTS = {
    "xnli": 15,
    "pawsx": 7,
    "udpos": 33,
    "panx": 40,
    "xquad": 11,
    "mlqa": 7,
    "tydiqa": 9,
    "bucc2018": 4,
    "tatoeba": 36,
}
HEADS = {
    "anli": "classification",
    "mnli": "classification",
    "qqp": "classification",
    "sst2": "classification",
    "xnli": "classification",
    "pawsx": "classification",
    "ccg": "tagging",
    "udpos": "tagging",
    "panx": "tagging",
    "squad": "span_qa",
    "xquad": "span_qa",
    "mlqa": "span_qa",
    "tydiqa": "span_qa",
    "hellaswag": "multiple_choice",
    "cosmosqa": "multiple_choice",
    "commonsenseqa": "multiple_choice",
    "bucc2018": "retrieval",
    "tatoeba": "retrieval",
}


def test_all_eighteen_tasks_are_registered_with_roles_heads_and_languages():
    names = {t.name for t in all_tasks()}
    assert set(INTERMEDIATE) | set(TARGETS) <= names
    for name in INTERMEDIATE:
        task = get_task(name)
        assert (task.role, task.languages, task.train_language) == ("intermediate", ("en",), "en")
    for name, count in LANGUAGE_COUNTS.items():
        task = get_task(name)
        assert (task.role, len(task.languages)) == ("target", count), name
    assert get_task("bucc2018").languages == ("de", "fr", "ru", "zh")
    assert get_task("bucc2018").train_language is None and get_task("tatoeba").train_language is None
    assert {name: get_task(name).head for name in HEADS} == HEADS


class _Recorder:
    """Stands in for datasets.load_dataset: records the calls and returns tiny rows of the hub's schema."""

    def __init__(self, rows: dict):
        self.rows, self.calls = rows, []

    def __call__(self, path, name=None, split=None, **kwargs):
        self.calls.append((path, name, split, kwargs.get("trust_remote_code")))
        return datasets.Dataset.from_dict(self.rows)


@pytest.mark.parametrize(
    "task, split, language, rows, expected",
    [
        (
            "mnli",
            "test",
            "en",
            {"premise": ["a"], "hypothesis": ["b"], "label": [2]},
            [("nyu-mll/glue", "mnli", "validation_mismatched")],
        ),
        (
            "anli",
            "train",
            "en",
            {"premise": ["a"], "hypothesis": ["b"], "label": [0]},
            [("stanfordnlp/snli", None, "train"), ("nyu-mll/glue", "mnli", "train")]
            + [("facebook/anli", None, f"train_r{r}") for r in (1, 2, 3)],
        ),
        (
            "anli",
            "validation",
            "en",
            {"premise": ["a"], "hypothesis": ["b"], "label": [0]},
            [("facebook/anli", None, f"dev_r{r}") for r in (1, 2, 3)],
        ),
        (
            "xnli",
            "test",
            "sw",
            {"premise": ["a"], "hypothesis": ["b"], "label": [1]},
            [("facebook/xnli", "sw", "test")],
        ),
        (
            "pawsx",
            "validation",
            "ja",
            {"sentence1": ["a"], "sentence2": ["b"], "label": ["1"]},
            [("google/xtreme", "PAWS-X.ja", "validation")],
        ),
        ("udpos", "test", "de", {"tokens": [["a"]], "pos_tags": [[7]]}, [("google/xtreme", "udpos.German", "test")]),
        ("panx", "train", "en", {"tokens": [["a"]], "ner_tags": [[1]]}, [("google/xtreme", "PAN-X.en", "train")]),
        ("xquad", "test", "th", None, [("google/xtreme", "XQuAD.th", "validation")]),
        ("xquad", "train", "en", None, [("rajpurkar/squad", None, "train")]),
        ("mlqa", "test", "zh", None, [("google/xtreme", "MLQA.zh.zh", "test")]),
        ("tydiqa", "test", "en", None, [("google/xtreme", "tydiqa", "validation")]),
        (
            "tatoeba",
            "test",
            "de",
            {"source_sentence": ["a\n"], "target_sentence": ["b\n"], "source_lang": ["deu"], "target_lang": ["eng"]},
            [("google/xtreme", "tatoeba.deu", "validation")],
        ),
        (
            "hellaswag",
            "validation",
            "en",
            {"ctx_a": ["a"], "ctx_b": ["b"], "endings": [["1", "2", "3", "4"]], "label": ["2"]},
            [("Rowan/hellaswag", None, "validation")],
        ),
        (
            "cosmosqa",
            "train",
            "en",
            {
                "context": ["c"],
                "question": ["q"],
                "answer0": ["0"],
                "answer1": ["1"],
                "answer2": ["2"],
                "answer3": ["3"],
                "label": [3],
            },
            [("allenai/cosmos_qa", None, "train")],
        ),
        (
            "commonsenseqa",
            "train",
            "en",
            {"question": ["q"], "choices": [{"label": list("ABCDE"), "text": list("vwxyz")}], "answerKey": ["E"]},
            [("tau/commonsense_qa", None, "train")],
        ),
        (
            "qqp",
            "train",
            "en",
            {"question1": ["a"], "question2": ["b"], "label": [1]},
            [("nyu-mll/glue", "qqp", "train")],
        ),
        ("sst2", "validation", "en", {"sentence": ["a"], "label": [0]}, [("nyu-mll/glue", "sst2", "validation")]),
        ("squad", "validation", "en", None, [("rajpurkar/squad", None, "validation")]),
    ],
)
def test_hub_loaders_use_the_public_ids_configs_and_splits(monkeypatch, task, split, language, rows, expected):
    if rows is None:  # SQuAD schema (id prefix picks TyDiQA's language)
        rows = {
            "id": ["english-1"],
            "title": ["t"],
            "context": ["the dog"],
            "question": ["who?"],
            "answers": [{"text": ["dog"], "answer_start": [4]}],
        }
    recorder = _Recorder(rows)
    monkeypatch.setattr(datasets, "load_dataset", recorder)
    out = load_split(get_task(task), split, language)
    assert [c[:3] for c in recorder.calls] == expected
    assert all(c[3] is False for c in recorder.calls)  # trust_remote_code=False, always
    assert len(out) == len(expected) * len(next(iter(rows.values())))


def test_hub_rows_are_normalised_for_their_processor(monkeypatch):
    monkeypatch.setattr(datasets, "load_dataset", _Recorder({"tokens": [["Die", "Stadt"]], "pos_tags": [[5, 7]]}))
    row = load_split(get_task("udpos"), "test", "de")[0]
    assert row == {"tokens": ["Die", "Stadt"], "tags": [5, 7]}  # ClassLabel ids kept (DET, NOUN)
    monkeypatch.setattr(
        datasets,
        "load_dataset",
        _Recorder(
            {
                "id": ["english-1", "finnish-2"],
                "title": ["", ""],
                "context": ["c", "d"],
                "question": ["q", "r"],
                "answers": [{"text": ["c"], "answer_start": [0]}] * 2,
            }
        ),
    )
    rows = load_split(get_task("tydiqa"), "test", "fi")
    assert rows["id"] == ["finnish-2"] and rows["language"] == ["fi"]


def test_offline_hub_error_says_to_use_data_dir(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(AdapterxError, match="--data-dir"):
        load_split(get_task("xnli"), "test", "de")


def test_missing_language_split_and_ccg_without_files_are_clear_errors():
    with pytest.raises(AdapterxError, match="present: .*test.de.tsv"):
        load_split(get_task("xnli"), "test", "fr", FIXTURES)
    with pytest.raises(AdapterxError, match="languages: ar, bg, de"):
        load_split(get_task("xnli"), "test", "xx", FIXTURES)
    with pytest.raises(AdapterxError, match="no split 'test'; splits: train, validation"):
        load_split(get_task("sst2"), "test", "en", FIXTURES)
    with pytest.raises(AdapterxError, match="no training data"):
        load_split(get_task("tatoeba"), "train", "en", FIXTURES)
    with pytest.raises(AdapterxError, match="LDC.*--data-dir"):
        load_split(get_task("ccg"), "train")
    with pytest.raises(AdapterxError, match="English SQuAD v1.1 in en only"):
        load_split(get_task("xquad"), "validation", "de", FIXTURES)


def _run_cli(*argv: str, capsys) -> str:
    parser = argparse.ArgumentParser(prog="adapterx")
    add_tasks_parser(parser.add_subparsers())
    args = parser.parse_args(["tasks", *argv])
    assert args.func(args) == 0
    return capsys.readouterr().out


def test_tasks_command_lists_all_eighteen(capsys):
    out = _run_cli(capsys=capsys)
    listed = {line.split()[0] for line in out.splitlines()[1:]}
    assert set(INTERMEDIATE) | set(TARGETS) <= listed
    assert "ner_f1" in out and "ar bg de el en es fr hi ru sw th tr ur vi zh" in out
    infos = json.loads(_run_cli("--json", "--role", "target", capsys=capsys))
    assert {i["name"] for i in infos} >= set(TARGETS) and all(i["role"] == "target" for i in infos)
    assert (
        infos[[i["name"] for i in infos].index("udpos")]["sources"]["test"]["de"]
        == "google/xtreme / udpos.German [test]"
    )
    detail = _run_cli("tatoeba", capsys=capsys)
    assert "google/xtreme / tatoeba.afr [validation]" in detail


def _recipe(tmp_path: Path, intermediate: list[str], target: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(
        f"name: r\nbackbone: builtin:tiny-xlmr\nadapter: {{kind: lora, r: 2}}\n"
        f"intermediate: {{tasks: {intermediate}}}\ntarget: {{tasks: [{target}]}}\n"
    )
    return path


def test_recipes_name_these_tasks(tmp_path):
    from adapterx.study.recipe import load_recipe

    recipe = load_recipe(_recipe(tmp_path, list(INTERMEDIATE), "xnli"))
    assert recipe.intermediate.tasks == list(INTERMEDIATE)
    for target in TARGETS:  # retrieval targets too: the runner evaluates the intermediate adapter on them
        assert load_recipe(_recipe(tmp_path, ["squad"], target)).target.tasks == [target]
    for name in ("bucc2018", "tatoeba"):  # retrieval targets have no training data (see the runner)
        with pytest.raises(RecipeError, match="no training data"):
            load_recipe(_recipe(tmp_path, [name], "xnli"))


def test_anli_trains_on_snli_mnli_and_anli_without_snlis_unlabelled_pairs(monkeypatch):
    """Phang et al.'s ANLI: SNLI + MNLI + ANLI rounds 1-3 (jiant's full ANLI); SNLI's -1 (no gold label) dropped."""
    rows = {
        "stanfordnlp/snli": {"premise": ["a", "b"], "hypothesis": ["c", "d"], "label": [-1, 2]},
        "nyu-mll/glue": {"premise": ["e"], "hypothesis": ["f"], "label": [1]},
        "facebook/anli": {"premise": ["g"], "hypothesis": ["h"], "label": [0]},
    }
    monkeypatch.setattr(
        datasets, "load_dataset", lambda path, name=None, split=None, **kw: datasets.Dataset.from_dict(rows[path])
    )
    train = load_split(get_task("anli"), "train", "en")
    assert train["premise"] == ["b", "e", "g", "g", "g"] and train["label"] == [2, 1, 0, 0, 0]
