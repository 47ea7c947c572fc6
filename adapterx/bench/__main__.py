"""``python -m adapterx.bench ...``: the bench subcommand on its own (same options as ``adapterx bench``)."""

import argparse
import logging
import sys

from adapterx.cli.bench import add_bench_parser
from adapterx.cli.plugins import load_plugins
from adapterx.core.errors import AdapterxError
from adapterx.core.log import console


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adapterx.bench")
    sub = parser.add_subparsers(dest="command_name")
    add_bench_parser(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "bench":  # `python -m adapterx.bench --quick` == `... bench --quick`
        argv = ["bench", *argv]
    args = parser.parse_args(argv)
    console(logging.INFO)
    try:
        load_plugins(args)
    except AdapterxError as exc:
        print(f"adapterx bench: error: {exc}", file=sys.stderr)
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
