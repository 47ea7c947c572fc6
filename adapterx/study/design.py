"""What a recipe trains and evaluates: its intermediate phases, its jobs, and the rows (variants) of each target.

Every row of the report is one `Variant`: a way to train the target adapter (strategy, what it builds on,
which control it is), run once per seed. Intermediate phases are trained once per seed too: target run s
builds on intermediate run s, and is compared with the baseline of seed s (paired by seed).

Names (used in results, directories and the `expect` field of a recipe):
  target-only                    the baseline: the target adapter alone
  <task>+<strategy>              a setup, e.g. tiny-nli+continue (multitask+stack; a+b+fuse for fusion)
  <task>-shuffled+<strategy>     the shuffled-label control of that setup
  step-matched-<N>               target-only trained for N steps (= an intermediate phase's + the target's)
  capacity-matched               target-only adapter as large as a stacked pair
  <task>-pooled                  target-only on the target's and <task>'s training rows
This module imports no module that imports the recipe: the recipe schema checks `expect` labels with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from adapterx.core.errors import RecipeError
from adapterx.study.controls import label_space_problem
from adapterx.tasks import get_task
from adapterx.tasks.base import Task


class RecipeView(Protocol):
    """What this module reads of a recipe (adapterx.study.recipe.Recipe, which imports this module)."""

    intermediate: Any
    target: Any
    controls: Any
    expect: list

    def strategies(self) -> list[str]: ...

    def skipped_controls(self) -> dict[str, str]: ...

    def skipped_strategies(self) -> dict[str, str]: ...


BASELINE = "target-only"
NO_INTERMEDIATE = "no-intermediate"
MULTITASK = "multitask"
FUSE = "fuse"  # the strategy over all intermediate adapters at once, and the job that runs it
SHUFFLED = "-shuffled"
CAPACITY = "capacity-matched"
# keywords an expectation's `vs` may use instead of a row label: resolved per setup
CONTROL_KEYWORDS = ("baseline", "shuffled", "step-matched", "capacity-matched", "pooled")
DIRECTIONS = (">", "<")


@dataclass(frozen=True)
class IntermediatePhase:
    """An intermediate adapter trained once per seed under adapters/intermediate/<name>/seed-<s>."""

    name: str
    tasks: tuple[str, ...]
    shuffled: bool = False


@dataclass(frozen=True)
class Variant:
    label: str
    role: str  # "baseline" | "setup" | "control"
    strategy: str  # transfer strategy; "none" for target-only rows
    phases: tuple[str, ...] = ()  # intermediate phases the target builds on (seed by seed)
    intermediate: str | None = None  # the phase (or FUSE) this row is about, for the report
    control: str | None = None  # "shuffled" | "step-matched" | "capacity-matched" | "pooled"
    step_phases: tuple[str, ...] = ()  # step-matched/pooled: phases whose step count is added
    pooled_with: str | None = None  # pooled: the intermediate task whose rows join the target's
    forms: tuple[str, ...] | None = None  # None: the recipe's forms; controls are evaluated unmerged


@dataclass(frozen=True)
class Job:
    index: int
    name: str
    intermediate: str | None  # a phase name, FUSE, or None for the baselines job


def setup_label(phase: str, strategy: str) -> str:
    return f"{phase}+{strategy}"


def fuse_label(tasks: list[str]) -> str:
    return "+".join(tasks) + f"+{FUSE}"


def intermediate_phases(recipe: RecipeView) -> dict[str, IntermediatePhase]:
    inter = recipe.intermediate
    phases = {t: IntermediatePhase(t, (t,)) for t in inter.tasks}
    if inter.multitask:
        phases[MULTITASK] = IntermediatePhase(MULTITASK, tuple(inter.tasks))
    for task in recipe.controls.shuffled_labels:
        phases[task + SHUFFLED] = IntermediatePhase(task + SHUFFLED, (task,), shuffled=True)
    return phases


def plan_jobs(recipe: RecipeView) -> list[Job]:
    """Baselines first, then one job per intermediate phase, fusion, and the shuffled-label controls last."""
    inter = recipe.intermediate
    names: list[str | None] = [None, *(inter.tasks if inter.single_task else [])]
    names += [MULTITASK] if inter.multitask else []
    names += [FUSE] if FUSE in recipe.strategies() else []
    names += [t + SHUFFLED for t in recipe.controls.shuffled_labels]
    jobs = []
    for i, n in enumerate(names):
        title = {None: "baselines", FUSE: "fusion"}.get(n, f"intermediate:{n}")
        if n is not None and n.endswith(SHUFFLED):
            title = f"control:shuffled:{n[: -len(SHUFFLED)]}"
        jobs.append(Job(i, title, n))
    return jobs


def _strategies(recipe: RecipeView) -> list[str]:
    return [s for s in recipe.strategies() if s != FUSE]


def job_variants(recipe: RecipeView, job: Job, target: Task, steps: dict[str, int] | None = None) -> list[Variant]:
    """The rows job `job` trains (and evaluates) for `target`. A retrieval target (no training data) gets the
    intermediate adapters used directly. `steps`: see `control_variants`."""
    if not target.trainable:
        return [] if job.intermediate == FUSE else [_direct(recipe, job.intermediate)]
    if job.intermediate is None:
        return [Variant(BASELINE, "baseline", "none"), *control_variants(recipe, target, steps)]
    if job.intermediate == FUSE:
        tasks = list(recipe.intermediate.tasks)
        return [Variant(fuse_label(tasks), "setup", FUSE, phases=tuple(tasks), intermediate=FUSE)]
    shuffled = job.intermediate.endswith(SHUFFLED)
    return [
        Variant(
            setup_label(job.intermediate, s),
            "control" if shuffled else "setup",
            s,
            (job.intermediate,),
            job.intermediate,
            "shuffled" if shuffled else None,
            forms=("unmerged",) if shuffled else None,
        )
        for s in _strategies(recipe)
    ]


def _direct(recipe: RecipeView, phase: str | None) -> Variant:
    if phase is None:
        return Variant(NO_INTERMEDIATE, "baseline", "direct", forms=("unmerged",))
    shuffled = phase.endswith(SHUFFLED)
    return Variant(
        phase,
        "control" if shuffled else "setup",
        "direct",
        (phase,),
        phase,
        "shuffled" if shuffled else None,
        forms=("unmerged",),
    )


def control_variants(recipe: RecipeView, target: Task, steps: dict[str, int] | None = None) -> list[Variant]:
    """The target-only controls of the baselines job for `target`. Step-matched rows are named by their step
    count, so `steps` ({phase: intermediate steps + target steps}) must be given for them; without it they are
    left out (e.g. when only labels are needed)."""
    c, out = recipe.controls, []
    unmerged = ("unmerged",)
    if c.step_matched and steps is not None:
        by_total: dict[int, list[str]] = {}
        for phase, total in steps.items():
            by_total.setdefault(total, []).append(phase)
        out += [
            Variant(
                f"step-matched-{total}",
                "control",
                "none",
                control="step-matched",
                step_phases=tuple(phases),
                forms=unmerged,
            )
            for total, phases in sorted(by_total.items())
        ]
    if c.capacity_matched and "capacity_matched" not in recipe.skipped_controls():
        out.append(Variant(CAPACITY, "control", "none", control="capacity-matched", forms=unmerged))
    if c.pooled:
        out += [
            Variant(
                f"{task}-pooled",
                "control",
                "none",
                control="pooled",
                step_phases=(task,),
                pooled_with=task,
                forms=unmerged,
            )
            for task in pooled_tasks(recipe, target)
        ]
    return out


def step_phases(recipe: RecipeView) -> list[str]:
    """The intermediate phases a step-matched baseline is matched to (one per setup phase, shuffled left out:
    a shuffled phase takes as many steps as its original)."""
    return [
        p.name
        for p in intermediate_phases(recipe).values()
        if not p.shuffled and (p.name == MULTITASK or recipe.intermediate.single_task)
    ]


def pooled_tasks(recipe: RecipeView, target: Task) -> list[str]:
    """Intermediate tasks whose rows can join `target`'s training set (same head, labels and field count)."""
    return [t for t in recipe.intermediate.tasks if not label_space_problem(target, get_task(t))]


