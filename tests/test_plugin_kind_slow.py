"""A new adapter kind from a plugin module touches no file of adapterx: written to a directory of its own (LoHa
through peft, on the public base `adapterx.methods.peft_base.PeftMethod`), named with --plugins / --plugins-dir
or a recipe's plugins:, it trains, evaluates, composes, is benched for training cost (in fresh worker processes)
and runs through a recipe with controls -- the capacity-matched control scaled as the kind says."""

from __future__ import annotations

import contextlib
import io
import json
import sys

import pytest

from adapterx.cli.main import main
from adapterx.methods import METHODS
from adapterx.store import read_metadata

pytestmark = pytest.mark.slow

PLUGIN = """
import dataclasses
from dataclasses import dataclass

from peft import LoHaConfig

from adapterx.methods import AdapterSpec, register_method
from adapterx.methods.peft_base import PeftMethod


@dataclass(frozen=True)
class LohaSpec(AdapterSpec):
    kind = "loha"
    r: int = 4
    alpha: float = 8.0
    target_modules: tuple[str, ...] = ("query", "value")


class LohaMethod(PeftMethod):
    kind, title, spec_type = "loha", "LoHa", LohaSpec
    module_fields = ("target_modules",)
    not_mergeable_reason = "a Hadamard product of two low-rank matrices has no plain form here"

    def peft_config(self, spec):
        return LoHaConfig(r=spec.r, alpha=spec.alpha, target_modules=list(spec.target_modules))

    def capacity_scaled(self, spec, factor):
        return dataclasses.replace(spec, r=spec.r * factor, alpha=spec.alpha * factor), ""


register_method(LohaMethod)
"""
MODULE = "axplugin_loha"
RECIPE = f"""\
name: plugged-kind
backbone: builtin:tiny-xlmr
plugins: [{MODULE}]
output_dir: {{out}}
adapter: {{{{kind: loha, r: 2}}}}
intermediate: {{{{tasks: [tiny-nli], train_limit: 16, train: {{{{max_steps: 2, batch_size: 8}}}}}}}}
target:
  tasks: [tiny-xnli]
  strategies: [stack, continue]
  train_limit: 16
  train: {{{{max_steps: 2, batch_size: 8}}}}
controls: {{{{shuffled_labels: [tiny-nli], step_matched: true, capacity_matched: true}}}}
evaluate: {{{{splits: [test], limit: 8, languages: [en, de], forms: [unmerged]}}}}
bench: {{{{enabled: false}}}}
"""
TINY = ["--max-steps", "2", "--batch-size", "8", "--train-limit", "16"]


def cli(*argv) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    assert code == 0, err.getvalue()[-3000:]
    return code, out.getvalue()


@pytest.fixture
def plugin(tmp_path):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / f"{MODULE}.py").write_text(PLUGIN)
    yield ["--plugins", MODULE, "--plugins-dir", folder]
    if "loha" in METHODS:
        METHODS.unregister("loha")
    sys.modules.pop(MODULE, None)


def test_a_plugin_kind_goes_through_every_command(plugin, tmp_path):
    for seed in (0, 1):
        cli(
            "train",
            *plugin,
            "--task",
            "tiny-nli",
            "--adapter",
            "kind=loha,r=2",
            "--seed",
            seed,
            *TINY,
            "--output",
            tmp_path / f"a{seed}",
        )
    first, second = (tmp_path / f"a{seed}" / "adapter" for seed in (0, 1))
    assert read_metadata(first)["spec"]["kind"] == "loha"
    cli(
        "evaluate",
        *plugin,
        "--task",
        "tiny-nli",
        "--adapter",
        f"loha={first},{second}",
        "--split",
        "validation",
        "--limit",
        "8",
        "--languages",
        "en",
        "--output",
        tmp_path / "scores.json",
    )
    assert json.loads((tmp_path / "scores.json").read_text())
    _, out = cli("compose", *plugin, "--adapter", f"p={first}", "--adapter", f"q={second}", "--mode", "stack")
    assert "loha" in out
    cli(
        "bench",
        "--train",
        *plugin,
        "--train-kinds",
        "loha",
        "--shape",
        "builtin:tiny-xlmr",
        "--batch-sizes",
        "2",
        "--seq-lens",
        "8",
        "--iterations",
        "3",
        "--warmup",
        "0",
        "--no-progress",
        "--output",
        tmp_path / "bench",
    )
    rows = json.loads((tmp_path / "bench" / "results.json").read_text())["results"]
    assert [r["kind"] for r in rows] == ["loha"] and rows[0]["error"] is None
    assert rows[0]["spec"]["kind"] == "loha" and rows[0]["params"]["trainable"] > 0


def test_a_recipe_with_controls_runs_a_plugin_kind(plugin, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.format(out=tmp_path / "out"))
    cli("run", recipe, "--plugins-dir", plugin[-1])
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert "capacity-matched" in json.dumps(results)
    specs = [read_metadata(p.parent)["spec"] for p in (tmp_path / "out").rglob("adapterx.json")]
    assert {s["kind"] for s in specs} == {"loha"} and {"r": 4} in [{"r": s["r"]} for s in specs]
