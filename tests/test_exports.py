"""Basket files: csv read back with pandas, FIX parsed back with simplefix, json, empty baskets,
the formula-injection guard, money to the cent, exact share quantities, atomic writes."""
from __future__ import annotations

import copy
import csv
import io
import json
import re
from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
import simplefix
from hypothesis import given, strategies as st

from rebalance_opt import InputError, account_from_dict, plan_rebalance
from rebalance_opt.exports import (CSV_COLUMNS, FORMULA_LEADS, cents, check_destination, check_exportable, guard_cell,
                                   is_utf8, quantity_text, render_basket, resolve_format, stage_basket, write_basket)

CREATED = datetime(2026, 11, 24, 15, 30, 0, 123000, tzinfo=timezone.utc)

# The seed example: US_STOCK overweight, so the plan sells VTI lots and buys VXUS and BND.
SEED = {
    "account": {"id": "household-1", "cash": 10000.0, "as_of": "2026-11-24"},
    "tax": {"short_term_rate": 0.37, "long_term_rate": 0.20},
    "targets": {"US_STOCK": 0.55, "INTL_STOCK": 0.15, "US_BOND": 0.30},
    "classes": {"VTI": "US_STOCK", "VXUS": "INTL_STOCK", "BND": "US_BOND"},
    "prices": {"VTI": 281.40, "VXUS": 64.10, "BND": 72.35},
    "lots": [
        {"id": "L1", "symbol": "VTI", "quantity": 80, "cost_basis": 190.25, "acquired": "2021-06-01"},
        {"id": "L1b", "symbol": "VTI", "quantity": 40, "cost_basis": 150.0, "acquired": "2020-06-01"},
        {"id": "L2", "symbol": "VXUS", "quantity": 50, "cost_basis": 70, "acquired": "2021-06-01"},
    ],
    "policy": {},
}


def seed(account_id: str = "household-1", **policy) -> dict:
    d = copy.deepcopy(SEED)
    d["account"]["id"] = account_id
    d["policy"].update(policy)
    return d


def plan_of(d: dict):
    return plan_rebalance(account_from_dict(d))


@pytest.fixture(scope="module")
def plan():
    return plan_of(seed())


@pytest.fixture(scope="module")
def fractional_plan():
    return plan_of(seed("frac-1", fractional=True))


@pytest.fixture(scope="module")
def empty_plan():
    d = seed("even")
    d["targets"] = {"VTI": 0.5, "BND": 0.5}
    d["classes"] = {}
    d["account"]["cash"] = 0.0
    d["prices"] = {"VTI": 100.0, "BND": 100.0}
    d["lots"] = [{"id": "A", "symbol": "VTI", "quantity": 10, "cost_basis": 50, "acquired": "2020-01-01"},
                 {"id": "B", "symbol": "BND", "quantity": 10, "cost_basis": 50, "acquired": "2020-01-01"}]
    p = plan_of(d)
    assert p.orders == ()
    return p


def read_csv(data: bytes) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(data), keep_default_na=False, dtype={"lots": str})


# --- csv ----------------------------------------------------------------------------------------
def test_csv_round_trips_through_pandas(plan):
    df = read_csv(render_basket([plan], "csv"))
    assert tuple(df.columns) == CSV_COLUMNS
    assert len(df) == len(plan.orders) and len(plan.sells) >= 1 and len(plan.buys) >= 1
    sides = list(df["side"])
    assert sides == sorted(sides, key=lambda s: s != "sell"), "sells come before buys"
    for col in ("quantity", "est_price", "est_notional"):
        assert pd.api.types.is_numeric_dtype(df[col]), f"{col} must read back as numbers"
    by_symbol = {o.symbol: o for o in plan.orders}
    for row in df.itertuples():
        o = by_symbol[row.symbol]
        assert (row.side, row.quantity, row.order_type) == (o.side, o.quantity, "market")
        assert row.est_price == pytest.approx(round(o.price, 2), abs=1e-9)
        assert row.est_notional == float(cents(o.notional))
        assert (row.account, row.currency, row.asset_class) == ("household-1", "USD", o.asset_class)
        expected_lots = ";".join(f"{s.lot}:{quantity_text(s.quantity)}" for s in o.lots)
        assert row.lots == expected_lots
        if o.side == "sell":
            relieved = {k: float(v) for k, v in (x.split(":") for x in row.lots.split(";"))}
            assert sum(relieved.values()) == o.quantity


