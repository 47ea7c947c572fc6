"""`adapterx compose` and `adapterx merge`: thin shells over `adapterx.deploy.compose` and `adapterx.deploy.merge`.

Wired into the main parser by ``add_compose_parsers(subparsers)``; each subcommand sets ``func(args) -> int``.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from adapterx.cli.lazy import defer
from adapterx.cli.plugins import add_plugin_arguments
from adapterx.core.errors import AdapterxError

COMPOSE_MODES = """\
modes (parts are given bottom first; the last part's head reads the result unless --head names another;
the weighted modes make one adapter from several, --weights default to equal shares):
"""
COMPOSE_EXAMPLES = """\
examples:
  adapterx compose --adapter inter=runs/nli/adapter --adapter target=runs/xnli/adapter --mode stack \\
      --check "der hund isst den apfel" --output runs/composed          # a self-contained copy + manifest
  adapterx compose --adapter a=runs/a/adapter --adapter b=runs/b/adapter --mode ties --weights 0.7,0.3 \\
      --density 0.5 --output composition.json                           # a manifest pointing at the parts
  adapterx compose --manifest runs/composed --check "the dog eats"      # reload a saved composition
  adapterx compose --adapter lang=runs/lang/adapter --adapter task=runs/task/adapter --mode stack \\
      --fused --check "der hund isst den apfel"    # also the plain-module form, and its max |delta| to the library's

A manifest is one JSON file naming every part, its path and the digests of its files; reloading checks them,
so an adapter changed or moved since is reported by file name instead of silently giving other outputs.
"""

MERGE_EPILOG = """\
Only LoRA can be folded into weights: a bottleneck adapter has a non-linearity between its projections, so
asking to merge one fails and says which parts could be merged. Several --adapter LoRAs are summed (all
active), as in `compose --mode sum`.

The output directory is a plain transformers checkpoint (model.safetensors, config.json with id2label,
tokenizer files). With a classification head it loads with no adapterx or peft installed:
  from transformers import AutoModelForSequenceClassification, AutoTokenizer
  model = AutoModelForSequenceClassification.from_pretrained("runs/merged")
Other heads: the encoder loads with AutoModel; the head is saved beside it (head.safetensors + head.json).

Before anything is written, the checkpoint is reloaded and its logits compared with the unmerged model's on a
probe batch; the command prints max |delta| and fails (writing nothing) above --tolerance.

example (runs/xnli was trained stacked on runs/nli: the pair is merged, as it was trained):
  adapterx merge --adapter runs/nli/adapter --adapter runs/xnli/adapter --output runs/xnli-merged
