"""The recipe schema: a YAML file, checked field by field before any work starts.

Every mapping in a recipe is a dataclass here; an unknown or mistyped field is an error that names the file
and the field's dotted path. `load_recipe` is the only entry point.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from adapterx.core.errors import AdapterxError, RecipeError, unknown
from adapterx.core.plugins import check_dirs, import_plugins
from adapterx.deploy.forms import check_evaluable
from adapterx.methods import AdapterSpec, get_method, parse_spec
from adapterx.study import design
from adapterx.study.controls import capacity_matched_spec
from adapterx.study.recipe_checks import check_values
from adapterx.tasks import get_task, load_tasks_dir
from adapterx.training.loop import TrainConfig
from adapterx.training.strategies import STRATEGIES, kind_problem


@dataclass
class IntermediateSection:
    """English intermediate tasks; one intermediate adapter is trained per task."""

    tasks: list[str] = field(default_factory=list)
    multitask: bool = False  # also train one adapter on all tasks, batches sampled in proportion to size
    single_task: bool = True  # train one adapter per task (false: only the multi-task one)
    train: TrainConfig = field(default_factory=TrainConfig)
    overrides: dict = field(default_factory=dict)  # per task: train fields that differ, e.g. {squad: {epochs: 2}}
    train_limit: int | None = None  # use only the first N training rows (quick runs)

    def train_for(self, task: str) -> TrainConfig:
        return dataclasses.replace(self.train, **self.overrides.get(task, {}))


@dataclass
class TargetSection:
    """Target tasks, trained on their English data, evaluated zero-shot in their other languages. Tasks without
    training data (retrieval: bucc2018, tatoeba) are evaluated with each intermediate adapter directly."""

    tasks: list[str] = field(default_factory=list)
    strategies: list[str] = field(default_factory=lambda: ["stack", "continue"])
    train: TrainConfig = field(default_factory=TrainConfig)
    overrides: dict = field(default_factory=dict)  # per task: train fields that differ, e.g. {udpos: {epochs: 10}}
    train_limit: int | None = None

    def train_for(self, task: str) -> TrainConfig:
        return dataclasses.replace(self.train, **self.overrides.get(task, {}))


SPLITS = ("validation", "test")


@dataclass
class EvaluateSection:
    """Every target is scored on dev (`validation`, where it has a held-out one) and on test. Everything the
    study selects (the best intermediate task per target) is chosen on dev; test is reported."""

    splits: list[str] = field(default_factory=lambda: list(SPLITS))
    languages: list[str] | None = None  # None: every language of each target task
    target_languages: dict = field(default_factory=dict)  # per target, e.g. {tydiqa: [fi]}; else `languages`
    limit: int | None = None  # rows per language (quick runs)
    forms: list[str] = field(default_factory=lambda: ["unmerged", "merged"])  # adapterx.deploy.forms (dev: unmerged)
    bootstrap: int = 1000  # resamples for the intervals (seeds x test examples)
    confidence: float = 0.95

    def languages_for(self, target: str) -> list[str] | None:
        return self.target_languages.get(target, self.languages)


@dataclass
class BenchSection:
    """Latency of the deployment forms the study produced (see `adapterx bench` for the full grid)."""

    enabled: bool = True
    shape: str | None = None  # default: the recipe's backbone; e.g. xlm-roberta-large
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8])
    seq_lens: list[int] = field(default_factory=lambda: [128])
    iterations: int = 10
    warmup: int = 2
    threads: int = 0  # 0: torch's default
    clock: str = "wall"  # "cpu": process CPU time (robust on shared cores; use threads: 1)


@dataclass
class ControlsSection:
    """Control runs, each a row of the report with its interval (what they measure: adapterx.study.controls)."""

    shuffled_labels: list[str] = field(default_factory=list)  # intermediate tasks trained again, labels permuted
    step_matched: bool = False  # target-only trained for intermediate + target steps
    capacity_matched: bool = False  # target-only adapter as large as a stacked pair (strategy 'stack')
    pooled: bool = False  # target-only on target + intermediate rows (where the label spaces match)


@dataclass
class Expectation:
    """The expected direction of one comparison, written before the numbers exist; the report says whether
    it held (its interval on the expected side of 0), was contradicted (on the other side), or neither."""

    setup: str  # a row label, e.g. tiny-nli+continue (see adapterx.study.design)
    vs: str  # a row label, or: baseline, shuffled, step-matched, capacity-matched, pooled
    direction: str  # ">": setup scores higher than `vs`; "<": lower (design.DIRECTIONS)
    target: str | None = None  # needed when the recipe has several targets
    language: str | None = None  # None: the average over languages
    why: str = ""  # the reason for the expectation, shown in the report


@dataclass
class Recipe:
    name: str
    backbone: str
    adapter: dict
    target: TargetSection
    intermediate: IntermediateSection = field(default_factory=IntermediateSection)
    evaluate: EvaluateSection = field(default_factory=EvaluateSection)
    bench: BenchSection = field(default_factory=BenchSection)
    seeds: list[int] = field(default_factory=lambda: [0])  # every adapter (intermediate and target) once per seed
    threads: int = 0  # torch threads for training and evaluation; 0: torch's default
    controls: ControlsSection = field(default_factory=ControlsSection)
    expect: list[Expectation] = field(default_factory=list)
    output_dir: str | None = None  # default: artifacts/<name>
    data_dir: str | None = None  # local copies of task data; None: built-in / the hub
    description: str = ""
    # code the recipe runs: modules imported before anything else is checked (they register tasks, kinds ...);
    # installed modules, or files under a --plugins-dir given on the command line -- never the recipe's directory
    plugins: list[str] = field(default_factory=list)
    tasks_dir: str | None = None  # task files (YAML) to register, relative to the recipe; data, not code
    source: Path | None = field(default=None, compare=False)

    @property
    def adapter_spec(self) -> AdapterSpec:
        return parse_spec(self.adapter, where=f"{self.source}: adapter")

    def skipped_strategies(self) -> dict[str, str]:
        """Strategies the adapter kind rules out, with the reason (e.g. 'stack' with prompt tuning): the run
        leaves them out and the report says why, so switching the kind is a one-field change."""
        kind, skipped = self.adapter_spec.kind, {}
        for strategy in self.target.strategies:
            if strategy == "stack" and not get_method(kind).stackable:
                skipped[strategy] = f"{kind} adapters cannot be active beside another adapter"
            elif problem := kind_problem(strategy, kind, kind):
                skipped[strategy] = problem
            elif strategy == "fuse" and len(self.intermediate.tasks) < 2:
                skipped[strategy] = "fusion needs at least two intermediate tasks"
        return skipped

    def strategies(self) -> list[str]:
        return [s for s in self.target.strategies if s not in self.skipped_strategies()]

    def skipped_controls(self) -> dict[str, str]:
        """Controls the adapter kind rules out, with the reason: the capacity-matched control when 'stack' is
        left out for this kind or no single adapter has the stacked size. The run leaves them out, the report
        says why (switching the kind stays a one-field change)."""
        if not self.controls.capacity_matched:
            return {}
        if "stack" in self.skipped_strategies():
            return {"capacity_matched": f"strategy 'stack' is left out: {self.skipped_strategies()['stack']}"}
        spec, why = capacity_matched_spec(self.adapter_spec)
        return {"capacity_matched": why} if spec is None else {}

    @property
    def output(self) -> Path:
        return Path(self.output_dir or f"artifacts/{self.name}")

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data.pop("source")
        return data


def config_hash(obj: object) -> str:
    """A stable hash of a JSON-able description: the cache key of a phase."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------------- parsing
