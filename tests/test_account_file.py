"""Every input error of SPEC section 1: exit 2, the file, the key path and the value named."""
from __future__ import annotations

import json

import pytest

from rebalance_opt import InputError, load_account
from tests.conftest import base_dict, cli


def write_json(tmp_path, d, name="acct.json"):
    p = tmp_path / name
    p.write_text(json.dumps(d))
    return p


def mutate(path_value):
    """Set a nested value in base_dict(): keys and list indexes, e.g. ("lots", 0, "quantity")."""
    *keys, value = path_value
    d = base_dict()
    target = d
    for k in keys[:-1]:
        target = target[k]
    if value is DELETE:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return d


DELETE = object()
CLASSES = ["US_STOCK", "INTL_STOCK", "US_BOND"]

CASES = [
    # (what to change, expected key path in the message)
    (("targets", "GOLD", 0.05), "targets.GOLD"),
    (("targets", "US_STOCK", 0.60), "targets"),  # sum 1.05 > 1
    (("lots", 1, "symbol", "QQQ"), "lots[1].symbol"),
    (("lots", 2, "id", "L1"), "lots[2].id"),
    (("account", "cash", -1.0), "account.cash"),
    (("account", "cash", "100"), "account.cash"),
    (("account", "as_of", "24/11/2026"), "account.as_of"),
    (("account", "as_of", "0001-01-05"), "account.as_of"),   # its wash-sale window overflowed
    (("account", "as_of", "9999-12-31"), "account.as_of"),   # a database sentinel
    (("lots", 0, "acquired", "1799-12-31"), "lots[0].acquired"),
    (("lots", 0, "acquired", "2020-W01-2"), "lots[0].acquired"),  # ISO week dates were read as days
    (("account", "as_of", "2026W481"), "account.as_of"),
    (("account", "idd", "x"), "account.idd"),
    (("account", "id", DELETE), "account.id"),
    (("prices", "VTI", 0), "prices.VTI"),
    (("prices", "VTI", -3.5), "prices.VTI"),
    (("lots", 0, "quantity", 0), "lots[0].quantity"),
    (("lots", 0, "cost_basis", -1), "lots[0].cost_basis"),
    (("lots", 0, "acquired", "2027-01-01"), "lots[0].acquired"),
    (("tax", "short_term_rate", 1.5), "tax.short_term_rate"),
    (("tax", "carryforward_long_term", -10), "tax.carryforward_long_term"),
    (("policy", "band", 2), "policy.band"),
    (("policy", "tax_weight", -0.1), "policy.tax_weight"),
    (("policy", "max_tax", -1), "policy.max_tax"),
    (("policy", "withdrawal", -5), "policy.withdrawal"),
    (("policy", "min_cash", -1), "policy.min_cash"),
    (("policy", "min_trade", -1), "policy.min_trade"),
    (("policy", "trade_cost_bps", -1), "policy.trade_cost_bps"),
    (("policy", "wash_sale_days", -1), "policy.wash_sale_days"),
    (("policy", "allow_sells", "yes"), "policy.allow_sells"),
    (("policy", "milp_rounding", "yes"), "policy.milp_rounding"),
    (("policy", "bnd", 0.03), "policy.bnd"),
    (("policy", "no_buy", ["VTII"]), "policy.no_buy"),
    (("bands", {"GOLD": 0.02}), "bands.GOLD"),
    (("classes", "VTI", "CASH"), "classes.VTI"),
    (("trades", [{"symbol": "VTI", "side": "hold", "quantity": 1, "price": 1, "date": "2026-11-01"}]),
     "trades[0].side"),
    (("trades", [{"symbol": "VTI", "side": "buy", "quantity": 1, "price": 1, "date": "2026-11-01",
                  "realized_gain": 5}]), "trades[0].realized_gain"),
    (("trades", [{"symbol": "VTI", "side": "sell", "quantity": 1, "price": 1, "date": "2026-12-01"}]),
     "trades[0].date"),
    (("tax", DELETE), "tax"),
    (("surprise", 1), "surprise"),
    # upper bounds where SPEC gives none (README: decisions), each just above it
    (("policy", "tax_weight", 10_000.5), "policy.tax_weight"),
    (("risk", {"classes": CLASSES, "covariance": [[0.04, 0, 0], [0, 0.02, 0], [0, 0, 100.5]]}),
     "risk.covariance[2][2]"),
    (("risk", {"classes": CLASSES, "covariance": [[0.04, -1e300, 0], [-1e300, 0.02, 0], [0, 0, 0.01]]}),
     "risk.covariance[0][1]"),
    (("risk", {"classes": CLASSES, "loadings": [[1.0], [1.0], [1.0]], "factor_covariance": [[100.5]]}),
     "risk.factor_covariance[0][0]"),
    (("risk", {"classes": CLASSES, "loadings": [[1.0], [1.0], [1.0]], "factor_covariance": [[0.04]],
               "specific_variance": [0.01, 1e300, 0.01]}), "risk.specific_variance[1]"),
    (("risk", {"classes": CLASSES, "loadings": [[1.0], [50.1], [1.0]], "factor_covariance": [[0.04]]}),
     "risk.loadings[1]"),  # 50.1² × 0.04 = 100.4
    (("risk", {"classes": CLASSES, "loadings": [[1e300], [1.0], [1.0]], "factor_covariance": [[0.04]]}),
     "risk.loadings[0]"),  # overflows to inf
]


