"""Errors a user can act on. Each names the file or field at fault; none hides a traceback's cause."""

from __future__ import annotations

import difflib


class AdapterxError(Exception):
    """Base of every error adapterx raises on purpose (bad input, not a bug)."""


class AdapterFileError(AdapterxError):
    """A saved adapter (or one of its files) is missing, corrupt or of an unexpected format."""

    def __init__(self, path: object, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = str(path)


class BackboneMismatchError(AdapterxError):
    """An adapter was trained on another backbone than the one it is being loaded onto."""


class RecipeError(AdapterxError):
    """A recipe file has an unknown, mistyped or missing field."""


class CompositionError(AdapterxError):
    """Adapters that cannot be combined the way the user asked."""


class UnknownNameError(AdapterxError, KeyError):
    """An unknown task, language, adapter kind or adapter name; the message lists what exists."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def did_you_mean(name: str, known) -> str:
    """'; did you mean 'x'?' naming the known names closest to `name` (difflib), or '' if none is close."""
    close = difflib.get_close_matches(str(name), sorted(map(str, known)), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(map(repr, close))}?" if close else ""


def unknown(what: str, name: str, known) -> UnknownNameError:
    """The error for an unknown `name` among `known`: the closest names first ("did you mean"), then all."""
    known = sorted(map(str, known))
    return UnknownNameError(f"unknown {what} {name!r}{did_you_mean(name, known)}; known: {', '.join(known)}")
