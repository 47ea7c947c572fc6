"""`adapterx run`: the phases of a recipe, each cached by a hash of everything it depends on.

The study is split into independent *jobs* (`plan_jobs`): one per intermediate task (train it, then every target
adapter built on it, for every strategy and seed, and their evaluations), one for the multi-task mixture, and
one for the baselines (target-only adapters; the bare backbone on retrieval targets). A cluster can run
``adapterx run R --job N`` for each N in parallel; a final ``adapterx run R`` reuses every cached phase, runs
the latency bench of the deployment forms, and writes results.json, report.md and the plots.

A phase whose output exists with the same key is skipped; `force` redoes it; an interrupted training phase
resumes from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import logging
import json
import platform
import time
from pathlib import Path

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
from adapterx.study.evaluate import evaluate_languages
from adapterx.study.lock import locked
from adapterx.study.recipe import Recipe, config_hash
from adapterx.study.report import write_report
from adapterx.study.state import (
    BASELINE,
    FUSE,
    MULTITASK,
    NO_INTERMEDIATE,
    PHASE_FILE,
    RESULTS_SCHEMA,
    Job,
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
def plan_jobs(recipe: Recipe) -> list[Job]:
    inter = recipe.intermediate
    names = [None, *(inter.tasks if inter.single_task else [])] + ([MULTITASK] if inter.multitask else [])
    if FUSE in recipe.strategies():
        names.append(FUSE)
    return [Job(i, {None: "baselines", FUSE: "fusion"}.get(n, f"intermediate:{n}"), n) for i, n in enumerate(names)]


def describe_jobs(recipe: Recipe) -> list[str]:
    targets = ", ".join(recipe.target.tasks)
    lines = []
    for job in plan_jobs(recipe):
        if job.intermediate is None:
            what = f"target-only adapters on {targets} x seeds {recipe.seeds}"
        elif job.intermediate == FUSE:
            what = (f"AdapterFusion over the {', '.join(recipe.intermediate.tasks)} adapters (trained here if no "
                    f"other job has yet), then {targets} x seeds {recipe.seeds}")
        else:
            what = (f"train {job.intermediate} adapter, then {targets} x strategies "
                    f"{[s for s in recipe.strategies() if s != FUSE]} x seeds {recipe.seeds}")
        lines.append(f"{job.index}\t{job.name}\t{what}")
    return lines


def run_recipe(recipe: Recipe, *, force: bool = False, progress: bool = True, job: int | None = None,
               wait: float | None = 0.0) -> dict:
    """Run every phase of `recipe` (or only job `job`), reusing cached phases; returns the results. The
    artifacts directory is locked meanwhile (adapterx.study.lock): another run on it is waited for up to `wait`
    seconds (None: as long as it takes), then refused."""
    jobs = plan_jobs(recipe)
    if job is not None and not 0 <= job < len(jobs):
        raise AdapterxError(f"--job {job}: this recipe has jobs 0..{len(jobs) - 1} (see --list-jobs)")
    with locked(recipe.output, shared=job is not None, wait=wait, log=log.info,
                hint="wait for it to finish, or pass --wait SECONDS to wait for it"):
        return _run_locked(recipe, jobs, force=force, progress=progress, job=job)


def _run_locked(recipe: Recipe, jobs: list[Job], *, force: bool, progress: bool, job: int | None) -> dict:
    started = time.perf_counter()
    backbone = load_backbone(recipe.backbone)
    state = RunState(recipe, backbone, force, progress)
    state.log(f"backbone {backbone.name}: {backbone.description} (fingerprint {backbone.fingerprint})")
    records = []
    for selected in ([jobs[job]] if job is not None else jobs):
        records += _run_job(state, selected)
    if job is not None:
        partial = {"schema_version": RESULTS_SCHEMA, "job": jobs[job].name, "records": records,
                   "phases": [dataclasses.asdict(p) for p in state.phases]}
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
    spec = recipe.adapter_spec
    data_dir = Path(recipe.data_dir) if recipe.data_dir else None
    def intermediate_adapter(name: str) -> Path:
        tasks = recipe.intermediate.tasks if name == MULTITASK else [name]
        return _train_phase(state, f"intermediate/{name}", state.out / "adapters" / "intermediate" / name, tasks,
                            spec, recipe.intermediate.train_for(name), recipe.intermediate.train_limit, data_dir,
                            "none", [])

    inter_dirs: list[Path] = []
    if job.intermediate == FUSE:
        inter_dirs = [intermediate_adapter(name) for name in recipe.intermediate.tasks]
    elif job.intermediate is not None:
        inter_dirs = [intermediate_adapter(job.intermediate)]
    inter_dir = inter_dirs[0] if job.intermediate not in (None, FUSE) else None
    for target_name in recipe.target.tasks:
        target = get_task(target_name)
        if not target.trainable:    # retrieval: the intermediate adapter's encoder (or the bare backbone) directly
            if job.intermediate == FUSE:
                continue
            label = job.intermediate or NO_INTERMEDIATE
            records += _evaluate_phase(state, target_name, label, job.intermediate, "direct", None, inter_dir,
                                       ["unmerged"], data_dir)
            continue
        if job.intermediate is None:
            variants = [("none", BASELINE)]
        elif job.intermediate == FUSE:
            variants = [(FUSE, "+".join(recipe.intermediate.tasks) + "+fuse")]
        else:
            variants = [(s, f"{job.intermediate}+{s}") for s in recipe.strategies() if s != FUSE]
        for strategy, label in variants:
            for seed in recipe.seeds:
                adapter = _train_phase(state, f"target/{target_name}/{label}/seed-{seed}",
                                       state.out / "adapters" / target_name / label / f"seed-{seed}", [target_name],
                                       spec, dataclasses.replace(recipe.target.train_for(target_name), seed=seed),
                                       recipe.target.train_limit, data_dir, strategy, inter_dirs)
                records += _evaluate_phase(state, target_name, label, job.intermediate, strategy, seed, adapter,
                                           recipe.evaluate.forms, data_dir)
    return records


def _train_phase(state: RunState, name: str, directory: Path, task_names: list[str], spec, config: TrainConfig,
                 limit: int | None, data_dir: Path | None, strategy: str, intermediates: list[Path]) -> Path:
    inputs = {"backbone": state.backbone.fingerprint, "tasks": task_names, "spec": spec.to_json(),
              "train": vars(config), "limit": limit, "data_dir": str(data_dir), "strategy": strategy,
              "intermediates": [read_metadata(p)["weights_digest"] for p in intermediates]}
    with locked(directory, wait=None, log=state.log):   # jobs run in parallel may both need this phase
        return _train_locked(state, name, directory, task_names, spec, config, limit, data_dir, strategy,
                             intermediates, inputs)


def _train_locked(state: RunState, name: str, directory: Path, task_names: list[str], spec, config: TrainConfig,
                  limit: int | None, data_dir: Path | None, strategy: str, intermediates: list[Path],
                  inputs: dict) -> Path:
    key = config_hash(inputs)
    adapter_dir = directory / "adapter"
    if state.cached(directory, key) and adapter_dir.is_dir():
        state.log(f"[{name}] reused (cache key {key})")
        state.phases.append(Phase(name, key, reused=True))
        return adapter_dir
    state.log(f"[{name}] training ({strategy})")
    started = time.perf_counter()
    resume = (directory / "checkpoints").is_dir() and _pending_key(directory) == key   # same inputs only
    if not resume:
        atomic_write_json(directory / "pending.json", {"key": key})
    tasks = [get_task(t) for t in task_names]
    if len(tasks) == 1:
        trained = train_task(state.backbone, tasks[0], spec, config, directory, strategy=strategy,
                             intermediates=intermediates, data_dir=data_dir, train_limit=limit, resume=resume,
                             overwrite=True, progress=state.progress)
    else:
        trained = train_multitask(state.backbone, tasks, spec, config, directory, data_dir=data_dir,
                                  train_limit=limit, resume=resume, overwrite=True, progress=state.progress)
    seconds = time.perf_counter() - started
    atomic_write_json(directory / PHASE_FILE, {"key": key, "inputs": inputs, "seconds": round(seconds, 2),
                                               "validation": trained.validation})
    (directory / "pending.json").unlink(missing_ok=True)
    state.phases.append(Phase(name, key, seconds=seconds))
    return adapter_dir


def _pending_key(directory: Path) -> str | None:
    try:
        return json.loads((directory / "pending.json").read_text()).get("key")
    except (OSError, json.JSONDecodeError):
        return None


def _evaluate_phase(state: RunState, target_name: str, label: str, intermediate: str | None, strategy: str,
                    seed: int | None, adapter_dir: Path | None, forms: list[str], data_dir: Path | None) -> list[dict]:
    """Score one adapter on each split: dev (unmerged only: it serves selection) and test (every form)."""
    recipe, task = state.recipe, get_task(target_name)
    records = []
    for split in recipe.evaluate.splits:
        languages = evaluation_languages(task, split, recipe.evaluate.languages_for(target_name))
        if not languages:
            continue
        for form in (forms if split == TEST else ["unmerged"]):
            record = {"target": target_name, "label": label, "intermediate": intermediate, "strategy": strategy,
                      "seed": seed, "form": form, "split": split}
            scores = _evaluate_one(state, task, record, adapter_dir, languages, data_dir)
            if scores is not None:
                records.append({**record, "scores": scores})
    return records


def _evaluate_one(state: RunState, task, record: dict, adapter_dir: Path | None, languages: list[str],
                  data_dir: Path | None) -> dict | None:
    recipe, split, form = state.recipe, record["split"], record["form"]
    inputs = {"adapter": read_metadata(adapter_dir)["weights_digest"] if adapter_dir else None,
              "backbone": state.backbone.fingerprint, "form": form, "split": split,
              "languages": languages, "limit": recipe.evaluate.limit, "data_dir": str(data_dir)}
    key = config_hash(inputs)
    seed = record["seed"]
    name = (f"evaluate/{split}/{task.name}/{record['label']}" + (f"/seed-{seed}" if seed is not None else "")
            + f"/{form}")
    directory = state.out / name
    if cached := state.cached(directory, key):
        state.log(f"[{name}] reused (cache key {key})")
        state.phases.append(Phase(name, key, reused=True))
        return cached["scores"]
    started = time.perf_counter()
    model = _model_for(state, adapter_dir, form, direct=record["strategy"] == "direct")
    scores = None
    if model is not None:
        scores = evaluate_languages(model, task, state.backbone.tokenizer, split=split, languages=languages,
                                    data_dir=data_dir, limit=recipe.evaluate.limit, progress=state.progress)
        state.log(f"[{name}] " + ", ".join(f"{lang} {next(iter(s.values())):.1f}" for lang, s in scores.items()))
    else:
        state.log(f"[{name}] skipped: form {form!r} needs {DEPLOYMENT_FORMS.get(form).needs}")
    atomic_write_json(directory / PHASE_FILE, {"key": key, "inputs": inputs, "scores": scores})
    state.phases.append(Phase(name, key, seconds=time.perf_counter() - started))
    return scores


def _model_for(state: RunState, adapter_dir: Path | None, form: str, direct: bool = False):
    if adapter_dir is None:
        return AdaptedModel(state.backbone.fresh_copy()).eval()
    if direct:   # retrieval: only the encoder with the intermediate adapter, no head
        model = AdaptedModel(state.backbone.fresh_copy())
        store.load_adapter(model, adapter_dir, name="intermediate", with_head=False)
        store.activate(model, ["intermediate"])
        return model.eval()
    return deployed(state.backbone, adapter_dir, form)


# ------------------------------------------------------------------------------------------------ bench
def _bench_phase(state: RunState) -> dict | None:
    recipe, spec = state.recipe, state.recipe.adapter_spec
    strategies = ["none", *recipe.strategies()]
    forms = ["base"] + sorted({f for s in strategies for form in recipe.evaluate.forms
                               if (f := deployment_bench_form(spec, s, form))})
    try:
        check_form_names(forms)
    except AdapterxError as exc:
        state.log(f"[bench] skipped: {exc}")
        return None
    b = recipe.bench
    options = dict(shape=b.shape or recipe.backbone, forms=tuple(forms), batch_sizes=tuple(b.batch_sizes),
                   seq_lens=tuple(b.seq_lens), threads=(b.threads,), iterations=b.iterations, warmup=b.warmup, clock=b.clock)
    options.update(get_method(spec.kind).bench_options(spec))
    key = config_hash(options)   # what is measured; not where it is written (a moved directory stays cached)
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
