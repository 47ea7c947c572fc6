"""One task's adapter, end to end: load data, prepare the model by strategy, train, evaluate, save.

Both `adapterx train` and the recipe runner call `train_task`; the CLI and the runner only gather options.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from adapterx import store
from adapterx.core.backbone import Backbone
from adapterx.core.errors import AdapterxError
from adapterx.core.heads import HeadSpec
from adapterx.core.model import AdaptedModel
from adapterx.methods import AdapterSpec
from adapterx.tasks.base import Task
from adapterx.tasks.data import load_split
from adapterx.tasks.processing import evaluate_on_split, processor_for
from adapterx.training import strategies as transfer
from adapterx.training.checkpoint import prepare_run_directory
from adapterx.training.loop import TrainConfig, TrainResult, train_adapter
from adapterx.training.run_config import run_config
from adapterx.training.seeding import seed_everything


@dataclass
class TrainedAdapter:
    directory: Path
    result: TrainResult
    validation: dict[str, float]


def train_task(
    backbone: Backbone,
    task: Task,
    spec: AdapterSpec,
    config: TrainConfig,
    output_dir: Path,
    *,
    strategy: str = "none",
    intermediate: Path | None = None,
    intermediates: list[Path] | None = None,
    data_dir: Path | None = None,
    train_limit: int | None = None,
    eval_limit: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> TrainedAdapter:
    """Train an adapter for `task` and save it (with head and provenance) to ``output_dir/adapter``.

    The target builds on `intermediate` (one adapter directory) or `intermediates` (several, e.g. for strategy
    'fuse'; give one of the two) as `strategy` says (see adapterx.training.strategies). A fresh run needs an
    empty `output_dir` unless `overwrite`; `resume` continues the run its checkpoints belong to, and only that
    one (see adapterx.training.checkpoint.prepare_run_directory)."""
    if intermediate is not None and intermediates is not None:
        raise AdapterxError("give the intermediate adapter(s) as intermediate= or intermediates=, not both")
    inputs = transfer.check_intermediates(strategy, intermediates if intermediates is not None else intermediate)
    if not task.trainable:
        raise AdapterxError(f"task {task.name!r} has no training data; evaluate it with an adapter of another task")
    if backbone.tokenizer is None:
        raise AdapterxError(f"backbone {backbone.name!r} has no tokenizer; it serves latency benchmarks only")
    output_dir = Path(output_dir)
    prepare_run_directory(output_dir, resume=resume, overwrite=overwrite)
    identity = run_config(
        tasks=[task.name],
        spec=spec,
        train=config,
        backbone_fingerprint=backbone.fingerprint,
        strategy=strategy,
        intermediates=[store.read_metadata(p)["weights_digest"] for p in inputs],
        data_dir=data_dir,
        train_limit=train_limit,
    )
    tokenizer = backbone.tokenizer
    processor = processor_for(task)
    train_rows = load_split(task, "train", data_dir=data_dir, limit=train_limit)
    limits = [n for n in (eval_limit, config.eval_examples) if n is not None]
    eval_rows = load_split(
        task, "validation", task.train_language, data_dir=data_dir, limit=min(limits) if limits else None
    )
    encoded = processor.encode(task, train_rows, tokenizer)

    seed_everything(config.seed)  # before the adapter and the head are created: they draw their initial values
    prepared = transfer.prepare(strategy, backbone.fresh_copy(), spec, inputs)
    model = prepared.model
    model.add_head(prepared.trainable, head_spec(task))
    fingerprint_before = model.backbone.current_fingerprint()

    def evaluator(m) -> dict[str, float]:
        return evaluate_on_split(m, task, eval_rows, tokenizer)

    result = train_adapter(
        model,
        prepared.trainable,
        prepared.trainable,
        encoded,
        processor.collator(tokenizer),
        config,
        output_dir,
        evaluator=evaluator,
        resume=resume,
        progress=progress,
        description=f"{task.name}/{strategy}",
        run_config=identity,
    )
    if model.backbone.current_fingerprint() != fingerprint_before:
        raise AdapterxError("the base weights changed during training: this is a bug in adapterx, please report")
    validation = result.selected.get("scores") or (result.evals[-1] if result.evals else evaluator(model))
    validation = {k: v for k, v in validation.items() if k != "step"}
    return save_trained(
        model,
        prepared.trainable,
        output_dir,
        result,
        config,
        validation,
        training={"strategy": strategy, "evals": result.evals},
        task=task.name,
        labels=task.labels,
        languages=task.languages,
        head=prepared.trainable,
        metrics={
            "validation": validation,
            "validation_language": task.train_language,
            "validation_examples": len(eval_rows),
        },
        requires=prepared.requires,
        save_extra=prepared.save_extra,
    )


def head_spec(task: Task) -> HeadSpec:
    """The head a task trains: its head kind, one output per label, the task's head options."""
    return HeadSpec(task.head, task.num_labels, dict(task.options.get("head", {})))


def save_trained(
    model: AdaptedModel,
    name: str,
    output_dir: Path,
    result: TrainResult,
    config: TrainConfig,
    validation: dict[str, float],
    *,
    training: dict,
    **metadata,
) -> TrainedAdapter:
    """The end of every training run: save adapter `name` to ``output_dir/adapter`` with its training log
    (`training` plus the config, steps, time, parameter counts, losses and which step's weights were kept) and
    `metadata` (see `store.save_adapter`), then drop the checkpoints, which the finished run has spent."""
    adapter_dir = Path(output_dir) / "adapter"
    log = {
        **training,
        "config": vars(config),
        "steps": result.steps,
        "seconds": round(result.seconds, 2),
        "parameters": result.parameters,
        "losses": result.losses,
        "selected": result.selected,
    }
    store.save_adapter(model, name, adapter_dir, training=log, **metadata)
    shutil.rmtree(Path(output_dir) / "checkpoints", ignore_errors=True)
    return TrainedAdapter(adapter_dir, result, validation)
