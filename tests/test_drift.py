"""Drift, by hand: weights on V, drift = weight − target, band status, per-class bands."""
import pytest

from rebalance_opt import drift_report
from rebalance_opt.drift import status
from tests.conftest import base_dict, make


def test_drift_of_the_base_account_by_hand():
    # VTI 500×100 = 50,000; VXUS 300×50 = 15,000; BND 250×80 = 20,000; cash 10,000 → V = 95,000
    report = drift_report(make())
    assert report.value == 95_000
    expected = {"US_STOCK": 50_000 / 95_000 - 0.55, "INTL_STOCK": 15_000 / 95_000 - 0.15,
                "US_BOND": 20_000 / 95_000 - 0.30, "CASH": 10_000 / 95_000 - 0.0}
    for name, drift in expected.items():
        assert report.row(name).drift == pytest.approx(drift)
    assert report.row("US_STOCK").status == "in_band"      # −2.4 pts
    assert report.row("US_BOND").status == "underweight"   # −8.9 pts
    assert report.row("CASH").status == "overweight"       # +10.5 pts, cash target 0
    assert report.cash_weight == pytest.approx(10_000 / 95_000)


def test_bands_override_per_class_including_cash():
    d = base_dict()
    d["bands"] = {"US_STOCK": 0.02, "CASH": 0.2}
    report = drift_report(make(d))
    assert report.row("US_STOCK").status == "underweight"  # −2.4 < −2
    assert report.row("CASH").status == "in_band"          # +10.5 < 20


@pytest.mark.parametrize("drift, band, expected", [
    (0.05, 0.05, "in_band"), (0.0500001, 0.05, "overweight"), (-0.05, 0.05, "in_band"),
    (-0.0500001, 0.05, "underweight"), (0.0, 0.0, "in_band"), (1e-12, 0.0, "in_band"),
])
def test_on_the_band_is_in_band(drift, band, expected):
    assert status(drift, band) == expected


def test_symbol_targets_and_unmapped_held_symbols_are_their_own_classes():
    d = base_dict()
    d["targets"] = {"US_STOCK": 0.5, "BND": 0.3}   # BND mapped to US_BOND? no: target the symbol
    d["classes"] = {"VTI": "US_STOCK"}             # VXUS, BND unmapped: their own classes
    report = drift_report(make(d))
    names = [r.name for r in report.rows]
    assert names == ["US_STOCK", "BND", "VXUS", "CASH"]  # targeted first, then held, cash last
    assert report.row("VXUS").target_weight == 0
    assert report.row("VXUS").status == "overweight"


def test_drift_after_a_withdrawal_is_measured_on_value_less_withdrawal():
    from rebalance_opt import plan_rebalance
    d = base_dict(withdrawal=5_000.0)
    plan = plan_rebalance(make(d))
    v_prime = 95_000 - 5_000
    assert plan.drift_after.value == pytest.approx(v_prime)
    cash_weight = (plan.cash_after - 5_000) / v_prime
    assert plan.drift_after.row("CASH").current_weight == pytest.approx(cash_weight)