def test_csv_money_is_rounded_to_the_cent(plan):
    text = render_basket([plan], "csv").decode()
    for row in csv.DictReader(io.StringIO(text)):
        for col in ("est_price", "est_notional"):
            assert re.fullmatch(r"\d+\.\d\d", row[col]), (col, row[col])
        assert re.fullmatch(r"\d+(\.\d+)?", row["quantity"]) and "e" not in row["quantity"]


def test_a_sub_dollar_price_keeps_four_decimals_and_a_dollar_price_two():
    # a $0.0042 share was written est_price 0.00 (rounded to the cent like an amount)
    d = seed("penny-1")
    d["prices"]["VXUS"] = 0.00425
    d["lots"][2]["cost_basis"] = 0.005
    d["lots"][2]["quantity"] = 1_000_000
    p = plan_of(d)
    rows = csv.DictReader(io.StringIO(render_basket([p], "csv").decode()))
    prices = {r["symbol"]: r["est_price"] for r in rows}
    assert prices["VXUS"] == "0.0043" and prices["BND"] == "72.35"  # 0.00425 half-up to $0.0001
    doc = json.loads(render_basket([p], "json"))
    assert {o["symbol"]: o["price"] for o in doc["accounts"][0]["orders"]}["VXUS"] == 0.0043


def test_fractional_quantities_keep_every_digit(fractional_plan):
    assert any(not float(o.quantity).is_integer() for o in fractional_plan.orders)
    df = read_csv(render_basket([fractional_plan], "csv"))
    assert sorted(df["quantity"]) == sorted(o.quantity for o in fractional_plan.orders)
    doc = json.loads(render_basket([fractional_plan], "json"))
    assert sorted(o["quantity"] for o in doc["accounts"][0]["orders"]) == sorted(
        o.quantity for o in fractional_plan.orders)


def test_min_trade_and_whole_shares_hold_in_every_export():
    p = plan_of(seed("mt-1", min_trade=2000.0))
    assert p.orders and all(o.notional >= 2000.0 for o in p.orders)
    df = read_csv(render_basket([p], "csv"))
    assert (df["est_notional"] >= 2000.0).all() and (df["quantity"] == df["quantity"].round()).all()
    fix = parse_fix(render_basket([p], "fix", CREATED))
    assert all(float(o[38]).is_integer() for o in fix_orders(fix))


def test_formula_injection_is_guarded_but_numbers_stay_numbers(plan):
    evil = "=HYPERLINK(\"http://x\",\"y\")"
    orders = list(plan.orders)
    orders[0] = replace(orders[0], symbol=evil, asset_class="+CLASS",
                        lots=tuple(replace(s, lot="@SUM(A1)") for s in orders[0].lots))
    orders[1] = replace(orders[1], symbol="-2+3", asset_class="\tTAB")
    bad = replace(plan, account="\rCR", currency="=USD", orders=tuple(orders))
    rows = list(csv.DictReader(io.StringIO(render_basket([bad], "csv").decode())))
    for row in rows:
        for col in ("symbol", "side", "order_type", "asset_class", "lots", "account", "currency"):
            assert not row[col].startswith(FORMULA_LEADS), (col, row[col])
    assert rows[0]["symbol"] == "'" + evil and rows[0]["lots"].startswith("'@SUM(A1):")
    assert rows[1]["symbol"] == "'-2+3" and rows[1]["asset_class"] == "'\tTAB"
    assert rows[0]["account"] == "'\rCR" and rows[0]["currency"] == "'=USD"
    df = read_csv(render_basket([bad], "csv"))
    assert pd.api.types.is_numeric_dtype(df["quantity"]) and pd.api.types.is_numeric_dtype(df["est_notional"])


@given(st.text())
def test_guard_cell_property(text):
    guarded = guard_cell(text)
    assert not guarded.startswith(FORMULA_LEADS)
    if text.startswith(FORMULA_LEADS):
        assert guarded == "'" + text
    else:
        assert guarded == text


@given(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False))
def test_cents_is_within_half_a_cent(x):
    c = cents(x)
    assert c.as_tuple().exponent == -2
    assert abs(Decimal(repr(x)) - c) <= Decimal("0.005")


def test_rounding_and_quantity_text_examples():
    assert str(cents(2.675)) == "2.68" and str(cents(7879.199999999999)) == "7879.20"
    assert str(cents(-0.125)) == "-0.13"