@pytest.mark.parametrize("change, path", CASES, ids=[c[1] + "-" + str(i) for i, c in enumerate(CASES)])
def test_input_error_exits_2_naming_file_path_and_value(tmp_path, capsys, change, path):
    account = write_json(tmp_path, mutate(change))
    code, out, err = cli(capsys, "rebalance", "check", str(account), "--json")
    assert code == 2
    error = json.loads(out)["error"]
    assert error["path"] == path
    assert error["file"] == str(account)
    assert path in error["message"] and str(account) in error["message"]
    assert "input error" in err and "Traceback" not in err


def test_class_target_with_no_priced_symbol(tmp_path, capsys):
    d = base_dict()
    d["classes"]["GLD"] = "GOLD"
    d["targets"] = {"US_STOCK": 0.5, "GOLD": 0.05}
    code, out, _ = cli(capsys, "rebalance", "generate", str(write_json(tmp_path, d)), "--json")
    assert code == 2 and json.loads(out)["error"]["path"] == "targets.GOLD"


def test_error_message_shows_the_bad_value(tmp_path):
    with pytest.raises(InputError) as e:
        load_account(write_json(tmp_path, mutate(("prices", "VTI", -3.5))))
    assert "-3.5" in str(e.value)


def test_toml_nan_is_refused_but_inf_max_tax_is_accepted(tmp_path):
    text = (ROOT_TOML.replace("max_tax = inf", "max_tax = inf"))
    p = tmp_path / "a.toml"
    p.write_text(text)
    assert load_account(p).policy.max_tax == float("inf")
    p.write_text(text.replace("cash = 1000.0", "cash = nan"))
    with pytest.raises(InputError) as e:
        load_account(p)
    assert e.value.path == "account.cash"


def test_toml_syntax_error_names_the_file(tmp_path, capsys):
    p = tmp_path / "broken.toml"
    p.write_text("[account\nid = 1")
    code, out, err = cli(capsys, "rebalance", "check", str(p))
    assert code == 2 and "broken.toml" in err and "invalid TOML" in err and out == ""


def test_missing_file_and_unknown_extension(tmp_path, capsys):
    code, _, err = cli(capsys, "rebalance", "check", str(tmp_path / "none.toml"))
    assert code == 2 and "not found" in err
    other = tmp_path / "a.yaml"
    other.write_text("x: 1")
    code, _, err = cli(capsys, "rebalance", "check", str(other))
    assert code == 2 and ".yaml" in err


