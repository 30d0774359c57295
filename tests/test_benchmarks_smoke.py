"""The benchmark code stays runnable: every part at tiny sizes (no timing is asserted)."""
from __future__ import annotations

import numpy as np

from benchmarks import batch_bench, engine_bench, run, synth
from rebalance_opt import account_from_dict, plan_rebalance


def test_generators_are_seeded_and_make_valid_accounts():
    assert synth.household(3) == synth.household(3) and synth.household(3) != synth.household(4)
    books = [synth.household(i) for i in range(20)] + [synth.sized_household(0, 10, 5), synth.lots_account(0, 120),
                                                       synth.direct_index(0, 30, 3, 4)]
    for book in books:
        account = account_from_dict(book)
        assert 0 < len(account.lots) <= 300 or book["account"]["id"].startswith("di-")
    sizes = [len(b["prices"]) for b in books[:20]]
    assert min(sizes) >= 10 and max(sizes) <= 30
    assert len(synth.lots_account(0, 120)["lots"]) == 120
    di = account_from_dict(synth.direct_index(0, 30, 3, 4))
    assert di.risk is not None and len(di.lots) == 90
    assert plan_rebalance(di).status == "optimal"


def test_engine_row_and_lots_point_at_tiny_sizes():
    row = engine_bench.measure("tiny", synth.sized_household(0, 6, 3), repeats=1, naive_plans=1)
    for key in ("engine_plan_s", "engine_qp_s", "naive_qp_s", "naive_plan_s", "raw_osqp_s", "raw_clarabel_s"):
        assert row[key] > 0
    assert row["engine_acc"] <= engine_bench.REL_ACCURACY
    assert np.isfinite(row["objective"])
    point = engine_bench.measure_lots(60, repeats=1)
    assert point["lots"] == 60 and point["engine_plan_s"] > 0
    assert "tiny" in run.size_table([row]) and "60" in run.lots_table([point])


def test_batch_benchmark_runs_end_to_end():
    rows = batch_bench.run(12, workers=1, engines=("local",))
    assert rows[0]["planned"] + rows[0]["failed"] == 12 and rows[0]["log_entries"] == rows[0]["planned"]
    assert rows[0]["peak_memory_mb"] > 0
    assert "local" in run.batch_table(rows)
    resumed = rows[-1]  # the same batch again with --resume: every planned account already logged
    assert resumed["engine"] == "local --resume" and resumed["already_logged"] == rows[0]["planned"]
    assert resumed["log_entries"] == 0 and "local --resume" in run.batch_table(rows)


def test_batch_memory_sampler_reads_pss_at_most_once_a_second_per_process(monkeypatch):
    """Reading PSS takes the kernel ~4 ms per process: the sampler reads it once per process per
    PSS_EVERY and scales the cheap resident size in between, so a fast sample agrees with a full
    reading without taking the batch's CPU."""
    import os

    import psutil
    full = batch_bench.tree_memory(os.getpid())
    reads = []
    real = psutil.Process.memory_full_info
    monkeypatch.setattr(psutil.Process, "memory_full_info", lambda self: reads.append(self.pid) or real(self))
    monkeypatch.setattr(batch_bench.TreeMemory, "PSS_EVERY", 3600.0)  # no second read within the test
    sampler = batch_bench.TreeMemory()
    samples = [sampler(os.getpid()) for _ in range(20)]
    # one PSS read per process of the tree (this one, and any child an earlier test left running)
    assert reads.count(os.getpid()) == 1 and len(reads) == len(set(reads))
    assert all(abs(s - full) <= 0.2 * full for s in samples)
    monkeypatch.setattr(batch_bench.TreeMemory, "PSS_EVERY", 0.0)
    sampler(os.getpid())
    assert reads.count(os.getpid()) == 2


def test_the_engines_compiled_path_solves_the_same_problem_as_cvxpy():
    """The engine hands the solver cvxpy's own compiled data (bucket-padded or not, with the
    variables fixed at zero removed): its optimum is cvxpy's ``Problem.solve`` optimum."""
    from benchmarks.naive import relaxation_data
    from rebalance_opt.problem import Bucket, RebalanceModel
    from rebalance_opt.solve import _structure, _tracking
    from tests.conftest import first_layout
    for book in (synth.household(1), synth.household(2), synth.direct_index(0, 25, 3, 3)):
        account = account_from_dict(book)
        b, data = relaxation_data(account)
        layouts = {first_layout(b, _tracking(b)), _structure(b, _tracking(b))}
        assert any(isinstance(x, Bucket) for x in layouts) == (account.risk is None)
        for layout in layouts:
            model = RebalanceModel(layout)
            fast = model.solve(data)
            reference = model.solve_with_cvxpy(data, "CLARABEL", tol_gap_abs=1e-10, tol_gap_rel=1e-10,
                                               tol_feas=1e-10)
            # (the optimal point is not unique where lots tie in tax, so compare objectives)
            assert abs(fast.objective - reference.objective) <= 1e-9 + 1e-6 * abs(reference.objective)


def test_osqp_tolerance_is_matched_on_every_timed_account_not_just_the_first():
    # A fake solver whose error at tolerance e is e on the first account, 100·e on the second.
    refs = [1.0, 1.0]
    run_all = lambda e: [1.0 + e, 1.0 + 100 * e]
    eps, runs = engine_bench._matched(lambda e: 1.0 + e, 1.0, run_all, lambda rs: rs, refs)
    assert eps == 1e-8 and runs == run_all(1e-8)   # 1e-6 is enough for the first account alone
    never = engine_bench._matched(lambda e: 2.0, 1.0, run_all, lambda rs: rs, refs)
    assert never[0] == engine_bench.EPS_LADDER[-1]  # nothing matches: the tightest, error reported
