"""Optimisation of the profiled criterion over θ, with lme4's boundary handling."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ConvergenceWarning, FitError, warn
from ..data.layout import Structure
from .criterion import ProfiledCriterion
from .quasi_newton import AverageInformationNewton

BOUNDARY_TOL = 1e-5  # lme4's boundary.tol: diagonal θ this close to 0 are tried at 0
SINGULAR_TOL = 1e-4  # lme4's isSingular tolerance on diagonal θ


@dataclass
class OptSummary:
    """What the optimiser did, in the spirit of MixedModels.jl's ``OptSummary``.

    Attributes
    ----------
    method
        The optimiser: ``"L-BFGS-B (exact gradient)"`` with one grouping factor,
        ``"Newton (average information, exact gradient)"`` with several
        (:func:`default_minimizer`), or a refit's compiled projected BFGS.
    initial, final
        θ at the start and at the optimum.
    fmin
        The criterion at ``final``.
    evaluations
        Number of criterion evaluations.
    iterations
        Optimiser iterations, over all restarts.
    converged
        Whether the optimiser reported convergence.
    message
        The optimiser's last message.
    boundary
        Names of θ elements set to their bound by the boundary check.
    path
        Criterion after each optimiser run (the first, then the polishing restart).
    factorization
        Which factorisation of Λ'Z'ZΛ + I computed the criterion: ``"blocked"`` (dense block
        for the factors after the first) or ``"sparse (CHOLMOD)"``.
    """

    method: str
    initial: np.ndarray
    final: np.ndarray
    fmin: float
    evaluations: int
    iterations: int
    converged: bool
    message: str
    boundary: tuple[str, ...] = ()
    path: list[float] = field(default_factory=list)
    factorization: str = "blocked"

    def __str__(self) -> str:
        return (
            f"{self.method}, {self.factorization} factorisation: criterion {self.fmin:.10g} after {self.evaluations} evaluations, "
            f"{self.iterations} iterations; {'converged' if self.converged else 'NOT converged'} ({self.message})"
        )


FTOL, GTOL = 1e-13, 1e-10  # the minimiser's relative reduction of the criterion and projected gradient tolerances


class LBFGSB:
    """scipy's L-BFGS-B on the criterion in θ̃ = θ * row_scale with its exact gradient: the
    minimiser of :func:`optimize_theta` with one grouping factor (:func:`default_minimizer`).

    A minimiser has a ``method`` (its name in the record), ``scaled(θ̃)`` -> (criterion,
    gradient in θ̃) and ``run(start, max_iter, ftol, gtol)`` -> (θ̃, criterion, iterations,
    converged, message), one run from θ̃ = ``start`` within the bounds of θ̃.
    """

    method = "L-BFGS-B (exact gradient)"

    def __init__(self, criterion: ProfiledCriterion):
        self.criterion = criterion
        self.scale = criterion.structure.row_scale
        self.bounds = [(lo if np.isfinite(lo) else None, None) for lo in criterion.structure.lower]
        self.last: dict[bytes, tuple[float, np.ndarray]] = {}  # the latest evaluation: the start is evaluated once, not twice

    def scaled(self, theta_tilde: np.ndarray) -> tuple[float, np.ndarray]:
        """The criterion and its gradient at θ̃."""
        key = np.asarray(theta_tilde, dtype=float).tobytes()
        if key not in self.last:
            value, grad = self.criterion.value_and_gradient(theta_tilde / self.scale)
            self.last.clear()
            self.last[key] = (value, grad / self.scale)
        return self.last[key]

    def run(self, start: np.ndarray, max_iter: int, ftol: float, gtol: float):
        """One run of L-BFGS-B from θ̃ = ``start``: (θ̃, criterion, iterations, converged, message)."""
        from scipy.optimize import minimize  # a quarter of a second to import: on the first fit, not on import

        result = minimize(self.scaled, start, jac=True, method="L-BFGS-B", bounds=self.bounds,
                          options={"maxiter": max_iter, "ftol": ftol, "gtol": gtol})
        return (np.asarray(result.x, dtype=float), float(result.fun), int(result.nit), bool(result.success),
                str(result.message))


def default_minimizer(criterion: ProfiledCriterion):
    """The minimiser :func:`optimize_theta` uses unless given one: with several grouping factors,
    where each evaluation costs a dense or a sparse factorisation, projected Newton steps with the
    average-information curvature (:class:`~bayesmix.reml.quasi_newton.AverageInformationNewton`),
    which save most evaluations; with one, L-BFGS-B (:class:`LBFGSB`) on the compiled criterion."""
    if not criterion.cp.single_factor:
        return AverageInformationNewton(criterion)
    return LBFGSB(criterion)


def optimize_theta(criterion: ProfiledCriterion, theta0: np.ndarray | None = None, max_iter: int = 2000,
                   minimizer=None) -> OptSummary:
    """Minimise the criterion over θ within its bounds and return the record.

    The minimiser (:func:`default_minimizer` unless given) works on θ̃ = θ * row_scale (see :class:`Structure`)
    from lme4's start (identity templates). A diagonal element that ends exactly at its bound 0
    may sit on a saddle: the criterion is even in it, so its gradient there is 0. Each such
    element is moved to ``ESCAPE_STEP``, or its template column mirrored (:func:`_escape`); if
    that lowers the criterion, the minimiser restarts from there. Finally, diagonal elements
    within ``BOUNDARY_TOL`` of 0 are set to 0 when that does not raise the criterion (lme4's
    boundary check).

    ``minimizer`` is :func:`default_minimizer`'s unless given (the refits' compiled
    :class:`~bayesmix.reml.quasi_newton.CompiledBFGS`); the starts, escapes and checks here
    evaluate the criterion through its ``scaled``.

    The boundary check and the convergence test work on θ̃, so they do not depend on the
    units of the predictors (a slope of x and of x * 1e8 give the same θ̃).

    Raises
    ------
    FitError
        When the criterion is not finite at the start, or no finite criterion value was
        found; ``FitError.optsummary`` holds the optimiser's record.

    Warns
    -----
    ConvergenceWarning
        When the optimiser did not report convergence; ``optsummary`` holds the record.
    """
    structure = criterion.structure
    scale = structure.row_scale
    diagonal = structure.diagonal()
    start = structure.initial_theta() if theta0 is None else np.asarray(theta0, dtype=float) * scale
    minimizer = default_minimizer(criterion) if minimizer is None else minimizer
    scaled = minimizer.scaled
    summary = OptSummary(minimizer.method, start / scale, start / scale, np.inf, 0, 0, False, "",
                          factorization=criterion.kind)
    first = scaled(start)[0]
    if not np.isfinite(first):
        summary.evaluations, summary.fmin, summary.message = criterion.evaluations, float(first), "criterion not finite at the start"
        raise FitError(
            f"The REML/ML criterion is {first} at the starting θ {np.round(start / scale, 6).tolist()}, so the fit cannot "
            "start: the cross-products lost their precision. Check the data for extreme values, and centre and rescale "
            f"the response and predictors (e.g. (y - y.mean()) / y.std()). Optimiser record: {summary}",
            summary,
        )
    best, fbest = start, np.inf
    for _ in range(2 + 2 * structure.n_theta):
        x, value, iterations, success, message = minimizer.run(start, max_iter, FTOL, GTOL)
        summary.iterations += iterations
        improved = np.isfinite(value) and value < fbest
        if improved:
            best, fbest = x, value
            summary.path.append(fbest)
            summary.converged = success or _stationary(criterion, best / scale)
            summary.message = message
        if improved and not success:
            start = best  # stopped early while still improving: continue from there
            continue
        start = _escape(scaled, structure, best, fbest)  # converged or stalled: leave a saddle on the bound
        if start is None:
            break
    theta = best / scale
    fmin = fbest if np.isfinite(fbest) else criterion(theta)  # the minimiser's value at best, or the start's when no run returned one
    if not (np.isfinite(fmin) and np.isfinite(theta).all()):
        summary.evaluations, summary.final, summary.fmin = criterion.evaluations, theta, float(fmin)
        raise FitError(
            f"The REML/ML optimisation found no finite criterion value (θ = {theta.tolist()}). Rescale the response "
            f"and predictors, or simplify the random effects. Optimiser record: {summary}",
            summary,
        )
    on_bound = []
    for k in np.flatnonzero(diagonal & (theta > 0) & (theta * scale < BOUNDARY_TOL)):
        trial = theta.copy()
        trial[k] = 0.0
        value = criterion(trial)
        if value <= fmin:
            theta, fmin = trial, value
            on_bound.append(structure.names[k])
    summary.final, summary.fmin, summary.boundary = theta, fmin, tuple(on_bound)
    summary.evaluations = criterion.evaluations
    if not summary.converged:
        warn(ConvergenceWarning(f"The optimiser did not report convergence: {summary}", summary))
    return summary


ESCAPE_STEP = 0.1  # on the θ̃ scale: the diagonal value tried when leaving a bound at 0
ESCAPE_SLOPE = 1e-6  # the criterion's slope into a diagonal element at 0 below which a mirrored point is left


def _escape(scaled, structure: Structure, best: np.ndarray, fbest: float) -> np.ndarray | None:
    """A point to restart from off the bound of a diagonal element at 0, or None if there is none.

    For each diagonal element at 0, in turn: the element moved to ``ESCAPE_STEP``, if that
    lowers the criterion (a saddle on the bound); otherwise the mirror image of ``best`` with
    the elements below the diagonal in its template column negated, if the criterion falls from
    there into the element's positive values. The mirror image is the same model (Λ with a
    column negated has the same ΛΛ'), so this is where the criterion falls from ``best`` into
    the element's negative values: a way down that the bound hides.
    """
    for k in np.flatnonzero(structure.diagonal() & (best <= 0)):
        trial = best.copy()
        trial[k] = ESCAPE_STEP
        if scaled(trial)[0] < fbest - 1e-10 * abs(fbest):
            return trial
        below = _column_below(structure, k)
        if (best[below] != 0).any():
            mirror = best.copy()
            mirror[below] = -best[below]
            if scaled(mirror)[1][k] < -ESCAPE_SLOPE:
                return mirror
    return None


def _column_below(structure: Structure, k: int) -> np.ndarray:
    """Indices in θ of the elements below diagonal element ``k`` in its template's column."""
    for block in structure.blocks:
        local = k - block.theta_offset
        if 0 <= local < block.n_theta:
            column = block.theta_cols[local]
            return block.theta_offset + np.flatnonzero((block.theta_cols == column) & (block.theta_rows > column))
    raise IndexError(k)


def is_singular(theta: np.ndarray, diagonal: np.ndarray, tol: float = SINGULAR_TOL, scale: np.ndarray | None = None) -> bool:
    """lme4's ``isSingular``: some diagonal element of a template is (nearly) zero.

    With ``scale`` (:attr:`Structure.row_scale`) the test is on θ̃ = θ * scale, which does not
    depend on the units of the predictors; lme4 tests θ itself.
    """
    scaled = theta if scale is None else theta * scale
    return bool((scaled[diagonal] < tol).any())


def _stationary(criterion: ProfiledCriterion, theta: np.ndarray) -> bool:
    """Projected gradient small relative to the criterion: accepted as converged."""
    _, grad = criterion.value_and_gradient(theta)
    grad = grad / criterion.structure.row_scale  # with respect to θ̃: independent of the predictors' units
    at_lower = criterion.structure.diagonal() & (theta <= 0)
    projected = np.where(at_lower, np.minimum(grad, 0.0), grad)
    return bool(np.max(np.abs(projected)) < 1e-4)

