#!/usr/bin/env python3
"""``python cli.py ...``: the same command line as the installed ``rebalance-opt`` script."""
from rebalance_opt.cli import main

if __name__ == "__main__":
    main()
