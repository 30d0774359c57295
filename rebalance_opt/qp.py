"""A compiled parametric QP, solved without ``Problem.solve``: cvxpy's own compiled program of a
problem (``get_problem_data``), applied to parameter values by its tensors, reduced to the
variables a solve's bounds leave free, and handed to Clarabel (or OSQP, the fallback) directly.

``problem.RebalanceModel`` states the model; this module only makes solving it cheap. At
household sizes ``Problem.solve`` costs several times the solve itself (3-5 ms against ~0.3 ms).
"""
from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

import clarabel
import cvxpy as cp
import numpy as np
import osqp
import scipy.sparse as sp

# Solver settings. Clarabel (interior point) is the default at every size the benchmarks cover
# (~20 iterations; OSQP needs hundreds to thousands at these accuracies, see benchmarks/). At
# household sizes it runs to a 1e-12 gap, which puts fractional weights within ~1e-8 of the exact
# optimum (an interior point's x converges more slowly than its objective); where it stops short
# of that (AlmostSolved, a few problems in a thousand) it is rerun at 1e-10. OSQP (first-order,
# tight tolerances and polishing) is the last resort. The plan's money is recomputed
# from share counts afterwards, so no solver error reaches the reported amounts.
CLARABEL_SETTINGS = dict(tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12, verbose=False,
                         presolve_enable=False,  # ``QP.reduced`` has already removed what it would
                         # Measured on 260 household solves: without the static regularization
                         # every one reached 1e-12 (two stopped short with it) in 0.58 ms, not
                         # 0.80; dynamic regularization still guards the factorization.
                         static_regularization_enable=False)
