#!/usr/bin/env python3
"""``python cli.py ...``: the same command line as the installed ``rebalance-opt`` script."""
try:
    from rebalance_opt.cli import main
except KeyboardInterrupt:  # Ctrl-C while the engine imports (about 1.5 s): exit 130, no traceback
    raise SystemExit(130) from None

if __name__ == "__main__":
    main()
