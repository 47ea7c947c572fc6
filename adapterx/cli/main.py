"""`adapterx`: a thin shell over the library. Each subcommand gathers options and calls one function."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import yaml

from adapterx.core.errors import AdapterxError

EPILOG = """\
typical session (offline, built-in backbone and data):
  adapterx run recipes/quickstart.yaml            the whole study: train, evaluate, report
  adapterx tasks                                  which tasks exist, their languages, head, metric
  adapterx train --task tiny-nli --adapter kind=lora,r=8 --output runs/nli
  adapterx train --task tiny-xnli --strategy stack --on-top-of runs/nli/adapter --output runs/xnli
  adapterx evaluate --task tiny-xnli --adapter target-only=runs/base/adapter --adapter stacked=runs/xnli/adapter
  adapterx bench --quick                          inference overhead of merged / unmerged / stacked adapters

backbones: builtin:tiny-xlmr (offline), FacebookAI/xlm-roberta-large (hub), a local directory,
           random:xlm-roberta-base|large (real shapes, random weights: latency only)
"""


def _parse_options(text: str, what: str) -> dict:
    """'kind=lora,r=8,target_modules=query+value' -> {'kind': 'lora', 'r': 8, 'target_modules': [...]}"""
    options = {}
    for item in filter(None, text.split(",")):
        if "=" not in item:
            raise AdapterxError(f"{what}: expected key=value, got {item!r} in {text!r}")
        key, value = item.split("=", 1)
        options[key.strip()] = [yaml.safe_load(v) for v in value.split("+")] if "+" in value else yaml.safe_load(value)
    return options


# ----------------------------------------------------------------------------------------------- train
def cmd_train(args) -> int:
    from adapterx.core.backbone import load_backbone
    from adapterx.methods import parse_spec
    from adapterx.tasks import get_task
    from adapterx.training.loop import TrainConfig
    from adapterx.training.workflow import train_task

    spec = parse_spec(_parse_options(args.adapter, "--adapter"), where="--adapter")
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
                         warmup_ratio=args.warmup, schedule=args.schedule, max_steps=args.max_steps,
                         eval_every=args.eval_every, checkpoint_every=args.checkpoint_every, seed=args.seed,
                         eval_examples=args.eval_examples, select=args.select, patience=args.patience)
    task = get_task(args.task)
    backbone = load_backbone(args.backbone)
    if args.strategy != "none" and not args.on_top_of:
        raise AdapterxError(f"--strategy {args.strategy} needs --on-top-of <intermediate adapter dir>")
    trained = train_task(backbone, task, spec, config, Path(args.output), strategy=args.strategy,
                         intermediate=Path(args.on_top_of) if args.on_top_of else None,
                         data_dir=args.data_dir, train_limit=args.train_limit, resume=args.resume)
    p = trained.result.parameters
    print(f"trained {task.name} adapter ({spec.kind}, strategy {args.strategy}) in {trained.result.steps} steps, "
          f"{trained.result.seconds:.1f} s")
    print(f"parameters: trainable {p['trainable']:,} of {p['total']:,} ({100 * p['trainable'] / p['total']:.2f}%)")
    chosen = trained.result.selected
    print(f"kept the weights of step {chosen['step']} ({chosen['rule']}"
          + (f", dev {chosen['metric']} {chosen['score']:.2f}" if chosen.get("score") is not None else "")
          + (f"; stopped early at step {chosen['stopped_early_at']}" if chosen.get("stopped_early_at") else "") + ")")
    print("validation: " + ", ".join(f"{k} {v:.2f}" for k, v in trained.validation.items()))
    print(f"saved to {trained.directory}")
    return 0


# -------------------------------------------------------------------------------------------- evaluate
def cmd_evaluate(args) -> int:
    from adapterx.core.backbone import load_backbone
    from adapterx.core.io import atomic_write_json
    from adapterx.deploy.forms import fused_form, merged_form
    from adapterx.deploy.setup import load_for_inference
    from adapterx.store import read_metadata
    from adapterx.study.evaluate import evaluate_languages, primary_metric
    from adapterx.study.report import benefit_table
    from adapterx.study.summary import summarize_scores
    from adapterx.tasks import get_task
    from adapterx.training.strategies import modules_at_inference

    task = get_task(args.task)
    backbone = load_backbone(args.backbone)
    languages = args.languages.split(",") if args.languages else None
    forms = args.forms.split(",")
    from adapterx.study.recipe import FORMS
    for form in forms:
        if form not in FORMS:
            raise AdapterxError(f"--forms: unknown form {form!r}; known: {', '.join(FORMS)}")
    runs: dict[tuple[str, str], list[dict]] = {}
    setups: dict[str, dict] = {}
    for item in args.adapter:
        label, _, paths = item.rpartition("=")
        directories = [Path(p) for p in paths.split(",")]
        label = label or directories[0].parent.name
        training = read_metadata(directories[0]).get("training", {})
        setups[label] = {"strategy": training.get("strategy", "none"),
                         "n_intermediates": max(1, len(read_metadata(directories[0]).get("requires", [])))}
        for form in forms:
            for directory in directories:   # several directories = several seeds of one setup
                model = load_for_inference(backbone.fresh_copy(), directory)
                model = {"unmerged": lambda m: m, "merged": merged_form, "fused": fused_form}[form](model)
                if model is None:
                    print(f"{label}: form {form!r} needs LoRA adapters (these cannot be merged or fused); skipped")
                    break
                runs.setdefault((label, form), []).append(evaluate_languages(
                    model, task, backbone.tokenizer, split=args.split, languages=languages, data_dir=args.data_dir,
                    limit=args.limit))
    first_scores = next(iter(runs.values()))
    metric = primary_metric(next(iter(first_scores[0].values())))
    baseline_key = next(iter(runs))
    rows = []
    for (label, form), scores in runs.items():
        strategy = setups[label]["strategy"]
        rows.append({"label": label, "strategy": strategy, "form": form,
                     "modules_at_inference": {"merged": 0, "fused": 1}[form] if form != "unmerged" else
                     modules_at_inference(strategy, setups[label]["n_intermediates"]) if strategy != "none" else 1,
                     "seeds": len(scores),
                     **summarize_scores(scores, runs[baseline_key] if (label, form) != baseline_key else None,
                                        metric, args.bootstrap, args.confidence)})
    table = {"metric": metric, "languages": list(first_scores[0]), "rows": rows}
    print(f"{task.name}: {metric} on {args.split}; mean ± std over seeds; Δ vs {baseline_key[0]} "
          f"({baseline_key[1]}) with its {args.confidence:.0%} bootstrap interval")
    print(benefit_table(table))
    if args.output:
        atomic_write_json(args.output, {"task": task.name, "split": args.split, "metric": metric,
                                        "baseline": list(baseline_key), "rows": rows,
                                        "runs": {f"{l}/{f}": v for (l, f), v in runs.items()}})
        print(f"wrote {args.output}")
    return 0


# ------------------------------------------------------------------------------------------------- run
def cmd_run(args) -> int:
    from adapterx.study.recipe import load_recipe
    from adapterx.study.runner import run_recipe

    recipe = load_recipe(args.recipe)
    if args.data_dir:
        recipe.data_dir = args.data_dir
    if args.dry_run or args.list_jobs:
        from adapterx.study.runner import describe_jobs
        print(f"{args.recipe}: valid. backbone {recipe.backbone}, adapter {recipe.adapter}, "
              f"intermediate {recipe.intermediate.tasks}{' + multitask' if recipe.intermediate.multitask else ''}, "
              f"targets {recipe.target.tasks} ({', '.join(recipe.target.strategies)}), seeds {recipe.seeds}; "
              f"output {recipe.output}")
        if args.dry_run:
            from adapterx.study.plan import describe_plan
            print("\n".join(describe_plan(recipe)))
        if args.list_jobs:
            print("jobs (run each with --job N, in any order or in parallel; then once without --job):")
            print("\n".join(describe_jobs(recipe)))
        return 0
    results = run_recipe(recipe, force=args.force, job=args.job)
    if args.job is not None:
        return 0
    from adapterx.study.report import benefit_table, readme_summary
    for name, target in results["targets"].items():
        print(f"{name} ({target['metric']}):")
        print(benefit_table(target))
    if args.readme:
        from adapterx.bench.report import update_readme
        update_readme(args.readme, recipe.name, readme_summary(
            results, f"adapterx run {args.recipe}" + (" --force" if args.force else "")))
        print(f"updated the {recipe.name!r} section of {args.readme}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adapterx", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Train small adapters per task on a frozen XLM-R, compose them at load time, and measure "
                    "both the accuracy an English intermediate task buys on a cross-lingual target and what "
                    "the adapters cost at inference.")
    parser.add_argument("--verbose", action="store_true", help="show library warnings and tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    p = sub.add_parser("train", help="train one adapter (and its head) on one task",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Train an adapter on a task's English training data; only the adapter and its "
                                   "task head train, the backbone stays frozen. With --strategy the adapter builds "
                                   "on an intermediate-task adapter: 'stack' keeps it frozen beneath, 'continue' "
                                   "starts from its weights.")
    p.add_argument("--task", required=True, help="task name (see `adapterx tasks`)")
    p.add_argument("--backbone", default="builtin:tiny-xlmr", help="hub id, local dir or builtin:tiny-xlmr")
    p.add_argument("--adapter", default="kind=lora,r=8,alpha=16",
                   help="adapter spec as key=value pairs; lists with '+': target_modules=query+value; "
                        "kinds: lora (r, alpha, dropout, target_modules), bottleneck (architecture=pfeiffer|houlsby, "
                        "reduction_factor)")
    p.add_argument("--output", required=True, help="run directory; the adapter is saved to OUTPUT/adapter")
    p.add_argument("--strategy", default="none", choices=["none", "stack", "continue"],
                   help="how to build on --on-top-of")
    p.add_argument("--on-top-of", help="intermediate adapter directory (for --strategy stack|continue)")
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3, help="adapters want 1e-4..1e-3")
    p.add_argument("--warmup", type=float, default=0.1, help="warm-up fraction of all steps")
    p.add_argument("--schedule", default="linear", choices=["linear", "cosine", "constant_with_warmup"])
    p.add_argument("--max-steps", type=int)
    p.add_argument("--eval-every", type=int, help="steps between evaluations (default: each epoch)")
    p.add_argument("--eval-examples", type=int,
                   help="evaluate on the first N English dev examples (jiant: 500; default: all)")
    p.add_argument("--select", default="best", choices=["best", "last"],
                   help="save the best dev-evaluated weights or the last ones")
    p.add_argument("--patience", type=int,
                   help="stop after N evaluations without a dev gain (jiant: 30; default: never)")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default: each epoch)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", help="local copies of the task data (<dir>/<task>/<split>.<lang>.<ext>)")
    p.add_argument("--train-limit", type=int, help="use only the first N training rows")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in OUTPUT")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="zero-shot evaluation of saved adapters in every language of a task",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--task", required=True)
    p.add_argument("--backbone", default="builtin:tiny-xlmr")
    p.add_argument("--adapter", action="append", required=True, metavar="[LABEL=]DIR[,DIR...]",
                   help="a saved adapter; several comma-separated directories are seeds of one setup (mean ± std, "
                        "bootstrap interval); repeat to compare; the first is the baseline")
    p.add_argument("--forms", default="unmerged",
                   help="deployment forms to evaluate, comma-separated: unmerged (adapter modules), fused (active "
                        "LoRA adapters as one low-rank product per layer), merged (LoRA folded into the weights); "
                        "the same predictions up to float error")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the interval over seeds")
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--languages", help="comma-separated subset (default: all of the task's)")
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, help="rows per language")
    p.add_argument("--data-dir")
    p.add_argument("--output", help="write the scores as JSON here")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("run", help="run a recipe: train intermediate + target adapters, evaluate, report",
                       description="Run the phases of a recipe (YAML). Phases whose outputs exist for the same "
                                   "configuration are reused; --force redoes them.")
    p.add_argument("recipe", help="recipe YAML, e.g. recipes/quickstart.yaml")
    p.add_argument("--force", action="store_true", help="ignore cached phases")
    p.add_argument("--dry-run", action="store_true",
                   help="validate the recipe, print the splits, selection and metric of every target, and stop")
    p.add_argument("--data-dir", help="local copies of the task data (overrides the recipe's data_dir)")
    p.add_argument("--list-jobs", action="store_true", help="print the independent jobs of the recipe and stop")
    p.add_argument("--job", type=int, metavar="N", help="run only job N (for a cluster; see --list-jobs)")
    p.add_argument("--readme", metavar="FILE",
                   help="also write the benefit table between the '<!-- bench:<recipe name>:start/end -->' markers")
    p.set_defaults(func=cmd_run)

    from adapterx.cli.bench import add_bench_parser
    from adapterx.cli.compose import add_compose_parsers
    from adapterx.cli.tasks import add_tasks_parser
    add_tasks_parser(sub)
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
    if not args.verbose:
        _quiet_libraries()
    try:
        return args.func(args)
    except AdapterxError as exc:
        if args.verbose:
            raise
        print(f"adapterx: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