@pytest.mark.parametrize("x", [-0.004, -1e-9, -0.0])
def test_an_amount_that_rounds_to_zero_is_written_without_a_minus_sign(x):
    # a lot sold at a loss under half a cent was written "gain": -0.0, "tax": -0.0 in a json basket
    assert str(cents(x)) == "0.00" and json.dumps(float(cents(x))) == "0.0"
    assert quantity_text(28.0) == "28" and quantity_text(1e-05) == "0.00001"
    assert quantity_text(18.75) == "18.75" and quantity_text(0.1234567891234) == "0.1234567891234"


# --- json ---------------------------------------------------------------------------------------
def test_json_basket_holds_the_orders_of_spec_section_3(plan):
    doc = json.loads(render_basket([plan], "json", CREATED))
    assert doc["basket"] == "rebalance-opt" and doc["order_count"] == len(plan.orders)
    assert doc["created"] == "2026-11-24T15:30:00.123000Z"
    (acct,) = doc["accounts"]
    assert (acct["account"], acct["as_of"], acct["currency"], acct["reason"]) == (
        plan.account, plan.as_of, plan.currency, plan.reason)
    assert [o["side"] for o in acct["orders"]] == sorted((o["side"] for o in acct["orders"]),
                                                          key=lambda s: s != "sell")
    by_symbol = {o.symbol: o for o in plan.orders}
    for o in acct["orders"]:
        assert {"symbol", "side", "quantity", "price", "notional", "lots"} <= set(o)
        src = by_symbol[o["symbol"]]
        assert o["quantity"] == src.quantity and o["notional"] == float(cents(src.notional))
        assert [(s["lot"], s["quantity"], s["term"]) for s in o["lots"]] == [
            (s.lot, s.quantity, s.term) for s in src.lots]
        for s, lot in zip(o["lots"], src.lots):
            assert set(s) == {"lot", "quantity", "gain", "term", "tax"}
            assert s["gain"] == float(cents(lot.gain)) and s["tax"] == float(cents(lot.tax))


@pytest.mark.parametrize("text, utf8", [
    ("orders.csv", True), ("", True), ("naïve-日本-€.csv", True), ("\U0001F600", True),
    ("orders-\udcff.csv", False),  # b"orders-\xff.csv" as Python decodes a latin-1 file name or argument
    ("\ud800", False),             # a lone high surrogate
])
def test_one_utf8_check_serves_out_paths_and_log_account_filters(text, utf8):
    # `check_destination` (--out) and `log --account` each had their own copy of this check
    assert is_utf8(text) is utf8
    if not utf8:
        with pytest.raises(InputError, match="--out.*not UTF-8"):
            check_destination(Path(text))


