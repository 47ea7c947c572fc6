"""`adapterx export-backbone`: write a backbone (the built-in one included) as a plain transformers checkpoint,
so that adapters trained on it load without adapterx (docs/interop.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from adapterx.core.errors import AdapterxError

EPILOG = """\
The directory holds model.safetensors, config.json and the tokenizer files; it loads with plain transformers:
  AutoModel.from_pretrained(DIR, add_pooling_layer=False), AutoTokenizer.from_pretrained(DIR)
and as an adapterx backbone (--backbone DIR) with the same fingerprint, so adapters trained on the original
load onto it. peft's AutoPeftModel loads the base named in an adapter's adapter_config.json
(base_model_name_or_path): train with --backbone DIR (an absolute path) for adapters it can load alone.

example:
  adapterx export-backbone builtin:tiny-xlmr runs/tiny-xlmr
"""


def cmd_export_backbone(args: argparse.Namespace) -> int:
    from adapterx.core.backbone import load_backbone, save_backbone

    directory = Path(args.directory)
    if directory.is_dir() and any(directory.iterdir()) and not args.overwrite:
        raise AdapterxError(f"{directory}: is not empty; pass --overwrite to replace it")
    if args.backbone.startswith("random:"):  # refused before building a large random model
        raise AdapterxError(
            f"backbone {args.backbone!r} has no tokenizer (random weights, for latency only); "
            f"export a backbone with one"
        )
    backbone = load_backbone(args.backbone)
    if backbone.tokenizer is None:
        raise AdapterxError(
            f"backbone {args.backbone!r} has no tokenizer (random weights, for latency only); "
            f"export a backbone with one"
        )
    save_backbone(backbone, directory)
    reloaded = load_backbone(str(directory))
    if reloaded.fingerprint != backbone.fingerprint:  # the same weights, or the export is useless
        raise AdapterxError(
            f"{directory}: reloaded weights have fingerprint {reloaded.fingerprint}, not "
            f"{backbone.fingerprint}; this is a bug in adapterx, please report"
        )
    print(f"wrote {directory}: {backbone.name} ({backbone.description}), fingerprint {backbone.fingerprint}")
    print(
        f"load it with transformers.AutoModel.from_pretrained({str(directory)!r}, add_pooling_layer=False), "
        f"or as --backbone {directory}"
    )
    return 0


def add_export_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "export-backbone",
        help="write a backbone as a plain transformers checkpoint",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
        description="Write BACKBONE's weights (safetensors), config and tokenizer to DIR, "
        "atomically, and check that they load back with the same fingerprint.",
    )
    p.add_argument("backbone", metavar="BACKBONE", help="builtin:tiny-xlmr[@seed], a hub id or a local directory")
    p.add_argument("directory", metavar="DIR", help="output directory (replaced atomically)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty DIR")
    p.set_defaults(func=cmd_export_backbone)
