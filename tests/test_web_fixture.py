"""The web app's component tests draw a plan from ``frontend2/src/test/fixtures/household-plan.json``:
it must be what the server answers for the bundled household today, or those tests check a plan
the engine no longer makes (it still showed 1,574.92 of tax a day after the engine's plan paid
471.52). Regenerate it with ``.venv/bin/python -m tests.test_web_fixture``."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from rebalance_opt import load_account
from rebalance_opt.server import _plan_payload

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "frontend2" / "src" / "test" / "fixtures" / "household-plan.json"


def server_plan(solver: dict) -> dict:
    """The server's plan payload for the bundled household, with ``solver`` (times vary by run)."""
    payload = _plan_payload(load_account(ROOT / "examples" / "household.toml"), None)
    return {**payload, "solver": solver}


def _close(a, b) -> bool:
    """Equal, numbers to 1e-9 relative (another CPU may differ in the last bits of a sum)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return a == pytest.approx(b, rel=1e-9, abs=1e-9)
    return a == b


def test_the_web_fixture_is_the_servers_plan_of_the_bundled_household():
    fixture = json.loads(FIXTURE.read_text())
    assert _close(json.loads(json.dumps(server_plan(fixture["solver"]))), fixture), \
        "stale fixture: run .venv/bin/python -m tests.test_web_fixture"


if __name__ == "__main__":
    old = json.loads(FIXTURE.read_text())
    FIXTURE.write_text(json.dumps(server_plan(old["solver"]), indent=2) + "\n")
    print(f"wrote {FIXTURE}")
