"""Messages go through `logging`: the library never prints or configures logging; the CLI's --verbose / --quiet
set the level, and --quiet also hides the progress bars."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

from adapterx.cli.main import build_parser, main
from adapterx.core.log import console, show_progress
from adapterx.study.state import RunState

PACKAGE = Path(__file__).resolve().parents[1] / "adapterx"


@pytest.fixture
def restore_level():
    logger = logging.getLogger("adapterx")
    level, handlers = logger.level, list(logger.handlers)
    yield
    logger.setLevel(level)
    logger.handlers[:] = handlers


def _calls(path: Path) -> list[str]:
    """Names of the functions `path` calls, outside an ``if __name__ == "__main__":`` script block."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    script = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "__main__" in ast.unparse(block.test)
        for n in ast.walk(block)
    }
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and id(node) not in script:
            f = node.func
            names.append(f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else "")
    return names


def test_library_code_neither_prints_nor_configures_logging():
    offenders = [
        f"{p.relative_to(PACKAGE.parent)}: {name}"
        for p in PACKAGE.rglob("*.py")
        if "cli" not in p.relative_to(PACKAGE).parts and p.name != "__main__.py"
        for name in _calls(p)
        if name in ("print", "basicConfig")
    ]
    assert not offenders, "use logging.getLogger(__name__) in library code:\n" + "\n".join(offenders)


def test_levels_and_progress_bars_follow_the_flags(restore_level, capsys):
    console(logging.INFO)
    assert show_progress() and not show_progress(False)
    RunState.log(None, "phase done")  # the study's progress messages are INFO records of adapterx
    assert capsys.readouterr().err == "phase done\n"
    console(logging.WARNING)
    assert not show_progress()
    RunState.log(None, "phase done")
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "flag, level", [("--verbose", logging.DEBUG), ("--quiet", logging.WARNING), (None, logging.INFO)]
)
def test_the_cli_sets_the_level(restore_level, flag, level, capsys):
    assert main([*([flag] if flag else []), "tasks", "tiny-nli"]) == 0
    assert logging.getLogger("adapterx").level == level
    assert "tiny-nli" in capsys.readouterr().out  # command output stays on stdout, whatever the level


def test_verbose_and_quiet_exclude_each_other(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--verbose", "--quiet", "tasks"])
    assert "not allowed with argument" in capsys.readouterr().err
