"""Task registry: every task is a `Task` registered by name in `TASKS`; `get_task` finds it, `all_tasks` lists them.

The built-in tasks register themselves in `TASK_MODULES`, imported on first lookup; a distribution adds tasks
through the ``adapterx.tasks`` entry-point group, a recipe through its ``plugins:`` list (see
adapterx.core.registry and docs/extending.md).
"""

from __future__ import annotations

from adapterx.core.registry import Registry
from adapterx.tasks.base import DataRequest, Loader, Task

TASK_MODULES = (
    "adapterx.tasks.builtin",
    "adapterx.tasks.reviews",
    "adapterx.tasks.intermediate",
    "adapterx.tasks.xtreme",
)
TASKS: Registry[Task] = Registry("task", group="adapterx.tasks", modules=TASK_MODULES)


def register_task(task: Task) -> Task:
    TASKS.register(task.name, task)
    return task


def get_task(name: str) -> Task:
    return TASKS.get(name)


def all_tasks() -> list[Task]:
    return TASKS.values()


def task_names() -> list[str]:
    return TASKS.names()


__all__ = ["TASKS", "DataRequest", "Loader", "Task", "all_tasks", "get_task", "register_task", "task_names"]
