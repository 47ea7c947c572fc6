"""Issue 19, case 7: a recipe's ``plugins:`` is code the recipe runs, so it is imported only from the installed
modules or a directory named with ``--plugins-dir`` -- never from a ``.py`` that happens to lie beside the recipe
or in the current directory (``python -m adapterx.cli`` puts the current directory first on sys.path), not even
under ``--dry-run``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from adapterx.tasks import TASKS

ROOT = Path(__file__).resolve().parents[2]
RECIPE = """\
name: plugged
backbone: builtin:tiny-xlmr
plugins: [{module}]
adapter: {{kind: lora, r: 4}}
target: {{tasks: [tiny-xnli], strategies: []}}
bench: {{enabled: false}}
"""
PLUGIN = """\
from pathlib import Path
Path(__file__).with_name("PLUGIN-RAN").write_text("the recipe's neighbour ran")
"""


@pytest.fixture
def study(tmp_path, monkeypatch):
    """A recipe with a plugin module beside it, as `python -m adapterx.cli` run from that directory sees it: the
    directory is the current one and first on sys.path. The module is forgotten afterwards."""
    folder = tmp_path / "study"
    folder.mkdir()
    module = f"beside_{os.getpid()}_{abs(hash(str(tmp_path))) % 10**6}"
    (folder / f"{module}.py").write_text(PLUGIN)
    (folder / "r.yaml").write_text(RECIPE.format(module=module))
    monkeypatch.chdir(folder)
    monkeypatch.syspath_prepend(str(folder))
    before = set(TASKS.names())
    yield folder, module
    sys.modules.pop(module, None)
    for name in set(TASKS.names()) - before:
        TASKS.unregister(name)


def test_a_py_beside_the_recipe_does_not_run_even_with_dry_run(kit, study):
    folder, module = study
    line = kit.one_line_error(["run", "r.yaml", "--dry-run"], "r.yaml", "plugins[0]", module, "--plugins-dir")
    assert "cannot import plugin module" in line
    assert not (folder / "PLUGIN-RAN").exists() and module not in sys.modules


def test_a_plugins_dir_named_on_the_command_line_is_searched(kit, study):
    folder, module = study
    code, out, err = kit.cli("run", "r.yaml", "--dry-run", "--plugins-dir", str(folder))
    assert code == 0, err
    assert (folder / "PLUGIN-RAN").exists() and "r.yaml: valid" in out


def test_command_line_plugins_come_from_plugins_dir_only(kit, study):
    folder, module = study
    kit.one_line_error(["tasks", "--plugins", module], "--plugins[0]", module)
    assert not (folder / "PLUGIN-RAN").exists()
    code, _, err = kit.cli("tasks", "--plugins", module, "--plugins-dir", ".")
    assert code == 0 and (folder / "PLUGIN-RAN").exists(), err


@pytest.mark.slow
def test_python_m_adapterx_cli_beside_the_recipe_runs_nothing(tmp_path):
    """The case as reported: a fresh `python -m adapterx.cli run r.yaml --dry-run` in the recipe's directory."""
    (tmp_path / "beside_recipe.py").write_text(PLUGIN)
    (tmp_path / "r.yaml").write_text(RECIPE.format(module="beside_recipe"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "adapterx.cli", "run", "r.yaml", "--dry-run"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "plugins[0]" in result.stderr and not (tmp_path / "PLUGIN-RAN").exists()
    assert textwrap.dedent(result.stderr).count("Traceback") == 0
