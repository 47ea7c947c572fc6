"""Tasks declared in YAML files, as lm-evaluation-harness declares its tasks: one file per task, shared parts in
files it includes, no Python.

A task file (``adapterx/tasks/*.yaml`` for the built-in ones, or any directory given as ``--tasks-dir`` or a
recipe's ``tasks_dir:``) holds the fields of a `Task` and where its rows come from::

    task: sst2                        # the name (lm-eval: task)
    include: _glue.yaml               # shared parts, merged under this file's own fields (a list: in order)
    role: intermediate                # or target (the default)
    head: classification
    metric: accuracy
    labels: [negative, positive]
    text_fields: [sentence]
    languages: [en]
    splits: [train, validation]
    max_length: 66
    source:
      hub: nyu-mll/glue               # datasets.load_dataset(hub, config, split=...)
      config: sst2                    # one name, a template with {lang}, or {language: config}
      splits: {test: validation}      # adapterx's split -> the hub's (a list is concatenated)
      files: data                     # or/and local copies: <files>/<task>/<split>.<language>.<format>,
      formats: [jsonl, tsv]           #   relative to this file (a --data-dir holding <task>/ comes first)
      columns: {sentence: [sentence, text], label: [label]}   # the task's fields from the first column present
      label_aliases: {pos: positive}

A file whose name begins with ``_`` holds shared parts only (it is never a task itself). Included files are
resolved relative to the including file and must lie inside the directory being read (no absolute paths, no way
out through ``..`` or a symlink); files are read with `adapterx.core.yamlfile` (size and alias bounds). Every
field is checked: an unknown or mistyped one is an error naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import datasets

from adapterx.core.errors import AdapterxError
from adapterx.core.yamlfile import load_file
from adapterx.tasks.base import DataRequest, Task
from adapterx.tasks.sources import Source, classification, describe_loader

BUILTIN_DIR = Path(__file__).resolve().parent  # adapterx/tasks/*.yaml
MAX_INCLUDE_DEPTH = 8
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*\Z")
# YAML field -> (Task field, expected type); lists become tuples
TASK_FIELDS: dict[str, tuple[str, type]] = {
    "task": ("name", str),
    "role": ("role", str),
    "head": ("head", str),
    "metric": ("metric", str),
    "labels": ("labels", list),
    "text_fields": ("text_fields", list),
    "label_field": ("label_field", str),
    "languages": ("languages", list),
    "train_language": ("train_language", str),
    "splits": ("splits", list),
    "max_length": ("max_length", int),
    "description": ("description", str),
    "options": ("options", dict),
}
SOURCE_FIELDS = ("hub", "config", "splits", "files", "formats", "columns", "label_aliases", "hub_note")
ROLES = ("target", "intermediate")


@dataclass(frozen=True)
class DeclaredLoader:
    """The loader of a task file: its `source` (hub and/or local formats), reading `files` (the task file's own
    local copies) unless the request's --data-dir holds this task's directory."""

    source: Source
    files: Path | None = None

    def __call__(self, request: DataRequest) -> datasets.Dataset:
        own_copy = request.data_dir is not None and (request.data_dir / request.task.name).is_dir()
        if self.files is not None and not own_copy:
            request = dataclasses.replace(request, data_dir=self.files)
        return self.source(request)

    def describe_split(self, split: str, language: str) -> str:
        """Where `split` in `language` comes from (for `adapterx tasks NAME`)."""
        local = f"local files {self.files}/<task>/{split}.{language}.{{{','.join(self.source.formats)}}}"
        return local if self.files is not None else describe_loader(self.source, split, language)


# ------------------------------------------------------------------------------------------------ reading
def _inside(path: Path, root: Path, where: str) -> Path:
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        raise AdapterxError(f"{where}: {path} lies outside {root}; included files must stay inside it")
    return resolved


def _merge(base: dict, over: Mapping) -> dict:
    """`over` on top of `base`; mappings are merged key by key, anything else replaced."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), dict) else value
    return out


