"""Train one adapter (and its task head) on one task; everything else stays frozen.

A plain loop over `accelerate` (so it runs unchanged under ``accelerate launch`` / ``torchrun``): AdamW on
the trainable tensors only, warm-up + linear/cosine/constant schedule, gradient clipping, evaluation and
checkpoints every N steps, ``resume`` from the newest checkpoint (pickle-free, see adapterx.training.checkpoint);
the weights kept at the end are the best evaluated ones, with early stopping on patience
(adapterx.training.selection).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import datasets
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm
from transformers import get_scheduler

from adapterx.core.errors import AdapterxError
from adapterx.core.log import show_progress
from adapterx.core.model import AdaptedModel
from adapterx.methods import get_method
from adapterx.training.checkpoint import latest_checkpoint, load_checkpoint, read_state, save_checkpoint
from adapterx.training.run_config import check_resumable, check_train_config, config_digest
from adapterx.training.selection import SELECT_RULES, Selection

log = logging.getLogger(__name__)
SCHEDULES = ("linear", "cosine", "constant_with_warmup")


@dataclass
class TrainConfig:
    """Optimisation settings of one adapter-training run (recipe field `train`)."""

    epochs: float = 3.0
    batch_size: int = 16
    learning_rate: float = 1e-3  # adapters want 1e-4..1e-3 where full fine-tuning used 1e-5
    weight_decay: float = 0.0
    warmup_ratio: float = 0.1
    schedule: str = "linear"
    max_grad_norm: float = 1.0
    gradient_accumulation: int = 1
    max_steps: int | None = None  # overrides epochs when set
    eval_every: int | None = None  # steps; default: once per epoch
    eval_examples: int | None = None  # dev examples per evaluation (the first N; jiant: 500); None: all
    select: str = "best"  # the saved weights: "best" evaluated (dev) or "last" (adapterx.selection)
    patience: int | None = None  # stop after N evaluations without a dev gain (jiant: 30); None: never
    checkpoint_every: int | None = None  # steps; default: once per epoch
    keep_checkpoints: int = 2
    seed: int = 0

    def validate(self, where: str = "train", names: dict[str, str] | None = None) -> None:
        """Range-check every field; the error names ``where.field`` (or the CLI option in `names`)."""
        check_train_config(self, where, names, SCHEDULES, SELECT_RULES)

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}


@dataclass
class TrainResult:
    steps: int
    seconds: float
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, mean loss since last log)
    evals: list[dict] = field(default_factory=list)  # {"step": n, metric: value, ...}
    parameters: dict[str, int] = field(default_factory=dict)
    resumed_from: int | None = None
    selected: dict = field(default_factory=dict)  # which step's weights were kept, and why

    def to_json(self) -> dict:
        return asdict(self)


class SeededBatchSampler(Sampler[list[int]]):
    """Shuffled batches whose order depends only on (seed, epoch), with the first `skip` batches left out:
    a resumed run sees exactly the batches the interrupted one had not seen yet."""

    def __init__(self, size: int, batch_size: int, seed: int):
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.epoch, self.skip = 0, 0

    def __iter__(self):
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist()
        for start in range(self.skip * self.batch_size, self.size, self.batch_size):
            yield order[start : start + self.batch_size]

    def __len__(self) -> int:
        return math.ceil(self.size / self.batch_size)


Evaluator = Callable[[AdaptedModel], dict[str, float]]


def planned_steps(config: TrainConfig, batches_per_epoch: int) -> int:
    """Optimiser steps a run of `config` takes over data of `batches_per_epoch` batches (as `train_adapter`
    counts them; a study uses it to give a control run as many steps as another phase took)."""
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / config.gradient_accumulation))
    return config.max_steps or max(1, math.ceil(config.epochs * steps_per_epoch))


def _head_list(head: str | list[str]) -> list[str]:
    return [head] if isinstance(head, str) else list(head)


def _head_prefix(heads: list[str], name: str) -> str:
    return "head." if len(heads) == 1 else f"heads.{name}."


def trainable_state(model: AdaptedModel, adapter: str, head: str | list[str]) -> dict[str, torch.Tensor]:
    """The tensors a checkpoint must hold: the adapter's, the head(s)', and every other trainable tensor of the
    encoder under ``extra.<parameter name>`` (e.g. an AdapterFusion layer trained with the adapter)."""
    heads = _head_list(head)
    own = get_method(model.adapters[adapter].kind).adapter_state(model, adapter)
    state = {f"adapter.{k}": v for k, v in own.items()}
    for name in heads:
        state.update({_head_prefix(heads, name) + k: v for k, v in model.heads[name].state_dict().items()})
    state.update({f"extra.{n}": p.detach() for n, p in _extra_trainable(model, own)})
    return state


def _extra_trainable(model: AdaptedModel, own: dict[str, torch.Tensor]) -> list[tuple[str, torch.nn.Parameter]]:
    held = {t.data_ptr() for t in own.values()}
    return [(n, p) for n, p in model.encoder.named_parameters() if p.requires_grad and p.data_ptr() not in held]


def restore_trainable_state(
    model: AdaptedModel, adapter: str, head: str | list[str], state: dict[str, torch.Tensor]
) -> None:
    heads = _head_list(head)
    adapter_part = {k[len("adapter.") :]: v for k, v in state.items() if k.startswith("adapter.")}
    get_method(model.adapters[adapter].kind).load_adapter_state(model, adapter, adapter_part)
    extra = {k[len("extra.") :]: v for k, v in state.items() if k.startswith("extra.")}
    params = dict(model.encoder.named_parameters())
    if not set(extra) <= set(params):
        raise AdapterxError(f"checkpoint holds tensors {sorted(set(extra) - set(params))[:3]} this model lacks")
    with torch.no_grad():
        for n, tensor in extra.items():
            params[n].copy_(tensor)
    for name in heads:
        prefix = _head_prefix(heads, name)
        model.heads[name].load_state_dict(
            {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}, strict=True
        )


@dataclass
class _Progress:
    """Where a run stands between steps: what a checkpoint records besides the tensors, so that a resumed run
    continues the uninterrupted one exactly (batch position, running loss, time spent)."""

    step: int = 0
    epoch: int = 0
    batches_done: int = 0
    seconds_before: float = 0.0
    running: float = 0.0
    running_n: int = 0


@dataclass
class _Setup:
    accelerator: Accelerator
    params: list
    sampler: "SeededBatchSampler"
    loader: DataLoader
    optimizer: torch.optim.Optimizer
    scheduler: object
    prepared_model: torch.nn.Module
    total_steps: int
    steps_per_epoch: int


def _set_up(
    model: AdaptedModel,
    adapter: str,
    train_data: datasets.Dataset,
    collate,
    config: TrainConfig,
    description: str,
    batch_sampler: "SeededBatchSampler | None",
) -> _Setup:
    """Seed, check there is something to train on, and build the loader, optimiser and schedule."""
    accelerator = Accelerator(gradient_accumulation_steps=config.gradient_accumulation)
    torch.manual_seed(config.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise AdapterxError(f"adapter {adapter!r} has no trainable parameters: activate it with trainable=")
    sampler = batch_sampler or SeededBatchSampler(len(train_data), config.batch_size, config.seed)
    if len(sampler) == 0:  # an epoch without batches would never reach the last step
        raise AdapterxError(f"{description}: the training data is empty; nothing to train on")
    # a generator of its own: starting an iterator must not draw from the global one (dropout's), or a
    # resumed run would see other dropout masks than the uninterrupted one
    loader = DataLoader(
        train_data, batch_sampler=sampler, collate_fn=collate, generator=torch.Generator().manual_seed(config.seed)
    )
    steps_per_epoch = max(1, math.ceil(len(loader) / config.gradient_accumulation))
    total_steps = planned_steps(config, len(loader))
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = get_scheduler(
        config.schedule,
        optimizer,
        num_warmup_steps=int(config.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
    prepared_model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    return _Setup(
        accelerator, params, sampler, loader, optimizer, scheduler, prepared_model, total_steps, steps_per_epoch
    )


def _resume(
    model: AdaptedModel,
    adapter: str,
    heads: list[str],
    setup: _Setup,
    checkpoint_dir: Path,
    run_config: dict | None,
    result: TrainResult,
    selection: Selection,
) -> _Progress:
    """Continue from the newest checkpoint (if any) after checking it belongs to this run's configuration."""
    ckpt = latest_checkpoint(checkpoint_dir)
    if ckpt is None:
        return _Progress()
    if run_config is not None:  # before loading: another run's tensors may not even fit
        check_resumable(read_state(ckpt).get("run_config"), run_config, ckpt)
    tensors, state = load_checkpoint(ckpt, setup.optimizer)
    restore_trainable_state(model, adapter, heads, tensors)
    setup.scheduler.load_state_dict(state["scheduler"])
    result.losses = [tuple(x) for x in state["losses"]]
    result.evals = state["evals"]
    result.resumed_from = state["step"]
    selection.restore(state.get("selection"), tensors)
    running, running_n = state.get("running", (0.0, 0))
    # the log and the time cover the whole run
    return _Progress(
        state["step"], state["epoch"], state["batches_in_epoch"], state.get("seconds", 0.0), running, running_n
    )


