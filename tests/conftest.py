"""Shared builders: small accounts as plain dicts in the file structure of SPEC section 1."""
from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rebalance_opt import account_from_dict

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def base_dict(**policy) -> dict:
    """Three classes, one fund each, cash 10k; US_STOCK overweight with a gain and a loss lot."""
    d = {
        "account": {"id": "t-1", "cash": 10_000.0, "as_of": "2026-11-24"},
        "tax": {"short_term_rate": 0.37, "long_term_rate": 0.20},
        "targets": {"US_STOCK": 0.55, "INTL_STOCK": 0.15, "US_BOND": 0.30},
        "classes": {"VTI": "US_STOCK", "VXUS": "INTL_STOCK", "BND": "US_BOND"},
        "prices": {"VTI": 100.0, "VXUS": 50.0, "BND": 80.0},
        "lots": [
            {"id": "L1", "symbol": "VTI", "quantity": 500, "cost_basis": 60.0, "acquired": "2020-01-02"},
            {"id": "L2", "symbol": "VXUS", "quantity": 300, "cost_basis": 45.0, "acquired": "2021-01-04"},
            {"id": "L3", "symbol": "BND", "quantity": 250, "cost_basis": 85.0, "acquired": "2022-06-01"},
        ],
        "policy": dict(policy),
    }
    return d


def make(d: dict | None = None, **policy):
    d = copy.deepcopy(d) if d is not None else base_dict()
    d.setdefault("policy", {}).update(policy)
    return account_from_dict(d)


def first_layout(book, tracking):
    """The model a first plan of the account uses (``ModelCache.for_account`` on a structure not
    planned before): its size bucket when it fits one, else its own structure."""
    from rebalance_opt.solve import _bucket, _structure
    return _bucket(book, tracking) or _structure(book, tracking)


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run the CLI in this process (``main``) as ``python cli.py ARGS``: (exit code, stdout, stderr)."""
    from rebalance_opt.cli import main
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


def wait_for_first_entry(log: Path, seconds: float = 120) -> None:
    """Until the audit log at ``log`` holds an entry (a batch has committed its first chunk), or
    ``seconds`` have passed."""
    import sqlite3
    import time
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(log) as db:
                if db.execute("SELECT count(*) FROM entries").fetchone()[0] > 0:
                    return
        except sqlite3.Error:
            pass
        time.sleep(0.05)


def signalled(proc: subprocess.Popen, signum: int, group: bool = False) -> str:
    """Send ``signum`` to ``proc`` (or its whole process group) and return its stderr once it has
    exited; it is killed (with its group) if it has not within two minutes."""
    import signal
    try:
        (os.killpg if group else os.kill)(proc.pid, signum)
        return proc.communicate(timeout=120)[1]
    finally:
        try:
            (os.killpg if group else os.kill)(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_cli(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python cli.py ARGS`` as a user would, capturing stdout and stderr separately."""
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], cwd=cwd, capture_output=True,
                          text=True, env=env, timeout=120)


@pytest.fixture(autouse=True)
def _audit_log(tmp_path, monkeypatch):
    """Every test writes its audit log in its own temporary folder, never the user's default."""
    monkeypatch.setenv("REBALANCE_OPT_LOG", str(tmp_path / "audit.sqlite"))
    # and sees the terminal output CI sees, whatever the shell running pytest sets
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.setenv("COLUMNS", "80")


@pytest.fixture
def ctrl_c_raises():
    """Ctrl-C raises KeyboardInterrupt in the test, whatever pytest inherited: a shell's
    background job starts with SIGINT ignored, and Python then installs no handler for it."""
    import signal
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture
def examples() -> Path:
    return ROOT / "examples"


# Example counts: quick by default (CI), deeper on demand: HYPOTHESIS_PROFILE=thorough pytest ...
from hypothesis import settings as _settings  # noqa: E402

_settings.register_profile("thorough", max_examples=1000, deadline=None)
if os.environ.get("HYPOTHESIS_PROFILE"):
    _settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])