def test_lots_file_csv_is_read_relative_to_the_account(tmp_path):
    (tmp_path / "lots.csv").write_text("id,symbol,quantity,cost_basis,acquired\n"
                                       "A,VTI,10,50.5,2020-01-02\nB,BND,5,90,2024-03-04\n")
    p = tmp_path / "a.toml"
    p.write_text(ROOT_TOML.replace("[[lots]]\nid = \"L1\"\nsymbol = \"VTI\"\nquantity = 10\ncost_basis = 50.0\n"
                                   "acquired = 2020-01-02\n", "").replace("[account]", 'lots_file = "lots.csv"\n\n[account]'))
    account = load_account(p)
    assert [(l.id, l.quantity, l.cost_basis) for l in account.lots] == [("A", 10, 50.5), ("B", 5, 90)]


def test_lots_file_error_names_file_and_line(tmp_path, capsys):
    (tmp_path / "lots.csv").write_text("id,symbol,quantity,cost_basis,acquired\n"
                                       "A,VTI,10,50.5,2020-01-02\nB,BND,-5,90,2024-03-04\n")
    p = tmp_path / "a.toml"
    p.write_text(ROOT_TOML.replace("[[lots]]\nid = \"L1\"\nsymbol = \"VTI\"\nquantity = 10\ncost_basis = 50.0\n"
                                   "acquired = 2020-01-02\n", "").replace("[account]", 'lots_file = "lots.csv"\n\n[account]'))
    code, out, _ = cli(capsys, "rebalance", "check", str(p), "--json")
    error = json.loads(out)["error"]
    assert code == 2 and error["file"].endswith("lots.csv") and error["path"] == "line 3"
    assert "quantity" in error["message"]


def _with_lots_file(tmp_path, rows: str):
    """ROOT_TOML with its lots in lots.csv: the header, then ``rows`` from line 2."""
    (tmp_path / "lots.csv").write_text("id,symbol,quantity,cost_basis,acquired\n" + rows)
    p = tmp_path / "a.toml"
    p.write_text(ROOT_TOML.replace("[[lots]]\nid = \"L1\"\nsymbol = \"VTI\"\nquantity = 10\ncost_basis = 50.0\n"
                                   "acquired = 2020-01-02\n", "").replace("[account]", 'lots_file = "lots.csv"\n\n[account]'))
    return p


LOTS_FILE_CASES = [
    # (rows from line 2, the line named, the message, the value); each was reported as lots[i] of the
    # account file, or (extra cells) silently dropped
    ("A,VTI,10,50,2020-01-02\nB,BND,5,90,2021-01-04\nA,BND,1,90,2022-01-04\n", "line 4",
     "id: duplicate lot id (first at line 2)", "'A'"),
    ("A,VTI,10,50,2020-01-02\nB,QQQ,5,90,2021-01-04\n", "line 3", "symbol: has no price in [prices] of", "'QQQ'"),
    ("A,VTI,10,50,2020-01-02\nB,BND,5,90,2027-01-04\n", "line 3", "acquired: is after as_of (2026-11-24)",
     "'2027-01-04'"),
    ("A,VTI,10,50,2020-01-02\nB,BND,1e14,90,2021-01-04\n", "line 3", "quantity: is too large", "100000000000000.0"),
    ("A,VTI,10,50,2020-01-02\nB,BND,5,90,2021-01-04,7,x\n", "line 3", "has more cells than the header's 5",
     "['7', 'x']"),
    # a row with a quoted cell over two lines is named by the line it starts on (it was its last line)
    ('A,VTI,10,50,2020-01-02\n"B\nC",BND,5,90,2021-01-04,\n', "line 3", "has more cells than the header's 5", "['']"),
    ('A,VTI,10,50,2020-01-02\n"B\nC",BND,5,"9\n0",2021-01-04\nD,QQQ,1,1,2020-01-02\n', "line 3",
     "cost_basis: must be a number", "'9\\n0'"),
    ('A,VTI,10,50,2020-01-02\n"B\nC",BND,5,90,2021-01-04\n\nA,BND,1,90,2022-01-04\n', "line 6",
     "id: duplicate lot id (first at line 2)", "'A'"),
    # a row with fewer cells, a comment line (a lots_file has none): said "symbol: ... (got None)"
    ("A,VTI,10,50,2020-01-02\nB,BND,5\n", "line 3", "has fewer cells than the header's 5", "['B', 'BND', '5']"),
    ("# my lots\nA,VTI,10,50,2020-01-02\n", "line 2", "has fewer cells than the header's 5", "['# my lots']"),
]


