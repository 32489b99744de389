"""Kenward and Roger's (1997) adjusted covariance of β̂ and denominator degrees of freedom, as
pbkrtest computes them (``vcovAdj``, ``Lb_ddf``, ``KRmodcomp``).

The covariance of the responses is linear in the variance parameters γ (the variances and
covariances of each random-effects term, then σ²):

    Σ = Σ_i γ_i G_i,   G_i = Z E_i Z' (E_i: one variance or covariance, repeated over the levels),  G_σ² = I.

With Φ = (X'Σ⁻¹X)⁻¹, P_i = -X'Σ⁻¹G_iΣ⁻¹X, Q_ij = X'Σ⁻¹G_iΣ⁻¹G_jΣ⁻¹X, the REML expected
information (times 2) I_ij = tr(Σ⁻¹G_iΣ⁻¹G_j) - 2 tr(ΦQ_ij) + tr(ΦP_iΦP_j) and W = 2 I⁻¹, the
adjusted covariance is

    Φ_A = Φ + 2 Φ [Σ_ij W_ij (Q_ij - P_iΦP_j)] Φ.

pbkrtest forms the n x n matrix Σ⁻¹. Here every quantity is a sandwich [Z X]'Σ⁻ᵏ[Z X]
(k = 1, 2, 3) of the cross-products, by Woodbury's identity Σ⁻¹ = σ⁻²(I - Z K Z') with
K = Λ(Λ'Z'ZΛ + I)⁻¹Λ':

    [Z X]'Σ⁻ᵏ[Z X] = σ⁻² ([Z X]'Σ⁻⁽ᵏ⁻¹⁾[Z X] - [Z X]'Σ⁻⁽ᵏ⁻¹⁾Z K Z'[Z X]),

so the cost is that of dense algebra on the q random effects (O(q³) time, a few q x q matrices of
memory), not on the n observations. Prior weights enter as in the fit (the whitened rows), so
the residual's G is W⁻¹.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp

from ..data.blocks import CrossProducts
from ..data.layout import Structure
from ..errors import ArgumentError
from ..threads import one_blas_thread

# the dense algebra holds about six (q + p) x (q + p) matrices: 10,000 random effects take 5 GB
MAX_RANDOM_EFFECTS = 10_000

# an index pair (a, b) stands for J_a J_b', J_a selecting one random-effect column over all levels
Pairs = list[tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class KenwardRoger:
    """pbkrtest's ``vcovAdj`` of a REML fit and the tests it makes.

    Attributes
    ----------
    vcov_beta
        Φ, the unadjusted covariance of β̂ (lme4's ``vcov``).
    vcov_adjusted
        Φ_A, Kenward and Roger's adjusted covariance.
    P
        P_i per variance parameter, (g, p, p).
    W
        2 I⁻¹, the variance parameters' asymptotic covariance, (g, g).
    """

    vcov_beta: np.ndarray
    vcov_adjusted: np.ndarray
    P: np.ndarray
    W: np.ndarray

    def df(self, L: np.ndarray) -> float:
        """Denominator df for the hypothesis Lβ = 0 with as many numerator df as L has rows (pbkrtest's ``Lb_ddf``)."""
        L = np.atleast_2d(L)
        return self._ddf_and_scaling(L, L.shape[0])[0]

    def f_test(self, L: np.ndarray, beta: np.ndarray) -> tuple[float, int, float, float]:
        """Scaled F statistic, numerator df (the rank of L), denominator df and the scaling λ of
        Lβ = 0 (pbkrtest's ``KRmodcomp``: F = λ (Lβ̂)'(LΦ_AL')⁻¹(Lβ̂)/q)."""
        L = np.atleast_2d(L)
        q = int(np.linalg.matrix_rank(L))
        ddf, scaling = self._ddf_and_scaling(L, q)
        Lb = L @ beta
        wald = float(Lb @ np.linalg.solve(L @ self.vcov_adjusted @ L.T, Lb))
        return scaling * wald / q, q, ddf, scaling

    def _ddf_and_scaling(self, L: np.ndarray, q: int) -> tuple[float, float]:
        """Kenward and Roger's denominator df m and the F statistic's scaling λ (pbkrtest's ``.KR_adjust``)."""
        Phi = self.vcov_beta
        Theta = L.T @ np.linalg.solve(L @ Phi @ L.T, L)
        U = Theta @ Phi @ self.P @ Phi  # (g, p, p)
        traces = np.trace(U, axis1=1, axis2=2)
        A1 = float(traces @ self.W @ traces)
        A2 = float(np.einsum("ij,iab,jba->", self.W, U, U))
        B = (A1 + 6.0 * A2) / (2.0 * q)
        g = ((q + 1.0) * A1 - (q + 4.0) * A2) / ((q + 2.0) * A2)
        denominator = 3.0 * q + 2.0 * (1.0 - g)
        c1, c2, c3 = g / denominator, (q - g) / denominator, (q + 2.0 - g) / denominator
        V0, V1, V2 = 1.0 + c1 * B, 1.0 - c2 * B, 1.0 - c3 * B
        V0 = 0.0 if abs(V0) < 1e-10 else V0
        ratio = 1.0 if abs(1.0 - A2 / q) < 1e-14 and abs(V1) < 1e-14 else (1.0 - A2 / q) / V1
        rho = ratio**2 * V0 / (q * V2)
        ddf = 4.0 + (q + 2.0) / (q * rho - 1.0)
        scaling = 1.0 if abs(ddf - 2.0) < 0.01 else ddf * (1.0 - A2 / q) / (ddf - 2.0)
        return float(ddf), float(scaling)


def kenward_roger(cp: CrossProducts, structure: Structure, theta: np.ndarray, sigma: float,
                  vcov_beta: np.ndarray) -> KenwardRoger:
    """:class:`KenwardRoger` at θ and σ from the cross-products ``cp`` of a design (the response
    column is not read); ``vcov_beta`` is Φ = σ²(R_X R_X')⁻¹ of the fit. ArgumentError beyond
    MAX_RANDOM_EFFECTS random effects, whose dense algebra would not fit in memory."""
    q = sum(b.n_levels * b.q for b in structure.blocks)
    if q > MAX_RANDOM_EFFECTS:
        raise ArgumentError(
            f"Kenward-Roger's method needs dense algebra on the {q} random effects of this model (at most "
            f"{MAX_RANDOM_EFFECTS}: it holds several q x q matrices); use ddf='satterthwaite', which scales as the fit does."
        )
    with one_blas_thread():  # as the fits (see bayesmix.threads): 7x faster for the music model on a loaded machine
        return _adjusted(cp, structure, theta, sigma, vcov_beta, q)


def _adjusted(cp: CrossProducts, structure: Structure, theta: np.ndarray, sigma: float, vcov_beta: np.ndarray,
              q: int) -> KenwardRoger:
    """:func:`kenward_roger`'s algebra, for q random effects."""
    C = _dense_cross_products(cp)
    p = cp.p
    Lam = _dense_lambda(structure, theta)
    A = Lam.T @ C[:q, :q] @ Lam  # Λ'Z'ZΛ + I
    A[np.diag_indices_from(A)] += 1.0
    K = Lam @ la.cho_solve(la.cho_factor(A, lower=True), Lam.T)
    KC = K @ C[:q, :]
    S = [C]
    for _ in range(3):  # [Z X]'Σ⁻ᵏ[Z X], k = 1, 2, 3
        S.append((S[-1] - S[-1][:, :q] @ KC) / sigma**2)
    KM = KC[:, :q]
    trace_sigma2 = (cp.n - 2.0 * np.trace(KM) + np.sum(KM * KM.T)) / sigma**4  # tr(Σ⁻²)
    z, x = slice(0, q), slice(q, q + p)
    S1, S2, S3 = S[1], S[2], S[3]

    params: list[Pairs | None] = _variance_parameters(structure) + [None]  # None: σ², whose G is I
    g = len(params)
    # per parameter, X'Σ⁻¹G_iΣ⁻¹[Z X] and X'Σ⁻¹G_iΣ⁻²[Z X]
    once = [S2[x, :] if pairs is None else _apply(S1[x, z], pairs, S1[z, :]) for pairs in params]
    twice = [S3[x, :] if pairs is None else _apply(S1[x, z], pairs, S2[z, :]) for pairs in params]
    P = np.stack([-0.5 * (a[:, x] + a[:, x].T) for a in once])
    Q, Ktrace = {}, np.empty((g, g))
    for i in range(g):
        for j in range(i, g):  # Q_ij = X'Σ⁻¹G_iΣ⁻¹ G_j Σ⁻¹X
            Q[i, j] = twice[i][:, x] if params[j] is None else _apply(once[i][:, z], params[j], S1[z, x])
            Ktrace[i, j] = Ktrace[j, i] = _trace(params[i], params[j], S1[z, z], S2[z, z], trace_sigma2)
    Phi = vcov_beta
    info = np.empty((g, g))
    for i in range(g):
        for j in range(i, g):
            info[i, j] = info[j, i] = Ktrace[i, j] - 2.0 * np.sum(Phi * Q[i, j]) + np.sum((Phi @ P[i]) * (P[j] @ Phi))
    eigen = np.linalg.eigvalsh(info)
    W = 2.0 * (np.linalg.inv(info) if np.min(np.abs(eigen)) > 1e-10 else np.linalg.pinv(info))
    W = 0.5 * (W + W.T)
    U = np.zeros((p, p))
    for i in range(g):
        for j in range(i + 1, g):
            U += W[i, j] * (Q[i, j] - P[i] @ Phi @ P[j])
    U = U + U.T
    for i in range(g):
        U += W[i, i] * (Q[i, i] - P[i] @ Phi @ P[i])
    adjusted = Phi + 2.0 * Phi @ U @ Phi
    return KenwardRoger(Phi, 0.5 * (adjusted + adjusted.T), P, W)


def _trace(pairs_i, pairs_j, S1zz: np.ndarray, S2zz: np.ndarray, trace_sigma2: float) -> float:
    """tr(Σ⁻¹G_iΣ⁻¹G_j)."""
    if pairs_i is None and pairs_j is None:
        return trace_sigma2
    if pairs_i is None or pairs_j is None:  # tr(E Z'Σ⁻²Z)
        pairs = pairs_j if pairs_i is None else pairs_i
        return float(sum(np.sum(S2zz[b, a]) for a, b in pairs))
    return float(sum(np.sum(S1zz[np.ix_(b, c)] * S1zz[np.ix_(d, a)].T) for a, b in pairs_i for c, d in pairs_j))


def _apply(left: np.ndarray, pairs: Pairs, right: np.ndarray) -> np.ndarray:
    """left E right for E = Σ J_a J_b' over ``pairs``."""
    return sum(left[:, a] @ right[b, :] for a, b in pairs)


def _variance_parameters(structure: Structure) -> list[Pairs]:
    """Per variance and covariance of each random-effects term (pbkrtest's ``ggamma`` but σ²),
    E_i as index pairs into the random effects, laid out as the factorisation lays them out
    (the first factor level by level, then the others factor by factor)."""
    params, offset = [], 0
    for block in structure.blocks:
        index = offset + np.arange(block.n_levels * block.q).reshape(block.n_levels, block.q)
        for cols in block.term_slices:
            columns = range(block.q)[cols]
            for i, a in enumerate(columns):
                for b in columns[i:]:
                    ia, ib = index[:, a], index[:, b]
                    params.append([(ia, ia)] if a == b else [(ia, ib), (ib, ia)])
        offset += block.n_levels * block.q
    return params


def _dense_lambda(structure: Structure, theta: np.ndarray) -> np.ndarray:
    """Λ as a dense matrix over all random effects."""
    return sp.block_diag([sp.kron(sp.eye(b.n_levels), b.lambda_(theta)) for b in structure.blocks]).toarray()


def _dense_cross_products(cp: CrossProducts) -> np.ndarray:
    """[Z X]'[Z X] as a dense matrix, random effects first (the response column left out)."""
    levels, q1 = cp.A11.shape[:2]
    Q1, p = levels * q1, cp.p
    Q2 = 0 if cp.single_factor else cp.A22.shape[0]
    q = Q1 + Q2
    C = np.zeros((q + p, q + p))
    index = np.arange(Q1).reshape(levels, q1)
    C[index[:, :, None], index[:, None, :]] = cp.A11
    C[:Q1, q:] = cp.A1X[:, :, :p].reshape(Q1, p)
    if Q2:
        C[Q1:q, :Q1] = cp.A21.toarray()
        C[:Q1, Q1:q] = C[Q1:q, :Q1].T
        C[Q1:q, Q1:q] = cp.A22
        C[Q1:q, q:] = cp.A2X[:, :p]
    C[q:, :q] = C[:q, q:].T
    C[q:, q:] = cp.AXX[:p, :p]
    return C
