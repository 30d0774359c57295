"""The fast paths of loading an account give what the per-item code gives: the same account, or
the same first error (type, message, path, file and value).

``account_file._plain_lots`` reads ``[[lots]]`` rows a column at a time instead of validating each
as a ``LotRow``; ``account._plain_lots_valid`` checks the lots a column at a time instead of
``validate``'s per-lot loop; ``account_file.json_object`` builds a JSON object in C. Each falls back
to the per-item code on anything it does not pass, so these tests corrupt one field of one lot (or
two lots, or a lot and something else) and compare with the per-item code alone.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
from datetime import date, datetime

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rebalance_opt.account as account_module
import rebalance_opt.account_file as account_file
from benchmarks import synth
from rebalance_opt import InputError
from rebalance_opt.account import Lot


def _outcome(build):
    """What ``build()`` gives: the account (its lots' reprs too, so a 3 is not taken for a 3.0) or
    the error's type and every field of it."""
    try:
        account = build()
    except Exception as exc:  # noqa: BLE001 (any exception must be the same one)
        fields = (exc.message, exc.path, exc.file, exc.value, exc.has_value) if isinstance(exc, InputError) else ()
        return "error", type(exc), str(exc), repr(fields)
    return "account", account, repr(account.lots)


def _slow_and_fast(monkeypatch, build):
    fast = _outcome(build)
    with monkeypatch.context() as m:
        m.setattr(account_file, "_plain_lots", lambda rows: None)
        m.setattr(account_module, "_plain_lots_valid", lambda a: False)
        slow = _outcome(build)
    return slow, fast


def _book(seed: int = 5) -> dict:
    """A household account as a JSON file gives it (synth's symbols may be ``np.str_``)."""
    book = json.loads(json.dumps(synth.household(seed), default=str))
    assert len(book["lots"]) >= 4
    return book


def _from_dict(book):
    return lambda: account_file.account_from_dict(copy.deepcopy(book), source="acct.json")


BAD_VALUES = [
    None, True, False, 0, 0.0, -0.0, -1, -1.0, 1, 3, 2 ** 53, 2 ** 53 + 1, 10 ** 30, 10 ** 400, 1e308, math.inf,
    -math.inf, math.nan, np.float64(2.0), np.int64(3), "", "1", "VTI", "x\x00y", "\ud800", "é", [1], {"a": 1},
    "2020-01-01", "2020-02-30", "20200101", "2020-W01-2", "1799-12-31", "2999-12-31", "3000-01-01", "2099-01-01",
    " 2020-01-01", "2020-01-01\n2020-01-02", date(2020, 1, 1), date(1700, 1, 1), datetime(2020, 1, 1),
]


@pytest.mark.parametrize("key", ["id", "symbol", "quantity", "cost_basis", "acquired"])
@pytest.mark.parametrize("value", BAD_VALUES, ids=repr)
def test_a_changed_field_of_one_lot_gives_the_per_item_result(monkeypatch, key, value):
    book = _book()
    book["lots"][2][key] = value
    slow, fast = _slow_and_fast(monkeypatch, _from_dict(book))
    assert fast == slow


@pytest.mark.parametrize("change", [
    lambda lots: lots[1].pop("cost_basis"),
    lambda lots: lots[1].update(extra=1),
    lambda lots: lots[1].update(acquired=lots[1].pop("acquired")),  # the same keys in another order
    lambda lots: lots.__setitem__(1, [1, 2, 3, 4, 5]),
    lambda lots: lots.__setitem__(1, dict(lots[1], symbol="NOPE")),  # unpriced
    lambda lots: lots.__setitem__(3, dict(lots[3], id=lots[0]["id"])),  # a duplicate id
    lambda lots: lots.__setitem__(1, dict(lots[1], acquired="2026-12-31")),  # after as_of
    lambda lots: lots.__setitem__(1, dict(lots[1], quantity=1e14)),  # quantity × price too large
    lambda lots: lots.__setitem__(1, dict(lots[1], cost_basis=1e14, quantity=100.0)),
    lambda lots: lots.append(lots[0]),
    lambda lots: lots.clear(),
], ids=range(11))
@pytest.mark.parametrize("later", [None, "unpriced", "quantity", "price"])
def test_a_changed_lot_and_a_later_error_give_the_per_item_first_error(monkeypatch, change, later):
    book = _book()
    change(book["lots"])
    if later == "unpriced" and book["lots"]:
        book["lots"][-1]["symbol"] = "NOPE"
    elif later == "quantity" and book["lots"]:
        book["lots"][-1]["quantity"] = -1.0
    elif later == "price":
        book["prices"][next(iter(book["prices"]))] = -5.0
    slow, fast = _slow_and_fast(monkeypatch, _from_dict(book))
    assert fast == slow


def test_lots_with_lots_file_give_the_per_item_error(monkeypatch, tmp_path):
    book = _book()
    book["lots_file"] = "lots.csv"
    slow, fast = _slow_and_fast(monkeypatch, _from_dict(book))
    assert fast == slow and fast[0] == "error" and "not both" in fast[2]


LOT_VALUES = st.one_of(st.sampled_from(BAD_VALUES), st.floats(), st.integers(), st.text(max_size=4),
                       st.dates(), st.booleans(), st.none())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 50), which=st.integers(0, 10 ** 6), key=st.sampled_from(list(Lot.__dataclass_fields__)),
       value=LOT_VALUES, toml=st.booleans())
