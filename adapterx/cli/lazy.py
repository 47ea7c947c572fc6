"""Sub-command parsers whose arguments are added on first use.

Choices and --help texts come from the registries (adapter kinds, tasks, strategies, deployment forms,
composition modes, bench forms), and the registries' modules import torch and the adapter libraries (seconds).
A `LazyParser` adds a sub-command's arguments only when that sub-command is parsed or its help printed, so
`adapterx --help` and `adapterx tasks` stay fast while `adapterx compose --help` lists the modes that exist.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

AddArguments = Callable[[argparse.ArgumentParser], None]


class LazyParser(argparse.ArgumentParser):
    """An ArgumentParser that runs its deferred `add_arguments` functions once, before it parses or formats."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._pending: list[AddArguments] = []

    def _ready(self) -> None:
        while self._pending:
            self._pending.pop(0)(self)

    def parse_known_args(self, args=None, namespace=None):
        self._ready()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._ready()
        return super().format_help()

    def format_usage(self) -> str:
        self._ready()
        return super().format_usage()


def defer(parser: argparse.ArgumentParser, add_arguments: AddArguments) -> None:
    """Add arguments to `parser` when it is first used (at once if it is a plain ArgumentParser)."""
    if isinstance(parser, LazyParser):
        parser._pending.append(add_arguments)
    else:
        add_arguments(parser)


def listing(entries: list[tuple[str, str]], indent: int = 2) -> str:
    """Name/description pairs as an aligned block for --help."""
    width = max(len(name) for name, _ in entries) + 2
    return "\n".join(f"{' ' * indent}{name:<{width}}{about}" for name, about in entries)
