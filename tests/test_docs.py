"""The documentation's promises: every Python block of docs/extending.md runs as written, and the docs and the code
cite the repository's own docs (not notes outside it)."""

from __future__ import annotations

import importlib
import re
import sys
import types
from pathlib import Path

import pytest

from adapterx.core.registry import Registry
from adapterx.methods import kinds

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(encoding="utf-8"), flags=re.S | re.M)


REGISTRY_MODULES = (
    "adapterx.methods",
    "adapterx.tasks",
    "adapterx.core.heads",
    "adapterx.tasks.metrics",
    "adapterx.training.strategies",
    "adapterx.deploy.forms",
    "adapterx.deploy.compose",
    "adapterx.bench.forms",
)


@pytest.fixture
def registries_restored():
    """Every registry as it was before the test: the examples register toy entries in the live tables."""
    registries = [
        value
        for name in REGISTRY_MODULES
        for value in vars(importlib.import_module(name)).values()
        if isinstance(value, Registry)
    ]
    for registry in registries:
        registry.names()  # the built-ins and plugins loaded, before the copy
    saved = [(registry, dict(registry._entries)) for registry in registries]
    yield
    for registry, entries in saved:
        registry._entries = entries


def test_extending_examples_run(registries_restored, tmp_path, monkeypatch):
    blocks = python_blocks(ROOT / "docs" / "extending.md")
    assert len(blocks) >= 5, "docs/extending.md lost its worked examples"
    monkeypatch.chdir(tmp_path)
    module = types.ModuleType("docs_extending")  # a real module: dataclasses look their module up by name
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    for number, block in enumerate(blocks, 1):
        try:
            exec(compile(block, f"docs/extending.md, python block {number}", "exec"), namespace)
        except Exception as exc:  # name the block in the failure
            raise AssertionError(f"docs/extending.md python block {number} failed: {exc!r}\n{block}") from exc


def test_extending_has_a_section_per_extension():
    headings = re.findall(r"^## (.+)$", (ROOT / "docs" / "extending.md").read_text(encoding="utf-8"), flags=re.M)
    for needed in ("Add a task", "Add an adapter kind", "Add a deployment form", "Add a composition mode"):
        assert needed in headings, needed


def test_nothing_cites_notes_outside_the_repository():
    files = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "adapterx").rglob("*.py")]
    citing = [str(f.relative_to(ROOT)) for f in files if "DESIGN.md" in f.read_text(encoding="utf-8")]
    assert not citing, f"cite docs/architecture.md instead of DESIGN.md in: {citing}"


def test_the_readme_names_every_registered_adapter_kind():
    row = next(
        line for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines() if "| adapter kind |" in line
    )
    missing = [k for k in kinds() if f"`{k}`" not in row]
    assert not missing, f"README's adapter kind row does not name {missing}"
