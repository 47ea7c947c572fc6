"""Type checks of an adapter spec's fields, from the spec dataclass's own annotations.

A value from a recipe or ``--adapter key=value`` has the YAML type it was written in: ``r=true`` is a bool
(an int to Python), ``alpha=abc`` a string, ``target_modules=query`` one string (which ``tuple()`` would split
into letters). Each field is checked against its annotation here, so a kind's spec needs no code for it.
"""

from __future__ import annotations

import dataclasses
import math
import typing

from adapterx.core.errors import AdapterxError
from adapterx.core.validate import is_int, is_number


def typed_options(cls: type, options: dict, where: str) -> dict:
    """`options` with each value checked (and normalised: ints to float, one name to a tuple) against the type
    of the field of dataclass `cls` it sets; an AdapterxError names ``where.field`` otherwise."""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    return {
        name: _convert(hints[name], value, f"{where}.{name}") if name in fields else value
        for name, value in options.items()
    }


def _convert(hint, value, where: str):
    origin = typing.get_origin(hint)
    if origin in (tuple, list):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        item = args[0] if args else str
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, (list, tuple)):
            raise AdapterxError(f"{where}: must be a list of {_plural(item)}, got {value!r}")
        return tuple(_convert(item, v, where) for v in values)
    if hint is bool and not isinstance(value, bool):
        raise AdapterxError(f"{where}: must be true or false, got {value!r}")
    if hint is int and not is_int(value):
        raise AdapterxError(f"{where}: must be an integer, got {value!r}")
    if hint is float:
        if not is_number(value) or not math.isfinite(value):
            raise AdapterxError(f"{where}: must be a finite number, got {value!r}")
        return float(value)
    if hint is str and not isinstance(value, str):
        raise AdapterxError(f"{where}: must be a string, got {value!r}")
    return value


def _plural(item) -> str:
    return {int: "integers", float: "numbers", bool: "booleans", str: "names"}.get(item, "values")
