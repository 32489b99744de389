"""Refits of a point-estimate fit to a new response on the same design (lme4's ``refit``).

A linear mixed model's cross-products ``[Z X y]' W [Z X y]`` change with y only in their y
column: :class:`LinearRefit` computes ``Z'WZ``, ``Z'WX`` and ``X'WX`` once and, for each new
response, only ``Z'W r``, ``X'W r`` and ``r'W r`` of its residual r from the least-squares fit
on X (the shift that keeps the cross-products precise, as
:func:`~bayesmix.data.crossprod.shifted_cross_products`), then optimises θ from the fitted θ̂
(lme4's ``refit`` starts there too). A GLMM is refitted by :func:`~bayesmix.reml.glmm.fit_glmm`
on the same design with the new response (:meth:`GlmmResult.refitter`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from ..data.blocks import CrossProducts
from ..data.crossprod import CrossProductPlan
from ..data.design import Design
from ..data.layout import Structure
from ..errors import ArgumentError, FitError
from ..linalg.factorization import Factorization
from ..threads import one_blas_thread
from .criterion import ProfiledCriterion, profiled_criterion
from .optimize import OptSummary, is_singular, optimize_theta
from .parameters import parameter_vector
from .quasi_newton import CompiledBFGS, start_hessian

if TYPE_CHECKING:
    from .point import PointFit


def fit_profiled(result_type: type[PointFit], design: Design, structure: Structure, criterion: ProfiledCriterion,
                 theta0: np.ndarray | None = None, warn: bool = True) -> PointFit:
    """Optimise ``criterion`` over θ (from ``theta0``, else lme4's start) and read the fit
    (:func:`profiled_result`)."""
    with one_blas_thread():  # see bayesmix.threads
        opt = optimize_theta(criterion, theta0)
    return profiled_result(result_type, design, structure, criterion, opt, warn)


def profiled_result(result_type: type[PointFit], design: Design, structure: Structure, criterion: ProfiledCriterion,
                    opt: OptSummary, warn: bool = True) -> PointFit:
    """Factor ``criterion`` at the optimum ``opt`` and read the fit as ``result_type``
    (:class:`~bayesmix.RemlResult`); warn for a singular fit when ``warn``. Raises FitError for
    a factor that does not exist at the optimum or non-finite estimates."""
    result = result_type(design, criterion.reml, structure, factor_at_optimum(criterion, opt), opt, opt.fmin)
    check_finite_result(result)
    if warn:
        result.warn_if_singular()
    return result


def factor_at_optimum(criterion: ProfiledCriterion, opt: OptSummary) -> Factorization:
    """The factor of ``criterion`` at the optimiser's θ, or FitError if it does not exist."""
    try:
        return criterion.factorize(opt.final)
    except np.linalg.LinAlgError as exc:
        raise FitError(
            f"The Cholesky factor does not exist at the optimum θ = {opt.final.tolist()} ({exc}). Rescale the response "
            f"and predictors, or simplify the random effects. Optimiser record: {opt}",
            opt,
        ) from None


def maximum_likelihood(fit: PointFit) -> PointFit:
    """``fit`` itself unless it is a REML fit, which is refitted by maximum likelihood from its θ̂
    (lme4's ``refitML``)."""
    if not getattr(fit, "reml", False):
        return fit
    criterion = profiled_criterion(fit.design, fit.structure, reml=False)
    return fit_profiled(type(fit), fit.design, fit.structure, criterion, theta0=fit.theta_values, warn=False)


def check_finite_result(result: PointFit) -> None:
    """FitError naming the non-finite estimates, so that no NaN leaves a fit silently."""
    f = result.factorization
    estimates = {"criterion": [result.criterion], "theta": f.theta, "Cholesky factor R": f.R}
    if np.isfinite(f.R).all():  # β and σ are computed from R
        try:
            estimates["beta"] = f.beta
        except np.linalg.LinAlgError:  # a zero on R's diagonal
            estimates["beta"] = [np.nan]
        estimates["sigma"] = [result.sigma]
    bad = [name for name, values in estimates.items() if not np.isfinite(values).all()]
    if bad:
        raise FitError(
            f"The fit produced non-finite {', '.join(bad)} (the cross-products are numerically singular or overflow). "
            f"Rescale the response and predictors, and check for near-duplicate columns. Optimiser record: {result.optsummary}",
            result.optsummary,
        )


def with_response(design: Design, y: np.ndarray) -> Design:
    """``design`` with the response ``y`` in place of its own (and in the kept data frame's
    response column, so that a saved refit rebuilds it): no formula or design is rebuilt."""
    rows = design.rows
    frame = rows.frame
    if frame is not None and design.response in frame.columns:
        frame = frame.assign(**{design.response: y})
    return dataclasses.replace(design, source=dataclasses.replace(rows, y=y, frame=frame))


def checked_response(fit: PointFit, y) -> np.ndarray:
    """``y`` as a float array of one value per fitted row, or ArgumentError."""
    values = np.asarray(getattr(y, "values", y), dtype=float)
    if values.shape != (fit.nobs,):
        raise ArgumentError(
            f"refit takes one response value per fitted row ({fit.nobs}), not an array of shape {values.shape}; "
            "e.g. fit.refit(fit.simulate(1, seed=1)['sim_1'])."
        )
    if not np.isfinite(values).all():
        raise ArgumentError("refit takes a finite response: the new y has NaN or infinite values.")
    return values


class LinearRefit:
    """Refits of a linear mixed model (:class:`~bayesmix.RemlResult`) to new responses; see the
    module docstring. Calling it with a response gives the new fit.

    Parameters
    ----------
    fit
        The fit whose design, criterion (REML or ML) and θ̂ the refits start from.
    """

    def __init__(self, fit: PointFit):
        design = fit.design
        rows = design.rows
        self.fit = fit
        self.structure = structure = fit.structure
        self.offset = rows.offset
        root = np.ones(rows.n) if rows.weights is None else np.sqrt(rows.weights)
        self.log_weights = 0.0 if rows.weights is None else float(np.sum(np.log(rows.weights)))
        self.X = rows.X
        white_X = root[:, None] * rows.X
        size = np.abs(white_X).max(axis=0) if design.p else np.ones(0)
        size = np.where(size > 0, size, 1.0)
        # c = pinv(√W X) √W y: the least-squares shift (scaled columns, as crossprod.least_squares)
        self.projector = (np.linalg.pinv(white_X / size) / size[:, None]) * root if design.p else None
        plan = CrossProductPlan(structure)
        self.base = plan.products(rows.X, np.zeros(rows.n), rows.weights)
        first = structure.blocks[0]
        w = np.ones(rows.n) if rows.weights is None else rows.weights
        self.first_index = (first.codes[:, None] * first.q + np.arange(first.q)).ravel()
        self.first_values = (w[:, None] * first.z).ravel()
        self.first_shape = (first.n_levels, first.q)
        self.wX = w[:, None] * rows.X
        self.w = w
        if len(structure.blocks) > 1:
            self.rest_index = plan.rest_columns.ravel()
            self.rest_values = (w[:, None] * plan.rest_values).ravel()
            self.rest_width = plan.rest_columns.shape[1]
            self.rest_size = plan.size
        self.hessian = None
        if len(structure.blocks) == 1:  # the compiled optimiser (see optimum) starts from the fit's Hessian
            self.hessian = start_hessian(self.criterion(self.cross_products(rows.y)), fit.theta_values)

    def cross_products(self, y: np.ndarray) -> tuple[CrossProducts, np.ndarray | None]:
        """The cross-products of ``[Z X, y - offset - X c]`` and the shift c, from the stored
        ``Z'WZ``, ``Z'WX`` and ``X'WX`` and one pass over the new response."""
        base, p = self.base, self.X.shape[1]
        r = y if self.offset is None else y - self.offset
        shift = self.projector @ r if p else None
        if p:
            r = r - self.X @ shift
        A1X = base.A1X.copy()
        A1X[:, :, p] = np.bincount(self.first_index, self.first_values * np.repeat(r, self.first_shape[1]),
                                   minlength=self.first_shape[0] * self.first_shape[1]).reshape(self.first_shape)
        AXX = base.AXX.copy()
        AXX[p, :p] = AXX[:p, p] = r @ self.wX
        AXX[p, p] = float(r @ (self.w * r))
        A2X = None
        if base.A2X is not None:
            A2X = base.A2X.copy()
            A2X[:, p] = np.bincount(self.rest_index, self.rest_values * np.repeat(r, self.rest_width), minlength=self.rest_size)
        return dataclasses.replace(base, A1X=A1X, AXX=AXX, A2X=A2X), shift

    def criterion(self, products: tuple[CrossProducts, np.ndarray | None]) -> ProfiledCriterion:
        """The fit's criterion (REML or ML) on the cross-products and shift of :meth:`cross_products`."""
        crossprod, shift = products
        return ProfiledCriterion(self.structure, crossprod, reml=self.fit.reml, beta_shift=shift,
                                 log_weights=self.log_weights)

    def optimum(self, criterion: ProfiledCriterion) -> OptSummary:
        """The optimiser's record of a refit, from the fit's θ̂: with one grouping factor by the
        compiled projected BFGS (:mod:`bayesmix.reml.quasi_newton`), from the fit's Hessian; with
        several by :func:`~bayesmix.reml.optimize.optimize_theta`'s default minimiser."""
        minimizer = None if self.hessian is None else CompiledBFGS(criterion, self.hessian)
        with one_blas_thread():  # see bayesmix.threads
            return optimize_theta(criterion, self.fit.theta_values, minimizer=minimizer)

    def __call__(self, y, warn: bool = True) -> PointFit:
        """The fit of the same model to the response ``y`` (one value per fitted row)."""
        y = checked_response(self.fit, y)
        criterion = self.criterion(self.cross_products(y))
        return profiled_result(type(self.fit), with_response(self.fit.design, y), self.structure, criterion,
                               self.optimum(criterion), warn)

    def estimates(self, y: np.ndarray) -> RefitEstimates:
        """The estimates of the refit to ``y`` (one finite value per fitted row, unchecked) without
        building its fit object, for the bootstrap's default statistic: those of :meth:`__call__`.
        Raises FitError as a fit does; ConvergenceWarning when the optimiser did not report
        convergence."""
        criterion = self.criterion(self.cross_products(y))
        opt = self.optimum(criterion)
        f = factor_at_optimum(criterion, opt)
        sigma = float(np.sqrt(f.pwrss / criterion.dof))
        beta = f.beta
        if not (np.isfinite(sigma) and np.isfinite(beta).all()):
            raise FitError(f"The refit produced a non-finite σ or β (σ = {sigma}, β = {beta.tolist()}). Rescale the "
                           f"response and predictors. Optimiser record: {opt}", opt)
        parameters = parameter_vector(self.structure, opt.final, sigma, [sigma], beta)
        singular = is_singular(opt.final, self.structure.diagonal(), scale=self.structure.row_scale)
        return RefitEstimates(parameters, opt.fmin, singular, opt.converged)


@dataclasses.dataclass(frozen=True)
class RefitEstimates:
    """What :meth:`LinearRefit.estimates` reads off a refit.

    Attributes
    ----------
    parameters
        Every parameter, as :func:`~bayesmix.reml.parameters.parameter_values` of the refit.
    criterion
        The REML criterion or deviance at the optimum.
    singular, converged
        Whether the refit is singular (:attr:`PointFit.singular`), and whether its optimiser
        reported convergence.
    """

    parameters: np.ndarray
    criterion: float
    singular: bool
    converged: bool
