"""The one `Registry` type: direct, lazy and built-in entries, "did you mean" errors, plugins through Python
entry points and through a recipe's `plugins:` list."""

from __future__ import annotations

import sys
import textwrap
from importlib import metadata

import pytest

from adapterx.core import registry as registry_module
from adapterx.core.errors import AdapterxError, RecipeError, UnknownNameError
from adapterx.core.registry import Registry


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A directory on sys.path for throw-away plugin modules; they are forgotten afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("axplug_"):
            del sys.modules[name]


def _module(directory, name: str, text: str) -> None:
    (directory / f"{name}.py").write_text(textwrap.dedent(text))


def test_direct_and_decorator_registration_in_order():
    reg = Registry("colour")
    reg.register("red", 1)

    @reg.register("blue")
    def blue():
        return 2

    assert reg.names() == ["red", "blue"] and reg["red"] == 1 and reg.get("blue") is blue
    assert "red" in reg and "green" not in reg and len(reg) == 2 and list(reg) == ["red", "blue"]
    with pytest.raises(AdapterxError, match="colour 'red' is registered twice"):
        reg.register("red", 3)
    reg.register("red", 3, replace=True)
    assert reg["red"] == 3
    reg.unregister("red")
    assert reg.names() == ["blue"]


def test_unknown_names_suggest_the_closest_and_list_all():
    reg = Registry("adapter kind")
    for name in ("lora", "bottleneck", "prefix", "prompt"):
        reg.register(name, name)
    with pytest.raises(UnknownNameError) as info:
        reg.get("lorra")
    message = str(info.value)
    assert message.startswith("unknown adapter kind 'lorra'; did you mean 'lora'?")
    assert message.endswith("known: bottleneck, lora, prefix, prompt")
    with pytest.raises(UnknownNameError) as info:  # nothing close: no suggestion, still the list
        reg.get("xyz")
    assert "did you mean" not in str(info.value) and "known: bottleneck, lora" in str(info.value)
    assert isinstance(info.value, KeyError) and isinstance(info.value, AdapterxError)


def test_lazy_entries_import_on_first_use_only(plugin_dir):
    _module(
        plugin_dir,
        "axplug_lazy",
        """
        IMPORTED = True
        VALUE = {"answer": 42}
    """,
    )
    reg = Registry("thing", coerce=lambda obj: dict(obj, coerced=True))
    reg.register_lazy("deep", "axplug_lazy:VALUE")
    assert reg.names() == ["deep"] and "axplug_lazy" not in sys.modules  # listing names imports nothing
    assert reg.get("deep") == {"answer": 42, "coerced": True} and "axplug_lazy" in sys.modules
    reg.register_lazy("missing", "axplug_nowhere:X")
    with pytest.raises(AdapterxError, match="thing 'missing'.*cannot import 'axplug_nowhere'"):
        reg.get("missing")
    reg.register_lazy("no-attr", "axplug_lazy:NOPE")
    with pytest.raises(AdapterxError, match="has no attribute 'NOPE'"):
        reg.get("no-attr")


def test_builtin_modules_load_once_on_first_lookup(plugin_dir):
    reg = Registry("widget", modules=("axplug_builtin",))
    registry_module._test_registry = reg  # the module registers into it, as built-in modules do
    _module(
        plugin_dir,
        "axplug_builtin",
        """
        from adapterx.core import registry
        registry._test_registry.register("spring", "a spring")
        registry._test_registry.register("gear", "a gear")
    """,
    )
    try:
        assert "axplug_builtin" not in sys.modules
        assert reg.names() == ["spring", "gear"] and reg["gear"] == "a gear"
        assert reg.names() == ["spring", "gear"]  # imported once: a second import would register twice
    finally:
        del registry_module._test_registry


def _fake_entry_points(monkeypatch, group: str, *specs: tuple[str, str]) -> None:
    eps = [metadata.EntryPoint(name, value, group) for name, value in specs]
    real = registry_module.entry_points
    monkeypatch.setattr(registry_module, "entry_points", lambda g: eps if g == group else real(g))