def test_an_out_directory_that_refuses_new_files_fails_before_solving(tmp_path, monkeypatch):
    """Permission bits are not the whole story (root writes anywhere by them, yet not in /proc; a
    read-only mount): ``check_destination`` creates and removes a file where the basket would be
    staged. It used to pass, and the basket failed after the solve as an unexpected error (exit 1)."""
    import errno

    from rebalance_opt import exports
    check_destination(tmp_path / "basket.csv")
    assert list(tmp_path.iterdir()) == []  # the probe file is gone

    def refuse(**kwargs):
        raise OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(exports.tempfile, "mkstemp", refuse)
    with pytest.raises(InputError, match="--out: cannot create a file in its directory: Read-only file system") as exc:
        check_destination(tmp_path / "basket.csv")
    assert exc.value.exit_code == 2


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_generate_into_proc_is_an_input_error_and_logs_nothing(tmp_path):
    import subprocess
    import sys
    root = Path(__file__).resolve().parents[1]
    log = tmp_path / "audit.sqlite"
    done = subprocess.run([sys.executable, str(root / "cli.py"), "rebalance", "generate",
                           str(root / "examples" / "household.toml"), "--out", "/proc/basket.csv", "--log", str(log)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "--out: cannot create a file in its directory" in done.stderr and "Traceback" not in done.stderr
    assert not log.exists()


# --- FIX ----------------------------------------------------------------------------------------
REQUIRED_HEADER = (8, 9, 35, 49, 56, 34, 52)
REQUIRED_BODY = (66, 394, 68, 73)
REQUIRED_PER_ORDER = (11, 67, 55, 54, 38, 40, 1)


def fix_fields(raw: bytes) -> list[tuple[int, bytes]]:
    assert raw.endswith(b"\x01")
    return [(int(t), v) for t, v in (f.split(b"=", 1) for f in raw[:-1].split(b"\x01"))]


def parse_fix(raw: bytes) -> simplefix.FixMessage:
    """Parse with the library and check checksum and body length independently of it."""
    parser = simplefix.FixParser()
    parser.append_buffer(raw)
    msg = parser.get_message()
    assert msg is not None and parser.get_message() is None, "exactly one message"
    fields = fix_fields(raw)
    assert [t for t, _ in fields[:3]] == [8, 9, 35] and fields[-1][0] == 10
    body_start = raw.index(b"\x01", raw.index(b"\x019=") + 1) + 1
    trailer = raw.rindex(b"\x0110=") + 1
    assert int(msg.get(9)) == trailer - body_start, "BodyLength"
    assert msg.get(10) == b"%03d" % (sum(raw[:trailer]) % 256), "CheckSum"
    return msg


def fix_orders(msg: simplefix.FixMessage) -> list[dict[int, bytes]]:
    n = int(msg.get(73))
    return [{tag: msg.get(tag, i) for tag in (11, 67, 1, 55, 54, 60, 38, 40, 15)} for i in range(1, n + 1)]


def test_fix_new_order_list_parses_back_with_every_required_field(plan):
    raw = render_basket([plan], "fix", CREATED)
    msg = parse_fix(raw)
    for tag in REQUIRED_HEADER + REQUIRED_BODY:
        assert msg.get(tag) is not None, tag
    assert msg.get(8) == b"FIX.4.4" and msg.get(35) == b"E" and msg.get(394) == b"3"
    assert msg.get(52) == b"20261124-15:30:00.123"
    n = len(plan.orders)
    assert int(msg.get(68)) == int(msg.get(73)) == n
    tags = [t for t, _ in fix_fields(raw)]
    for tag in REQUIRED_PER_ORDER:
        assert tags.count(tag) == n, tag
    orders = fix_orders(msg)
    assert [int(o[67]) for o in orders] == list(range(1, n + 1))
    assert len({o[11] for o in orders}) == n, "ClOrdIDs are unique"
    assert all(o[11].startswith(msg.get(66)) for o in orders)
    got = sorted((o[55].decode(), {b"1": "buy", b"2": "sell"}[o[54]], float(o[38])) for o in orders)
    assert got == sorted((o.symbol, o.side, o.quantity) for o in plan.orders), "every order present"
    assert all(o[40] == b"1" and o[1] == b"household-1" and o[15] == b"USD" for o in orders)
    sides = [o[54] for o in orders]
    assert sides == sorted(sides, reverse=True), "sells (2) before buys (1)"
    # every group starts with its delimiter ClOrdID(11), fields in FIX 4.4's order
    group = tags[tags.index(73) + 1:-1]
    assert group == [11, 67, 1, 55, 54, 60, 38, 40, 15] * n
    assert all(o[60] == msg.get(52) == b"20261124-15:30:00.123" for o in orders)   # the basket's time


def test_fix_ids_differ_between_baskets_of_the_same_orders_written_in_the_same_second(plan):
    first = parse_fix(render_basket([plan], "fix", CREATED))
    again = parse_fix(render_basket([plan], "fix", CREATED.replace(microsecond=999_999)))
    assert first.get(66) != again.get(66)
    first_ids = {o[11] for o in fix_orders(first)}
    again_ids = {o[11] for o in fix_orders(again)}
    assert len(first_ids) == len(again_ids) == len(plan.orders) and not first_ids & again_ids
    # RB, the time to the second, 10 hex digits of the orders' sha256, 8 random hex digits
    pattern = re.compile(rb"RB20261124153000-([0-9A-F]{10})-[0-9A-F]{8}")
    digests = {pattern.fullmatch(m.get(66)).group(1) for m in (first, again)}
    assert len(digests) == 1, "the orders' digest stays the same for the same orders"
    assert all(o[11] == b"%s-%d" % (first.get(66), int(o[67])) for o in fix_orders(first))


def test_fix_fractional_quantity_is_exact_decimal(fractional_plan):
    orders = fix_orders(parse_fix(render_basket([fractional_plan], "fix", CREATED)))
    qty = sorted(o[38].decode() for o in orders)
    assert qty == sorted(quantity_text(o.quantity) for o in fractional_plan.orders)
    assert all("e" not in q.lower() for q in qty)


def test_one_basket_for_many_accounts(plan):
    other = plan_of(seed("household-2"))
    plans = [plan, other]
    df = read_csv(render_basket(plans, "csv"))
    assert set(df["account"]) == {"household-1", "household-2"}
    assert len(df) == len(plan.orders) + len(other.orders)
    n_sells = len(plan.sells) + len(other.sells)
    assert set(df["side"][:n_sells]) == {"sell"} and set(df["side"][n_sells:]) == {"buy"}
    # Each side keeps account order, then plan order (what a batch's per-plan rows must rebuild).
    assert list(df["account"]) == (["household-1"] * len(plan.sells) + ["household-2"] * len(other.sells)
                                   + ["household-1"] * (len(plan.orders) - len(plan.sells))
                                   + ["household-2"] * (len(other.orders) - len(other.sells)))
    assert list(df["symbol"][:len(plan.sells)]) == [o.symbol for o in plan.sells]
    msg = parse_fix(render_basket(plans, "fix", CREATED))
    assert int(msg.get(68)) == len(df)
    assert sorted(o[1].decode() for o in fix_orders(msg)) == sorted(df["account"])
    doc = json.loads(render_basket(plans, "json", CREATED))
    assert [a["account"] for a in doc["accounts"]] == ["household-1", "household-2"]


def test_fix_refuses_names_it_cannot_carry():
    with pytest.raises(InputError) as e:
        check_exportable("fix", [("prices.VT\x01I", "VT\x01I")], file="a.toml")
    assert e.value.path == "prices.VT\x01I" and e.value.file == "a.toml"
    check_exportable("csv", [("prices.VT\x01I", "VT\x01I")])  # csv quotes anything


# --- empty baskets ------------------------------------------------------------------------------
def test_empty_plan_writes_a_valid_empty_basket_in_every_format(tmp_path, empty_plan):
    csv_ = write_basket([empty_plan], tmp_path / "e.csv", "csv")
    df = read_csv((tmp_path / "e.csv").read_bytes())
    assert df.empty and tuple(df.columns) == CSV_COLUMNS
    assert csv_.empty and "empty basket" in csv_.summary()
    write_basket([empty_plan], tmp_path / "e.json", "json")
    doc = json.loads((tmp_path / "e.json").read_text())
    assert doc["order_count"] == 0 and doc["accounts"][0]["orders"] == []
    fix = write_basket([empty_plan], tmp_path / "e.fix", "fix")
    assert (tmp_path / "e.fix").read_bytes() == b"" and "no FIX message" in fix.summary()


# --- format choice and atomic writes ------------------------------------------------------------
@pytest.mark.parametrize("name,fmt,expected", [
    ("b.csv", None, "csv"), ("B.JSON", None, "json"), ("b.fix", None, "fix"),
    ("b.txt", "csv", "csv"), ("b.csv", "FIX", "fix"), ("b", "json", "json")])
def test_format_from_option_else_extension(name, fmt, expected):
    assert resolve_format(Path(name), fmt) == expected


@pytest.mark.parametrize("name,fmt", [("b.xlsx", None), ("b", None), ("b.csv", "xml")])
def test_unknown_format_is_an_input_error_naming_format(name, fmt):
    with pytest.raises(InputError) as e:
        resolve_format(Path(name), fmt)
    assert e.value.path == "--format" and e.value.exit_code == 2
    assert "got None" not in str(e.value)  # a name without an extension ("-", "b") said "(got None)"


def test_write_is_atomic_and_leaves_no_temporary_file(tmp_path, plan, monkeypatch):
    out = tmp_path / "b.csv"
    out.write_text("previous basket\n")
    import rebalance_opt.exports as exports

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(exports.os, "replace", boom)
    with pytest.raises(OSError):
        write_basket([plan], out, "csv")
    assert out.read_text() == "previous basket\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.csv"]
    monkeypatch.undo()
    staged = stage_basket([plan], out, "csv")
    assert out.read_text() == "previous basket\n", "staging does not touch the destination"
    staged.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.csv"]
    done = write_basket([plan], out, "csv")
    assert out.read_bytes() == render_basket([plan], "csv") and done.order_count == len(plan.orders)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.csv"]
