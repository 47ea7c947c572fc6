"""Task registry: every task is a `Task` registered by name in `TASKS`; `get_task` finds it, `all_tasks` lists them.

The built-in tasks are found, not listed: on first lookup every task file of this package (``*.yaml``, see
`adapterx.tasks.declarative`) is read and every public module of it imported (a module that defines tasks in
Python registers them as it loads), as adapter kinds are (adapterx.methods). From outside: a directory of task
files (`load_tasks_dir`: ``--tasks-dir``, a recipe's ``tasks_dir:``), a plugin module that calls `register_task`
(``--plugins``, a recipe's ``plugins:``), or the ``adapterx.tasks`` entry-point group (see adapterx.core.registry
and docs/extending.md).
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from adapterx.core.errors import AdapterxError
from adapterx.core.registry import Registry
from adapterx.tasks.base import DataRequest, Loader, Task
from adapterx.tasks.declarative import BUILTIN_DIR, read_task_dir


def _discover() -> None:
    """Read the package's task files, then import its public modules (which register the tasks written in
    Python); the task files come first, so a module may look a declared task up."""
    for task in read_task_dir(BUILTIN_DIR):
        TASKS.register(task.name, task, replace=True)  # a second discovery (a test re-reading plugins) reads them again
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_") and info.name not in ("base", "declarative"):
            importlib.import_module(f"{__name__}.{info.name}")


TASKS: Registry[Task] = Registry("task", group="adapterx.tasks", loader=_discover)
_FROM_DIRS: dict[str, Path] = {}  # task name -> the tasks directory it was read from (by load_tasks_dir)


def register_task(task: Task) -> Task:
    TASKS.register(task.name, task)
    return task


def load_tasks_dir(directory: str | Path) -> list[str]:
    """Register every task declared in the task files of `directory` (and its subdirectories); returns their
    names. Reading a directory again replaces its tasks (the files may have changed); a name registered by
    anything else (a built-in, a plugin, another directory) is an error."""
    root = Path(directory).expanduser().resolve()
    tasks = read_task_dir(root)
    taken = [t.name for t in tasks if t.name in TASKS and _FROM_DIRS.get(t.name) != root]
    if taken:
        raise AdapterxError(
            f"tasks directory {directory}: task(s) {taken} are registered already (a built-in, a plugin or "
            f"another tasks directory has that name)"
        )
    for task in tasks:
        TASKS.register(task.name, task, replace=True)
        _FROM_DIRS[task.name] = root
    return [t.name for t in tasks]


def get_task(name: str) -> Task:
    return TASKS.get(name)


def all_tasks() -> list[Task]:
    return TASKS.values()


def task_names() -> list[str]:
    return TASKS.names()


__all__ = [
    "TASKS",
    "DataRequest",
    "Loader",
    "Task",
    "all_tasks",
    "get_task",
    "load_tasks_dir",
    "register_task",
    "task_names",
]