def test_entry_points_register_lazily_from_outside_the_package(plugin_dir, monkeypatch):
    _module(
        plugin_dir,
        "axplug_ep",
        """
        from adapterx.core import registry
        OBJ = "from an object entry point"
        registry._ep_registry.register("by-module", "registered by importing the module")
    """,
    )
    reg = Registry("gadget", group="adapterx.test-gadgets")
    reg.register("builtin", "mine")
    registry_module._ep_registry = reg
    _fake_entry_points(
        monkeypatch,
        "adapterx.test-gadgets",
        ("by-object", "axplug_ep:OBJ"),
        ("by-module", "axplug_ep"),
        ("builtin", "axplug_ep:OBJ"),
    )
    try:
        assert reg.names() == ["builtin", "by-object", "by-module"] and "axplug_ep" not in sys.modules
        assert reg["builtin"] == "mine"  # a plugin cannot silently replace a built-in
        assert reg["by-object"] == "from an object entry point"
        assert reg["by-module"] == "registered by importing the module"
    finally:
        del registry_module._ep_registry


def test_a_module_entry_point_that_registers_nothing_is_named(plugin_dir, monkeypatch):
    _module(plugin_dir, "axplug_empty", "X = 1\n")
    reg = Registry("gizmo", group="adapterx.test-gizmos")
    _fake_entry_points(monkeypatch, "adapterx.test-gizmos", ("ghost", "axplug_empty"))
    with pytest.raises(AdapterxError, match="gizmo 'ghost' \\(entry point ghost = axplug_empty.*registered no gizmo"):
        reg.get("ghost")


def test_a_task_from_an_entry_point_reaches_the_task_registry(plugin_dir, monkeypatch):
    """The real registries read their groups: a distribution's `adapterx.tasks` entry point is a task by name."""
    from adapterx import tasks

    _module(
        plugin_dir,
        "axplug_task",
        """
        import dataclasses
        from adapterx.tasks import get_task
        TASK = dataclasses.replace(get_task("tiny-nli"), name="plugged-nli")
    """,
    )
    tasks.TASKS.names()  # the built-ins, loaded before the copy below
    _fake_entry_points(monkeypatch, "adapterx.tasks", ("plugged-nli", "axplug_task:TASK"))
    monkeypatch.setattr(tasks.TASKS, "_entries", dict(tasks.TASKS._entries))
    monkeypatch.setattr(tasks.TASKS, "_loaded", False)  # read the (fake) entry points again
    assert tasks.get_task("plugged-nli").head == "classification"
    assert "plugged-nli" in [t.name for t in tasks.all_tasks()]
    with pytest.raises(UnknownNameError, match="did you mean 'plugged-nli'"):
        tasks.get_task("pluged-nli")


RECIPE = """\
name: plugged
backbone: builtin:tiny-xlmr
plugins: [{plugin}]
adapter: {{kind: lora, r: 4}}
target: {{tasks: [{task}], strategies: []}}
bench: {{enabled: false}}
"""


def test_recipe_plugins_are_imported_before_the_recipe_is_checked(plugin_dir, tmp_path, monkeypatch):
    from adapterx import tasks
    from adapterx.study.recipe import load_recipe

    tasks.TASKS.names()  # the built-ins, loaded before the copy below
    monkeypatch.setattr(tasks.TASKS, "_entries", dict(tasks.TASKS._entries))
    _module(
        plugin_dir,
        "axplug_recipe_task",
        """
        import dataclasses
        from adapterx.tasks import get_task, register_task
        register_task(dataclasses.replace(get_task("tiny-xnli"), name="recipe-plugged-xnli"))
    """,
    )
    path = tmp_path / "recipes" / "r.yaml"  # not beside the plugin: a recipe's own directory is never searched
    path.parent.mkdir()
    path.write_text(RECIPE.format(plugin="axplug_recipe_task", task="recipe-plugged-xnli"))
    assert load_recipe(path).target.tasks == ["recipe-plugged-xnli"]
    path.write_text(RECIPE.format(plugin="axplug_not_there", task="tiny-xnli"))
    with pytest.raises(RecipeError, match=r"r.yaml: plugins\[0\]: cannot import plugin module 'axplug_not_there'"):
        load_recipe(path)
    path.write_text(RECIPE.format(plugin="axplug_recipe_task", task="recipe-plugged-xnlj"))
    with pytest.raises(RecipeError, match="did you mean 'recipe-plugged-xnli'"):
        load_recipe(path)
