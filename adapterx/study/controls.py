"""Control runs that say what a benefit is made of (recipe section `controls`, see adapterx.study.recipe):

  shuffled labels   the intermediate task again, its training (and validation) labels permuted among the
                    examples with a seed derived from the run's seed: the input-label link is gone, label
                    frequencies stay. What survives is what training an adapter at all does (non-zero, trained
                    weights to start from or to stack on): the optimisation-only effect. A benefit counts as
                    task transfer only where it exceeds this control's.
  step-matched      the target-only adapter trained for as many steps as the intermediate and target phases
                    together (``max_steps``; the schedule stretches with it): more training, no other task.
  capacity-matched  for strategy 'stack': one target-only adapter as large as the stacked pair, as the kind
                    scales itself (`Method.capacity_scaled`; LoRA: rank and alpha times two, so alpha/rank is
                    kept; bottleneck: half the reduction factor; a kind that cannot says why).
  pooled            the intermediate task's training rows added to the target's (where the label spaces are
                    the same), trained for the same step budget as intermediate + target: an upper reference
                    for what the intermediate data can give when it is simply more training data.

This module builds the derived tasks and specs; adapterx.study.design decides which runs exist.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import datasets
import numpy as np

from adapterx.methods import AdapterSpec, get_method
from adapterx.tasks.base import DataRequest, Task
from adapterx.tasks.data import load_split
from adapterx.training.loop import TrainConfig, planned_steps
from adapterx.training.seeding import derived_seed

SHUFFLED_SPLITS = ("train", "validation")


def shuffled_task(task: Task, seed: int) -> Task:
    """`task` with the labels of its training and validation rows permuted among the rows (test rows untouched),
    by a permutation drawn from (`seed`, task, split): the same in every process."""

    def loader(request: DataRequest) -> datasets.Dataset:
        rows = task.loader(dataclasses.replace(request, task=task))
        if request.split not in SHUFFLED_SPLITS:
            return rows
        labels = rows[task.label_field]
        order = np.random.default_rng(derived_seed(seed, "shuffled-labels", task.name, request.split)).permutation(
            len(labels)
        )
        return (
            rows.remove_columns(task.label_field)
            .add_column(task.label_field, [labels[i] for i in order])
            .cast(rows.features)
        )

    return dataclasses.replace(
        task,
        name=f"{task.name}-shuffled",
        loader=loader,
        description=f"{task.name} with labels permuted (seed {seed}): a control",
    )


def label_space_problem(target: Task, intermediate: Task) -> str:
    """Why `intermediate`'s rows cannot join `target`'s training set, or "" if they can."""
    if intermediate.head != target.head:
        return f"{intermediate.name} has a {intermediate.head} head, {target.name} a {target.head} head"
    if tuple(intermediate.labels) != tuple(target.labels):
        return f"{intermediate.name}'s labels {list(intermediate.labels)} are not {target.name}'s {list(target.labels)}"
    if len(intermediate.text_fields) != len(target.text_fields):
        return (
            f"{intermediate.name} has {len(intermediate.text_fields)} text fields, {target.name} "
            f"{len(target.text_fields)}"
        )
    return ""


def _as_target_rows(rows: datasets.Dataset, source: Task, target: Task) -> datasets.Dataset:
    columns = [*source.text_fields, source.label_field]
    rows = rows.select_columns(columns)
    names = dict(zip(columns, [*target.text_fields, target.label_field]))
    return rows.rename_columns({a: b for a, b in names.items() if a != b})


def pooled_task(
    target: Task, intermediate: Task, data_dir: Path | None = None, intermediate_limit: int | None = None
) -> Task:
    """`target` whose training split also holds `intermediate`'s training rows (fields renamed to the
    target's); other splits are the target's own."""
    problem = label_space_problem(target, intermediate)
    if problem:
        raise ValueError(f"cannot pool {intermediate.name} into {target.name}: {problem}")

    def loader(request: DataRequest) -> datasets.Dataset:
        own = target.loader(dataclasses.replace(request, task=target))
        if request.split != "train":
            return own
        own = own.select_columns([*target.text_fields, target.label_field])
        extra = _as_target_rows(
            load_split(intermediate, "train", data_dir=data_dir, limit=intermediate_limit), intermediate, target
        )
        return datasets.concatenate_datasets([own, extra.cast(own.features)])

    return dataclasses.replace(
        target,
        name=f"{target.name}+{intermediate.name}-pooled",
        loader=loader,
        description=f"{target.name} training data pooled with {intermediate.name}'s",
    )


def capacity_matched_spec(spec: AdapterSpec, stacked: int = 2) -> tuple[AdapterSpec | None, str]:
    """One adapter as large as `stacked` adapters of `spec`, or (None, why not): the kind's word."""
    return get_method(spec.kind).capacity_scaled(spec, stacked)


def training_steps(tasks: list[Task], config: TrainConfig, data_dir: Path | None, limit: int | None) -> int:
    """Steps a training phase on `tasks` (one task, or a multi-task mixture) takes with `config`."""
    batches = sum(
        math.ceil(len(load_split(t, "train", data_dir=data_dir, limit=limit)) / config.batch_size) for t in tasks
    )
    return planned_steps(config, batches)
