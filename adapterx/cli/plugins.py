"""``--plugins``, ``--plugins-dir`` and ``--tasks-dir``: what a command registers before it looks anything up.

A plugin is code: it runs when imported. It is imported only from the installed modules or a directory named
with ``--plugins-dir`` (never the current directory by accident: see adapterx.core.plugins); a recipe's
``plugins:`` are searched in the same places. Task files (``--tasks-dir``) are data: YAML, read with bounds.
"""

from __future__ import annotations

import argparse

PLUGINS_HELP = (
    "modules to import before anything else, comma-separated: their code runs and registers tasks, adapter kinds, "
    "forms ... (installed modules, or files under --plugins-dir)"
)
PLUGINS_DIR_HELP = (
    "a directory to import plugins from (--plugins and a recipe's plugins:); repeatable. The current directory "
    "and a recipe's directory are searched only when named here (e.g. --plugins-dir .)"
)
TASKS_DIR_HELP = (
    "a directory of task files (YAML, see docs/extending.md) whose tasks to register; repeatable. A recipe can "
    "name its own with tasks_dir:"
)


def _modules(text: str) -> list[str]:
    return [m.strip() for m in text.split(",") if m.strip()]


def add_plugin_arguments(p: argparse.ArgumentParser) -> None:
    """Add --plugins, --plugins-dir and --tasks-dir to a sub-command's parser."""
    group = p.add_argument_group("plugins and task files")
    group.add_argument("--plugins", type=_modules, default=[], metavar="MODULE[,MODULE...]", help=PLUGINS_HELP)
    group.add_argument("--plugins-dir", action="append", default=[], metavar="DIR", help=PLUGINS_DIR_HELP)
    group.add_argument("--tasks-dir", action="append", default=[], metavar="DIR", help=TASKS_DIR_HELP)


def load_plugins(args: argparse.Namespace) -> None:
    """Import the command's --plugins (from the installed modules and --plugins-dir) and register its
    --tasks-dir task files; a command without these options is left alone."""
    if not hasattr(args, "plugins"):
        return
    from adapterx.core.plugins import check_dirs, import_plugins  # deferred: the CLI imports torch lazily
    from adapterx.tasks import load_tasks_dir

    if args.plugins:
        import_plugins(args.plugins, "--plugins", check_dirs(args.plugins_dir, "--plugins-dir"))
    for directory in args.tasks_dir:
        load_tasks_dir(directory)