def row_labels(recipe: RecipeView, target: Task) -> list[str]:
    """Every row label `target` gets in this recipe (step-matched rows only by their keyword)."""
    return [v.label for job in plan_jobs(recipe) for v in job_variants(recipe, job, target)]


def variants_by_label(recipe: RecipeView, target: Task, steps: dict[str, int] | None = None) -> dict[str, Variant]:
    return {v.label: v for job in plan_jobs(recipe) for v in job_variants(recipe, job, target, steps)}


def comparison_row(
    recipe: RecipeView, target: Task, setup: str, vs: str, steps: dict[str, int] | None = None
) -> tuple[str | None, str]:
    """The row label `vs` means for row `setup` (a keyword resolves to the setup's own control), or
    (None, why there is none). Step-matched rows need `steps` (see `control_variants`)."""
    rows = variants_by_label(recipe, target, steps)
    if vs not in CONTROL_KEYWORDS:
        return (vs, "") if vs in rows else (None, f"no row {vs!r}")
    if vs == "baseline":
        return BASELINE, ""
    variant = rows.get(setup)
    if variant is None or variant.role != "setup" or not variant.phases:
        return None, f"{setup!r} is not a setup built on an intermediate adapter"
    phase = variant.intermediate
    if vs == "shuffled":
        label = setup_label(phase + SHUFFLED, variant.strategy)
        if label not in rows:
            return None, f"no shuffled-label control of {phase} (controls.shuffled_labels)"
        return label, ""
    if vs == "capacity-matched":
        if variant.strategy != "stack":
            return None, "the capacity-matched control is for strategy 'stack'"
        why = recipe.skipped_controls().get("capacity_matched", "controls.capacity_matched is off")
        return (CAPACITY, "") if CAPACITY in rows else (None, why)
    if vs == "pooled":
        label = f"{phase}-pooled"
        return (label, "") if label in rows else (None, f"no pooled control for {phase} (controls.pooled, label space)")
    if not recipe.controls.step_matched:
        return None, "controls.step_matched is off"
    if steps is None or phase not in steps:
        return "step-matched", ""  # resolved once the step counts are known
    return f"step-matched-{steps[phase]}", ""