@pytest.mark.parametrize("rows, line, message, value", LOTS_FILE_CASES)
def test_an_error_in_a_lots_file_names_that_file_and_line(tmp_path, capsys, rows, line, message, value):
    p = _with_lots_file(tmp_path, rows)
    code, out, _ = cli(capsys, "rebalance", "check", str(p), "--json")
    error = json.loads(out)["error"]
    assert code == 2 and error["file"] == str(tmp_path / "lots.csv") and error["path"] == line
    assert f"lots.csv, {line}: {message}" in error["message"] and f"(got {value})" in error["message"]



@pytest.mark.parametrize("cell", ["1_0", "١٠", "１０", "1e1_0", "\u00a010", "0x0a"])
def test_a_lots_file_number_is_a_plain_ascii_decimal(tmp_path, capsys, cell):
    # float() read 1_0 as 10, Arabic-Indic and fullwidth digits as numbers, and a no-break space
    # around one; validation now reports the cell as it reports 12x
    p = _with_lots_file(tmp_path, f"A,VTI,10,50,2020-01-02\nB,BND,{cell},90,2021-01-04\n")
    code, out, err = cli(capsys, "rebalance", "check", str(p), "--json")
    error = json.loads(out)["error"]
    assert code == 2 and error["file"] == str(tmp_path / "lots.csv") and error["path"] == "line 3"
    assert f"line 3: quantity: must be a number (got {cell!r})" in error["message"] and "Traceback" not in err


def test_ascii_spaces_around_lots_file_cells_and_header_names_are_not_part_of_them(tmp_path):
    # "L1, VTI, 10, 50, 2020-01-02" (a hand-written csv): the id went into baskets as " L1", and the
    # date was refused; the header "id, symbol, ..." was "columns must be id,symbol,..."
    p = _with_lots_file(tmp_path, "")
    (tmp_path / "lots.csv").write_text("id, symbol, quantity , cost_basis,\tacquired\n"
                                       " A , VTI, 10, 50.5, 2020-01-02\nB,\tBND ,5,90,2024-03-04 \n")
    lots = load_account(p).lots
    assert [(l.id, l.symbol, l.quantity, l.acquired.isoformat()) for l in lots] == [
        ("A", "VTI", 10, "2020-01-02"), ("B", "BND", 5, "2024-03-04")]
    (tmp_path / "lots.csv").write_text("id,symbol,quantity,cost_basis,acquired\n   ,VTI,10,50,2020-01-02\n")
    with pytest.raises(InputError, match="line 2"):  # an id of spaces alone is still no id
        load_account(p)


def test_well_formed_lots_file_numbers_are_read_as_before(tmp_path):
    from rebalance_opt.account_file import parse_number
    p = _with_lots_file(tmp_path, "A,VTI, 10 ,+5e1,2020-01-02\nB,BND,5.,.5,2021-01-04\nC,BND,1,-0,2021-01-04\n")
    assert [(l.quantity, l.cost_basis) for l in load_account(p).lots] == [(10, 50), (5, 0.5), (1, 0)]
    assert str(load_account(p).lots[2].cost_basis) == "0.0"  # -0 reads as 0
    p = _with_lots_file(tmp_path, "A,VTI,nan,50,2020-01-02\n")  # refused as before, as not finite
    with pytest.raises(InputError, match=r"quantity: must be a finite number \(got 'nan'\)"):
        load_account(p)
    assert parse_number("INF") == float("inf") and parse_number("\t-1.5E-2 ") == -0.015
    for text in ("", ".", "+", "e5", "1e", "1 0", "ınf", "\u00a01", "1\u2003"):
        with pytest.raises(ValueError):
            parse_number(text)