def load_recipe(path: str | Path, plugin_dirs: typing.Sequence[str | Path] = ()) -> Recipe:
    """The recipe at `path`, every field checked. Its ``plugins:`` are imported from the installed modules and
    the `plugin_dirs` (``--plugins-dir``) only; its ``tasks_dir:`` (relative to the recipe) is registered."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: no such recipe file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise RecipeError(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save the recipe as UTF-8"
        ) from exc
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of fields, got {type(data).__name__}")
    _import_plugins(data.get("plugins"), path, plugin_dirs)
    _load_tasks_dir(data.get("tasks_dir"), path)
    _check_no_train_seed(data, path)
    recipe = _build(Recipe, data, f"{path}", "")
    recipe.source = path
    _check_semantics(recipe, path)
    check_values(recipe, path)
    design.check_controls(recipe, path)
    design.check_expectations(recipe, path)
    return recipe


def _import_plugins(plugins, path: Path, dirs: typing.Sequence[str | Path]) -> None:
    """Import the recipe's `plugins` (code it runs) before anything else is checked: the names they register
    (tasks, adapter kinds, strategies ...) are then known to the rest of the recipe. Only installed modules and
    the `dirs` given on the command line are searched, never the recipe's own directory or the current one."""
    if plugins is None:
        return
    if not isinstance(plugins, list):
        raise RecipeError(f"{path}: field 'plugins' must be a list of importable module names, got {plugins!r}")
    try:
        import_plugins(plugins, "plugins", check_dirs(dirs, "--plugins-dir"), exclude=[path.resolve().parent])
    except AdapterxError as exc:
        raise RecipeError(f"{path}: {exc}") from exc