def read_declaration(path: Path, root: Path, chain: tuple[Path, ...] = ()) -> dict:
    """The fields of the YAML file `path` with its includes merged in (theirs first, its own on top)."""
    where = " <- ".join(str(p) for p in (path, *reversed(chain)))
    if len(chain) > MAX_INCLUDE_DEPTH:
        raise AdapterxError(f"{where}: includes nest deeper than {MAX_INCLUDE_DEPTH}")
    if path in chain:
        raise AdapterxError(f"{where}: includes itself")
    data = load_file(path)
    if not isinstance(data, dict):
        raise AdapterxError(f"{path}: a task file is a mapping of fields, got {type(data).__name__}")
    includes = data.pop("include", [])
    includes = [includes] if isinstance(includes, str) else includes
    if not isinstance(includes, list) or not all(isinstance(i, str) and i for i in includes):
        raise AdapterxError(f"{path}: field 'include': a file name or a list of file names, got {includes!r}")
    merged: dict = {}
    for name in includes:
        if Path(name).is_absolute():
            raise AdapterxError(f"{path}: field 'include': {name!r} must be relative to {path.parent}")
        target = _inside(path.parent / name, root, f"{path}: field 'include'")
        if not target.is_file():
            raise AdapterxError(f"{path}: field 'include': {name!r} is not a file in {path.parent}")
        merged = _merge(merged, read_declaration(target, root, (*chain, path)))
    return _merge(merged, data)


def _typed(data: dict, name: str, kind: type, path: Path):
    value = data[name]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is list:
        ok = ok and all(isinstance(v, str) and v for v in value)
    if name == "train_language" and value is None:
        return None
    if not ok:
        what = {str: "a string", int: "an integer", list: "a list of strings", dict: "a mapping"}[kind]
        raise AdapterxError(f"{path}: field {name!r}: must be {what}, got {value!r}")
    return tuple(value) if kind is list else value


def task_from_declaration(data: dict, path: Path) -> Task:
    """A `Task` from the merged fields of a task file; every field checked."""
    unknown = sorted(set(data) - set(TASK_FIELDS) - {"source"})
    if unknown:
        raise AdapterxError(
            f"{path}: unknown field(s) {unknown}; fields: {', '.join([*TASK_FIELDS, 'source', 'include'])}"
        )
    for needed in ("task", "head", "metric", "source"):
        if needed not in data:
            raise AdapterxError(f"{path}: field {needed!r} is missing")
    kwargs = {TASK_FIELDS[k][0]: _typed(data, k, TASK_FIELDS[k][1], path) for k in data if k in TASK_FIELDS}
    if not NAME.match(kwargs["name"]):
        raise AdapterxError(f"{path}: field 'task': {kwargs['name']!r} is not a plain name (letters, digits, -_.+)")
    role = kwargs.setdefault("role", "target")
    if role not in ROLES:
        raise AdapterxError(f"{path}: field 'role': {role!r} is not one of {', '.join(ROLES)}")
    loader = _loader(data["source"], kwargs, path)
    return Task(loader=loader, **kwargs)


def _loader(source, task: dict, path: Path) -> DeclaredLoader:
    where = f"{path}: field 'source'"
    if not isinstance(source, dict):
        raise AdapterxError(f"{where}: a mapping (hub, config, splits, files, formats, columns), got {source!r}")
    unknown = sorted(set(source) - set(SOURCE_FIELDS))
    if unknown:
        raise AdapterxError(f"{where}: unknown field(s) {unknown}; fields: {', '.join(SOURCE_FIELDS)}")
    hub, files = source.get("hub"), source.get("files")
    if hub is None and files is None:
        raise AdapterxError(f"{where}: give 'hub' (a dataset id), 'files' (a directory of local copies), or both")
    for name in ("hub", "files", "hub_note"):
        if source.get(name) is not None and not isinstance(source[name], str):
            raise AdapterxError(f"{where}.{name}: must be a string, got {source[name]!r}")
    local = None
    if files is not None:
        local = (path.parent / files).resolve()
        if not local.is_dir():
            raise AdapterxError(f"{where}.files: {files!r} is not a directory next to {path.name}")
    formats = source.get("formats", ["jsonl"])
    if isinstance(formats, str):
        formats = [formats]
    if not isinstance(formats, list) or not formats or not all(isinstance(f, str) for f in formats):
        raise AdapterxError(f"{where}.formats: a list of file formats (jsonl, tsv, ...), got {formats!r}")
    return DeclaredLoader(
        Source(
            hub,
            config=_config(source.get("config"), where),
            splits=_splits(source.get("splits", {}), where),
            formats=tuple(formats),
            normalise=_normaliser(source, task, where),
            hub_note=source.get("hub_note", "" if hub else f"local files only ({path.name})"),
        ),
        local,
    )