def test_toml_numbers_keep_tomls_grammar(tmp_path):
    # the TOML parser reads numbers itself: 1_000 (digits grouped, as TOML allows) is 1000,
    # Unicode digits are a syntax error; parse_number is for text cells and options only
    p = tmp_path / "a.toml"
    p.write_text(ROOT_TOML.replace("cash = 1000.0", "cash = 1_000.0"))
    assert load_account(p).cash == 1000.0
    p.write_text(ROOT_TOML.replace("cash = 1000.0", "cash = １０００"))
    with pytest.raises(InputError, match="invalid TOML"):
        load_account(p)


def test_lots_from_a_lots_file_lose_their_lines_once_replaced(tmp_path):
    account = load_account(_with_lots_file(tmp_path, "A,VTI,10,50,2020-01-02\nB,BND,5,90,2021-01-04\n"))
    assert account.lots_origin.lines == (2, 3)
    lots = account.lots + (account.lots[0],)
    with pytest.raises(InputError) as e:
        account.replace(lots=lots)  # built in Python: lots[i] of the account, no line of lots.csv
    assert e.value.path == "lots[2].id" and "first at lots[0]" in e.value.message
    assert account.with_policy(band=0.1).lots_origin == account.lots_origin


def test_json_and_toml_files_give_the_same_account(tmp_path):
    p = tmp_path / "a.toml"
    p.write_text(ROOT_TOML)
    from_toml = load_account(p)
    from rebalance_opt.account_file import account_to_dict
    from_json = load_account(write_json(tmp_path, account_to_dict(from_toml)))
    assert from_json == from_toml


def test_milp_rounding_is_kept_in_the_canonical_inputs_and_left_out_at_its_default(tmp_path):
    from rebalance_opt.account_file import account_to_dict
    p = tmp_path / "a.toml"
    p.write_text(ROOT_TOML)
    account = load_account(p)
    assert "milp_rounding" not in account_to_dict(account)["policy"]  # earlier logs' inputs read the same
    on = account.with_policy(milp_rounding=True)
    assert account_to_dict(on)["policy"]["milp_rounding"] is True
    assert load_account(write_json(tmp_path, account_to_dict(on))) == on


ROOT_TOML = """
[account]
id = "t"
cash = 1000.0
as_of = 2026-11-24

[tax]
short_term_rate = 0.37
long_term_rate = 0.2

[targets]
VTI = 0.6
BND = 0.4

[prices]
VTI = 100.0
BND = 80.0

[[lots]]
id = "L1"
symbol = "VTI"
quantity = 10
cost_basis = 50.0
acquired = 2020-01-02

[policy]
max_tax = inf
"""


def test_account_from_pandas_frames_equals_the_file_account(tmp_path):
    import pandas as pd

    from rebalance_opt import account_from_frames
    p = tmp_path / "a.toml"
    p.write_text(ROOT_TOML)
    from_file = load_account(p)
    lots = pd.DataFrame({"id": ["L1"], "symbol": ["VTI"], "quantity": [10], "cost_basis": [50.0],
                         "acquired": pd.to_datetime(["2020-01-02"])})
    framed = account_from_frames(id="t", as_of="2026-11-24", cash=1000.0, lots=lots,
                                 prices=pd.Series({"VTI": 100.0, "BND": 80.0}),
                                 targets=pd.Series({"VTI": 0.6, "BND": 0.4}),
                                 tax={"short_term_rate": 0.37, "long_term_rate": 0.2})
    assert framed == from_file


def test_account_from_frames_reports_row_positions():
    import pandas as pd

    from rebalance_opt import account_from_frames
    lots = pd.DataFrame({"id": ["a", "b"], "symbol": ["VTI", "VTI"], "quantity": [10, -1],
                         "cost_basis": [50.0, 50.0], "acquired": ["2020-01-02", "2020-01-02"]})
    with pytest.raises(InputError) as e:
        account_from_frames(id="t", as_of="2026-11-24", cash=0, lots=lots, prices={"VTI": 1.0},
                            targets={"VTI": 1.0}, tax={"short_term_rate": 0.3, "long_term_rate": 0.1})
    assert e.value.path == "lots[1].quantity"


