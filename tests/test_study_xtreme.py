"""The study on XTREME's terms: `--dry-run` says the splits, selection and metric of every target; the paper
recipes follow jiant where the setting is not an adapter choice; a run over the fixtures reports the XTREME and
category scores and the best intermediate per target chosen on dev."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from adapterx.cli.main import main
from adapterx.core.errors import RecipeError
from adapterx.study.recipe import load_recipe
from adapterx.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]


def test_dry_run_prints_splits_selection_and_metrics(capsys):
    assert main(["run", str(ROOT / "recipes/paper/grid.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "splits: validation, test (every choice on dev" in out
    assert (
        "selection: English dev every 1000 steps on the first 500 examples; keep the best weights; stop after "
        "30 evaluations without a gain"
    ) in out
    assert "udpos: metric pos_f1 (seqeval F1" in out and "bucc2018: metric bucc_f1" in out
    for name in get_task("xnli").name, "pawsx", "panx", "mlqa", "bucc2018":
        block = out.split(f"  {name}: metric")[1].split("\n  ")[0:5]
        assert any("best intermediate setup: chosen on its dev task score" in line for line in block), name
    tydiqa = out.split("  tydiqa: metric")[1].split("  bucc2018:")[0]
    assert "dev : none [TyDiQA-GoldP's dev set is the set XTREME reports as test]" in tydiqa
    assert "best mean dev gain over the targets that have dev" in tydiqa
    assert "xquad: metric squad" in out and "dev : 1 (en)" in out.split("  xquad:")[1].split("  mlqa:")[0]


def test_paper_recipes_follow_jiant_and_share_one_adapter():
    grid, multitask = (load_recipe(ROOT / f"recipes/paper/{n}.yaml") for n in ("grid", "multitask"))
    assert grid.adapter == multitask.adapter
    for recipe in (grid, multitask, load_recipe(ROOT / "recipes/paper/mnli-to-xnli.yaml")):
        assert recipe.evaluate.splits == ["validation", "test"]
        for name in recipe.target.tasks:
            config = recipe.target.train_for(name)
            assert (config.weight_decay, config.eval_every, config.eval_examples, config.patience, config.select) == (
                0.01,
                1000,
                500,
                30,
                "best",
            ), (recipe.name, name)
    lengths = {name: get_task(name).max_length for name in grid.target.tasks}
    assert lengths == {
        "xnli": 256,
        "pawsx": 256,
        "udpos": 256,
        "panx": 256,
        "xquad": 384,
        "mlqa": 384,
        "tydiqa": 384,
        "bucc2018": 512,
        "tatoeba": 512,
    }


def test_readme_counts_the_trainings_the_grid_runs():
    grid = load_recipe(ROOT / "recipes/paper/grid.yaml")
    trained = [t for t in grid.target.tasks if get_task(t).trainable]
    on_intermediates = len(trained) * len(grid.intermediate.tasks) * len(grid.strategies()) * len(grid.seeds)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    text = " ".join((ROOT / "docs" / "paper-recipes.md").read_text(encoding="utf-8").split())  # linked from README
    assert (
        f"{len(grid.intermediate.tasks)} intermediate adapters, {on_intermediates} target adapters trained on "
        f"them and {len(trained) * len(grid.seeds)} target-only baselines"
    ) in text
    assert "DESIGN.md" not in readme


@pytest.mark.parametrize(
    "evaluate, message",
    [
        ("{splits: [test, dev]}", r"evaluate.splits: a list of validation and test"),
        ("{splits: []}", r"evaluate.splits"),
        ("{target_languages: {xquad: [de]}}", r"target_languages.xquad: not one of target.tasks"),
        ("{target_languages: {xnli: [xx]}}", r"target_languages.xnli: 'xnli' has no language 'xx'"),
    ],
)
def test_bad_evaluate_sections_are_named(tmp_path, evaluate, message):
    path = tmp_path / "r.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        name: r
        backbone: builtin:tiny-xlmr
        adapter: {{kind: lora, r: 4}}
        target: {{tasks: [xnli], strategies: []}}
        evaluate: {evaluate}
        """)
    )
    with pytest.raises(RecipeError, match=message):
        load_recipe(path)


@pytest.mark.slow
def test_fixture_study_reports_xtreme_scores_and_dev_selected_best(tmp_path):
    text = (ROOT / "recipes/xtreme-fixtures.yaml").read_text(encoding="utf-8")
    recipe = tmp_path / "fixtures.yaml"
    recipe.write_text(text + f"output_dir: {tmp_path / 'out'}\n", encoding="utf-8")
    assert main(["run", str(recipe), "--data-dir", str(ROOT / "tests/fixtures")]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    xtreme = results["xtreme"]
    assert set(xtreme["splits"]) == {"validation", "test"}
    test = xtreme["splits"]["test"]
    assert all(test["overall"][s]["xtreme"] is not None for s in ("baseline", "mnli+continue", "squad+continue"))
    assert set(xtreme["best_per_target"]) == set(results["recipe"]["target"]["tasks"])
    assert xtreme["best_per_target"]["tydiqa"]["dev_score"] is None  # no held-out dev: never test
    report = (tmp_path / "out" / "report.md").read_text()
    for heading in (
        "## XTREME scores",
        "### On test",
        "### On dev (validation)",
        "## Intermediate setups ranked by mean gain over the baseline (test)",
        "## Best intermediate setup per target: chosen on dev, scored on test",
        "## Dev scores (validation split",
    ):
        assert heading in report, heading
    assert re.search(r"\| baseline \| \d+\.\d \| \d+\.\d \| \d+\.\d \| \d+\.\d \| \d+\.\d \|", report)
    assert "best setup per target, XTREME score on test:" in report