def _config(config, where: str):
    if config is None or isinstance(config, str):
        return config
    if isinstance(config, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in config.items()):
        table = dict(config)
        return lambda language: table.get(language)
    raise AdapterxError(f"{where}.config: a config name, a template with {{lang}}, or {{language: config}}")


def _splits(splits, where: str) -> dict:
    if not isinstance(splits, dict):
        raise AdapterxError(f"{where}.splits: a mapping of adapterx's split to the hub's, got {splits!r}")
    out = {}
    for split, hub in splits.items():
        if isinstance(hub, str):
            out[split] = hub
        elif isinstance(hub, list) and hub and all(isinstance(h, str) for h in hub):
            out[split] = tuple(hub)
        else:
            raise AdapterxError(f"{where}.splits.{split}: a hub split name or a list of them, got {hub!r}")
    return out


def _normaliser(source: dict, task: dict, where: str):
    """The rows' columns mapped onto the task's fields, for a classification head; no mapping: rows as they are."""
    columns, aliases = source.get("columns"), source.get("label_aliases")
    if columns is None:
        if aliases is not None:
            raise AdapterxError(f"{where}.label_aliases: needs 'columns' (the mapping that reads the labels)")
        return None
    if task.get("head") != "classification":
        raise AdapterxError(
            f"{where}.columns: column mappings are declared for classification heads; a {task.get('head')} "
            f"task maps its rows in Python (a normaliser: docs/extending.md)"
        )
    if not isinstance(columns, dict):
        raise AdapterxError(f"{where}.columns: a mapping of the task's fields to column names, got {columns!r}")
    names = {k: (v,) if isinstance(v, str) else tuple(v) if isinstance(v, list) else None for k, v in columns.items()}
    label = task.get("label_field", "label")
    wanted = {*task.get("text_fields", ()), label}
    if set(names) != wanted or any(
        v is None or not v or not all(isinstance(n, str) for n in v) for v in names.values()
    ):
        raise AdapterxError(
            f"{where}.columns: map exactly the task's fields {sorted(wanted)} to a column name (or a list of "
            f"alternatives), got {columns!r}"
        )
    if aliases is not None and not (isinstance(aliases, dict) and all(isinstance(v, str) for v in aliases.values())):
        raise AdapterxError(f"{where}.label_aliases: a mapping of values in the data to label names, got {aliases!r}")
    fields = {f: names[f] for f in task.get("text_fields", ())}
    return classification(fields, label=names[label], aliases={str(k): v for k, v in (aliases or {}).items()})


# ------------------------------------------------------------------------------------------------ directories
def task_files(directory: Path) -> list[Path]:
    """The task files of `directory` and its subdirectories (shared parts, named ``_*.yaml``, left out)."""
    files = [*directory.rglob("*.yaml"), *directory.rglob("*.yml")]
    return sorted(p for p in files if not p.name.startswith("_") and p.resolve().is_relative_to(directory.resolve()))


def read_task_dir(directory: str | Path) -> list[Task]:
    """Every task declared in `directory` (not registered: `adapterx.tasks.load_tasks_dir` registers them)."""
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise AdapterxError(f"tasks directory {directory}: not a directory")
    root = root.resolve()
    tasks = [task_from_declaration(read_declaration(p.resolve(), root), p) for p in task_files(root)]
    seen: dict[str, Path] = {}
    for task, path in zip(tasks, task_files(root)):
        if task.name in seen:
            raise AdapterxError(f"{path}: task {task.name!r} is declared in {seen[task.name]} too")
        seen[task.name] = path
    return tasks
