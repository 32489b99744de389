"""The profiled (RE)ML criterion of θ (Bates et al. 2015, sec. 3), from the blocked Cholesky
factor of :mod:`bayesmix.linalg.factorization`.

The criteria (lme4's ``REMLcrit`` and ``deviance``) are

    ML:    log|L_Z|² + n (1 + log(2π r_yy² / n))
    REML:  log|L_Z|² + log|R_X|² + (n-p) (1 + log(2π r_yy² / (n-p)))

The gradient with respect to θ is exact for any number of grouping factors
(see :meth:`ProfiledCriterion.value_and_gradient`).

Two factorisations of Λ'Z'ZΛ + I compute it: the blocked one
(:mod:`bayesmix.linalg.factorization`, a dense block for the factors after the first) and the
sparse one (:mod:`bayesmix.linalg.sparse`, CHOLMOD), which :func:`profiled_criterion` chooses
when that dense block would be large (:func:`choose_factorization`).
"""

from __future__ import annotations


import numpy as np

from ..data.blocks import CrossProducts
from ..data.crossprod import shifted_cross_products, shifted_sparse_cross_products
from ..data.design import Design
from ..data.layout import Structure
from ..data.sparse_crossprod import SparseCrossProducts
from ..errors import ArgumentError, BayesmixWarning, FitError, warn
from ..linalg.factorization import Factorization, available_memory, dense_block_bytes, factorize
from ..linalg.gradient import (average_information, modes_and_residuals, positive_part, schur_gradient, template_gradients,
                               template_second_order, theta_entries)
from ..linalg.kernels import schur_terms, single_factor_criterion
from ..linalg.sparse import INSTALL_HINT, SparseCholesky, SparseFactorization, cholmod_available


