"""The ``rebalance-opt`` console script (and ``python cli.py``): the command line imported inside
``main``, so that Ctrl-C during that import (typer, rich and pydantic: about half a second) exits
130 without a traceback, as it does once a command runs. The package itself imports lazily, so
importing this module costs next to nothing."""
from __future__ import annotations

import sys

from .interrupts import ctrl_c_noting


def main() -> None:
    """Run the command line (``rebalance_opt.cli.main``), Ctrl-C noted from here on."""
    with ctrl_c_noting():
        try:
            from .cli import main as run
        except KeyboardInterrupt:
            sys.exit(130)
        run()