@pytest.mark.parametrize("field,value,path", [
    # float() on cash, prices and targets made "abc" a bare ValueError and "1_000" the number 1000
    ("cash", "abc", "account.cash"), ("cash", "1_000", "account.cash"),
    ("prices", {"VTI": "12"}, "prices.VTI"), ("targets", {"VTI": None}, "targets.VTI"),
    # no table at all
    ("lots", [{"id": "a"}], "lots"),          # was AttributeError: 'list' object has no attribute 'to_dict'
    ("prices", [1.0, 2.0], "prices"),         # was TypeError from dict()
    ("tax", None, "tax"), ("targets", None, "targets"),  # were TypeError
])
def test_account_from_frames_reports_a_value_that_is_no_number_or_no_table_as_an_input_error(field, value, path):
    from rebalance_opt import account_from_frames
    args = dict(id="t", as_of="2026-11-24", cash=0.0, lots=None, prices={"VTI": 1.0}, targets={"VTI": 1.0},
                tax={"short_term_rate": 0.3, "long_term_rate": 0.1})
    args[field] = value
    with pytest.raises(InputError) as e:
        account_from_frames(**args)
    assert e.value.path == path


def test_account_from_frames_takes_numpy_scalars_as_numbers():
    import numpy as np

    from rebalance_opt import account_from_frames
    a = account_from_frames(id="t", as_of="2026-11-24", cash=np.float32(0.5), lots=None,
                            prices={"VTI": np.float64(2.0)}, targets={"VTI": np.int64(1)},
                            tax={"short_term_rate": 0.3, "long_term_rate": 0.1})
    assert (a.cash, a.prices["VTI"], a.targets["VTI"]) == (0.5, 2.0, 1.0)


def test_account_from_frames_takes_series_timestamps_and_numpy_values_everywhere_it_takes_a_mapping():
    """Its docstring offers Series for classes too; a Series for classes, bands or policy was a
    raw ValueError (``bool(series)``), an ``as_of`` Timestamp was refused while the lots'
    Timestamps were taken, and a policy's ``np.int64``/``np.bool_`` was "not a valid integer"."""
    import numpy as np
    import pandas as pd

    from rebalance_opt import account_from_frames
    lots = pd.DataFrame({"id": ["L1"], "symbol": ["VTI"], "quantity": [10], "cost_basis": [50.0],
                         "acquired": pd.to_datetime(["2020-01-02"])})
    plain = dict(id="t", as_of="2026-11-24", cash=1000.0, lots=lots, prices={"VTI": 100.0, "BND": 80.0},
                 targets={"US": 0.6, "BND": 0.4}, tax={"short_term_rate": 0.37, "long_term_rate": 0.2},
                 classes={"VTI": "US"}, bands={"US": 0.1},
                 policy={"wash_sale_days": 31, "fractional": True, "allow_sells": False})
    framed = {**plain, "as_of": pd.Timestamp("2026-11-24"), "classes": pd.Series(plain["classes"]),
              "bands": pd.Series(plain["bands"]), "tax": pd.Series(plain["tax"]),
              "policy": {"wash_sale_days": np.int64(31), "fractional": np.bool_(True),
                         "allow_sells": np.bool_(False)}}
    assert account_from_frames(**framed) == account_from_frames(**plain)


@pytest.mark.parametrize("section,key", [("prices", ""), ("targets", ""), ("classes", ""), ("prices", 5)])
def test_a_bad_key_of_a_table_is_named_at_the_table(section, key):
    """pydantic's location of a key (``prices``, key, ``[key]``) was written ``prices..[key]``."""
    from rebalance_opt import account_from_dict
    d = base_dict()
    d[section][key] = "VTI" if section == "classes" else 0.1
    with pytest.raises(InputError) as e:
        account_from_dict(d)
    assert e.value.path == section and str(e.value).startswith(f"{section}: a key should ")
    assert e.value.value == key