def _save(
    checkpoint_dir: Path,
    model: AdaptedModel,
    adapter: str,
    heads: list[str],
    setup: _Setup,
    progress: _Progress,
    result: TrainResult,
    selection: Selection,
    seconds: float,
    run_config: dict | None,
    keep: int,
) -> None:
    save_checkpoint(
        checkpoint_dir,
        {**trainable_state(model, adapter, heads), **selection.checkpoint_tensors()},
        setup.optimizer,
        {
            "step": progress.step,
            "epoch": progress.epoch,
            "batches_in_epoch": progress.batches_done,
            "scheduler": setup.scheduler.state_dict(),
            "losses": result.losses,
            "evals": result.evals,
            "selection": selection.to_json(),
            "seconds": seconds,
            "running": [progress.running, progress.running_n],
            "run_config": run_config,
            "run_digest": config_digest(run_config) if run_config is not None else None,
        },
        keep=keep,
    )


def _optimise(setup: _Setup, batch: dict, max_grad_norm: float) -> torch.Tensor:
    """One forward/backward; the optimiser steps when the accumulated batches make a step."""
    with setup.accelerator.accumulate(setup.prepared_model):
        loss = setup.prepared_model(**batch).loss
        setup.accelerator.backward(loss)
        if setup.accelerator.sync_gradients and max_grad_norm:
            setup.accelerator.clip_grad_norm_(setup.params, max_grad_norm)
        setup.optimizer.step()
        setup.scheduler.step()
        setup.optimizer.zero_grad()
    return loss


