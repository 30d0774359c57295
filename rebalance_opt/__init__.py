"""rebalance-opt: tax-aware portfolio rebalancing on a convex program.

The library API in a few names::

    from rebalance_opt import load_account, drift_report, plan_rebalance
    account = load_account("examples/household.toml")
    print(drift_report(account).to_dict())
    plan = plan_rebalance(account)
    print(plan.to_dict())
"""
__version__ = "0.1.0"  # first: modules of the package read it (batch checks Dask workers run the same)

from .account import CASH, Account, Lot, Policy, RiskModel, TaxSettings, Trade
from .account_file import account_from_dict, account_from_frames, account_to_dict, load_account
from .drift import DriftReport, DriftRow, drift_report
from .errors import DamagedLog, InputError, Infeasible, PlanRejected, RebalanceError, SolverFailed
from .plan import LotSale, Order, Plan
from .book import Book
from .problem import ModelCache
from .solve import Planner, plan_rebalance
from .tax import TaxSummary

__all__ = [
    "CASH", "Account", "Lot", "Policy", "RiskModel", "TaxSettings", "Trade", "account_from_dict", "account_from_frames",
    "account_to_dict", "load_account",
    "DriftReport", "DriftRow", "drift_report", "DamagedLog", "InputError", "Infeasible", "PlanRejected",
    "RebalanceError", "SolverFailed", "LotSale", "Order", "Plan", "Planner", "ModelCache", "Book", "plan_rebalance",
    "TaxSummary",
]
