"""Multi-task intermediate training (Phang et al.'s "all nine tasks" model): one adapter shared by several
tasks, one head per task, each batch drawn from one task; over an epoch every task contributes all its batches,
so tasks are sampled in proportion to their size."""

from __future__ import annotations

import math
from pathlib import Path

import datasets
import torch
from torch.utils.data import ConcatDataset, Sampler

from adapterx.core.backbone import Backbone
from adapterx.methods import AdapterSpec
from adapterx.tasks.base import Task
from adapterx.tasks.data import load_split
from adapterx.tasks.processing import processor_for
from adapterx.training import strategies as transfer
from adapterx.training.checkpoint import prepare_run_directory
from adapterx.training.loop import TrainConfig, train_adapter
from adapterx.training.run_config import run_config
from adapterx.training.seeding import seed_everything
from adapterx.training.workflow import TrainedAdapter, head_spec, save_trained

TASK_COLUMN = "__task"


class MixtureBatchSampler(Sampler[list[int]]):
    """Batches of one task each, in an order that depends only on (seed, epoch); the first `skip` left out."""

    def __init__(self, sizes: list[int], batch_size: int, seed: int):
        self.sizes, self.batch_size, self.seed = sizes, batch_size, seed
        self.offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        self.epoch, self.skip = 0, 0

    def _batches(self) -> list[list[int]]:
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        batches = []
        for size, offset in zip(self.sizes, self.offsets):
            order = (torch.randperm(size, generator=gen) + offset).tolist()
            batches += [order[i : i + self.batch_size] for i in range(0, size, self.batch_size)]
        return [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]

    def __iter__(self):
        yield from self._batches()[self.skip :]

    def __len__(self) -> int:
        return sum(math.ceil(s / self.batch_size) for s in self.sizes)


class MixtureCollator:
    """Collates a one-task batch with that task's collator and names the head to use."""

    def __init__(self, heads: list[str], collators: list):
        self.heads, self.collators = heads, collators

    def __call__(self, rows: list[dict]) -> dict:
        task = rows[0][TASK_COLUMN]
        batch = self.collators[task]([{k: v for k, v in r.items() if k != TASK_COLUMN} for r in rows])
        batch["head"] = self.heads[task]
        return batch


def train_multitask(
    backbone: Backbone,
    tasks: list[Task],
    spec: AdapterSpec,
    config: TrainConfig,
    output_dir: Path,
    *,
    data_dir: Path | None = None,
    train_limit: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> TrainedAdapter:
    """Train one adapter on the mixture of `tasks`; saved (without heads) to ``output_dir/adapter``."""
    prepare_run_directory(Path(output_dir), resume=resume, overwrite=overwrite)
    identity = run_config(
        tasks=[t.name for t in tasks],
        spec=spec,
        train=config,
        strategy="multitask",
        backbone_fingerprint=backbone.fingerprint,
        data_dir=data_dir,
        train_limit=train_limit,
    )
    tokenizer = backbone.tokenizer
    seed_everything(config.seed)  # before the adapter and the heads are created
    prepared = transfer.prepare("none", backbone.fresh_copy(), spec, None)
    model, name = prepared.model, prepared.trainable
    parts: list[datasets.Dataset] = []
    heads, collators = [], []
    for index, task in enumerate(tasks):
        processor = processor_for(task)
        encoded = processor.encode(task, load_split(task, "train", data_dir=data_dir, limit=train_limit), tokenizer)
        parts.append(encoded.add_column(TASK_COLUMN, [index] * len(encoded)))
        head = f"head-{task.name}"
        model.add_head(head, head_spec(task))
        heads.append(head)
        collators.append(processor.collator(tokenizer))
    sampler = MixtureBatchSampler([len(p) for p in parts], config.batch_size, config.seed)
    result = train_adapter(
        model,
        name,
        heads,
        ConcatDataset(parts),
        MixtureCollator(heads, collators),
        config,
        Path(output_dir),
        resume=resume,
        progress=progress,
        description="multitask",
        batch_sampler=sampler,
        run_config=identity,
    )
    validation = {"loss": result.losses[-1][1] if result.losses else float("nan")}
    return save_trained(
        model,
        name,
        Path(output_dir),
        result,
        config,
        validation,
        training={"strategy": "multitask", "tasks": [t.name for t in tasks], "sizes": [len(p) for p in parts]},
        task="+".join(t.name for t in tasks),
        languages=("en",),
    )
