"""`adapterx run`: the phases of a recipe, each cached by a hash of everything it depends on.

The study is split into independent *jobs* (adapterx.study.design): one per intermediate task (train it once per
seed, then every target adapter built on it, for every strategy, on the intermediate adapter of the same seed,
and their evaluations), one for the multi-task mixture, one per shuffled-label control, and one for the
baselines (target-only adapters and the target-only controls; the bare backbone on retrieval targets). A
cluster can run ``adapterx run R --job N`` for each N in parallel; a final ``adapterx run R`` reuses every cached
phase, runs the latency bench of the deployment forms, and writes results.json, report.md and the plots.

A phase whose output exists with the same key is skipped; `force` redoes it; an interrupted training phase
resumes from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import platform
import time
from pathlib import Path

import torch

from adapterx import store
from adapterx.bench.config import BenchConfig
from adapterx.bench.forms import check_form_names
from adapterx.bench.report import write_outputs
from adapterx.bench.runner import run_bench
from adapterx.core.backbone import load_backbone
from adapterx.core.errors import AdapterxError
from adapterx.core.io import atomic_write_json
from adapterx.core.model import AdaptedModel
from adapterx.deploy.forms import DEPLOYMENT_FORMS, deployed
from adapterx.methods import get_method
from adapterx.store import library_versions, read_metadata
from adapterx.study.controls import (
    capacity_matched_spec,
    pooled_task,
    shuffled_task,
    training_steps,
)
from adapterx.study.design import (
    FUSE,
    MULTITASK,
    Job,
    Variant,
    intermediate_phases,
    job_variants,
    plan_jobs,
    pooled_tasks,
    step_phases,
)
from adapterx.study.lock import locked
from adapterx.study.predictions import (
    PREDICTIONS_FILE,
    predict_languages,
    save_predictions,
)
from adapterx.study.recipe import Recipe, config_hash
from adapterx.study.report import write_report
from adapterx.study.state import (
    PHASE_FILE,
    RESULTS_SCHEMA,
    Phase,
    RunState,
    deployment_bench_form,
)
from adapterx.study.summary import assemble
from adapterx.tasks import get_task
from adapterx.tasks.splits import TEST, evaluation_languages
from adapterx.training.loop import TrainConfig
from adapterx.training.multitask import train_multitask
from adapterx.training.workflow import train_task

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ jobs
def describe_jobs(recipe: Recipe) -> list[str]:
    targets = ", ".join(recipe.target.tasks)
    seeds = f"seeds {recipe.seeds}"
    lines = []
    for job in plan_jobs(recipe):
        if job.intermediate is None:
            controls = [
                name
                for name, on in (
                    ("step-matched", recipe.controls.step_matched),
                    ("capacity-matched", recipe.controls.capacity_matched),
                    ("pooled", recipe.controls.pooled),
                )
                if on
            ]
            what = f"target-only adapters on {targets} x {seeds}" + (
                f"; controls: {', '.join(controls)}" if controls else ""
            )
        elif job.intermediate == FUSE:
            what = (
                f"AdapterFusion over the {', '.join(recipe.intermediate.tasks)} adapters of each seed (trained "
                f"here if no other job has yet), then {targets} x {seeds}"
            )
        else:
            what = (
                f"train the {job.intermediate} adapter x {seeds}, then {targets} x strategies "
                f"{[s for s in recipe.strategies() if s != FUSE]} on the adapter of the same seed"
            )
        lines.append(f"{job.index}\t{job.name}\t{what}")
    return lines


def run_recipe(
    recipe: Recipe, *, force: bool = False, progress: bool = True, job: int | None = None, wait: float | None = 0.0
) -> dict:
    """Run every phase of `recipe` (or only job `job`), reusing cached phases; returns the results. The
    artifacts directory is locked meanwhile (adapterx.study.lock): another run on it is waited for up to `wait`
    seconds (None: as long as it takes), then refused."""
    jobs = plan_jobs(recipe)
    if job is not None and not 0 <= job < len(jobs):
        raise AdapterxError(f"--job {job}: this recipe has jobs 0..{len(jobs) - 1} (see --list-jobs)")
    with locked(
        recipe.output,
        shared=job is not None,
        wait=wait,
        log=log.info,
        hint="wait for it to finish, or pass --wait SECONDS to wait for it",
    ):
        return _run_locked(recipe, jobs, force=force, progress=progress, job=job)


def _run_locked(recipe: Recipe, jobs: list[Job], *, force: bool, progress: bool, job: int | None) -> dict:
    started = time.perf_counter()
    if recipe.threads:  # small models gain nothing from more threads, and on shared cores lose a lot
        torch.set_num_threads(recipe.threads)
    backbone = load_backbone(recipe.backbone)
    state = RunState(recipe, backbone, force, progress)
    state.log(f"backbone {backbone.name}: {backbone.description} (fingerprint {backbone.fingerprint})")
    records = []
    for selected in [jobs[job]] if job is not None else jobs:
        records += _run_job(state, selected)
    if job is not None:
        partial = {
            "schema_version": RESULTS_SCHEMA,
            "job": jobs[job].name,
            "records": records,
            "phases": [dataclasses.asdict(p) for p in state.phases],
        }
        atomic_write_json(state.out / "jobs" / f"{job}.json", partial)
        state.log(f"job {job} ({jobs[job].name}) done; run without --job to bench and report")
        return partial
    bench = _bench_phase(state) if recipe.bench.enabled else None
    results = assemble(state, records, bench, time.perf_counter() - started)
    results["machine"] = {"platform": platform.platform(), "processor": platform.processor()}
    results["library_versions"] = library_versions()
    atomic_write_json(state.out / "results.json", results)
    write_report(state.out, results)
    state.log(f"wrote {state.out / 'results.json'} and {state.out / 'report.md'}")
    return results


def _run_job(state: RunState, job: Job) -> list[dict]:
    recipe, records = state.recipe, []
    for target_name in recipe.target.tasks:
        target = get_task(target_name)
        steps = _step_budgets(state, target) if job.intermediate is None and target.trainable else None
        for variant in job_variants(recipe, job, target, steps):
            seeds = [None] if variant.strategy == "direct" and not variant.phases else recipe.seeds
            for seed in seeds:
                inter_dirs = [_intermediate_adapter(state, name, seed) for name in variant.phases]
                if variant.strategy == "direct":  # retrieval: the intermediate adapter's encoder, or the backbone
                    adapter = inter_dirs[0] if inter_dirs else None
                else:
                    adapter = _target_adapter(state, target, variant, seed, inter_dirs, steps or {})
                records += _evaluate_phase(state, target_name, variant, seed, adapter)
    return records


def _intermediate_adapter(state: RunState, name: str, seed: int) -> Path:
    """The intermediate adapter of phase `name` trained with `seed` (trained now unless cached)."""
    if (name, seed) in state.trained:
        return state.trained[(name, seed)]
    recipe = state.recipe
    phase = intermediate_phases(recipe)[name]
    config = dataclasses.replace(recipe.intermediate.train_for(phase.tasks[0] if phase.shuffled else name), seed=seed)
    tasks = [shuffled_task(get_task(phase.tasks[0]), seed)] if phase.shuffled else [get_task(t) for t in phase.tasks]
    directory = state.out / "adapters" / "intermediate" / name / f"seed-{seed}"
    adapter = _train_phase(
        state,
        f"intermediate/{name}/seed-{seed}",
        directory,
        tasks,
        recipe.adapter_spec,
        config,
        recipe.intermediate.train_limit,
        "none",
        [],
    )
    state.trained[(name, seed)] = adapter
    return adapter


def _step_budgets(state: RunState, target) -> dict[str, int] | None:
    """{intermediate phase: its steps + the target's} for the step-matched and pooled controls."""
    recipe = state.recipe
    wanted = set(step_phases(recipe)) if recipe.controls.step_matched else set()
    wanted |= set(pooled_tasks(recipe, target)) if recipe.controls.pooled else set()
    if not wanted:
        return None
    data_dir = state.data_dir
    own = training_steps([target], recipe.target.train_for(target.name), data_dir, recipe.target.train_limit)
    tasks = {name: recipe.intermediate.tasks if name == MULTITASK else [name] for name in wanted}
    return {
        name: own
        + training_steps(
            [get_task(t) for t in names], recipe.intermediate.train_for(name), data_dir, recipe.intermediate.train_limit
        )
        for name, names in tasks.items()
    }


def _target_adapter(
    state: RunState, target, variant: Variant, seed: int, inter_dirs: list[Path], steps: dict[str, int]
) -> Path:
    recipe, spec, task = state.recipe, state.recipe.adapter_spec, target
    config = dataclasses.replace(recipe.target.train_for(target.name), seed=seed)
    extra: dict = {}
    if variant.control == "capacity-matched":
        spec, _ = capacity_matched_spec(spec)
    if variant.step_phases:
        config = dataclasses.replace(config, max_steps=steps[variant.step_phases[0]])
    if variant.pooled_with:
        task = pooled_task(target, get_task(variant.pooled_with), state.data_dir, recipe.intermediate.train_limit)
        extra["pooled_limit"] = recipe.intermediate.train_limit
    directory = state.out / "adapters" / target.name / variant.label / f"seed-{seed}"
    return _train_phase(
        state,
        f"target/{target.name}/{variant.label}/seed-{seed}",
        directory,
        [task],
        spec,
        config,
        recipe.target.train_limit,
        variant.strategy,
        inter_dirs,
        extra,
    )


def _train_phase(
    state: RunState,
    name: str,
    directory: Path,
    tasks: list,
    spec,
    config: TrainConfig,
    limit: int | None,
    strategy: str,
    intermediates: list[Path],
    extra: dict | None = None,
) -> Path:
    data_dir = state.data_dir
    inputs = {
        "backbone": state.backbone.fingerprint,
        "tasks": [t.name for t in tasks],
        "spec": spec.to_json(),
        "train": vars(config),
        "limit": limit,
        "data_dir": str(data_dir),
        "strategy": strategy,
        "intermediates": [read_metadata(p)["weights_digest"] for p in intermediates],
        **(extra or {}),
    }
    with locked(directory, wait=None, log=state.log):  # jobs run in parallel may both need this phase
        return _train_locked(state, name, directory, tasks, spec, config, limit, strategy, intermediates, inputs)


def _train_locked(
    state: RunState,
    name: str,
    directory: Path,
    tasks: list,
    spec,
    config: TrainConfig,
    limit: int | None,
    strategy: str,
    intermediates: list[Path],
    inputs: dict,
) -> Path:
    data_dir = state.data_dir
    key = config_hash(inputs)
    adapter_dir = directory / "adapter"
    if state.cached(directory, key) and adapter_dir.is_dir():
        state.log(f"[{name}] reused (cache key {key})")
        state.phases.append(Phase(name, key, reused=True))
        return adapter_dir
    state.log(f"[{name}] training ({strategy})")
    started = time.perf_counter()
    resume = (directory / "checkpoints").is_dir() and _pending_key(directory) == key  # same inputs only
    if not resume:
        atomic_write_json(directory / "pending.json", {"key": key})
    if len(tasks) == 1:
        trained = train_task(
            state.backbone,
            tasks[0],
            spec,
            config,
            directory,
            strategy=strategy,
            intermediates=intermediates,
            data_dir=data_dir,
            train_limit=limit,
            resume=resume,
            overwrite=True,
            progress=state.progress,
        )
    else:
        trained = train_multitask(
            state.backbone,
            tasks,
            spec,
            config,
            directory,
            data_dir=data_dir,
            train_limit=limit,
            resume=resume,
            overwrite=True,
            progress=state.progress,
        )
    seconds = time.perf_counter() - started
    atomic_write_json(
        directory / PHASE_FILE,
        {
            "key": key,
            "inputs": inputs,
            "seconds": round(seconds, 2),
            "steps": trained.result.steps,
            "validation": trained.validation,
        },
    )
    (directory / "pending.json").unlink(missing_ok=True)
    state.phases.append(Phase(name, key, seconds=seconds))
    return adapter_dir


def _pending_key(directory: Path) -> str | None:
    try:
        return json.loads((directory / "pending.json").read_text()).get("key")
    except (OSError, json.JSONDecodeError):
        return None


def _evaluate_phase(
    state: RunState, target_name: str, variant: Variant, seed: int | None, adapter_dir: Path | None
) -> list[dict]:
    """Score one adapter on each split: dev (unmerged only: it serves selection) and test (every form the row
    is deployed in); controls are scored on test only, unmerged (they are not deployments or candidates)."""
    recipe, task = state.recipe, get_task(target_name)
    records = []
    for split in recipe.evaluate.splits:
        languages = evaluation_languages(task, split, recipe.evaluate.languages_for(target_name))
        if not languages or (split != TEST and variant.role == "control"):
            continue
        forms = [f for f in recipe.evaluate.forms if variant.forms is None or f in variant.forms] or ["unmerged"]
        for form in forms if split == TEST else ["unmerged"]:
            record = {
                "target": target_name,
                "label": variant.label,
                "role": variant.role,
                "control": variant.control,
                "intermediate": variant.intermediate,
                "strategy": variant.strategy,
                "step_phases": list(variant.step_phases),
                "seed": seed,
                "form": form,
                "split": split,
            }
            done = _evaluate_one(state, task, record, adapter_dir, languages)
            if done is not None:
                records.append({**record, **done})
    return records


def _evaluate_one(state: RunState, task, record: dict, adapter_dir: Path | None, languages: list[str]) -> dict | None:
    """{"scores", "predictions": path of the kept per-example predictions or None}; None if the form does not
    apply to this adapter."""
    recipe, split, form = state.recipe, record["split"], record["form"]
    inputs = {
        "adapter": read_metadata(adapter_dir)["weights_digest"] if adapter_dir else None,
        "backbone": state.backbone.fingerprint,
        "form": form,
        "split": split,
        "languages": languages,
        "limit": recipe.evaluate.limit,
        "data_dir": str(state.data_dir),
    }
    key = config_hash(inputs)
    seed = record["seed"]
    name = (
        f"evaluate/{split}/{task.name}/{record['label']}" + (f"/seed-{seed}" if seed is not None else "") + f"/{form}"
    )
    directory = state.out / name
    kept = directory / PREDICTIONS_FILE
    if (cached := state.cached(directory, key)) and (not cached.get("predictions") or kept.is_file()):
        state.log(f"[{name}] reused (cache key {key})")
        state.phases.append(Phase(name, key, reused=True))
        scores = cached["scores"]
        return None if scores is None else {"scores": scores, "predictions": cached.get("predictions")}
    started = time.perf_counter()
    model = _model_for(state, adapter_dir, form, direct=record["strategy"] == "direct")
    scores, relative = None, None
    if model is not None:
        scores, predictions = predict_languages(
            model,
            task,
            state.backbone.tokenizer,
            split=split,
            languages=languages,
            data_dir=state.data_dir,
            limit=recipe.evaluate.limit,
            progress=state.progress,
        )
        if predictions:
            save_predictions(kept, predictions)
            relative = str(kept.relative_to(state.out))
        state.log(f"[{name}] " + ", ".join(f"{lang} {next(iter(s.values())):.1f}" for lang, s in scores.items()))
    else:
        state.log(f"[{name}] skipped: form {form!r} needs {DEPLOYMENT_FORMS.get(form).needs}")
    atomic_write_json(directory / PHASE_FILE, {"key": key, "inputs": inputs, "scores": scores, "predictions": relative})
    state.phases.append(Phase(name, key, seconds=time.perf_counter() - started))
    return None if scores is None else {"scores": scores, "predictions": relative}


def _model_for(state: RunState, adapter_dir: Path | None, form: str, direct: bool = False):
    if adapter_dir is None:
        return AdaptedModel(state.backbone.fresh_copy()).eval()
    if direct:  # retrieval: only the encoder with the intermediate adapter, no head
        model = AdaptedModel(state.backbone.fresh_copy())
        store.load_adapter(model, adapter_dir, name="intermediate", with_head=False)
        store.activate(model, ["intermediate"])
        return model.eval()
    return deployed(state.backbone, adapter_dir, form)


# ------------------------------------------------------------------------------------------------ bench
def _bench_phase(state: RunState) -> dict | None:
    recipe, spec = state.recipe, state.recipe.adapter_spec
    strategies = ["none", *recipe.strategies()]
    forms = ["base"] + sorted(
        {f for s in strategies for form in recipe.evaluate.forms if (f := deployment_bench_form(spec, s, form))}
    )
    try:
        check_form_names(forms)
    except AdapterxError as exc:
        state.log(f"[bench] skipped: {exc}")
        return None
    b = recipe.bench
    options = dict(
        shape=b.shape or recipe.backbone,
        forms=tuple(forms),
        batch_sizes=tuple(b.batch_sizes),
        seq_lens=tuple(b.seq_lens),
        threads=(b.threads,),
        iterations=b.iterations,
        warmup=b.warmup,
        clock=b.clock,
    )
    options.update(get_method(spec.kind).bench_options(spec))
    key = config_hash(options)  # what is measured; not where it is written (a moved directory stays cached)
    options.update(output=str(state.out / "bench"), progress=state.progress)
    directory = state.out / "bench"
    if cached := state.cached(directory, key):
        state.log(f"[bench] reused (cache key {key})")
        state.phases.append(Phase("bench", key, reused=True))
        return cached["doc"]
    started = time.perf_counter()
    state.log(f"[bench] timing {', '.join(forms)} on {options['shape']}")
    doc = run_bench(BenchConfig(**options), log=state.log)
    write_outputs(doc, directory)
    atomic_write_json(directory / PHASE_FILE, {"key": key, "doc": doc})
    state.phases.append(Phase("bench", key, seconds=time.perf_counter() - started))
    return doc