# ------------------------------------------------------------------------------------------ recipe checks
def check_controls(recipe: RecipeView, path) -> None:
    """The `controls` section names intermediate tasks that exist and can be controlled (called by load_recipe)."""
    c = recipe.controls
    for task in c.shuffled_labels:
        if task not in recipe.intermediate.tasks:
            raise RecipeError(
                f"{path}: controls.shuffled_labels: {task!r} is not one of intermediate.tasks "
                f"({', '.join(recipe.intermediate.tasks) or 'none'})"
            )
        if get_task(task).head not in ("classification", "multiple_choice"):
            raise RecipeError(
                f"{path}: controls.shuffled_labels: {task!r} has {get_task(task).head} labels; only "
                f"classification and multiple-choice labels can be permuted among examples"
            )
    if (c.step_matched or c.pooled) and not recipe.intermediate.tasks:
        raise RecipeError(f"{path}: controls.step_matched / controls.pooled need intermediate.tasks")
    if c.capacity_matched and "stack" not in recipe.target.strategies:
        raise RecipeError(
            f"{path}: controls.capacity_matched matches strategy 'stack', which this recipe does "
            f"not run (target.strategies: {recipe.target.strategies})"
        )
    targets = [get_task(t) for t in recipe.target.tasks if get_task(t).trainable]
    if c.pooled and not any(pooled_tasks(recipe, t) for t in targets):
        raise RecipeError(
            f"{path}: controls.pooled: no intermediate task has the label space of a target "
            f"(same head, labels and number of text fields)"
        )


def _ruled_out(recipe: RecipeView, name: str) -> bool:
    """A row the adapter kind rules out (a skipped strategy or control): an expectation about it is reported as
    not run rather than refused, so switching the kind stays a one-field change."""
    if any(name.endswith(f"+{s}") for s in recipe.skipped_strategies()):
        return True
    return name in (CAPACITY, "capacity-matched") and "capacity_matched" in recipe.skipped_controls()


def check_expectations(recipe: RecipeView, path) -> None:
    """Every `expect` entry names rows (or control keywords) this recipe produces (called by load_recipe)."""
    trainable = [t for t in recipe.target.tasks if get_task(t).trainable]
    for i, e in enumerate(recipe.expect):
        where = f"{path}: expect[{i}]"
        if e.direction not in DIRECTIONS:
            raise RecipeError(f"{where}.direction: must be one of {', '.join(DIRECTIONS)}, got {e.direction!r}")
        if e.target is None and len(trainable) != 1:
            raise RecipeError(f"{where}.target: name the target task (one of {', '.join(recipe.target.tasks)})")
        target = e.target or trainable[0]
        if target not in trainable:
            raise RecipeError(
                f"{where}.target: {target!r} is not a trainable target of this recipe ({', '.join(trainable)})"
            )
        if e.language is not None and e.language not in get_task(target).languages:
            raise RecipeError(f"{where}.language: {target!r} has no language {e.language!r}")
        if _ruled_out(recipe, e.setup) or _ruled_out(recipe, e.vs):
            continue
        labels = row_labels(recipe, get_task(target))
        if e.setup not in labels:
            raise RecipeError(f"{where}.setup: {e.setup!r} is not a row of this recipe; rows: {', '.join(labels)}")
        if e.vs not in labels and e.vs not in CONTROL_KEYWORDS:
            raise RecipeError(
                f"{where}.vs: {e.vs!r} is neither a row of this recipe nor one of "
                f"{', '.join(CONTROL_KEYWORDS)}; rows: {', '.join(labels)}"
            )
        row, why = comparison_row(recipe, get_task(target), e.setup, e.vs)
        if row is None:
            raise RecipeError(f"{where}.vs: {e.vs!r} for {e.setup!r}: {why}")