def _load_tasks_dir(tasks_dir, path: Path) -> None:
    """Register the task files of the recipe's `tasks_dir` (relative to the recipe) before its tasks are checked."""
    if tasks_dir is None:
        return
    if not isinstance(tasks_dir, str) or not tasks_dir:
        raise RecipeError(f"{path}: field 'tasks_dir' must be a directory name, got {tasks_dir!r}")
    try:
        load_tasks_dir(path.parent / tasks_dir)
    except AdapterxError as exc:
        raise RecipeError(f"{path}: tasks_dir: {exc}") from exc


def _check_no_train_seed(data: dict, path: Path) -> None:
    """Seeds come from the recipe's `seeds` for both phases (target run s sits on intermediate run s): a seed
    in a train section would be silently overridden, so it is an error."""
    for section in ("intermediate", "target"):
        part = data.get(section)
        if not isinstance(part, dict):
            continue
        overrides = part.get("overrides") or {}
        places = [("train", part.get("train"))] + [(f"overrides.{t}", o) for t, o in overrides.items()]
        for where, fields_ in places:
            if isinstance(fields_, dict) and "seed" in fields_:
                raise RecipeError(
                    f"{path}: {section}.{where}.seed: seeds are set by the recipe's `seeds` list, "
                    f"for the intermediate and the target phase alike; remove this field"
                )


def _build(cls, data: dict, file: str, prefix: str):
    if not isinstance(data, dict):
        raise RecipeError(f"{file}: {prefix.rstrip('.') or 'recipe'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    unknown_fields = sorted(set(data) - set(known))
    if unknown_fields:
        raise RecipeError(
            f"{file}: unknown field '{prefix}{unknown_fields[0]}'; "
            f"fields of {prefix.rstrip('.') or 'the recipe'}: {', '.join(sorted(known))}"
        )
    missing = [
        n
        for n, f in known.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and n not in data
    ]
    if missing:
        raise RecipeError(f"{file}: missing required field '{prefix}{missing[0]}'")
    values = {name: _convert(hints[name], value, file, f"{prefix}{name}") for name, value in data.items()}
    return cls(**values)


def _convert(hint, value, file: str, where: str):
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value or {}, file, where + ".")
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        inner = [o for o in options if o is not type(None)]
        return _convert(inner[0], value, file, where)
    if origin is list:
        if not isinstance(value, list):
            raise RecipeError(f"{file}: field {where!r} must be a list, got {value!r}")
        (item,) = typing.get_args(hint)
        return [_convert(item, v, file, f"{where}[{i}]") for i, v in enumerate(value)]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool, dict) and (
        not isinstance(value, hint) or (hint is int and isinstance(value, bool))
    ):
        raise RecipeError(f"{file}: field {where!r} must be {hint.__name__}, got {value!r}")
    return value


