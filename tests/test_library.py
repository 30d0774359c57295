"""The library as a notebook or another tool embeds it (README "The library"): the README's own
example, accounts and plans sent to other processes, and inputs of Python's, numpy's and pandas'
types through the public functions."""
from __future__ import annotations

import copy
import pickle
import re
from concurrent.futures import ProcessPoolExecutor

import pytest

from rebalance_opt import Book, Planner, account_to_dict, load_account, plan_rebalance

from .conftest import ROOT


def _comparable(plan) -> dict:
    """A plan's JSON object without its timings (which differ between any two runs)."""
    d = plan.to_dict()
    d["solver"] = {k: v for k, v in d["solver"].items() if "seconds" not in k}
    return d


def test_the_readmes_library_example_runs_as_written(monkeypatch, capsys):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## The library\n", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(ROOT)  # its paths are relative to the repository
    exec(compile(code, "README.md (The library)", "exec"), {})
    out = capsys.readouterr().out
    assert "household-1" in out and "sell" in out


def _plan_in_worker(account):
    return _comparable(plan_rebalance(account, planner=Planner()))


def test_an_account_pickles_and_deep_copies_equal():
    """Its maps are read-only views (MappingProxyType), which pickle and deepcopy refused: a
    process pool or Dask could not take an account."""
    account = load_account(ROOT / "examples" / "household.toml")
    account.symbols, account.invested_value  # cached views are not sent along, but rebuilt
    for other in (pickle.loads(pickle.dumps(account)), copy.deepcopy(account)):
        assert other == account and account_to_dict(other) == account_to_dict(account)
        assert other.source == account.source and other.symbols == account.symbols
        with pytest.raises(TypeError):
            other.prices["VTI"] = 1.0  # still read-only
    assert pickle.loads(pickle.dumps(Book(account))).account == account


def test_accounts_planned_in_a_process_pool_plan_as_in_this_process():
    accounts = [load_account(ROOT / "examples" / f"{name}.toml") for name in ("household", "wash_sale")]
    expected = [_comparable(Planner().plan(a)) for a in accounts]
    with ProcessPoolExecutor(2) as pool:
        assert list(pool.map(_plan_in_worker, accounts)) == expected
