"""``adapterx bench``: the command-line shell over :func:`adapterx.bench.runner.run_bench`."""

from __future__ import annotations

import argparse
import datetime as _dt
import shlex
import sys
from dataclasses import fields
from pathlib import Path

from adapterx.bench.config import (
    CLOCKS,
    COMPILE_CHOICES,
    DTYPES,
    QUICK_OVERRIDES,
    TRAIN_OVERRIDES,
    BenchConfig,
    field_help,
)
from adapterx.cli.lazy import defer
from adapterx.cli.plugins import add_plugin_arguments
from adapterx.core.errors import AdapterxError

DESCRIPTION = """\
Measure the inference overhead of adapter deployment forms on one frozen backbone, all in one run.

Forms (--forms; K = stack depth, N = number of adapters; every LoRA adapter has the same weights in every form):
{forms}

How it measures: every form is warmed up, then timed in interleaved rounds (A B C, B C A, ...) so that drift
(other processes, thermal, frequency) hits all forms alike. A form's RATIO is the median over rounds of
(form time / base time in the same round): 1.00 = no overhead, 1.05 = 5% slower. p10-p90 of those per-round
ratios is printed as its spread; a ratio whose spread covers 1.0 or exceeds the difference it claims is
labelled 'within noise'. Forms with a 'vs' partner (fused vs naive stack, mixed batch vs one adapter) also get
the paired ratio to that partner. Throughput is sequences/s and tokens/s at the median time.

Guarding its own conditions: the 1-minute load average is sampled before, during and after the run, and the
output (and results.json) warns when other processes kept more than half the cores busy. Every ratio also gets
the 95% bootstrap interval of its median (rounds resampled); --target-ci 0.01 keeps adding rounds until every
interval is within +-0.01 or --max-seconds is spent, and says which. --clock instructions counts instructions
with callgrind instead (deterministic, so small differences are decided on a busy machine; not time).

--train measures TRAINING cost instead: per adapter kind and full fine-tuning, each in a fresh process, the
median step time, tokens/s, peak memory, trainable parameters and checkpoint size (batch 16, seq 128 unless
given).

Outputs (in --output): results.json (schema_version, machine, library versions, settings), results.csv,
results.md, overhead_vs_batch.png, throughput_vs_seq.png. Ratios are benchmark output, not pass/fail tests.

Examples:
  adapterx bench --quick                                   # tiny model, small grid, < 1 min (CI)
  adapterx bench --shape xlm-roberta-base --batch-sizes 8 --seq-lens 128 --threads 2 \\
      --forms base,lora,lora-merged,lora-stack-2,lora-stack-2-fused --iterations 20
  adapterx bench --devices cuda --dtypes bf16 --batch-sizes 1 --compile both
  adapterx bench --shape xlm-roberta-base --batch-sizes 1 --seq-lens 32 --threads 1 --target-ci 0.01 \\
      --forms base,bottleneck,bottleneck-fast,bottleneck-stack-2,bottleneck-stack-2-fast
  adapterx bench --train --shape xlm-roberta-base --threads 2       # training cost per kind vs full fine-tuning
  adapterx bench ... --readme docs/benchmarks.md           # rewrite its <!-- bench:cpu:start/end --> section
"""

_LISTS = {
    "forms": str,
    "batch_sizes": int,
    "seq_lens": int,
    "dtypes": str,
    "devices": str,
    "threads": int,
    "train_kinds": str,
}
_FLAGS = ("command", "progress", "quick", "train")


def _csv(kind):
    def parse(text: str):
        try:
            items = tuple(kind(x.strip()) for x in text.split(",") if x.strip())
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__}s, got {text!r}") from exc
        if not items:
            raise argparse.ArgumentTypeError("empty list")
        return items

    return parse