def _evaluate(
    model: AdaptedModel,
    adapter: str,
    heads: list[str],
    setup: _Setup,
    step: int,
    evaluator: Evaluator,
    result: TrainResult,
    selection: Selection,
    description: str,
) -> bool:
    """Score English dev, log it, and let the selection keep the best weights; True when patience ran out."""
    setup.prepared_model.eval()
    scores = evaluator(model)
    result.evals.append({"step": step, **scores})
    log.info("[%s] step %d: %s", description, step, ", ".join(f"{k} {v:.2f}" for k, v in scores.items()))
    stop = selection.update(step, scores, trainable_state(model, adapter, heads))
    setup.prepared_model.train()
    return stop


def train_adapter(
    model: AdaptedModel,
    adapter: str,
    head: str | list[str],
    train_data: datasets.Dataset,
    collate,
    config: TrainConfig,
    output_dir: Path,
    evaluator: Evaluator | None = None,
    resume: bool = False,
    progress: bool = True,
    description: str = "train",
    batch_sampler: "SeededBatchSampler | None" = None,
    run_config: dict | None = None,
) -> TrainResult:
    """Train adapter `adapter` and head `head` on encoded `train_data`; checkpoints go to output_dir.

    Several heads (multi-task training): pass their names and a `batch_sampler` whose batches each come from one
    task; the collated batch then names its head under the key ``head``. `run_config` (see
    adapterx.training.run_config) is recorded in every checkpoint; resuming from a checkpoint of another
    configuration is refused, naming the fields that differ."""
    config.validate()
    heads = [head] if isinstance(head, str) else list(head)
    model.set_head(heads[0])
    s = _set_up(model, adapter, train_data, collate, config, description, batch_sampler)
    checkpoint_dir = Path(output_dir) / "checkpoints"
    result = TrainResult(steps=0, seconds=0.0, parameters=model.parameter_counts())
    selection = Selection(config.select, config.patience)
    at = _resume(model, adapter, heads, s, checkpoint_dir, run_config, result, selection) if resume else _Progress()
    eval_every = config.eval_every or s.steps_per_epoch
    checkpoint_every = config.checkpoint_every or s.steps_per_epoch
    started = time.perf_counter()
    bar = tqdm(
        total=s.total_steps,
        initial=at.step,
        desc=description,
        unit="step",
        dynamic_ncols=True,
        disable=not show_progress(progress) or not s.accelerator.is_main_process,
    )
    stop = False
    while at.step < s.total_steps and not stop:
        s.sampler.epoch, s.sampler.skip = at.epoch, at.batches_done
        s.prepared_model.train()
        for batch in s.loader:
            loss = _optimise(s, batch, config.max_grad_norm)
            at.batches_done += 1
            at.running += loss.item()
            at.running_n += 1
            if not s.accelerator.sync_gradients:
                continue
            at.step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{at.running / at.running_n:.4f}")
            if at.step % max(1, min(eval_every, 50)) == 0 or at.step == s.total_steps:
                result.losses.append((at.step, at.running / at.running_n))
                at.running, at.running_n = 0.0, 0
            if evaluator is not None and (at.step % eval_every == 0 or at.step == s.total_steps):
                stop = _evaluate(model, adapter, heads, s, at.step, evaluator, result, selection, description)
            if (
                at.step % checkpoint_every == 0
                and at.step < s.total_steps
                and not stop
                and s.accelerator.is_main_process
            ):
                _save(
                    checkpoint_dir,
                    model,
                    adapter,
                    heads,
                    s,
                    at,
                    result,
                    selection,
                    at.seconds_before + time.perf_counter() - started,
                    run_config,
                    config.keep_checkpoints,
                )
            if at.step >= s.total_steps or stop:
                break
        else:
            at.epoch, at.batches_done = at.epoch + 1, 0
    bar.close()
    if selection.wants_best():
        restore_trainable_state(model, adapter, heads, selection.best_state)
    result.selected = selection.chosen(at.step)
    model.eval()
    result.steps = at.step
    result.seconds = at.seconds_before + time.perf_counter() - started
    return result
