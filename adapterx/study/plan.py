"""What a recipe will do, in words (``adapterx run R --dry-run``): per target the splits and languages it is
scored on, how its adapters are selected, and its metric; nothing is loaded or trained."""

from __future__ import annotations

from adapterx.study.recipe import Recipe
from adapterx.tasks import get_task
from adapterx.tasks.splits import DEV, TEST, evaluation_languages, no_dev_reason
from adapterx.training.loop import TrainConfig

METRICS = {
    "accuracy": "accuracy",
    "pos_accuracy": "token accuracy",
    "pos_f1": "seqeval F1 over the UPOS tags, as XTREME (token accuracy beside)",
    "ner_f1": "entity-level F1 (seqeval, IOB2)",
    "squad": "SQuAD v1.1 F1 and exact match; XTREME task score (EM + F1) / 2",
    "mlqa": "MLQA F1 and exact match (the context language's normalisation); XTREME task score (EM + F1) / 2",
    "bucc_f1": "F1 of the pairs mined among all sentences of both sides, above a threshold chosen on dev",
    "tatoeba_accuracy": "top-1 accuracy, the English sentences querying the other side",
}


def selection_text(config: TrainConfig) -> str:
    """How the weights a training run saves are chosen (adapterx.training.selection)."""
    every = f"every {config.eval_every} steps" if config.eval_every else "once an epoch"
    examples = f"the first {config.eval_examples}" if config.eval_examples else "all"
    text = f"English dev {every} on {examples} examples; keep the {config.select} weights"
    return text + (f"; stop after {config.patience} evaluations without a gain" if config.patience else "")


def _languages(languages: list[str]) -> str:
    return f"{len(languages)} ({' '.join(languages)})" if languages else "none"


def describe_target(recipe: Recipe, name: str) -> list[str]:
    task, ev = get_task(name), recipe.evaluate
    lines = [f"  {name}: metric {task.metric} ({METRICS.get(task.metric, task.metric)})"]
    if task.trainable:
        config = recipe.target.train_for(name)
        lines.append(
            f"    train: {task.train_language} training data, {config.epochs:g} epochs, batch "
            f"{config.batch_size}; selection: {selection_text(config)}"
        )
    else:
        lines.append("    train: none (scored with each intermediate adapter directly)")
    for split in ev.splits:
        languages = evaluation_languages(task, split, ev.languages_for(name))
        why = no_dev_reason(task) if split == DEV and not languages else None
        lines.append(
            f"    {'dev ' if split == DEV else 'test'}: {_languages(languages)}" + (f" [{why}]" if why else "")
        )
    if DEV in ev.splits and TEST in ev.splits and recipe.intermediate.tasks:
        dev = evaluation_languages(task, DEV, ev.languages_for(name))
        chosen = (
            f"its dev task score ({len(dev)} language{'s' if len(dev) > 1 else ''})"
            if dev
            else "the setup with the best mean dev gain over the targets that have dev (no held-out dev here)"
        )
        lines.append(f"    best intermediate setup: chosen on {chosen}; reported on test")
    return lines


def describe_plan(recipe: Recipe) -> list[str]:
    """The recipe's plan, one line per fact."""
    inter = recipe.intermediate
    lines = [
        f"splits: {', '.join(recipe.evaluate.splits)} (every choice on dev; dev scored unmerged, test in forms "
        f"{', '.join(recipe.evaluate.forms)})"
    ]
    if inter.tasks:
        lines.append(
            f"intermediate adapters ({', '.join(inter.tasks)}): selection: "
            f"{selection_text(inter.train)}" + (f"; overrides {inter.overrides}" if inter.overrides else "")
        )
        if inter.multitask:
            lines.append(
                "  multitask adapter: no dev evaluation during training (a mixture of tasks): keeps the last weights"
            )
    lines.append("targets:")
    for name in recipe.target.tasks:
        lines += describe_target(recipe, name)
    lines.append(
        "aggregation: XTREME task scores (evaluate.py), the XTREME score and category scores where all their "
        "tasks are evaluated, setups ranked by mean gain over the baseline"
    )
    return lines
