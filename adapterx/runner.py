"""`adapterx run`: the phases of a recipe, each cached by a hash of everything it depends on.

train-intermediate (per task) -> train-target (target-only, and per intermediate task x strategy)
-> evaluate (per adapter, per language) -> report. A phase whose output exists with the same key is
skipped; `force` redoes everything; an interrupted training phase resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

from adapterx import transfer
from adapterx.backbone import Backbone, load_backbone
from adapterx.evaluate import evaluate_languages, language_average, primary_metric
from adapterx.io import atomic_write_json
from adapterx.recipe import Recipe, config_hash
from adapterx.store import library_versions, read_metadata
from adapterx.tasks import get_task
from adapterx.train import TrainConfig
from adapterx.workflow import train_task

PHASE_FILE = "phase.json"
RESULTS_SCHEMA = 1


@dataclass
class Phase:
    name: str
    directory: Path
    key: str
    reused: bool = False
    seconds: float = 0.0


@dataclass
class RunState:
    recipe: Recipe
    backbone: Backbone
    force: bool
    progress: bool
    phases: list[Phase] = field(default_factory=list)

    def cached(self, directory: Path, key: str) -> dict | None:
        marker = directory / PHASE_FILE
        if self.force or not marker.is_file():
            return None
        try:
            data = json.loads(marker.read_text())
        except json.JSONDecodeError:
            return None
        return data if data.get("key") == key else None

    def log(self, message: str) -> None:
        if self.progress:
            print(message, flush=True)


def run_recipe(recipe: Recipe, *, force: bool = False, progress: bool = True) -> dict:
    """Run every phase of `recipe` (reusing cached ones) and return the results written to results.json."""
    started = time.perf_counter()
    out = recipe.output
    backbone = load_backbone(recipe.backbone)
    state = RunState(recipe, backbone, force, progress)
    state.log(f"backbone {backbone.name}: {backbone.description} (fingerprint {backbone.fingerprint})")
    spec = recipe.adapter_spec
    data_dir = Path(recipe.data_dir) if recipe.data_dir else None

    intermediates: dict[str, Path] = {}
    for task_name in recipe.intermediate.tasks:
        intermediates[task_name] = _train_phase(
            state, f"intermediate/{task_name}", out / "adapters" / task_name, task_name, spec,
            recipe.intermediate.train, recipe.intermediate.train_limit, data_dir, "none", None)

    target = recipe.target
    runs: dict[str, dict] = {"target-only": {"intermediate": None, "strategy": "none",
                                             "adapter": _train_phase(state, "target/target-only",
                                                                     out / "adapters" / "target-only", target.task,
                                                                     spec, target.train, target.train_limit,
                                                                     data_dir, "none", None)}}
    for task_name, inter_dir in intermediates.items():
        for strategy in target.strategies:
            label = f"{task_name}+{strategy}"
            runs[label] = {"intermediate": task_name, "strategy": strategy,
                           "adapter": _train_phase(state, f"target/{label}", out / "adapters" / label, target.task,
                                                   spec, target.train, target.train_limit, data_dir, strategy,
                                                   inter_dir)}

    for label, run in runs.items():
        run["scores"] = _evaluate_phase(state, label, run["adapter"], data_dir)

    results = _results(state, runs, time.perf_counter() - started)
    atomic_write_json(out / "results.json", results)
    from adapterx.report import write_report
    write_report(out, results)
    state.log(f"wrote {out / 'results.json'} and {out / 'report.md'}")
    return results


def _train_phase(state: RunState, name: str, directory: Path, task_name: str, spec, config: TrainConfig,
                 limit: int | None, data_dir: Path | None, strategy: str, intermediate: Path | None) -> Path:
    inputs = {"backbone": state.backbone.fingerprint, "task": task_name, "spec": spec.to_json(),
              "train": vars(config), "limit": limit, "data_dir": str(data_dir), "strategy": strategy,
              "intermediate": read_metadata(intermediate)["weights_digest"] if intermediate else None}
    key = config_hash(inputs)
    adapter_dir = directory / "adapter"
    if state.cached(directory, key) and adapter_dir.is_dir():
        state.log(f"[{name}] reused (cache key {key})")
        state.phases.append(Phase(name, directory, key, reused=True))
        return adapter_dir
    state.log(f"[{name}] training {task_name} ({strategy})")
    started = time.perf_counter()
    # resume only checkpoints written for the same inputs
    resume = (directory / "checkpoints").is_dir() and _pending_key(directory) == key
    if not resume:
        atomic_write_json(directory / "pending.json", {"key": key})
    trained = train_task(state.backbone, get_task(task_name), spec, config, directory, strategy=strategy,
                         intermediate=intermediate, data_dir=data_dir, train_limit=limit, resume=resume,
                         progress=state.progress)
    seconds = time.perf_counter() - started
    atomic_write_json(directory / PHASE_FILE, {"key": key, "inputs": inputs, "seconds": round(seconds, 2),
                                               "validation": trained.validation})
    (directory / "pending.json").unlink(missing_ok=True)
    state.phases.append(Phase(name, directory, key, seconds=seconds))
    return adapter_dir


def _pending_key(directory: Path) -> str | None:
    try:
        return json.loads((directory / "pending.json").read_text()).get("key")
    except (OSError, json.JSONDecodeError):
        return None


def _evaluate_phase(state: RunState, label: str, adapter_dir: Path, data_dir: Path | None) -> dict:
    recipe = state.recipe
    task = get_task(recipe.target.task)
    languages = recipe.evaluate.languages or list(task.languages)
    inputs = {"adapter": read_metadata(adapter_dir)["weights_digest"], "split": recipe.evaluate.split,
              "languages": languages, "limit": recipe.evaluate.limit, "data_dir": str(data_dir)}
    key = config_hash(inputs)
    directory = recipe.output / "evaluations" / label
    if cached := state.cached(directory, key):
        state.log(f"[evaluate/{label}] reused (cache key {key})")
        state.phases.append(Phase(f"evaluate/{label}", directory, key, reused=True))
        return cached["scores"]
    started = time.perf_counter()
    model = transfer.load_for_inference(state.backbone.fresh_copy(), adapter_dir)
    scores = evaluate_languages(model, task, state.backbone.tokenizer, split=recipe.evaluate.split,
                                languages=languages, data_dir=data_dir, limit=recipe.evaluate.limit,
                                progress=state.progress)
    atomic_write_json(directory / PHASE_FILE, {"key": key, "inputs": inputs, "scores": scores})
    state.phases.append(Phase(f"evaluate/{label}", directory, key, seconds=time.perf_counter() - started))
    state.log(f"[evaluate/{label}] " + ", ".join(f"{lang} {s[primary_metric(s)]:.1f}" for lang, s in scores.items()))
    return scores


def _results(state: RunState, runs: dict[str, dict], seconds: float) -> dict:
    baseline = runs["target-only"]["scores"]
    metric = primary_metric(next(iter(baseline.values())))
    table = {}
    for label, run in runs.items():
        scores = run["scores"]
        table[label] = {
            "intermediate": run["intermediate"], "strategy": run["strategy"], "adapter": str(run["adapter"]),
            "per_language": {lang: s[metric] for lang, s in scores.items()},
            "average": language_average(scores),
            "benefit": {lang: scores[lang][metric] - baseline[lang][metric] for lang in scores},
            "average_benefit": language_average(scores) - language_average(baseline),
            "modules_at_inference": 2 if run["strategy"] == "stack" else 1,
            "parameters": read_metadata(run["adapter"])["training"].get("parameters", {}),
        }
    b = state.backbone
    return {
        "schema_version": RESULTS_SCHEMA,
        "recipe": state.recipe.to_json(),
        "backbone": {"name": b.name, "pretrained": b.pretrained, "description": b.description,
                     "fingerprint": b.fingerprint},
        "target_task": state.recipe.target.task,
        "metric": metric,
        "split": state.recipe.evaluate.split,
        "runs": table,
        "phases": [{"name": p.name, "reused": p.reused, "seconds": round(p.seconds, 2)} for p in state.phases],
        "seconds": round(seconds, 2),
        "device": "cpu" if not _cuda() else _cuda(),
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "library_versions": library_versions(),
    }


def _cuda() -> str | None:
    import torch
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
