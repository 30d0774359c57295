#!/usr/bin/env python3
"""``python cli.py ...``: the same command line as the installed ``rebalance-opt`` script."""
try:
    from rebalance_opt.console import main  # imports the command line itself, guarded the same way
except KeyboardInterrupt:  # Ctrl-C while the package imports: exit 130, no traceback
    raise SystemExit(130) from None

if __name__ == "__main__":
    main()