"""


def _parse_adapters(items: list[str]) -> list[tuple[str, Path]]:
    """'inter=DIR' -> ('inter', DIR); a bare DIR is named after its directory (runs/xnli/adapter -> 'xnli')."""
    out: list[tuple[str, Path]] = []
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or "/" in name:
            name, path = "", item
        if not name:
            where = Path(path).expanduser().resolve()
            stem = where.parent.name if where.name == "adapter" else where.name
            name = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in stem)
            name = name if name[:1].isalpha() else f"a_{name}"
            taken = {n for n, _ in out}
            if name in taken:
                name = next(f"{name}_{i}" for i in range(2, 100) if f"{name}_{i}" not in taken)
        out.append((name, Path(path)))
    return out


def _weights(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(w) for w in text.split(",") if w.strip()]
    except ValueError as exc:
        raise AdapterxError(f"--weights: expected numbers separated by commas, e.g. 0.5,0.5; got {text!r}") from exc


def _encode(backbone, texts: list[str]):
    if backbone.tokenizer is None:
        raise AdapterxError(f"--check: backbone {backbone.name!r} has no tokenizer")
    firsts, seconds = [], []
    for t in texts:
        a, sep, b = t.partition("|||")
        firsts.append(a.strip())
        seconds.append(b.strip() if sep else None)
    if any(s is not None for s in seconds):
        enc = backbone.tokenizer(firsts, [s or "" for s in seconds], padding=True, return_tensors="pt")
    else:
        enc = backbone.tokenizer(firsts, padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def _format_logits(logits, labels: list[str]) -> str:
    import torch

    values = logits.float()
    if values.dim() != 1:
        return f"logits of shape {tuple(values.shape)}"
    names = labels if len(labels) == values.numel() else [str(i) for i in range(values.numel())]
    probs = torch.softmax(values, -1)
    cells = ", ".join(f"{n} {v:+.4f}" for n, v in zip(names, values.tolist()))
    best = int(values.argmax())
    return f"{cells}  -> {names[best]} (p={probs[best]:.3f})"


def _recorded_backbone(parts: list[tuple[str, Path]]) -> str:
    """The backbone the first adapter was trained on (its adapterx.json), when that is a name load_backbone
    takes; else the built-in tiny XLM-R. A wrong one still fails later with both fingerprints named."""
    from adapterx.store import read_metadata

    try:
        name = read_metadata(parts[0][1]).get("base_model", {}).get("name") if parts else None
    except AdapterxError:
        name = None  # the composition step names the unreadable file
    return name if isinstance(name, str) and name and "+" not in name else "builtin:tiny-xlmr"


# ------------------------------------------------------------------------------------------------ compose
def cmd_compose(args) -> int:
    from adapterx.core.backbone import load_backbone
    from adapterx.deploy.compose import Mixed, compose, load_manifest

    if args.manifest:
        if args.adapter or args.weights or args.density is not None or args.head:
            raise AdapterxError("--manifest rebuilds a saved composition: drop --adapter/--weights/--density/--head")
        backbone = load_backbone(args.backbone) if args.backbone else None
        composed = load_manifest(args.manifest, backbone)
        print(f"loaded composition {args.manifest}")
    else:
        if not args.adapter:
            raise AdapterxError(
                "name the adapters to compose: --adapter NAME=DIR (repeat, bottom first), or "
                "--manifest to reload a saved composition"
            )
        parts = _parse_adapters(args.adapter)
        backbone = load_backbone(args.backbone or _recorded_backbone(parts))
        composed = compose(
            backbone, parts, args.mode, weights=_weights(args.weights), density=args.density, head=args.head
        )
    print("composed " + composed.describe())
    if args.check:
        input_ids, mask = _encode(composed.backbone, [args.check])
        if isinstance(composed.composition, Mixed):
            names = composed.composition.names()
            rows = composed.forward_rows(input_ids.repeat(len(names), 1), mask.repeat(len(names), 1), names)
            print(f"check {args.check!r}, one batch, row i through adapter i:")
            for name, logits in zip(names, rows):
                print(f"  {name}: {_format_logits(logits, composed.parts[name].labels)}")
        elif composed.head is None:
            hidden = composed.encode(input_ids, mask)
            print(f"check {args.check!r}: no head; <s> hidden state norm {hidden[0, 0].norm():.4f}")
        else:
            logits = composed(input_ids, mask)[0]
            labels = composed.parts[composed.head].labels
            print(f"check {args.check!r} (head of {composed.head!r}): {_format_logits(logits, labels)}")
    if args.fused:
        _check_fused(composed, args.check)
    if args.output:
        written = composed.save(args.output)
        print(f"wrote {written}" + (" (parts copied beside it)" if Path(args.output).suffix != ".json" else ""))
    return 0


def _check_fused(composed, text: str | None) -> None:
    """Build the fused form (plain modules, no adapter library) and, with a check text, compare it."""
    import torch

    from adapterx.deploy.fastbottleneck import FastBottleneckOutput
    from adapterx.deploy.fastlora import FusedLoraLinear

    fused = composed.fused()
    if fused is None:
        raise AdapterxError(
            f"--fused: {composed.composition} has no fused form (it needs LoRA adapters or a plain "
            f"stack of bottleneck adapters; a mixed batch or a bottleneck average has none)"
        )
    replaced = sum(isinstance(m, (FastBottleneckOutput, FusedLoraLinear)) for m in fused.encoder.modules())
    print(f"fused form: {replaced} sub-layers run the adapters as plain modules (no adapter library)")
    if not text:
        return
    input_ids, mask = _encode(composed.backbone, [text])
    with torch.no_grad():
        if composed.head is None:
            got, want = fused.encode(input_ids, mask).last_hidden_state, composed.encode(input_ids, mask)
        else:
            got, want = fused(input_ids=input_ids, attention_mask=mask).logits, composed(input_ids, mask)
    print(f"fused form on {text!r}: max |fused - library| = {(got - want).abs().max().item():.3g}")


# ------------------------------------------------------------------------------------------------ merge
def cmd_merge(args) -> int:
    from adapterx.core.backbone import load_backbone
    from adapterx.deploy.compose import load_manifest
    from adapterx.deploy.merge import merge, merge_adapters

    if bool(args.adapter) == bool(args.manifest):
        raise AdapterxError("give the LoRA adapters to merge with --adapter DIR (repeat), or --manifest FILE")
    backbone = (
        load_backbone(args.backbone or _recorded_backbone(_parse_adapters(args.adapter)))
        if (args.backbone or args.adapter)
        else None
    )
    if args.manifest:
        report = merge(load_manifest(args.manifest, backbone), args.output, tolerance=args.tolerance)
    else:
        report = merge_adapters(
            backbone, _parse_adapters(args.adapter), args.output, head=args.head, tolerance=args.tolerance
        )
    print(f"merged LoRA {', '.join(report.merged)} into {backbone.name if backbone else 'the base'} weights")
    print(
        f"max |merged - unmerged| {report.compared} on the probe batch: {report.max_abs_diff:.3g} "
        f"(tolerance {report.tolerance:g}) ok"
    )
    for note in report.notes:
        print(f"note: {note}")
    print(
        f"wrote {report.directory} ({report.parameters:,} parameters; load with "
        f"transformers.{report.loader}.from_pretrained)"
    )
    return 0


# ------------------------------------------------------------------------------------------------ parsers
def add_compose_parsers(subparsers) -> None:
    """Register `compose` and `merge` on the main parser's subparsers."""

    p = subparsers.add_parser(
        "compose",
        help="attach several saved adapters to one frozen base: stack, sum, weighted/TIES/DARE, mixed",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Load the frozen base once and attach any number of saved adapters, combined as --mode;\n"
        "print what was composed and its parameter counts, optionally the logits for a test input,\n"
        "and optionally save the composition as a manifest.",
    )
    p.set_defaults(func=cmd_compose)
    defer(p, _compose_arguments)
    _add_merge_parser(subparsers)


