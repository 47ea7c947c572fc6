"""``python -m adapterx.cli ...`` (and ``accelerate launch -m adapterx.cli train ...``): the `adapterx` command."""

import sys

from adapterx.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