def add_bench_parser(subparsers) -> None:
    """Register the ``bench`` subcommand on an argparse subparsers object; its ``func`` default runs it."""
    p = subparsers.add_parser(
        "bench",
        help="inference overhead of merged, unmerged, stacked and mixed adapters",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defer(p, add_bench_arguments)
    p.set_defaults(func=run_from_args)


def _description() -> str:
    from adapterx.bench.forms import form_help  # the registered forms (imports torch: on first use only)

    return DESCRIPTION.format(forms=form_help())


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    p.description = _description()
    extra = {
        "dtypes": {"metavar": ",".join(DTYPES)},
        "compile": {"choices": COMPILE_CHOICES},
        "attention": {"choices": ("sdpa", "eager")},
        "clock": {"choices": CLOCKS},
    }
    aliases = {"devices": ["--device"]}
    for f in fields(BenchConfig):
        if f.name in _FLAGS:
            continue
        flag = "--" + f.name.replace("_", "-")
        kw = dict(default=None, help=field_help(f.name), dest=f.name)
        if f.name in _LISTS:
            kw["type"] = _csv(_LISTS[f.name])
        elif f.type in ("int", int):
            kw["type"] = int
        elif f.type in ("float", float):
            kw["type"] = float
        kw.update(extra.get(f.name, {}))
        p.add_argument(flag, *aliases.get(f.name, []), **kw)
    p.add_argument("--quick", action="store_true", help=field_help("quick"))
    p.add_argument("--train", action="store_true", help=field_help("train"))
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    add_plugin_arguments(p)
    p.set_defaults(progress=True)


def config_from_args(args: argparse.Namespace, command: str = "") -> BenchConfig:
    values = {
        f.name: getattr(args, f.name)
        for f in fields(BenchConfig)
        if getattr(args, f.name, None) is not None and f.name not in _FLAGS
    }
    train = bool(getattr(args, "train", False))
    if args.quick:
        values = {**QUICK_OVERRIDES, **values}
    if train:
        values = {**TRAIN_OVERRIDES, **values}
    return BenchConfig(**values, quick=bool(args.quick), train=train, progress=bool(args.progress), command=command)


def _command_line() -> str:
    argv0 = Path(sys.argv[0]).name
    prog = "python -m adapterx.bench" if argv0 == "__main__.py" else "adapterx"
    return " ".join([prog, shlex.join(sys.argv[1:])]).strip()


def run_from_args(args: argparse.Namespace) -> int:
    from adapterx.bench.report import to_markdown, update_readme, write_outputs
    from adapterx.bench.runner import run_bench
    from adapterx.bench.train_runner import run_train_bench, train_markdown, write_train_outputs

    try:
        cfg = config_from_args(args, command=_command_line())
        if cfg.readme and not Path(cfg.readme).is_file():
            raise AdapterxError(f"--readme {cfg.readme}: no such file")
        if cfg.readme:  # fail on missing markers before spending minutes measuring
            from adapterx.bench.report import replace_section

            replace_section(Path(cfg.readme).read_text(encoding="utf-8"), cfg.readme_section, "")
        outdir = Path(cfg.output or f"artifacts/bench/{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}")
        doc = run_train_bench(cfg) if cfg.train else run_bench(cfg)
        paths = write_train_outputs(doc, outdir) if cfg.train else write_outputs(doc, outdir)
        if cfg.readme:
            update_readme(cfg.readme, cfg.readme_section, train_markdown(doc) if cfg.train else to_markdown(doc))
    except AdapterxError as exc:
        print(f"adapterx bench: error: {exc}", file=sys.stderr)
        return 2
    for c in doc["targets"]:
        print(f"{c['verdict']:>9}  {c['target']}  [{c['where']}]  {c['value']}")
    if doc.get("target_ci"):
        print(doc["target_ci"]["summary"])
    for warning in doc.get("warnings", []):
        print(f"WARNING: {warning}")
    print(f"wrote {', '.join(str(p) for p in paths)}" + (f"; updated {cfg.readme}" if cfg.readme else ""))
    return 0