def _compose_arguments(p: argparse.ArgumentParser) -> None:
    from adapterx.deploy.compose import MODES, WEIGHTED_METHODS

    add_plugin_arguments(p)
    density = ", ".join(name for name, method in WEIGHTED_METHODS.items() if method.needs_density)
    modes = [(mode.name, mode.about) for mode in MODES.values()]
    p.epilog = (
        COMPOSE_MODES
        + "\n".join(
            textwrap.fill(about, 110, initial_indent=f"  {name:<17}", subsequent_indent=" " * 19)
            for name, about in modes
        )
        + "\n\n"
        + COMPOSE_EXAMPLES
    )
    p.add_argument(
        "--backbone",
        help="hub id, local dir or builtin:<name> (default: the backbone the first "
        "adapter was trained on; with --manifest, the one recorded there)",
    )
    p.add_argument(
        "--adapter",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="a saved adapter directory, named NAME in the composition; repeat, bottom (intermediate) "
        "first, target last",
    )
    p.add_argument(
        "--mode",
        default="stack",
        choices=MODES.names(),
        metavar="MODE",
        help="how to combine them: %(choices)s (see below; default stack)",
    )
    p.add_argument(
        "--weights",
        metavar="W1,W2,...",
        help="one weight per adapter for the weighted modes (default: equal shares summing to 1)",
    )
    p.add_argument("--density", type=float, help=f"share of each delta kept, for {density} (default 0.5)")
    p.add_argument("--head", metavar="NAME", help="use this part's head instead of the last part's")
    p.add_argument("--manifest", metavar="FILE|DIR", help="reload a composition saved with --output")
    p.add_argument("--check", metavar="TEXT", help="print the logits for this input ('A ||| B' for a pair)")
    p.add_argument(
        "--fused",
        action="store_true",
        help="also build the fused form (plain modules, no adapter library at inference: LoRA as one "
        "low-rank product per layer, a bottleneck stack as one module per sub-layer); with --check, "
        "print its largest difference from the library form",
    )
    p.add_argument(
        "--output",
        metavar="FILE.json|DIR",
        help="save the composition: FILE.json = a manifest pointing at the parts where they are; "
        "DIR = a self-contained copy (DIR/composition.json + DIR/parts/<name>/)",
    )


def _add_merge_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "merge",
        help="fold adapters of a mergeable kind (LoRA, DoRA, (IA)³) into the base weights; write a plain "
        "transformers checkpoint",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=MERGE_EPILOG,
        description="Fold the adapters' weight changes (LoRA deltas, (IA)³ vectors) into the base's linear weights\n"
        "(zero inference overhead) and save\n"
        "a checkpoint that plain transformers loads, after checking it against the unmerged model.",
    )
    p.add_argument(
        "--backbone",
        help="the backbone the adapters were trained on (default: the one the first "
        "adapter records; with --manifest, the one recorded there)",
    )
    p.add_argument(
        "--adapter",
        action="append",
        default=[],
        metavar="[NAME=]DIR",
        help="a saved adapter directory (a mergeable kind); repeat to merge several (all active: LoRA deltas "
        "add up, (IA)³ vectors multiply); the last one's head is saved",
    )
    p.add_argument("--manifest", metavar="FILE|DIR", help="merge a composition saved by `adapterx compose`")
    p.add_argument("--head", metavar="NAME", help="save this part's head instead of the last one's")
    p.add_argument("--output", required=True, metavar="DIR", help="checkpoint directory (replaced atomically)")
    p.add_argument(
        "--tolerance",
        type=float,
        default=1e-4,
        help="largest allowed max |merged - unmerged| logit difference (fp32; default 1e-4)",
    )
    add_plugin_arguments(p)
    p.set_defaults(func=cmd_merge)
