"""Typed errors, each mapped to one exit code by the CLI (SPEC section 3).

* ``InputError`` (exit 2): the user's file or arguments are wrong; names file, key path, value.
* ``Infeasible`` (exit 3): the inputs are valid but no plan meets the hard constraints.
* ``SolverFailed`` (exit 1): every solver we tried failed to reach an accurate optimum.
* ``DamagedLog`` (exit 4, as a failed ``log --verify``): the audit log is not intact.
"""
from __future__ import annotations

from datetime import date, time
from typing import Any


class RebalanceError(Exception):
    """Base class of every error the engine raises on purpose."""

    exit_code = 1

    def to_dict(self) -> dict[str, Any]:
        return {"message": str(self), "path": None, "file": None}


class InputError(RebalanceError, ValueError):
    """A value in the user's input is missing, malformed or out of range."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | None = None, file: str | None = None,
                 value: Any = None, has_value: bool = False):
        self.message = message
        self.path = path
        self.file = file
        self.value = value
        self.has_value = has_value
        super().__init__(self._render())

    def _render(self) -> str:
        where = ", ".join(p for p in (self.file, self.path) if p)
        text = f"{where}: {self.message}" if where else self.message
        if self.has_value:
            text += f" (got {_shown(self.value)})"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"message": str(self), "path": self.path, "file": self.file}


def _shown(value: Any) -> str:
    """A bad value as the user wrote it: a TOML date, time or date-time bare, as TOML writes it
    (``0001-03-14``, where a string is quoted), not Python's ``datetime.date(1, 3, 14)``."""
    return value.isoformat() if isinstance(value, (date, time)) else repr(value)


class DamagedLog(RebalanceError):
    """The audit log is not intact: a column or its entries table gone, its table rebuilt, the
    file cut short or overwritten. Nothing is read from it as if it were whole, nothing is
    written to it; exit 4, the code of a failed ``log --verify``."""

    exit_code = 4

    def __init__(self, problem: str, *, path: str | None = None, file: str | None = None):
        self.problem = problem
        self.path = path
        self.file = file
        where = ", ".join(p for p in (file, path) if p)
        super().__init__(f"{where + ': ' if where else ''}not an intact audit log ({problem}); "
                         "`rebalance log --verify` checks it")

    def to_dict(self) -> dict[str, Any]:
        return {"message": str(self), "path": self.path, "file": self.file}


class Infeasible(RebalanceError):
    """No plan satisfies the hard constraints of SPEC section 2; the message says which, and
    ``constraints`` names the account-file keys of the rules that could not all be met
    (``policy.withdrawal``, ``policy.min_cash``, ``policy.max_tax``, ``policy.min_trade``,
    ``policy.fractional`` for whole shares, ``policy.allow_sells``, ``policy.no_sell``), so a
    program can tell them apart without parsing the message."""

    exit_code = 3

    def __init__(self, message: str, *, constraints: tuple[str, ...] = ()):
        self.constraints = tuple(constraints)
        super().__init__(message)

    def to_dict(self) -> dict[str, Any]:
        return {"message": str(self), "path": None, "file": None, "constraints": list(self.constraints)}


class SolverFailed(RebalanceError):
    """The convex solve did not reach an accurate optimum with any configured solver."""

    exit_code = 1


class PlanRejected(RebalanceError):
    """A plan failed the independent check of the hard constraints; it is never emitted."""

    exit_code = 1
