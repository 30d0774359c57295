"""rebalance-opt: tax-aware portfolio rebalancing on a convex program.

The library API in a few names::

    from rebalance_opt import load_account, drift_report, plan_rebalance
    account = load_account("examples/household.toml")
    print(drift_report(account).to_dict())
    plan = plan_rebalance(account)
    print(plan.to_dict())

The names below are imported when first used (PEP 562), not with the package: the solver stack
(cvxpy, Clarabel, SciPy) takes about 1.5 s to import, which every command paid before it ran,
including ``rebalance check`` and ``--help``, which never solve (and Ctrl-C in that time printed
a traceback from deep inside the import).
"""
import importlib

__version__ = "0.1.0"  # first: modules of the package read it (batch checks Dask workers run the same)

_EXPORTS = {
    ".account": ("CASH", "Account", "Lot", "Policy", "RiskModel", "TaxSettings", "Trade"),
    ".account_file": ("account_from_dict", "account_from_frames", "account_to_dict", "load_account"),
    ".drift": ("DriftReport", "DriftRow", "drift_report"),
    ".errors": ("DamagedLog", "InputError", "Infeasible", "PlanRejected", "RebalanceError", "SolverFailed"),
    ".plan": ("LotSale", "Order", "Plan"),
    ".book": ("Book",),
    ".problem": ("ModelCache",),
    ".solve": ("Planner", "plan_rebalance"),
    ".tax": ("TaxSummary",),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [name for names in _EXPORTS.values() for name in names]


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # once: later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