class ProfiledCriterion:
    """The profiled REML or ML criterion as a function of θ.

    Parameters
    ----------
    structure
        The θ layout.
    crossprod
        The cross-products of ``[Z X y]``.
    reml
        REML criterion (True) or deviance, -2 log-likelihood (False).
    beta_shift
        If the cross-products are of ``y - X c`` (a response with its least-squares fit on X
        removed, which keeps their precision when y has a large mean), c: the criterion is
        unchanged, and the factorisations report β + c.
    log_weights
        Σ log w_i of the prior weights (0 without), which the criterion subtracts: the
        log-determinant of the residual covariance σ² W⁻¹ (lme4's ``ldW``).
    """

    def __init__(self, structure: Structure, crossprod: CrossProducts, reml: bool = True,
                 beta_shift: np.ndarray | None = None, log_weights: float = 0.0):
        self.structure = structure
        self.cp = crossprod
        self.reml = reml
        self.beta_shift = beta_shift
        self.log_weights = log_weights
        self.dof = crossprod.n - crossprod.p if reml else crossprod.n
        self.evaluations = 0
        self._best: tuple[float, Factorization] | None = None  # the factor at the lowest criterion so far

    kind = "blocked"  # the factorisation, as the optimiser's summary reports it

    def factorize(self, theta: np.ndarray) -> Factorization:
        """The Cholesky factor at θ (raises numpy's LinAlgError if it does not exist).

        The factor at the lowest criterion evaluated so far is kept, so that the fit reads
        the optimum's factor without computing it again."""
        theta = np.asarray(theta, dtype=float)
        if self._best is not None and np.array_equal(self._best[1].theta, theta):
            return self._best[1]
        return self._factorize(theta)

    def _factorize(self, theta: np.ndarray) -> Factorization:
        return factorize(self.structure, self.cp, theta, self.beta_shift)

    def _gradient(self, f: Factorization, F: np.ndarray) -> np.ndarray:
        return schur_gradient(self.structure, self.cp, f, F)

    def _keep(self, value: float, f: Factorization) -> None:
        if self._best is None or value < self._best[0]:
            self._best = (value, f)

    def from_factorization(self, f: Factorization) -> float:
        """The criterion's value given the factor at θ."""
        value = f.logdet_z + self.dof * (1.0 + np.log(2.0 * np.pi * f.pwrss / self.dof)) - self.log_weights
        return float(value + f.logdet_x if self.reml else value)

    def __call__(self, theta: np.ndarray) -> float:
        """The criterion at θ (+inf where the factorisation breaks down)."""
        self.evaluations += 1
        try:
            f = self.factorize(theta)
        except np.linalg.LinAlgError:
            return np.inf
        value = self.from_factorization(f)
        self._keep(value, f)
        return value

    def value_and_gradient(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """The criterion and its exact gradient at θ ((inf, 0) where the factor does not exist).

        Writing M = Λ'Z'ZΛ + I, B = Λ'Z'[X y], G = M⁻¹B, S = [X y]'[X y] - B'G and
        F = ∂d/∂S (F = S_XX⁻¹ ⊕ 0 for the REML log-determinant plus ν/r² e e' with e = (-β, 1),
        :func:`~bayesmix.linalg.kernels.schur_terms`),

            ∂d/∂Λ = 2 (M⁻¹Λ'Z'Z - G F (Z'[X y] - Z'ZΛG)')',

        summed over the levels of each factor (:mod:`bayesmix.linalg.gradient`). With one
        grouping factor, M is block-diagonal and one compiled pass over the levels gives both.
        """
        theta = np.asarray(theta, dtype=float)
        self.evaluations += 1
        if self.kind == "blocked" and self.cp.single_factor:
            cp, block = self.cp, self.structure.blocks[0]
            value, dT = single_factor_criterion(block.lambda_(theta), cp.A11, cp.A1X, cp.AXX, cp.p, float(self.dof), self.reml)
            return float(value) - self.log_weights, dT[block.theta_rows, block.theta_cols]
        terms = self._schur_terms(theta)
        if terms is None:
            return np.inf, np.zeros_like(theta)
        value, f, F = terms
        return value, self._gradient(f, F)

    def _schur_terms(self, theta: np.ndarray) -> tuple[float, Factorization, np.ndarray] | None:
        """The criterion at θ, the factor and F = ∂h/∂S (:func:`~bayesmix.linalg.kernels.schur_terms`);
        None where the factor does not exist."""
        try:
            f = self.factorize(theta)
        except np.linalg.LinAlgError:
            return None
        value, F = schur_terms(f.R, self.cp.p, float(self.dof), self.reml)
        value = float(value + f.logdet_z) - self.log_weights
        self._keep(value, f)
        return value, f, F

    def value_gradient_curvature(self, theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """The criterion, its exact gradient and a positive semi-definite approximation of its
        Hessian at θ: the average information
        (:func:`~bayesmix.linalg.gradient.average_information`) plus the positive part of the
        second-order term through ΛΛ' (:func:`~bayesmix.linalg.gradient.template_second_order`,
        which vanishes at an optimum off the bounds, where the average information is close to
        the Hessian). (inf, 0, I) where the factor does not exist."""
        theta = np.asarray(theta, dtype=float)
        self.evaluations += 1
        terms = self._schur_terms(theta)
        if terms is None:
            return np.inf, np.zeros_like(theta), np.eye(len(theta))
        value, f, F = terms
        templates, information = self._templates_and_information(f, F)
        curvature = information + positive_part(template_second_order(self.structure, theta, templates))
        return value, theta_entries(self.structure, templates), curvature

    def _templates_and_information(self, f: Factorization, F: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        modes = modes_and_residuals(self.cp, f)
        return (template_gradients(self.structure, self.cp, f, F, modes),
                average_information(self.structure, self.cp, f, self.reml, float(self.dof), modes))


class SparseProfiledCriterion(ProfiledCriterion):
    """The profiled criterion through the sparse factorisation (:mod:`bayesmix.linalg.sparse`):
    the same parameters as :class:`ProfiledCriterion`, with sparse cross-products; CHOLMOD's
    symbolic analysis is done here, once."""

    kind = "sparse (CHOLMOD)"

    def __init__(self, structure: Structure, crossprod: SparseCrossProducts, reml: bool = True,
                 beta_shift: np.ndarray | None = None, log_weights: float = 0.0):
        super().__init__(structure, crossprod, reml, beta_shift, log_weights)
        self.cholesky = SparseCholesky(structure, crossprod, beta_shift)

    def _factorize(self, theta: np.ndarray) -> SparseFactorization:
        return self.cholesky.factorize(theta)

    def _gradient(self, f: SparseFactorization, F: np.ndarray) -> np.ndarray:
        return f.gradient(F)

    def _templates_and_information(self, f: SparseFactorization, F: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        return f.template_gradients(F), f.average_information(self.reml, float(self.dof))


FACTORIZATIONS = ("auto", "blocked", "sparse")
SPARSE_FROM = 2000  # the dense block's size Q2 from which "auto" considers the sparse path (docs/reml.md)
SPARSE_COST = 50  # measured cost of one unit of sparse work Σc² (CHOLMOD and the Takahashi recurrences) per unit of Q2³ dense


def choose_factorization(structure: Structure, factorization: str = "auto", sparse_work: "float | None" = None) -> str:
    """``"blocked"`` or ``"sparse"`` for ``structure``.

    ``"auto"`` keeps the blocked path while the dense block has at most :data:`SPARSE_FROM`
    rows. Above, with CHOLMOD installed, it takes the sparse path when the fill-reduced factor's
    work Σc² (``sparse_work``, :attr:`~bayesmix.linalg.sparse.SparseCholesky.work`) times
    :data:`SPARSE_COST` is below the dense block's Q2³, or when the dense blocks would not fit in
    memory. Without CHOLMOD it keeps the blocked path and warns, or raises
    :class:`~bayesmix.FitError` when the dense blocks would not fit in memory; both say how to
    install it. ``"sparse"`` without CHOLMOD raises the same.
    """
    if factorization not in FACTORIZATIONS:
        raise ArgumentError(f"factorization must be one of {FACTORIZATIONS}, not {factorization!r}.")
    if factorization == "blocked":
        return "blocked"
    size = structure.dense_block_size
    if factorization == "auto" and size <= SPARSE_FROM:
        return "blocked"
    need = dense_block_bytes(size)
    fits = need <= available_memory()
    if cholmod_available():
        if factorization == "sparse" or sparse_work is None or not fits:
            return "sparse"
        return "sparse" if SPARSE_COST * sparse_work < float(size) ** 3 else "blocked"
    if factorization == "sparse" or not fits:
        raise FitError(
            f"This design needs the sparse factorisation (factorization={factorization!r}: the dense blocks of the "
            f"factors after the first, {size} x {size}, would take {need / 2**30:.1f} GiB), and CHOLMOD is not "
            f"installed: {INSTALL_HINT}."
        )
    warn(BayesmixWarning(
        f"The dense block of the factors after the first is {size} x {size} ({need / 2**30:.1f} GiB, about "
        f"{size**3 / 1e9:.0f} GFLOP per evaluation): the sparse factorisation may be much faster, but CHOLMOD is not "
        f"installed: {INSTALL_HINT}."
    ))
    return "blocked"


def profiled_criterion(design: Design, structure: Structure, reml: bool, factorization: str = "auto") -> ProfiledCriterion:
    """The (RE)ML criterion of ``design``, from the cross-products of the response minus its
    least-squares fit on X (:func:`~bayesmix.data.crossprod.shifted_cross_products`): the
    criterion and θ̂ are unchanged, and the factorisations add the shift back to β̂. Prior
    weights enter through the cross-products and the criterion's Σ log w. ``factorization``
    (``"auto"``, ``"blocked"`` or ``"sparse"``) as :func:`choose_factorization`, which for
    ``"auto"`` reads the work of the sparse factor from CHOLMOD's ordering of this design, in
    memory or not (dask: the sparse cross-products come from its statistics)."""
    weights = design.rows.weights if design.in_memory else None
    log_weights = 0.0 if weights is None else float(np.sum(np.log(weights)))
    if choose_factorization(structure, factorization) == "sparse":
        crossprod, shift = shifted_sparse_cross_products(design)
        sparse = SparseProfiledCriterion(structure, crossprod, reml=reml, beta_shift=shift, log_weights=log_weights)
        if factorization == "sparse" or choose_factorization(structure, factorization, sparse.cholesky.work) == "sparse":
            return sparse
    crossprod, shift = shifted_cross_products(design, structure)
    return ProfiledCriterion(structure, crossprod, reml=reml, beta_shift=shift, log_weights=log_weights)
