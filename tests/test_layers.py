"""The package's layers (the README's "How the code is laid out"): data flows one way, from input
files through the validated account, drift, the problem and its solution to plans, exports and the
log, so a module imports only from layers below its own. Function-level imports count too."""
import ast
from pathlib import Path

from .conftest import ROOT

PACKAGE = ROOT / "rebalance_opt"

# Lowest first. A module may import from any strictly lower layer, never from its own or above.
LAYERS: list[set[str]] = [
    {"errors", "qp", "pool", "interrupts"},                      # no package imports
    {"account"},                                                  # the validated account
    {"account_file", "tax", "drift", "audit"},                    # reading it; tax rules; drift; the log
    {"book", "account_set", "plan", "verify", "backtest_data", "problem"},
    {"exact_round", "screen", "exports", "simulate", "orders"},
    {"rounding", "render"},
    {"solve"},                                                    # the planner
    {"impact", "batch", "strategies"},
    {"backtest", "server"},
    {"backtest_report"},
    {"cli", "__init__"},                                          # entry points
    {"console"},                                                  # the console script: imports cli
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _top(module: str) -> str:
    """The layer a module belongs to: ``cli.batch`` is in ``cli``."""
    return module.split(".")[0]


def _imports(path: Path) -> set[str]:
    """The package modules ``path`` imports (relative imports, at any depth in the file)."""
    module = path.relative_to(PACKAGE).with_suffix("").parts
    package = list(module[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - (node.level - 1)]
            if node.module:
                found.add(".".join(base + node.module.split(".")))
            else:
                found.update(".".join(base + [alias.name]) for alias in node.names)
    return {m for m in found if m and _top(m) != "__version__"}


def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(PACKAGE).with_suffix("").parts): p for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_of_the_package_has_a_layer():
    unplaced = sorted({_top(m) for m in _modules()} - set(RANK))
    assert not unplaced, f"add these modules to LAYERS in {__file__}: {unplaced}"


def test_modules_import_only_from_lower_layers():
    upward = []
    for module, path in _modules().items():
        own = _top(module)
        for imported in sorted(_imports(path)):
            target = _top(imported)
            if target == own:  # within one entry point (cli.batch -> cli.common)
                continue
            if RANK[target] >= RANK[own]:
                upward.append(f"{module} imports {imported} (layer {RANK[target]} >= {RANK[own]})")
    assert not upward, "\n".join(upward)


def test_the_account_and_tax_rules_import_nothing_from_planning_or_output():
    # the brief's rule, spelled out: the lower layers never reach up to the problem, plans, CLI or web
    higher = {"problem", "qp", "solve", "orders", "plan", "exports", "render", "batch", "server", "cli", "impact"}
    for name in ("account", "account_file", "tax", "drift", "book"):
        reached = {_top(m) for m in _imports(PACKAGE / f"{name}.py")}
        assert not reached & higher, (name, reached & higher)


def test_the_layer_check_sees_imports_inside_functions():
    # the CLI imports most of the engine inside its commands; those count as imports
    imports = _imports(PACKAGE / "cli" / "rebalance.py")
    assert {"solve", "exports", "audit"} <= {_top(m) for m in imports}
