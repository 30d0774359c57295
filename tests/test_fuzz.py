"""Hostile and odd account files through the real CLI entry point (SPEC sections 1-3).

Every case must end in exactly one of: a plan that meets every hard constraint (checked by
``tests.test_properties.check_plan``, which shares no code with the engine), exit 2 naming the key
path, or exit 3 with a reason. Never exit 1, never a traceback.
"""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rebalance_opt import account_from_dict, account_to_dict
from rebalance_opt.cli import main
from tests.test_properties import accounts, check_plan

FUZZ = settings(max_examples=max(40, settings.default.max_examples), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

WEIGHT_TOLERANCE = 1e-6  # weights after a plan are exact to this, at any account size (README)

WEIRD = st.one_of(
    st.just(math.nan), st.just(math.inf), st.just(-math.inf), st.just(-1.0), st.just(1e308), st.just(0),
    st.just("12"), st.just(""), st.just(True), st.just([1, 2]), st.just({"x": 1}), st.just("=CMD()"),
    st.just("2099-01-01"), st.just("not-a-date"), st.text(max_size=5),
)
SYMBOLS = st.sampled_from(["=CMD()", "+1", "@SUM", "ÅÄÖ", "日本", "a b", "x" * 300, "VTI", "CASH"])


def run(capsys, path, *extra):
    with pytest.raises(SystemExit) as e:
        main(["rebalance", "generate", str(path), "--json", "--dry-run", *extra])
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def assert_outcome(d, code, out, err):
    assert code in (0, 2, 3), (code, err)
    assert "Traceback" not in err
    obj = json.loads(out)
    if code == 0:
        check_plan(filled(d), obj)
    else:
        assert obj["error"]["message"]
        if code == 2:
            assert obj["error"]["file"] or obj["error"]["path"]


def filled(d: dict) -> dict:
    """The account file with its defaults filled in, as the independent check expects."""
    return account_to_dict(account_from_dict(d))


def write(tmp_path, d, kind):
    p = tmp_path / f"acct.{kind}"
    if kind == "json":
        p.write_text(json.dumps(d, allow_nan=True))
    else:
        p.write_text(tomli_w.dumps(_toml_safe(d)))
    return p


def _toml_safe(x):
    if isinstance(x, dict):
        return {str(k): _toml_safe(v) for k, v in x.items() if v is not None}
    if isinstance(x, list):
        return [_toml_safe(v) for v in x if v is not None]
    return x


@st.composite
def mutations(draw):
    """A list of (path, action, value): delete a key, set a weird value, or add an unknown key."""
    return draw(st.lists(st.tuples(
        st.sampled_from([("account", "cash"), ("account", "as_of"), ("account", "id"), ("tax", "short_term_rate"),
                         ("tax", "realized_long_term"), ("targets",), ("prices",), ("lots",), ("policy", "band"),
                         ("policy", "max_tax"), ("policy", "withdrawal"), ("policy", "no_buy"), ("classes",),
                         ("policy", "wash_sale_days"), ("tax",), ("policy",), ("trades",), ("bands",)]),
        st.sampled_from(["delete", "weird", "unknown"]), WEIRD), min_size=1, max_size=3))


def apply(d, muts):
    d = copy.deepcopy(d)
    for path, action, value in muts:
        value = copy.deepcopy(value)  # strategies share their example objects: never mutate them
        parent = d
        for k in path[:-1]:
            parent = parent.setdefault(k, {})
        key = path[-1]
        if action == "delete":
            parent.pop(key, None)
        elif action == "weird":
            if isinstance(parent.get(key), dict) and parent[key]:
                inner = next(iter(parent[key]))
                parent[key][inner] = value
            elif isinstance(parent.get(key), list) and parent[key] and isinstance(parent[key][0], dict):
                row = parent[key][0]
                row[next(iter(row))] = value
            else:
                parent[key] = value
        else:
            target = parent.get(key) if isinstance(parent.get(key), dict) else parent
            target["surprise_key"] = 1
    return d


@FUZZ
@given(d=accounts(), muts=mutations(), kind=st.sampled_from(["toml", "json"]))
def test_broken_files_exit_2_or_plan_never_crash(tmp_path_factory, capsys, d, muts, kind):
    broken = apply(d, muts)
    try:
        path = write(tmp_path_factory.mktemp("f"), broken, kind)
    except (TypeError, ValueError):  # a value TOML cannot even write (e.g. a nested None)
        return
    code, out, err = run(capsys, path)
    assert_outcome(broken, code, out, err)


@FUZZ
@given(d=accounts(), kind=st.sampled_from(["toml", "json"]))
def test_valid_files_plan_or_exit_3(tmp_path_factory, capsys, d, kind):
    code, out, err = run(capsys, write(tmp_path_factory.mktemp("f"), d, kind))
    assert code in (0, 3), err
    assert_outcome(d, code, out, err)


@FUZZ
@given(d=accounts(), sym=SYMBOLS)
def test_unicode_and_formula_like_symbols(tmp_path_factory, capsys, d, sym):
    d = copy.deepcopy(d)
    old = next(iter(d["prices"]))
    d["prices"][sym] = d["prices"].pop(old)
    d["classes"] = {(sym if s == old else s): c for s, c in d["classes"].items()}
    for lot in d["lots"]:
        if lot["symbol"] == old:
            lot["symbol"] = sym
    d["trades"] = [t for t in d["trades"] if t["symbol"] != old]
    d["policy"]["no_buy"] = [s for s in d["policy"].get("no_buy", []) if s != old]
    d["policy"]["no_sell"] = [s for s in d["policy"].get("no_sell", []) if s != old]
    code, out, err = run(capsys, write(tmp_path_factory.mktemp("f"), d, "json"))
    if sym == "CASH":
        assert code == 2 and "CASH" in json.loads(out)["error"]["message"]
    else:
        assert_outcome(d, code, out, err)


def base(n_lots=1, cash=1_000.0, price=100.0, basis=50.0):
    return {
        "account": {"id": "n", "cash": cash, "as_of": "2026-11-24"},
        "tax": {"short_term_rate": 0.37, "long_term_rate": 0.2},
        "targets": {"A": 0.6, "B": 0.4}, "classes": {"X": "A", "Y": "B"},
        "prices": {"X": price, "Y": price * 3.7},
        "lots": [{"id": f"L{i}", "symbol": "X", "quantity": 10 + i % 7, "cost_basis": basis * (0.5 + (i % 10) / 10),
                  "acquired": "2020-01-02" if i % 2 else "2026-06-01"} for i in range(n_lots)],
        "trades": [], "policy": {},
    }


@pytest.mark.parametrize("price", [0.0001, 0.37, 1e3, 1e6])
@pytest.mark.parametrize("cash", [100.0, 1e5, 1e10])
@pytest.mark.parametrize("fractional", [False, True])
def test_numerical_range_prices_and_account_sizes(tmp_path, capsys, price, cash, fractional):
    d = base(n_lots=3, cash=cash, price=price, basis=price * 0.8)
    d["lots"][0]["quantity"] = max(1.0, round(cash / price / 2))  # invested about as much as cash
    d["policy"].update(fractional=fractional, tax_weight=0.0, band=0.0)  # no reason to stop short of target
    code, out, err = run(capsys, write(tmp_path, d, "json"))
    assert code == 0, err
    plan = json.loads(out)
    check_plan(filled(d), plan)
    if fractional:  # with fractions the plan lands on target: solver accuracy + a millionth of a share
        assert max(abs(v) for v in plan["drift_after"].values()) < WEIGHT_TOLERANCE + 1e-6 * price / plan["value"]


@pytest.mark.parametrize("case", ["basis0", "target0", "single_asset", "all_cash", "zero_cash", "no_lots",
                                  "one_lot", "unbuyable_class"])
def test_edge_accounts(tmp_path, capsys, case):
    d = base(n_lots=4)
    if case == "basis0":
        for lot in d["lots"]:
            lot["cost_basis"] = 0.0
    elif case == "target0":
        d["targets"] = {"A": 0.0, "B": 0.9}
    elif case == "single_asset":
        d["targets"] = {"A": 1.0}
        d["classes"] = {"X": "A"}
        d["prices"] = {"X": 100.0}
    elif case == "all_cash":
        d["lots"] = []
        d["account"]["cash"] = 50_000.0
    elif case == "zero_cash":
        d["account"]["cash"] = 0.0
    elif case == "no_lots":
        d["lots"] = []
    elif case == "one_lot":
        d["lots"] = d["lots"][:1]
    elif case == "unbuyable_class":
        d["policy"]["no_buy"] = ["Y"]
    code, out, err = run(capsys, write(tmp_path, d, "toml"))
    assert code == 0, err
    check_plan(filled(d), json.loads(out))


def test_ten_thousand_lots(tmp_path, capsys):
    d = base(n_lots=10_000, cash=5_000.0)
    code, out, err = run(capsys, write(tmp_path, d, "json"))
    assert code == 0, err
    check_plan(filled(d), json.loads(out))


@pytest.mark.parametrize("mutate, path", [
    (lambda d: d["lots"].append(dict(d["lots"][0])), "lots[1].id"),
    (lambda d: d["targets"].update(A=0.7), "targets"),
    (lambda d: d["lots"][0].update(acquired="2030-01-01"), "lots[0].acquired"),
    (lambda d: d["account"].update(cash=math.nan), "account.cash"),
    (lambda d: d["prices"].update(X=math.inf), "prices.X"),
    (lambda d: d["lots"][0].update(quantity=1e400), "lots[0].quantity"),
])
def test_specific_broken_values_name_their_key(tmp_path, capsys, mutate, path):
    d = base(n_lots=1)
    mutate(d)
    code, out, _ = run(capsys, write(tmp_path, d, "json"))
    assert code == 2 and json.loads(out)["error"]["path"] == path


def test_a_withdrawal_of_a_cent_split_below_solver_noise_is_still_raised(tmp_path, capsys):
    # Found by the thorough fuzz run: the solver spread a $0.01 sale over three funds, each part
    # below the noise threshold, and the rounded plan kept no sale at all.
    d = json.loads((Path(__file__).parent / "data" / "cent_withdrawal.json").read_text())
    code, out, err = run(capsys, write(tmp_path, d, "json"))
    assert code == 0, err
    plan = json.loads(out)
    check_plan(filled(d), plan)
    assert plan["cash_after"] >= 0.01


@pytest.mark.parametrize("mutate, path", [
    (lambda d: d["account"].update(cash=1e308), "account.cash"),
    (lambda d: d["prices"].update(X=1e300), "prices.X"),
    (lambda d: d["lots"][0].update(quantity=1e200), "lots[0].quantity"),
    (lambda d: d["lots"][0].update(cost_basis=1e300), "lots[0].cost_basis"),  # was blamed on quantity
    (lambda d: d["policy"].update(withdrawal=1e16), "policy.withdrawal"),
])
def test_amounts_beyond_double_precision_cents_are_input_errors(tmp_path, capsys, mutate, path):
    d = base(n_lots=1)
    mutate(d)
    code, out, err = run(capsys, write(tmp_path, d, "toml"))
    assert code == 2, err
    assert json.loads(out)["error"]["path"] == path