def test_any_one_changed_lot_value_gives_the_per_item_result(monkeypatch, seed, which, key, value, toml):
    book = json.loads(json.dumps(synth.household(seed), default=str))
    if not book["lots"]:
        return
    if toml:  # TOML gives dates as dates
        for lot in book["lots"]:
            lot["acquired"] = date.fromisoformat(lot["acquired"])
    book["lots"][which % len(book["lots"])][key] = value
    slow, fast = _slow_and_fast(monkeypatch, _from_dict(book))
    assert fast == slow


@pytest.mark.parametrize("seed", range(30))
def test_valid_accounts_read_the_same_and_take_the_fast_paths(monkeypatch, seed):
    book = json.loads(json.dumps(synth.household(seed), default=str))
    if seed % 2:  # whole numbers as ints, dates as TOML dates
        for lot in book["lots"]:
            lot["quantity"], lot["acquired"] = int(lot["quantity"]) + 1, date.fromisoformat(lot["acquired"])
    slow, fast = _slow_and_fast(monkeypatch, _from_dict(book))
    assert fast == slow and fast[0] == "account"
    if book["lots"]:
        assert account_file._plain_lots(book["lots"]) == list(fast[1].lots)
        assert account_module._plain_lots_valid(fast[1])


# Accounts built or changed in Python reach validate's per-lot rules with any type of value.
PYTHON_VALUES = BAD_VALUES + [np.float32(1.5), np.bool_(True), datetime(2020, 1, 1).date(), 7, 1e15, 1e14]


@pytest.mark.parametrize("key", ["id", "symbol", "quantity", "cost_basis", "acquired"])
@pytest.mark.parametrize("value", PYTHON_VALUES, ids=repr)
def test_a_lot_changed_in_python_gives_the_per_item_error(monkeypatch, key, value):
    account = account_file.account_from_dict(_book(), source="acct.json")
    lots = list(account.lots)
    lots[2] = dataclasses.replace(lots[2], **{key: value})
    slow, fast = _slow_and_fast(monkeypatch, lambda: account.replace(lots=lots))
    assert fast == slow


def _json_object_per_pair(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise account_file.DuplicateJSONKey(key)
        out[key] = value
    return out


@pytest.mark.parametrize("pairs", [
    [], [("a", 1)], [("a", 1), ("b", 2)], [("a", 1), ("a", 2)], [("b", 1), ("a", 1), ("a", 2), ("b", 2)],
    [("a", 1), ("b", 2), ("b", 3), ("a", 4)], [("x", 1), ("y", 2), ("x", 3), ("y", 4), ("x", 5)],
])
def test_json_object_names_the_first_key_given_twice(pairs):
    expected = _outcome_of(_json_object_per_pair, pairs)
    assert _outcome_of(account_file.json_object, pairs) == expected


def _outcome_of(f, pairs):
    try:
        return "dict", list(f(list(pairs)).items())
    except account_file.DuplicateJSONKey as exc:
        return "duplicate", str(exc)


def test_a_key_given_twice_in_a_lot_of_a_json_file_is_named(tmp_path):
    book = _book()
    text = json.dumps(book).replace('"quantity":', '"cost_basis": 1.0, "quantity":', 1)
    (tmp_path / "a.json").write_text(text)
    with pytest.raises(InputError) as e:
        account_file.load_account(tmp_path / "a.json")
    assert (e.value.message, e.value.value) == ("invalid JSON: a key is given twice", "cost_basis")