@pytest.mark.parametrize("risk", [
    {"classes": CLASSES, "covariance": [[100.0, -10.0, 0.0], [-10.0, 100.0, 0.0], [0.0, 0.0, 100.0]]},
    {"classes": CLASSES, "loadings": [[50.0], [-50.0], [1.0]], "factor_covariance": [[0.04]],
     "specific_variance": [0.0, 0.0, 100.0 - 0.04]},
])
def test_a_risk_model_at_its_bound_plans(tmp_path, capsys, risk):
    d = base_dict(tax_weight=10_000.0)
    d["risk"] = risk
    code, out, _ = cli(capsys, "rebalance", "generate", str(write_json(tmp_path, d)), "--dry-run", "--json")
    assert code == 0 and json.loads(out)["status"] == "optimal"


def test_a_risk_model_built_in_python_is_bounded_like_a_files():
    import numpy as np
    from rebalance_opt.account import RiskModel
    from tests.conftest import make
    account = make()
    huge = RiskModel.from_covariance(CLASSES, np.diag([0.04, 1e4, 0.01]))
    with pytest.raises(InputError) as e:
        account.replace(risk=huge)
    assert e.value.path == "risk" and "INTL_STOCK" in e.value.message and e.value.value == pytest.approx(1e4)
    assert account.replace(risk=RiskModel.from_covariance(CLASSES, np.diag([0.04, 100.0, 0.01]))).risk


@pytest.mark.parametrize("written", ["0001-01-02", "2020-01-02T10:00:00", "10:00:00"])
def test_a_bad_toml_date_is_shown_as_written_not_as_a_python_repr(tmp_path, written):
    """A TOML date, date-time or time was named in Python's terms: ``(got datetime.date(1, 1, 2))``."""
    p = tmp_path / "a.toml"
    p.write_text(ROOT_TOML.replace("acquired = 2020-01-02", f"acquired = {written}", 1))
    with pytest.raises(InputError) as e:
        load_account(p)
    assert e.value.path == "lots[0].acquired" and str(e.value).endswith(f"(got {written})")


@pytest.mark.parametrize("section, typo, key, hint", [
    ("tax", "short_term_rat", "short_term_rate", "is the unknown key 'short_term_rat' beside it a typo of it?"),
    ("account", "csh", "cash", "is the unknown key 'csh' beside it a typo of it?"),
    ("account", "ident", "id", "beside it is the unknown key 'ident'"),  # not close enough to call a typo
])
def test_a_missing_key_names_the_unknown_key_beside_it(tmp_path, capsys, section, typo, key, hint):
    # only "tax.short_term_rate: required key is missing" was said: the typo that caused it was not
    d = base_dict()
    d[section][typo] = d[section].pop(key)
    code, _, err = cli(capsys, "rebalance", "check", str(write_json(tmp_path, d)))
    assert code == 2 and f"{section}.{key}: required key is missing; {hint}" in err, err


def test_a_missing_lot_key_is_hinted_only_with_its_own_lots_unknown_key(tmp_path):
    d = base_dict()
    d["lots"][1]["quantity_x"] = d["lots"][1].pop("quantity")
    d["lots"][2]["quantty"] = 1.0  # another lot's unknown key is that lot's error, not this one's hint
    with pytest.raises(InputError) as e:
        load_account(write_json(tmp_path, d))
    assert e.value.path == "lots[1].quantity" and "'quantity_x'" in str(e.value) and "quantty" not in str(e.value)


@pytest.mark.parametrize("written, why", [("2022-02-30", "day is out of range for month"),
                                          ("2022-13-01", "month must be in 1..12")])
def test_a_date_written_right_that_is_no_day_says_so(tmp_path, written, why):
    # "must be a date written YYYY-MM-DD" for 2022-02-30, which is written that way
    with pytest.raises(InputError) as e:
        load_account(write_json(tmp_path, mutate(("lots", 0, "acquired", written))))
    assert e.value.path == "lots[0].acquired" and f"is no day of the calendar ({why})" in str(e.value)
    with pytest.raises(InputError, match="must be a date written YYYY-MM-DD"):  # still, for other forms
        load_account(write_json(tmp_path, mutate(("lots", 0, "acquired", "2022/02/03"))))
