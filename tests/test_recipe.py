"""Recipes: every bad field is named; a run writes adapters, results and report; a rerun reuses it all."""

import json
import shutil
import textwrap

import pytest

from adapterx.cli.main import main
from adapterx.core.errors import RecipeError
from adapterx.study.recipe import load_recipe

SMALL = """\
name: small
backbone: builtin:tiny-xlmr
output_dir: {out}
adapter: {{kind: lora, r: 4}}
intermediate:
  tasks: [tiny-nli]
  train_limit: 64
  train: {{max_steps: 4, batch_size: 16, learning_rate: 3.0e-3}}
target:
  tasks: [tiny-xnli]
  strategies: [stack, continue]
  train_limit: 32
  train: {{max_steps: 3, batch_size: 16}}
evaluate: {{splits: [validation, test], limit: 24, languages: [en, de]}}
bench: {{enabled: false}}
"""


def _write(tmp_path, text, name="r.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_quickstart_recipe_is_valid():
    recipe = load_recipe("recipes/quickstart.yaml")
    assert recipe.target.tasks == ["tiny-xnli"] and recipe.intermediate.tasks


@pytest.mark.parametrize(
    "change, message",
    [
        (("target:\n", "target:\n  flavour: x\n"), r"unknown field 'target.flavour'"),
        (("max_steps: 3,", "max_stepz: 3,"), r"unknown field 'target.train.max_stepz'"),
        (("max_steps: 3,", "max_steps: three,"), r"'target.train.max_steps' must be int"),
        (("tasks: [tiny-xnli]", "tasks: [tiny-xnlj]"), r"unknown task 'tiny-xnlj'"),
        (("tasks: [tiny-xnli]", "task: tiny-xnli"), r"unknown field 'target.task'"),
        (("bench: {enabled: false}", "bench: {enabled: false, shapes: x}"), r"unknown field 'bench.shapes'"),
        (("tasks: [tiny-nli]", "tasks: [tiny-nli]\n  multitask: true"), r"multitask needs at least two"),
        (("[stack, continue]", "[stack, glue]"), r"target.strategies: unknown strategy 'glue'"),
        (("languages: [en, de]", "languages: [en, xx]"), r"evaluate.languages: .* no language 'xx'"),
        (("{kind: lora, r: 4}", "{kind: lora, rank: 4}"), r"adapter: unknown field.*'rank'"),
        (("{kind: lora, r: 4}", "{kind: prefix-lora}"), r"unknown adapter kind 'prefix-lora'"),
        (("learning_rate: 3.0e-3", "learning_rate: 3.0"), r"intermediate.train.learning_rate: must be in"),
        (("name: small\n", ""), r"missing required field 'name'"),
    ],
)
def test_bad_recipe_fields_are_named(tmp_path, change, message):
    text = SMALL.format(out=tmp_path / "out").replace(*change)
    path = _write(tmp_path, text)
    with pytest.raises(RecipeError, match=message) as info:
        load_recipe(path)
    assert str(path) in str(info.value)


def test_strategies_the_kind_rules_out(tmp_path):
    prefix = SMALL.format(out=tmp_path / "o").replace("{kind: lora, r: 4}", "{kind: prefix, num_virtual_tokens: 4}")
    recipe = load_recipe(_write(tmp_path, prefix))  # switching the kind is one field: stack is left out
    assert recipe.strategies() == ["continue"] and "cannot be active beside" in recipe.skipped_strategies()["stack"]
    with pytest.raises(RecipeError, match=r"target.strategies: none of them works with adapter kind 'prefix'"):
        load_recipe(_write(tmp_path, prefix.replace("[stack, continue]", "[stack]")))


def test_not_a_mapping_and_bad_yaml(tmp_path):
    with pytest.raises(RecipeError, match="mapping"):
        load_recipe(_write(tmp_path, "- a\n- b\n"))
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(_write(tmp_path, "name: [unclosed\n"))
    with pytest.raises(RecipeError, match="no such recipe"):
        load_recipe(tmp_path / "missing.yaml")


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """SMALL run once for the module, with a bench and all three forms: (recipe path, output dir, results)."""
    root = tmp_path_factory.mktemp("small")
    out = root / "out"
    path = _write(
        root,
        SMALL.format(out=out)
        .replace(
            "bench: {enabled: false}", "bench: {batch_sizes: [1], seq_lens: [16], iterations: 3, warmup: 1, threads: 1}"
        )
        .replace("languages: [en, de]", "languages: [en, de], forms: [unmerged, fused, merged]"),
    )
    assert main(["run", str(path)]) == 0
    return path, out, json.loads((out / "results.json").read_text())


def _copy_of(small_run, tmp_path):
    """The shared run's recipe and outputs copied to `tmp_path` (a test that changes them changes its own copy)."""
    path, out, _ = small_run
    shutil.copytree(out, tmp_path / "out")
    return _write(tmp_path, path.read_text().replace(str(out), str(tmp_path / "out"))), tmp_path / "out"


def test_run_writes_report_and_reuses_cached_phases(small_run, capsys):
    path, out, results = small_run
    assert results["schema_version"] == 4
    target = results["targets"]["tiny-xnli"]
    runs = {(r["label"], r["form"]): r for r in target["rows"]}
    assert set(runs) == {
        (label, form)
        for label in ("target-only", "tiny-nli+stack", "tiny-nli+continue")
        for form in ("unmerged", "fused", "merged")
    }
    for row in runs.values():
        assert set(row["per_language"]) == {"en", "de"}
    stacked = runs[("tiny-nli+stack", "unmerged")]
    assert stacked["modules_at_inference"] == 2 and runs[("tiny-nli+stack", "merged")]["modules_at_inference"] == 0
    assert stacked["bench_form"] == "lora-stack-2" and set(stacked["overhead"]) == {"1"}
    # merging changes no prediction: the merged form scores what the unmerged form scores
    for label in ("target-only", "tiny-nli+stack", "tiny-nli+continue"):
        for form in ("merged", "fused"):
            assert runs[(label, form)]["per_language"] == runs[(label, "unmerged")]["per_language"], (label, form)
    assert runs[("tiny-nli+stack", "fused")]["bench_form"] == "lora-stack-2-fused"
    assert runs[("tiny-nli+stack", "fused")]["modules_at_inference"] == 1
    b = stacked["benefit"]["de"]
    assert b["mean"] == pytest.approx(
        stacked["per_language"]["de"]["mean"] - runs[("target-only", "unmerged")]["per_language"]["de"]["mean"]
    )
    report = (out / "report.md").read_text()
    assert "NOT pretrained" in report and "| tiny-nli+stack | stack | unmerged | 2 |" in report
    assert "## Inference overhead" in report and "| lora-stack-2 |" in report
    assert (out / "benefit_vs_overhead.png").stat().st_size > 10_000
    for name in ("intermediate/tiny-nli/seed-0", "tiny-xnli/target-only/seed-0", "tiny-xnli/tiny-nli+stack/seed-0"):
        assert (out / "adapters" / name / "adapter" / "adapterx.json").is_file()
    assert not any(p["reused"] for p in results["phases"])

    capsys.readouterr()
    assert main(["run", str(path)]) == 0
    again = json.loads((out / "results.json").read_text())
    assert all(p["reused"] for p in again["phases"])
    assert again["targets"] == results["targets"]


@pytest.mark.slow
def test_force_redoes_every_phase(small_run, tmp_path):
    path, _ = _copy_of(small_run, tmp_path)
    assert main(["run", str(path), "--force"]) == 0
    forced = json.loads((tmp_path / "out" / "results.json").read_text())
    assert not any(p["reused"] for p in forced["phases"])


def test_seeds_multitask_jobs_and_a_retrieval_target(tmp_path, capsys):
    out = tmp_path / "out"
    text = (
        SMALL.format(out=out)
        .replace("tasks: [tiny-nli]", "tasks: [tiny-nli, tiny-sst]\n  multitask: true")
        .replace("tasks: [tiny-xnli]", "tasks: [tiny-xnli, tatoeba]")
        .replace("strategies: [stack, continue]", "strategies: [continue]")
        .replace("languages: [en, de]", "languages: [de], forms: [unmerged]")
        + "seeds: [0, 1]\ndata_dir: tests/fixtures\n"
    )
    path = _write(tmp_path, text)
    assert main(["run", str(path), "--list-jobs"]) == 0
    listing = capsys.readouterr().out
    assert "0\tbaselines" in listing and "3\tintermediate:multitask" in listing
    for job in (3, 0):  # any order: each job is independent
        assert main(["run", str(path), "--job", str(job)]) == 0
    assert (out / "jobs" / "3.json").is_file() and not (out / "results.json").exists()
    assert main(["run", str(path)]) == 0
    results = json.loads((out / "results.json").read_text())
    reused = {p["name"]: p["reused"] for p in results["phases"]}
    assert reused["intermediate/multitask/seed-1"] and reused["target/tiny-xnli/target-only/seed-1"]
    assert not reused["intermediate/tiny-sst/seed-0"]
    xnli = {r["label"]: r for r in results["targets"]["tiny-xnli"]["rows"]}
    assert set(xnli) == {"target-only", "tiny-nli+continue", "tiny-sst+continue", "multitask+continue"}
    assert xnli["multitask+continue"]["seeds"] == [0, 1] and xnli["multitask+continue"]["average"]["n"] == 2
    lo, hi = xnli["multitask+continue"]["average_benefit"]["ci"]
    assert lo <= xnli["multitask+continue"]["average_benefit"]["mean"] <= hi
    tatoeba = {r["label"]: r for r in results["targets"]["tatoeba"]["rows"]}
    assert set(tatoeba) == {"no-intermediate", "tiny-nli", "tiny-sst", "multitask"}
    assert "benefit" in tatoeba["multitask"] and tatoeba["multitask"]["strategy"] == "direct"
    meta = json.loads((out / "adapters/intermediate/multitask/seed-1/adapter/adapterx.json").read_text())
    assert meta["training"]["tasks"] == ["tiny-nli", "tiny-sst"] and meta["training"]["sizes"] == [64, 64]
    assert main(["run", str(path), "--job", "9"]) == 2
    assert "jobs 0..3" in capsys.readouterr().err


def test_changed_config_retrains_only_what_depends_on_it(small_run, tmp_path):
    path, out = _copy_of(small_run, tmp_path)
    path.write_text(path.read_text().replace("max_steps: 3,", "max_steps: 4,"))
    assert main(["run", str(path)]) == 0
    phases = {p["name"]: p["reused"] for p in json.loads((out / "results.json").read_text())["phases"]}
    assert phases["intermediate/tiny-nli/seed-0"] is True
    assert phases["target/tiny-xnli/target-only/seed-0"] is False
    assert phases["target/tiny-xnli/tiny-nli+stack/seed-0"] is False


def test_dry_run_and_cli_errors(tmp_path, capsys):
    path = _write(tmp_path, SMALL.format(out=tmp_path / "out"))
    assert main(["run", str(path), "--dry-run"]) == 0
    assert "valid" in capsys.readouterr().out
    bad = _write(tmp_path, SMALL.format(out=tmp_path / "o").replace("tasks: [tiny-xnli]", "tasks: [nope]"), "bad.yaml")
    assert main(["run", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "unknown task 'nope'" in err and "Traceback" not in err


def test_train_and_evaluate_commands(tmp_path, capsys):
    common = ["--train-limit", "48", "--max-steps", "3", "--batch-size", "16"]
    assert (
        main(
            [
                "train",
                "--task",
                "tiny-nli",
                "--adapter",
                "kind=lora,r=4,target_modules=query+value",
                "--output",
                str(tmp_path / "nli"),
                *common,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "trainable" in out and "saved to" in out
    assert (
        main(
            [
                "train",
                "--task",
                "tiny-xnli",
                "--adapter",
                "kind=lora,r=4",
                "--strategy",
                "stack",
                "--on-top-of",
                str(tmp_path / "nli" / "adapter"),
                "--output",
                str(tmp_path / "x"),
                *common,
            ]
        )
        == 0
    )
    for seed in (1, 2):
        assert (
            main(
                [
                    "train",
                    "--task",
                    "tiny-xnli",
                    "--adapter",
                    "kind=lora,r=4",
                    "--seed",
                    str(seed),
                    "--output",
                    str(tmp_path / f"only-{seed}"),
                    *common,
                ]
            )
            == 0
        )
    seeds = ",".join(str(tmp_path / f"only-{seed}" / "adapter") for seed in (1, 2))
    assert (
        main(
            [
                "evaluate",
                "--task",
                "tiny-xnli",
                "--adapter",
                f"target-only={seeds}",
                "--adapter",
                f"stacked={tmp_path / 'x' / 'adapter'}",
                "--forms",
                "unmerged,merged",
                "--limit",
                "16",
                "--languages",
                "en,fr",
                "--output",
                str(tmp_path / "scores.json"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "| stacked | stack | unmerged | 2 |" in out and "| stacked | stack | merged | 0 |" in out
    scores = json.loads((tmp_path / "scores.json").read_text())
    rows = {(r["label"], r["form"]): r for r in scores["rows"]}
    assert rows[("target-only", "unmerged")]["average"]["n"] == 2 and "benefit" not in rows[("target-only", "unmerged")]
    assert set(rows[("stacked", "merged")]["benefit"]) == {"en", "fr"}
    assert rows[("stacked", "merged")]["per_language"] == rows[("stacked", "unmerged")]["per_language"]
    assert main(["train", "--task", "tiny-xnli", "--strategy", "stack", "--output", str(tmp_path / "y")]) == 2
    assert "--on-top-of" in capsys.readouterr().err


@pytest.mark.parametrize(
    "recipe", ["recipes/paper/mnli-to-xnli.yaml", "recipes/paper/grid.yaml", "recipes/paper/multitask.yaml"]
)
def test_paper_recipes_validate_and_list_their_jobs(recipe, capsys):
    assert main(["run", recipe, "--dry-run", "--list-jobs"]) == 0
    out = capsys.readouterr().out
    assert "valid" in out and "0\tbaselines" in out
    loaded = load_recipe(recipe)
    assert loaded.backbone == "FacebookAI/xlm-roberta-large"
    if "grid" in recipe:
        assert len(loaded.intermediate.tasks) == 9 and len(loaded.target.tasks) == 9
        assert loaded.target.train_for("udpos").epochs == 10 and loaded.target.train_for("xnli").epochs == 2
        assert out.count("\tintermediate:") == 9


def test_overrides_are_checked(tmp_path):
    text = SMALL.format(out=tmp_path / "o").replace(
        "  train_limit: 32\n", "  train_limit: 32\n  overrides: {xnli: {epochs: 2}}\n"
    )
    with pytest.raises(RecipeError, match=r"target.overrides.xnli: 'xnli' is not one of target.tasks"):
        load_recipe(_write(tmp_path, text))
    text = SMALL.format(out=tmp_path / "o").replace(
        "  train_limit: 32\n", "  train_limit: 32\n  overrides: {tiny-xnli: {epoch: 2}}\n"
    )
    with pytest.raises(RecipeError, match=r"unknown field 'target.overrides.tiny-xnli.epoch'"):
        load_recipe(_write(tmp_path, text))


def test_fuse_and_merge_then_train_strategies_run_from_a_recipe(tmp_path):
    out = tmp_path / "out"
    text = (
        SMALL.format(out=out)
        .replace("{kind: lora, r: 4}", "{kind: bottleneck, reduction_factor: 4}")
        .replace("tasks: [tiny-nli]", "tasks: [tiny-nli, tiny-sst]")
        .replace("strategies: [stack, continue]", "strategies: [fuse, merge-then-train, continue]")
        .replace("languages: [en, de]", "languages: [de], forms: [unmerged, merged]")
    )
    path = _write(tmp_path, text)
    recipe = load_recipe(path)
    assert recipe.strategies() == ["fuse", "continue"]
    assert "cannot be merged" in recipe.skipped_strategies()["merge-then-train"]
    assert main(["run", str(path)]) == 0
    results = json.loads((out / "results.json").read_text())
    rows = {(r["label"], r["form"]): r for r in results["targets"]["tiny-xnli"]["rows"]}
    assert ("tiny-nli+tiny-sst+fuse", "unmerged") in rows and ("tiny-nli+continue", "unmerged") in rows
    assert rows[("tiny-nli+tiny-sst+fuse", "unmerged")]["modules_at_inference"] == 4  # 2 adapters + fusion + target
    assert not any(form == "merged" for _, form in rows)  # bottleneck adapters cannot be merged
    assert "merge-then-train` left out" in (out / "report.md").read_text()
    names = [p["name"] for p in results["phases"]]
    assert names.count("intermediate/tiny-nli/seed-0") == 1  # the fusion job found the intermediate adapters trained


def test_merge_then_train_from_a_recipe(tmp_path):
    out = tmp_path / "out"
    path = _write(
        tmp_path, SMALL.format(out=out).replace("strategies: [stack, continue]", "strategies: [merge-then-train]")
    )
    assert main(["run", str(path)]) == 0
    rows = {
        (r["label"], r["form"]): r
        for r in json.loads((out / "results.json").read_text())["targets"]["tiny-xnli"]["rows"]
    }
    merged, unmerged = rows[("tiny-nli+merge-then-train", "merged")], rows[("tiny-nli+merge-then-train", "unmerged")]
    assert merged["per_language"] == unmerged["per_language"] and merged["modules_at_inference"] == 0
