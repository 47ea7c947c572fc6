"""What makes a training run *this* run: its checked optimisation settings, and a digest of everything its
result depends on (task, data, adapter spec, strategy and what it builds on, seed, optimiser settings,
backbone fingerprint).

Every checkpoint records the digest and the configuration it summarises; ``--resume`` compares them with the
run being resumed and refuses a mismatch, naming each differing field, so a resumed run can never continue
another run's weights, optimiser moments or schedule.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from typing import Any

from adapterx.core import validate as check
from adapterx.core.errors import AdapterxError

# TrainConfig fields that do not change what is computed: they may differ between a run and its resumption
NOT_IN_DIGEST = ("keep_checkpoints",)

# how `adapterx train` spells TrainConfig's fields, for messages
CLI_NAMES = {
    "epochs": "--epochs",
    "batch_size": "--batch-size",
    "learning_rate": "--lr",
    "warmup_ratio": "--warmup",
    "schedule": "--schedule",
    "max_steps": "--max-steps",
    "eval_every": "--eval-every",
    "checkpoint_every": "--checkpoint-every",
    "seed": "--seed",
    "eval_examples": "--eval-examples",
    "select": "--select",
    "patience": "--patience",
}


def check_train_config(
    config: Any,
    where: str = "train",
    names: Mapping[str, str] | None = None,
    schedules: tuple[str, ...] = (),
    select_rules: tuple[str, ...] = (),
) -> None:
    """Range-check every field of a TrainConfig; the error names ``where.field`` (or ``names[field]``)."""

    def name(field: str) -> str:
        return (names or {}).get(field) or f"{where}.{field}"

    c = config
    if c.max_steps is None:
        check.number(c.epochs, name("epochs"), low=0, low_open=True)
    else:
        check.number(c.epochs, name("epochs"), low=0)
    check.optional_count(c.max_steps, name("max_steps"))
    for field in ("batch_size", "gradient_accumulation", "keep_checkpoints"):
        check.count(getattr(c, field), name(field))
    for field in ("eval_every", "checkpoint_every", "eval_examples", "patience"):
        check.optional_count(getattr(c, field, None), name(field))
    check.count(c.seed, name("seed"), minimum=0)
    check.number(c.learning_rate, name("learning_rate"), low=0, high=1, low_open=True, high_open=True)
    check.number(c.warmup_ratio, name("warmup_ratio"), low=0, high=1, high_open=True)
    check.number(c.weight_decay, name("weight_decay"), low=0)
    check.number(c.max_grad_norm, name("max_grad_norm"), low=0)
    if schedules:
        check.choice(c.schedule, name("schedule"), schedules)
    if select_rules:
        check.choice(c.select, name("select"), select_rules)


def run_config(
    *,
    tasks: list[str],
    spec: Any,
    train: Any,
    backbone_fingerprint: str,
    strategy: str = "none",
    intermediates: list[str] | None = None,
    data_dir: str | None = None,
    train_limit: int | None = None,
) -> dict:
    """The configuration a run's checkpoints are bound to (JSON-able). `intermediates`: the weight digests of
    the adapters the run builds on; `data_dir` as given (a path is part of what data was read)."""
    train_fields = asdict(train) if is_dataclass(train) else dict(train)
    for field in NOT_IN_DIGEST:
        train_fields.pop(field, None)
    return {
        "tasks": list(tasks),
        "data": {"data_dir": None if data_dir is None else str(data_dir), "train_limit": train_limit},
        "spec": spec.to_json() if hasattr(spec, "to_json") else dict(spec),
        "strategy": strategy,
        "intermediates": list(intermediates or []),
        "train": train_fields,
        "backbone": backbone_fingerprint,
    }


def config_digest(config: Mapping) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:32]


def differing_fields(recorded: Mapping, current: Mapping, prefix: str = "") -> list[str]:
    """Dotted names of the leaves that differ between two configurations (missing counts as differing)."""
    out = []
    for key in sorted(set(recorded) | set(current), key=str):
        a, b = recorded.get(key, "<absent>"), current.get(key, "<absent>")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += differing_fields(a, b, f"{prefix}{key}.")
        elif json.dumps(a, sort_keys=True, default=str) != json.dumps(b, sort_keys=True, default=str):
            out.append(f"{prefix}{key}")
    return out


def check_resumable(recorded: Mapping | None, current: Mapping, checkpoint: object) -> None:
    """Refuse to resume from `checkpoint` (recorded configuration `recorded`) a run configured as `current`."""
    if recorded is None:
        raise AdapterxError(
            f"{checkpoint}: this checkpoint records no run configuration (written by an older "
            f"adapterx), so it cannot be matched to this run; start afresh with --overwrite"
        )
    differ = differing_fields(recorded, current)
    if differ:
        shown = "; ".join(f"{f}: checkpoint {_leaf(recorded, f)!r}, now {_leaf(current, f)!r}" for f in differ[:4])
        more = f" (and {len(differ) - 4} more)" if len(differ) > 4 else ""
        raise AdapterxError(
            f"{checkpoint}: cannot resume: the checkpoint belongs to a run with other settings "
            f"({shown}{more}); resume with the same settings, or start afresh with --overwrite"
        )


def _leaf(config: Mapping, dotted: str):
    value: Any = config
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return "<absent>"
        value = value[part]
    return value
