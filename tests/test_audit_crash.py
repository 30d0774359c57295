"""Crash-safety of the audit log over many runs: a writer SIGKILLed at random moments never
loses an entry it had committed, and the chain always verifies (issue 8)."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

from rebalance_opt.audit import AuditLog
from tests.test_audit import INPUTS, ROOT, plan_dict

RUNS = int(os.environ.get("CRASH_RUNS", "20"))  # CRASH_RUNS=500 for a longer soak

# Appends forever; after each append returns (the entry is committed) prints its id.
WRITER = """
import json, os, sys
from rebalance_opt.audit import AuditLog
log = AuditLog(sys.argv[1])
plan, inputs = json.loads(os.environ["PLAN"]), json.loads(os.environ["INPUTS"])
print("ready", flush=True)
i = 0
while True:
    plan["orders"][0]["quantity"] = i
    print(log.append(plan, inputs).id, flush=True)
    i += 1
"""


def test_random_sigkills_never_lose_a_committed_entry(tmp_path):
    path = tmp_path / "log.sqlite"
    rng = random.Random(20261124)
    env = {**os.environ, "PLAN": json.dumps(plan_dict("crash")), "INPUTS": json.dumps(INPUTS),
           "PYTHONPATH": str(ROOT)}
    committed: set[int] = set()
    for _ in range(RUNS):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.25))  # an append takes milliseconds: kills land anywhere in one
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        committed |= {int(line) for line in out.split()}
        result = AuditLog(path).verify()
        assert result.ok, result
        present = {e.id for e in AuditLog(path).entries()}
        assert committed <= present, f"lost committed entries {sorted(committed - present)}"
    assert len(committed) > RUNS  # the writers did get entries in