def _check_semantics(recipe: Recipe, path: Path) -> None:
    """Names that must exist: tasks, strategies, languages, the adapter kind and its fields."""
    try:
        spec = recipe.adapter_spec
        targets = [get_task(name) for name in recipe.target.tasks]
        for name in recipe.intermediate.tasks:
            if not get_task(name).trainable:
                raise RecipeError(f"{path}: intermediate.tasks: {name!r} has no training data")
    except RecipeError:
        raise
    except AdapterxError as exc:
        raise RecipeError(f"{path}: {exc}") from exc
    if not targets:
        raise RecipeError(f"{path}: target.tasks: name at least one target task")
    if not recipe.seeds:
        raise RecipeError(f"{path}: seeds: name at least one seed")
    if recipe.threads < 0:
        raise RecipeError(f"{path}: threads: 0 (torch's default) or a positive number, got {recipe.threads}")
    if not recipe.intermediate.single_task and not recipe.intermediate.multitask:
        raise RecipeError(f"{path}: intermediate.single_task: false needs intermediate.multitask: true")
    if recipe.intermediate.multitask and len(recipe.intermediate.tasks) < 2:
        raise RecipeError(f"{path}: intermediate.multitask needs at least two intermediate.tasks")
    if any(not t.trainable for t in targets) and not recipe.intermediate.tasks:
        raise RecipeError(f"{path}: retrieval targets (no training data) need intermediate.tasks to evaluate")
    if recipe.target.strategies and not recipe.strategies():
        reasons = "; ".join(f"{s}: {why}" for s, why in recipe.skipped_strategies().items())
        raise RecipeError(f"{path}: target.strategies: none of them works with adapter kind {spec.kind!r} ({reasons})")
    if not 0 < recipe.evaluate.confidence < 1:
        raise RecipeError(f"{path}: evaluate.confidence must be in (0, 1), got {recipe.evaluate.confidence}")
    for strategy in recipe.target.strategies:
        if strategy not in STRATEGIES or strategy == "none":
            known = [s for s in STRATEGIES if s != "none"]
            raise RecipeError(f"{path}: target.strategies: {unknown('strategy', strategy, known)}")
    if recipe.target.strategies and not recipe.intermediate.tasks:
        raise RecipeError(f"{path}: target.strategies need at least one intermediate.tasks entry")
    _check_evaluate(recipe.evaluate, targets, path)
    sections = {"intermediate": recipe.intermediate.tasks, "target": recipe.target.tasks}
    for section, tasks in sections.items():
        part = getattr(recipe, section)
        for task, fields_ in part.overrides.items():
            where = f"{section}.overrides.{task}"
            if task not in tasks:
                raise RecipeError(f"{path}: {where}: {task!r} is not one of {section}.tasks ({', '.join(tasks)})")
            if not isinstance(fields_, dict):
                raise RecipeError(f"{path}: {where} must be a mapping of train fields")
            unknown_fields = sorted(set(fields_) - TrainConfig.field_names())
            if unknown_fields:
                raise RecipeError(
                    f"{path}: unknown field '{where}.{unknown_fields[0]}'; train fields: "
                    f"{', '.join(sorted(TrainConfig.field_names()))}"
                )
        try:
            part.train.validate(f"{path}: {section}.train")
            for task in part.overrides:
                part.train_for(task).validate(f"{path}: {section}.overrides.{task}")
        except AdapterxError as exc:
            raise RecipeError(str(exc)) from exc


def _check_evaluate(ev: EvaluateSection, targets: list, path: Path) -> None:
    """Splits are dev and/or test, each once; languages exist in the targets they apply to."""
    if not ev.splits or len(set(ev.splits)) != len(ev.splits) or not set(ev.splits) <= set(SPLITS):
        raise RecipeError(f"{path}: evaluate.splits: a list of {' and '.join(SPLITS)} (each once), got {ev.splits!r}")
    for form in ev.forms:
        try:
            check_evaluable(form)
        except AdapterxError as exc:
            raise RecipeError(f"{path}: evaluate.forms: {exc}") from exc
    names = {t.name for t in targets}
    for name, languages in ev.target_languages.items():
        if name not in names:
            raise RecipeError(f"{path}: evaluate.target_languages.{name}: not one of target.tasks")
        if not isinstance(languages, list) or not languages:
            raise RecipeError(f"{path}: evaluate.target_languages.{name}: a non-empty list of languages")
    for target in targets:
        where = f"target_languages.{target.name}" if target.name in ev.target_languages else "languages"
        for language in ev.target_languages.get(target.name, ev.languages or []):
            if language not in target.languages:
                raise RecipeError(
                    f"{path}: evaluate.{where}: {target.name!r} has no language {language!r}; "
                    f"languages: {', '.join(target.languages)}"
                )