CLARABEL_RETRY = dict(CLARABEL_SETTINGS, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
# Last Clarabel rung: static regularization back on. Found on a backtest account (84 lots, many at
# a loss, March 2020) where 1e-12 and 1e-10 without it stopped at AlmostSolved and OSQP at
# "solved inaccurate"; with it the same problem solves to 1e-10 (tests/test_solver.py).
CLARABEL_REGULARIZED = dict(CLARABEL_RETRY, static_regularization_enable=True)
# First rung at household sizes: the same without iterative refinement of the KKT solves, a
# quarter less time per solve at the same iteration count; where it stops short of 1e-12 the
# next rung (with refinement) solves again.
CLARABEL_FAST = dict(CLARABEL_SETTINGS, iterative_refinement_enable=False)
# First rung above TIGHT_MAX_VARIABLES: 1e-10 likewise without iterative refinement. Measured on the
# benchmark's direct indexes (2026-12-02): 34 against 40 ms (500 x 10) and 137 against 178 ms
# (2,000 x 5) at the same iteration count; on four direct indexes its x was as close to a 1e-12
# solve's as the refined 1e-10 solve's (2e-8 to 2e-5 of the account, against 3e-6 to 3e-5), plans
# identical on 28 large accounts. Where it stops short, the refined 1e-10 solve follows.
CLARABEL_LARGE_FAST = dict(CLARABEL_RETRY, iterative_refinement_enable=False)
CLARABEL_LADDER = (CLARABEL_FAST, CLARABEL_SETTINGS, CLARABEL_RETRY, CLARABEL_REGULARIZED, CLARABEL_LARGE_FAST)
# The rungs tried in turn (indexes into CLARABEL_LADDER), up to TIGHT_MAX_VARIABLES free variables
# and above it.
SMALL_RUNGS = (0, 1, 2, 3)  # FAST, SETTINGS, RETRY, REGULARIZED
LARGE_RUNGS = (4, 2, 3)     # LARGE_FAST, RETRY, REGULARIZED
LARGE_FIRST_RUNG = LARGE_RUNGS[0]
# Above this many free variables 1e-12 is mostly out of reach in double precision (the benchmark's
# direct-index problems stop at AlmostSolved), so those start at 1e-10: still a relative
# objective error far below 1e-6 at those sizes.
TIGHT_MAX_VARIABLES = 1_000
OSQP_SETTINGS = dict(eps_abs=1e-9, eps_rel=1e-9, polishing=True, max_iter=200_000, verbose=False)
DEFAULT_SOLVERS = ("CLARABEL", "OSQP")


# --- the compiled program, applied and solved ------------------------------------------------------
class CompiledQP:
    """cvxpy's compiled parametric program of a problem, applied to parameter values by its own
    tensors and handed to the solver without ``Problem.solve``'s per-call machinery.

    cvxpy compiles ``minimize ½xᵀPx + qᵀx + d  s.t.  A x + b ∈ {0}ᵉ × ℝ₊ⁱ`` with P, q, d, A, b
    affine in the parameter vector θ: ``vec([A b]) = T_A θ``, ``[q; d] = T_q θ``, ``vec(P) = T_P θ``
    (kept stacked as one matrix ``T``).
    ``apply`` evaluates those products (on the structurally nonzero rows only) and returns a
    ``QP`` in CSC form with a fixed sparsity pattern.
    """

    def __init__(self, problem: cp.Problem):
        data, _, _ = problem.get_problem_data(cp.OSQP)  # compiles once; cvxpy caches the program
        prog = data[cp.settings.PARAM_PROB]
        if prog.lower_bounds is not None or prog.upper_bounds is not None:  # pragma: no cover
            raise RuntimeError("variable bounds in the compiled program are not supported")
        self.prog = prog
        self.n = n = prog.x.size
        self.n_eq, self.n_ineq = prog.cone_dims.zero, prog.cone_dims.nonneg
        rows = self.n_eq + self.n_ineq
        if not {p.id for p in prog.parameters} <= {p.id for p in problem.parameters()}:  # pragma: no cover
            raise RuntimeError("cvxpy transformed the parameters; the compiled program cannot be applied directly")
        # (id, column in θ, size, a matrix: column-major into θ)
        self.parameters = [(p.id, prog.param_id_to_col[p.id], p.size, len(p.shape) > 1) for p in prog.parameters]
        self.param_size = prog.total_param_size

        # The tensors are tall (one row per entry of vec([A b]): rows × (n + 1) of them), so they
        # are only ever handled by their stored entries, never by row (a CSR index would be a
        # rows × n array).
        flat, t_a = _rows_of(prog.A, lambda i: i < rows * n)            # → A's values, CSC order
        self.a_rows, self.a_cols = flat % rows, flat // rows
        _, t_b = _rows_of(prog.A, lambda i: i >= rows * n, keep_all=rows * n)  # → b (dense, every row)
        t_q = sp.csr_matrix(prog.q)                                        # → q, then the constant d
        flat_p, t_p = _rows_of(prog.P, lambda i: (i % n) <= (i // n))      # → upper triangle of P
        # Stacked: one product per solve (each row's sum is the same as on its own).
        self.T = sp.vstack([t_a, t_b, t_q, t_p], format="csr")
        self.splits = tuple(int(x) for x in np.cumsum([t_a.shape[0], t_b.shape[0], t_q.shape[0]]))
        self.p_rows, self.p_cols = flat_p % n, flat_p // n
        self.p_half = np.where(self.p_rows == self.p_cols, 0.5, 1.0)  # ½ on P's diagonal (``QP.objective``)

        # Rows that bound one variable (x ≥ l or x ≤ u): where a solve's bounds pin a variable at
        # zero (not buyable, not sellable, padding) the variable and those rows are removed.
        count = np.bincount(self.a_rows, minlength=rows)
        single = (count == 1)[self.a_rows] & (self.a_rows >= self.n_eq)
        self.bound_entries = np.flatnonzero(single)
        self.row_is_eq = np.arange(rows) < self.n_eq
        self.offsets = {v.id: (prog.var_id_to_col[v.id], v.size) for v in prog.variables}
        self._reductions: dict[bytes, Reduction] = {}

    def reduction(self, a: np.ndarray, b: np.ndarray, p: np.ndarray) -> "Reduction":
        """What ``QP.reduced`` removes for these values of A, b and P, and where the rest goes.
        It depends on signs alone, and only on those ``Reduction.of`` reads: which entries of A
        and P are nonzero, the sign of a bound row's entry, which equality rows have b = 0, and
        the sign (or +inf) of each inequality row's b. So it is kept per such pattern (the most
        recent ones): re-plans of an account, the stages of one plan, and accounts of one shape
        whose gaps or gains differ in sign repeat them."""
        return recently_used(self._reductions, self.pattern(a, b, p), REDUCTION_CACHE,
                              lambda: Reduction.of(self, a, b, p))

    def pattern(self, a: np.ndarray, b: np.ndarray, p: np.ndarray) -> bytes:
        """The key of ``reduction``: one bit per entry and test (packed: a bucket's A has ~78,000
        entries, and hashing and comparing a byte per entry cost more than the tests)."""
        e = self.n_eq
        return b"".join(np.packbits(m).tobytes() for m in (
            a != 0.0, a[self.bound_entries] > 0.0, p != 0.0,
            b[:e] == 0.0, b[e:] > 0.0, b[e:] < 0.0, b[e:] == np.inf))

    def parameter_vector(self, values: dict[int, np.ndarray]) -> np.ndarray:
        """θ: every parameter's value, column-major, at its column; 1 in the last (constant)."""
        theta = np.empty(self.param_size + 1)
        for pid, col, size, matrix in self.parameters:
            theta[col: col + size] = values[pid].ravel(order="F") if matrix else values[pid]
        theta[-1] = 1.0
        return theta

    def apply(self, values: dict[int, np.ndarray]) -> QP:
        theta = self.parameter_vector(values)
        y = self.T @ theta
        s_a, s_b, s_q = self.splits
        a, b, qd, p = y[:s_a], y[s_a:s_b], y[s_b:s_q], y[s_q:]
        return QP(self, a, b, qd[:-1], float(qd[-1]), p)

    def value(self, variable: cp.Variable, x: np.ndarray) -> np.ndarray:
        """``variable``'s entries of x. A variable of size 0 (the lots of an account that holds
        none) is not in cvxpy's compiled program at all: its value is empty."""
        if variable.id not in self.offsets and variable.size == 0:
            return np.zeros(0)
        col, size = self.offsets[variable.id]
        return x[col: col + size]


REDUCTION_CACHE = 64  # reduction patterns kept per compiled program
DROP_PINNED = True    # a variable alone in an equality row with b = 0 goes with its row (tests turn it off)


@dataclass(frozen=True)
class Reduction:
    """What the solver is not given, for one sign pattern of A, b and P: the variables fixed at
    zero, those substituted out, the rows that go with them; and the CSC structure of the rest
    of A and P (a solve fills in the values, ``QP.reduced``). Immutable (arrays read-only), so
    concurrent plans (the web server's threads) share it safely."""

    keep_col: np.ndarray  # the columns the solver sees
    infeasible: bool      # a removed row is violated
    # Substituted variables: column, its row's entry for it, that row; and the row's other
    # entries (entry, which substitution, full and reduced column).
    sub_cols: np.ndarray
    sub_entries: np.ndarray
    sub_rows: np.ndarray
    row_entries: np.ndarray
    row_owner: np.ndarray
    row_cols: np.ndarray
    row_cols_reduced: np.ndarray
    a_entries: np.ndarray
    a_indices: list[int]
    a_indptr: list[int]
    a_shape: tuple[int, int]
    p_entries: np.ndarray
    p_indices: list[int]
    p_indptr: list[int]
    p_shape: tuple[int, int]
    keep_row: np.ndarray
    n_eq: int

    @staticmethod
    def of(c: "CompiledQP", a: np.ndarray, b: np.ndarray, p: np.ndarray) -> "Reduction":
        """A variable is fixed at zero by its bound rows (x ≥ −b/coef where coef > 0, x ≤ −b/coef
        where coef < 0), when its greatest lower bound and least upper bound are both 0: read
        off the signs of −b/coef, which are those of −b and b. Or by an equality row in which it
        is the only nonzero entry, with b = 0 (a bucket's padding classes: deviation 0).
        An inequality row with b = +inf never binds and goes too (a stage with no sell room).
        Removing those changes no other variable's value (tests/test_solver.py), and made
        Clarabel's household solves 10% faster.

        A variable without a quadratic term whose one nonzero entry is in an equality row is
        that row solved for it (``tax_cost`` and ``trading_cost``: cvxpy needs them to compile
        the objective sparsely, the solver does not): it is substituted out of the objective,
        and its row goes (``QP.reduced``, ``expand``). Two dense rows fewer: Clarabel's household
        solves 13.3 -> 11.2 iterations, a fifth less time."""
        e = c.bound_entries
        coef, col, sign_b = a[e], c.a_cols[e], np.sign(b[c.a_rows[e]])
        lower = np.full(c.n, -np.inf)
        upper = np.full(c.n, np.inf)
        np.maximum.at(lower, col[coef > 0], -sign_b[coef > 0])
        np.minimum.at(upper, col[coef < 0], sign_b[coef < 0])
        keep_col = ~((lower == 0.0) & (upper == 0.0))
        # Only A's nonzero entries matter below, and a bucket's are few (its incidence is dense
        # parameters, mostly 0): every entry-wise step works on them, as entry numbers in order.
        nz = np.flatnonzero(a != 0.0)
        rows, cols = c.a_rows[nz], c.a_cols[nz]
        is_eq = c.row_is_eq[rows]
        if DROP_PINNED:
            eq_rows = rows[is_eq]
            alone = (np.bincount(eq_rows, minlength=c.n_eq)[eq_rows] == 1) & (b[eq_rows] == 0.0)
            keep_col[cols[is_eq][alone]] = False

        never_binds = (b == np.inf) & ~c.row_is_eq
        live = keep_col[cols] & ~never_binds[rows]
        n_rows = len(c.row_is_eq)

        in_p = np.zeros(c.n, dtype=bool)
        p_nonzero = p != 0.0
        in_p[c.p_rows[p_nonzero]] = in_p[c.p_cols[p_nonzero]] = True
        single = (np.bincount(cols[live], minlength=c.n) == 1) & ~in_p
        candidates = np.flatnonzero(live & single[cols] & is_eq)  # positions in nz
        first: dict[int, int] = {}  # one per row, the first in entry order (a few dozen: cheaper than np.unique)
        for k, row in enumerate(rows[candidates].tolist()):
            first.setdefault(row, k)
        sub_entries = nz[candidates[np.array(list(first.values()), dtype=np.intp)]]
        sub_cols, sub_rows = c.a_cols[sub_entries], c.a_rows[sub_entries]
        keep_col[sub_cols] = False
        keep_col.flags.writeable = False
        col_map = np.cumsum(keep_col) - 1
        owner = np.full(n_rows, -1)
        owner[sub_rows] = np.arange(len(sub_rows))
        live &= keep_col[cols]
        owned = owner[rows] >= 0
        row_entries = nz[live & owned]
        row_cols = c.a_cols[row_entries]

        entry = live & ~owned
        keep_row = np.bincount(rows[entry], minlength=n_rows) > 0
        row_map = np.cumsum(keep_row) - 1
        n_kept, m_kept = int(keep_col.sum()), int(keep_row.sum())
        a_entries = nz[entry]
        p_entries = np.flatnonzero(keep_col[c.p_rows] & keep_col[c.p_cols] & p_nonzero)
        dropped = ~keep_row
        dropped[sub_rows] = False  # solved for their variables, not dropped
        infeasible = bool((b[dropped & c.row_is_eq] != 0.0).any() or (b[dropped & ~c.row_is_eq] < 0.0).any())
        arrays = (sub_cols, sub_entries, sub_rows, row_entries, owner[c.a_rows[row_entries]], row_cols,
                  col_map[row_cols])
        for x in (*arrays, a_entries, p_entries, keep_row):
            x.flags.writeable = False
        return Reduction(
            keep_col, infeasible, *arrays,
            a_entries, row_map[c.a_rows[a_entries]].tolist(),
            _indptr(col_map[c.a_cols[a_entries]], n_kept).tolist(), (m_kept, n_kept),
            p_entries, col_map[c.p_rows[p_entries]].tolist(),
            _indptr(col_map[c.p_cols[p_entries]], n_kept).tolist(), (n_kept, n_kept),
            keep_row, int((keep_row & c.row_is_eq).sum()))

    def expand(self, qp: "QP", x_kept: np.ndarray) -> np.ndarray:
        """The full x from the solver's: zeros where fixed, substituted variables from their rows
        (a_rt x_t + Σ_j a_rj x_j + b_r = 0)."""
        x = np.zeros(qp.compiled.n)
        x[self.keep_col] = x_kept
        if len(self.sub_cols):
            rest = np.bincount(self.row_owner, weights=qp.a[self.row_entries] * x[self.row_cols],
                               minlength=len(self.sub_cols))
            x[self.sub_cols] = -(qp.b[self.sub_rows] + rest) / qp.a[self.sub_entries]
        return x


@dataclass(frozen=True)
class Csc:
    """A CSC matrix as plain Python lists: the attributes Clarabel's binding reads from a scipy
    matrix (data, indices, indptr, shape, nnz; has_canonical_format since 0.11). Its extractor
    walks each array element by element; from a numpy array that makes a numpy scalar per
    element, from a list it does not: measured on household QPs, a solver set up a fifth faster
    (the same values, the same solution to the bit). ``scipy()`` for everything else, and for a
    binding that wants more of a scipy matrix than this (``_clarabel`` falls back to it)."""

    data: list[float]
    indices: list[int]
    indptr: list[int]
    shape: tuple[int, int]
    has_canonical_format: bool = True
    has_sorted_indices: bool = True

    @property
    def nnz(self) -> int:
        return len(self.data)

    def scipy(self) -> sp.csc_matrix:
        return sp.csc_matrix((np.array(self.data, dtype=float), np.array(self.indices, dtype=np.int32),
                              np.array(self.indptr, dtype=np.int32)), shape=self.shape)


def _indptr(cols: np.ndarray, n_cols: int) -> np.ndarray:
    """CSC column pointers of entries already in column-major order."""
    indptr = np.zeros(n_cols + 1, dtype=np.int32)
    np.cumsum(np.bincount(cols, minlength=n_cols), out=indptr[1:])
    return indptr


@dataclass
class QP:
    """One solve's data: ``minimize ½xᵀPx + qᵀx + d  s.t.  A x + b ∈ {0}ᵉ × ℝ₊ⁱ``, values on
    the compiled program's fixed sparsity pattern."""

    compiled: CompiledQP
    a: np.ndarray   # A's values (pattern: compiled.a_rows, a_cols)
    b: np.ndarray
    q: np.ndarray
    d: float
    p: np.ndarray   # upper triangle of P (pattern: compiled.p_rows, p_cols)

    def reduced(self, sign: float = 1.0):
        """The problem the solver is given (``Reduction``): (reduction, P, q, sign × A, b), P and
        A as ``Csc``, or None when a removed row is violated (the problem is infeasible).
        Clarabel takes −A (``sign=-1``); ``reduction.expand`` maps its x back, and
        ``reduction.n_eq`` is the number of equality rows."""
        r = self.compiled.reduction(self.a, self.b, self.p)
        if r.infeasible:
            return None
        a = self.a[r.a_entries]
        A = Csc((a if sign == 1.0 else sign * a).tolist(), r.a_indices, r.a_indptr, r.a_shape)
        P = Csc(self.p[r.p_entries].tolist(), r.p_indices, r.p_indptr, r.p_shape)
        q = self.q[r.keep_col]
        if len(r.sub_cols):  # q_t x_t = −(q_t / a_rt)(Σ_j a_rj x_j + b_r): the constant is dropped
            ratio = self.q[r.sub_cols] / self.a[r.sub_entries]
            q -= np.bincount(r.row_cols_reduced, weights=ratio[r.row_owner] * self.a[r.row_entries],
                             minlength=len(q))
        return r, P, q, A, self.b[r.keep_row]

    def solve(self, solver: str) -> tuple[str, np.ndarray | None, float]:
        """(cvxpy status, full x or None, objective) from ``solver`` (CLARABEL or OSQP)."""
        reduced = self.reduced(-1.0 if solver == "CLARABEL" else 1.0)
        if reduced is None:
            return cp.INFEASIBLE, None, np.inf
        r, P, q, A, b = reduced  # A is −A for Clarabel (its own form)
        n_eq = r.n_eq
        if not r.keep_col.any():
            x = r.expand(self, np.zeros(0))
            return cp.OPTIMAL, x, self.objective(x)
        if solver == "CLARABEL":
            for rung in SMALL_RUNGS if P.shape[0] <= TIGHT_MAX_VARIABLES else LARGE_RUNGS:
                status, xr = _clarabel(P, q, A, b, n_eq, _clarabel_settings(rung))
                if not status.startswith("inaccurate"):
                    break
        elif solver == "OSQP":
            status, xr = _osqp(P, q, A, b, n_eq)
        else:
            raise ValueError(f"unknown solver {solver!r}")
        if xr is None:
            return status, None, np.inf
        x = r.expand(self, xr)
        return status, x, self.objective(x)

    def objective(self, x: np.ndarray) -> float:
        """½xᵀPx + qᵀx + d, P given by its upper triangle."""
        r, c = self.compiled.p_rows, self.compiled.p_cols
        quad = float(np.sum(self.compiled.p_half * self.p * x[r] * x[c]))
        return quad + float(self.q @ x) + self.d


def _rows_of(tensor, select, keep_all: int | None = None) -> tuple[np.ndarray, sp.csr_matrix]:
    """The selected stored rows of a tall parameter tensor as a compact CSR matrix, with their
    original row numbers (sorted). ``keep_all=start``: every row from ``start`` on, stored or not
    (for b, whose zero entries are values too)."""
    coo = sp.coo_matrix(tensor)
    pick = select(coo.row)
    row, col, val = coo.row[pick], coo.col[pick], coo.data[pick]
    if keep_all is not None:
        flat = np.arange(keep_all, tensor.shape[0])
    else:
        flat = np.unique(row)
    index = np.searchsorted(flat, row)
    return flat, sp.csr_matrix((val, (index, col)), shape=(len(flat), tensor.shape[1]))


def _clarabel(P, q, minus_A, b, n_eq, settings) -> tuple[str, np.ndarray | None]:
    """Clarabel on ``minimize ½xᵀPx + qᵀx  s.t.  −(minus_A) x + b ∈ {0}ⁿᵉ × ℝ₊`` (its own form:
    minus_A x + s = b, s in the cones); P and minus_A as ``Csc`` (or scipy CSC) matrices."""
    cones = ([clarabel.ZeroConeT(n_eq)] if n_eq else []) + \
            ([clarabel.NonnegativeConeT(minus_A.shape[0] - n_eq)] if minus_A.shape[0] > n_eq else [])
    try:
        solver = clarabel.DefaultSolver(P, q.tolist(), minus_A, b.tolist(), cones, settings)
    except (AttributeError, TypeError):
        if not isinstance(P, Csc):
            raise
        # a Clarabel binding that reads more of a scipy matrix than ``Csc`` carries: give it one
        solver = clarabel.DefaultSolver(P.scipy(), q, minus_A.scipy(), b, cones, settings)
    result = solver.solve()
    status = str(result.status)
    if status == "Solved":
        return cp.OPTIMAL, np.asarray(result.x)
    if status == "PrimalInfeasible":
        return cp.INFEASIBLE, None
    if status == "DualInfeasible":
        return cp.UNBOUNDED, None
    return f"inaccurate ({status})", None


@functools.lru_cache(maxsize=len(CLARABEL_LADDER))
def _clarabel_settings(rung: int) -> clarabel.DefaultSettings:
    settings = clarabel.DefaultSettings()
    for key, value in CLARABEL_LADDER[rung].items():
        setattr(settings, key, value)
    return settings


def _osqp(P, q, A, b, n_eq) -> tuple[str, np.ndarray | None]:
    lower = -b
    upper = np.where(np.arange(len(b)) < n_eq, -b, np.inf)
    solver = osqp.OSQP()
    solver.setup(P.scipy(), q, A.scipy(), lower, upper, **OSQP_SETTINGS)
    # A status, not an exception, for anything but "solved": osqp 1.1 warns that its default will
    # become raise_error=True, which would turn the fallback's "inaccurate" into a crash.
    result = solver.solve(raise_error=False)
    status = result.info.status
    if status == "solved":
        return cp.OPTIMAL, np.asarray(result.x)
    if status in ("primal infeasible", "primal_infeasible"):
        return cp.INFEASIBLE, None
    return f"inaccurate ({status})", None


def recently_used(store: dict, key, maxsize: int, make):
    """``store[key]``, made by ``make()`` when missing; the store keeps the ``maxsize`` most
    recently used entries (a dict in use order, most recent last). Safe to share between threads:
    the dict is only touched under a lock (``make`` runs outside it; if two threads make the same
    entry at once, the first one stored is kept)."""
    with _STORE_LOCK:
        value = store.pop(key, None)
        if value is not None:
            store[key] = value
            return value
    made = make()
    with _STORE_LOCK:
        value = store.pop(key, made)
        store[key] = value
        while len(store) > maxsize:
            store.pop(next(iter(store)))
        return value


_STORE_LOCK = threading.Lock()
