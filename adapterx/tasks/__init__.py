"""Task registry: every task is a `Task` registered by name; `get_task` finds it, `all_tasks` lists them."""

from __future__ import annotations

import importlib

from adapterx.core.errors import unknown
from adapterx.tasks.base import DataRequest, Loader, Task

_REGISTRY: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    if task.name in _REGISTRY:
        raise ValueError(f"task {task.name!r} is registered twice")
    _REGISTRY[task.name] = task
    return task


def get_task(name: str) -> Task:
    _load_builtin_registrations()
    if name not in _REGISTRY:
        raise unknown("task", name, _REGISTRY)
    return _REGISTRY[name]


TASK_MODULES = ("adapterx.tasks.builtin", "adapterx.tasks.reviews", "adapterx.tasks.intermediate", "adapterx.tasks.xtreme")


def all_tasks() -> list[Task]:
    _load_builtin_registrations()
    return list(_REGISTRY.values())


def _load_builtin_registrations() -> None:
    # The modules that register the built-in tasks are imported on first use: they import this module.
    for module in TASK_MODULES:
        importlib.import_module(module)


__all__ = ["DataRequest", "Loader", "Task", "all_tasks", "get_task", "register_task"]
