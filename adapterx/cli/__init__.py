"""The `adapterx` command: thin shells that gather options and call one library function each.

May import every other sub-package (it is the top of the flow); nothing imports it except entry points
(`python -m adapterx.bench`). Torch-heavy imports stay inside the command functions so that `--help` is fast.
"""

from adapterx.cli.main import main

__all__ = ["main"]
