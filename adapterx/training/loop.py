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
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

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
    learning_rate: float = 1e-3      # adapters want 1e-4..1e-3 where full fine-tuning used 1e-5
    weight_decay: float = 0.0
    warmup_ratio: float = 0.1
    schedule: str = "linear"
    max_grad_norm: float = 1.0
    gradient_accumulation: int = 1
    max_steps: int | None = None     # overrides epochs when set
    eval_every: int | None = None    # steps; default: once per epoch
    eval_examples: int | None = None  # dev examples per evaluation (the first N; jiant: 500); None: all
    select: str = "best"             # the saved weights: "best" evaluated (dev) or "last" (adapterx.selection)
    patience: int | None = None      # stop after N evaluations without a dev gain (jiant: 30); None: never
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
    losses: list[tuple[int, float]] = field(default_factory=list)   # (step, mean loss since last log)
    evals: list[dict] = field(default_factory=list)                 # {"step": n, metric: value, ...}
    parameters: dict[str, int] = field(default_factory=dict)
    resumed_from: int | None = None
    selected: dict = field(default_factory=dict)                   # which step's weights were kept, and why

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
            yield order[start:start + self.batch_size]

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


def restore_trainable_state(model: AdaptedModel, adapter: str, head: str | list[str],
                            state: dict[str, torch.Tensor]) -> None:
    heads = _head_list(head)
    adapter_part = {k[len("adapter."):]: v for k, v in state.items() if k.startswith("adapter.")}
    get_method(model.adapters[adapter].kind).load_adapter_state(model, adapter, adapter_part)
    extra = {k[len("extra."):]: v for k, v in state.items() if k.startswith("extra.")}
    params = dict(model.encoder.named_parameters())
    if not set(extra) <= set(params):
        raise AdapterxError(f"checkpoint holds tensors {sorted(set(extra) - set(params))[:3]} this model lacks")
    with torch.no_grad():
        for n, tensor in extra.items():
            params[n].copy_(tensor)
    for name in heads:
        prefix = _head_prefix(heads, name)
        model.heads[name].load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)},
                                          strict=True)


def train_adapter(model: AdaptedModel, adapter: str, head: str | list[str], train_data: datasets.Dataset, collate,
                  config: TrainConfig, output_dir: Path, evaluator: Evaluator | None = None,
                  resume: bool = False, progress: bool = True, description: str = "train",
                  batch_sampler: "SeededBatchSampler | None" = None, run_config: dict | None = None) -> TrainResult:
    """Train adapter `adapter` and head `head` on encoded `train_data`; checkpoints go to output_dir.

    Several heads (multi-task training): pass their names and a `batch_sampler` whose batches each come from one
    task; the collated batch then names its head under the key ``head``. `run_config` (see
    adapterx.training.run_config) is recorded in every checkpoint; resuming from a checkpoint of another
    configuration is refused, naming the fields that differ."""
    config.validate()
    heads = [head] if isinstance(head, str) else list(head)
    model.set_head(heads[0])
    accelerator = Accelerator(gradient_accumulation_steps=config.gradient_accumulation)
    torch.manual_seed(config.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise AdapterxError(f"adapter {adapter!r} has no trainable parameters: activate it with trainable=")
    sampler = batch_sampler or SeededBatchSampler(len(train_data), config.batch_size, config.seed)
    if len(sampler) == 0:   # an epoch without batches would never reach the last step
        raise AdapterxError(f"{description}: the training data is empty; nothing to train on")
    # a generator of its own: starting an iterator must not draw from the global one (dropout's), or a
    # resumed run would see other dropout masks than the uninterrupted one
    loader = DataLoader(train_data, batch_sampler=sampler, collate_fn=collate,
                        generator=torch.Generator().manual_seed(config.seed))
    steps_per_epoch = max(1, math.ceil(len(loader) / config.gradient_accumulation))
    total_steps = planned_steps(config, len(loader))
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = get_scheduler(config.schedule, optimizer, num_warmup_steps=int(config.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
    prepared_model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)

    checkpoint_dir = Path(output_dir) / "checkpoints"
    result = TrainResult(steps=0, seconds=0.0, parameters=model.parameter_counts())
    step, epoch, batches_done = 0, 0, 0
    selection = Selection(config.select, config.patience)
    digest = config_digest(run_config) if run_config is not None else None
    seconds_before, running, running_n = 0.0, 0.0, 0
    if resume and (ckpt := latest_checkpoint(checkpoint_dir)) is not None:
        if run_config is not None:   # before loading: another run's tensors may not even fit
            check_resumable(read_state(ckpt).get("run_config"), run_config, ckpt)
        tensors, state = load_checkpoint(ckpt, optimizer)
        restore_trainable_state(model, adapter, heads, tensors)
        scheduler.load_state_dict(state["scheduler"])
        step, epoch, batches_done = state["step"], state["epoch"], state["batches_in_epoch"]
        result.losses = [tuple(x) for x in state["losses"]]
        result.evals = state["evals"]
        result.resumed_from = step
        selection.restore(state.get("selection"), tensors)
        seconds_before = state.get("seconds", 0.0)   # the log and the time cover the whole run
        running, running_n = state.get("running", (0.0, 0))
    eval_every = config.eval_every or steps_per_epoch
    checkpoint_every = config.checkpoint_every or steps_per_epoch

    started = time.perf_counter()
    bar = tqdm(total=total_steps, initial=step, desc=description, disable=not show_progress(progress)
               or not accelerator.is_main_process,
               unit="step", dynamic_ncols=True)
    stop = False
    while step < total_steps and not stop:
        sampler.epoch, sampler.skip = epoch, batches_done
        prepared_model.train()
        for batch in loader:
            with accelerator.accumulate(prepared_model):
                loss = prepared_model(**batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients and config.max_grad_norm:
                    accelerator.clip_grad_norm_(params, config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            batches_done += 1
            running += loss.item()
            running_n += 1
            if not accelerator.sync_gradients:
                continue
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{running / running_n:.4f}")
            if step % max(1, min(eval_every, 50)) == 0 or step == total_steps:
                result.losses.append((step, running / running_n))
                running, running_n = 0.0, 0
            if evaluator is not None and (step % eval_every == 0 or step == total_steps):
                prepared_model.eval()
                scores = evaluator(model)
                result.evals.append({"step": step, **scores})
                log.info("[%s] step %d: %s", description, step, ", ".join(f"{k} {v:.2f}" for k, v in scores.items()))
                stop = selection.update(step, scores, trainable_state(model, adapter, heads))
                prepared_model.train()
            if step % checkpoint_every == 0 and step < total_steps and not stop and accelerator.is_main_process:
                save_checkpoint(checkpoint_dir, {**trainable_state(model, adapter, heads),
                                                 **selection.checkpoint_tensors()}, optimizer, {
                    "step": step, "epoch": epoch, "batches_in_epoch": batches_done,
                    "scheduler": scheduler.state_dict(), "losses": result.losses, "evals": result.evals,
                    "selection": selection.to_json(),
                    "seconds": seconds_before + time.perf_counter() - started, "running": [running, running_n],
                    "run_config": run_config, "run_digest": digest,
                }, keep=config.keep_checkpoints)
            if step >= total_steps or stop:
                break
        else:
            epoch, batches_done = epoch + 1, 0
    bar.close()
    if selection.wants_best():
        restore_trainable_state(model, adapter, heads, selection.best_state)
    result.selected = selection.chosen(step)
    model.eval()
    result.steps = step
    result.seconds = seconds_before + time.perf_counter() - started
    return result
