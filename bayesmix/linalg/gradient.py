"""The exact gradient in θ of criteria built on the blocked factor, for any number of
grouping factors.

The profiled (RE)ML criterion (:mod:`bayesmix.reml.criterion`) and the collapsed likelihood
(:mod:`bayesmix.linalg.collapsed`) are both of the form

    d(θ) = log|M| + h(S),    M = Λ'Z'ZΛ + I,    S = [X y]'[X y] - B'M⁻¹B,    B = Λ'Z'[X y],

with h a function of the ``[X y]`` Schur complement S alone (for the profiled criterion,
log|R_X|² and ν log r_yy²; their F = ∂h/∂S is :func:`~bayesmix.linalg.kernels.schur_terms`).
With P = M⁻¹, G = PB (the spherical modes of each column of ``[X y]``) and
K = Z'[X y] - Z'ZΛG, a perturbation of Λ changes d by

    dd = 2 tr(H dΛ),    H = PΛ'Z'Z - G F K',

(dM = dΛ'Z'ZΛ + Λ'Z'Z dΛ; dS = -dB'G - G'dB + G'dM G; the derivative of β̂ and û drops
out). Λ repeats a template T_k over the levels of factor k, so ∂d/∂T_k = 2 (Σ_l H_ll)', the
sum over its levels of H's diagonal blocks. Those need P only where Z'Z has entries: P's
diagonal blocks for the first factor, P21 on the pattern of Z2'Z1 and the dense P22
(:attr:`~bayesmix.linalg.factorization.Factorization.selected_inverse`). With one grouping
factor this is :func:`~bayesmix.linalg.kernels.first_block_gradient`, compiled.
"""

from __future__ import annotations

import numpy as np

from ..data.blocks import CrossProducts
from ..data.layout import Structure
from .factorization import Factorization, SchurFactor
from .kernels import rest_block_trace, rest_pairs_trace


def schur_gradient(structure: Structure, cp: CrossProducts, f: Factorization, F: np.ndarray) -> np.ndarray:
    """∂/∂θ of log|Λ'Z'ZΛ + I| + h(S) at the factor ``f`` of the cross-products ``cp``, given
    the symmetric F = ∂h/∂S ((p+1) x (p+1)).

    Returns the gradient in :class:`~bayesmix.data.layout.Structure` order.
    """
    return theta_entries(structure, template_gradients(structure, cp, f, F))


def template_gradients(structure: Structure, cp: CrossProducts, f: Factorization, F: np.ndarray,
                       modes: tuple | None = None) -> list[np.ndarray]:
    """∂/∂T_k of log|Λ'Z'ZΛ + I| + h(S) for the template T_k (q_k x q_k) of each factor block,
    every entry (above the diagonal too), as :func:`schur_gradient` reads them; ``modes`` is
    :func:`modes_and_residuals` when the caller has it."""
    blocks = structure.blocks
    P11, P21, P22 = f.selected_inverse
    G1, G2, K1, K2 = modes_and_residuals(cp, f) if modes is None else modes
    T1 = f.lambda1
    H = [np.einsum("lak,lkb->ab", P11, T1.T @ cp.A11) - _level_sum(G1, F, K1)]
    if G2 is not None:
        lam2 = f.lambda2
        H[0] += P21.T @ f.rest_first
        _, rows, values = cp.A21_levels
        pos, q, factor, column = lam2.row_templates()
        q_max = int(q.max())
        trace = rest_pairs_trace(rows, pos, q, factor, P21, values @ T1, len(blocks) - 1, q_max)
        trace += rest_block_trace(P22, cp.A22, pos, q, factor, column, len(blocks) - 1, q_max)
        for k, (rows_k, levels, T) in enumerate(lam2.parts):
            size = T.shape[0]
            G, K = G2[rows_k].reshape(levels, size, -1), K2[rows_k].reshape(levels, size, -1)
            H.append(trace[k, :size, :size] - _level_sum(G, F, K))
    return [2.0 * Hk.T for Hk in H]


def theta_entries(structure: Structure, templates: list[np.ndarray]) -> np.ndarray:
    """The entries of per-block template matrices (as :func:`template_gradients`) at θ's
    positions, in :class:`~bayesmix.data.layout.Structure` order."""
    out = np.empty(structure.n_theta)
    for block, D in zip(structure.blocks, templates):
        out[block.theta_offset : block.theta_offset + block.n_theta] = D[block.theta_rows, block.theta_cols]
    return out


def modes_and_residuals(cp: CrossProducts, f: Factorization) -> tuple:
    """G = M⁻¹Λ'Z'[X y] and K = Z'[X y] - Z'ZΛG, each as the first block (levels1, q1, p+1) and
    the rest block (Q2, p+1) (None with a single factor)."""
    G1, G2 = f.effects_solution()
    LG1 = np.einsum("ij,ljc->lic", f.lambda1, G1)
    K1 = cp.A1X - cp.A11 @ LG1
    if G2 is None:
        return G1, None, K1, None
    LG2 = f.lambda2.rows(G2)
    K1 -= (cp.A21.T @ LG2).reshape(K1.shape)
    K2 = cp.A2X - cp.A21 @ LG1.reshape(-1, LG1.shape[2]) - cp.A22 @ LG2
    return G1, G2, K1, K2


def _level_sum(G: np.ndarray, F: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Σ_l G_l F K_l' over the levels of one factor (G, K of shape (levels, q, p+1))."""
    return np.einsum("lam,mn,lbn->ab", G, F, K)


def average_information(structure: Structure, cp: CrossProducts, f: Factorization, reml: bool, dof: float,
                        modes: tuple | None = None) -> np.ndarray:
    """The average-information approximation of the Hessian in θ of the profiled criterion
    (Gilmour, Thompson & Cullis 1995), at the factor ``f``: dim(θ) x dim(θ), positive semi-definite.

    With V = σ²Ṽ, Ṽ = ZΛΛ'Z' + W⁻¹, P̃ = Ṽ⁻¹ - Ṽ⁻¹X(X'Ṽ⁻¹X)⁻¹X'Ṽ⁻¹ (REML; Ṽ⁻¹ for ML),
    e = P̃y (the conditional residuals), r² = y'P̃y and w_i = Z ∂(ΛΛ')/∂θ_i Z'e, the average
    information of (θ, σ²) with σ² profiled out at r²/ν is, for d = -2 log L,

        A_ij = ν/r² (w_i'P̃w_j - (w_i'e)(w_j'e)/r²).

    Everything is read from the cross-products and the factor: Z'e = K (-β̂, 1) (K as in the
    gradient), w_i = Zc_i with c_i = ∂(ΛΛ')/∂θ_i Z'e, w_i'Ṽ⁻¹w_j = c_i'Z'Zc_j - v_i'M⁻¹v_j with
    v = Λ'Z'Zc, and X'Ṽ⁻¹w = X'Z(c - ΛM⁻¹v): per θ element, one product with Z'Z and one solve.
    ``modes`` as for :func:`template_gradients`.
    """
    p = cp.p
    _, _, K1, K2 = modes_and_residuals(cp, f) if modes is None else modes
    e = np.append(-f.factored_beta, 1.0)
    z1 = K1 @ e
    z2 = None if K2 is None else K2 @ e
    T1 = f.lambda1
    m = structure.n_theta
    C1, C2 = np.zeros((m, *z1.shape)), None if z2 is None else np.zeros((m, len(z2)))
    for i, block_index, dSigma in sigma_derivatives(structure, f.theta):
        if block_index == 0:
            C1[i] = z1 @ dSigma
        else:
            rows, levels, T = f.lambda2.parts[block_index - 1]
            C2[i, rows] = (z2[rows].reshape(levels, len(T)) @ dSigma).ravel()
    AC1 = np.einsum("lij,mlj->mli", cp.A11, C1)  # Z1'Z c, the first block's rows
    if z2 is None:
        S1 = np.moveaxis(f.solve(np.moveaxis(AC1 @ T1, 0, -1))[0], -1, 0)  # M⁻¹v, v = Λ'Z'Zc
        quadratic = np.einsum("mli,nli->mn", C1, AC1) - np.einsum("mli,nli->mn", AC1 @ T1, S1)
        projected = np.einsum("mli,lip->mp", C1 - S1 @ T1.T, cp.A1X[:, :, :p])  # X'Z(c - ΛM⁻¹v)
    else:
        lam2 = f.lambda2
        AC1 += (cp.A21.T @ C2.T).T.reshape(AC1.shape)
        AC2 = cp.A21 @ C1.reshape(m, -1).T + cp.A22 @ C2.T  # (Q2, m)
        V2 = lam2.t_rows(AC2)
        S1, S2 = f.solve(np.moveaxis(AC1 @ T1, 0, -1), V2)
        S1 = np.moveaxis(S1, -1, 0)
        quadratic = (np.einsum("mli,nli->mn", C1, AC1) + C2 @ AC2
                     - np.einsum("mli,nli->mn", AC1 @ T1, S1) - V2.T @ S2)
        projected = (np.einsum("mli,lip->mp", C1 - S1 @ T1.T, cp.A1X[:, :, :p])
                     + (C2 - lam2.rows(S2).T) @ cp.A2X[:, :p])
    residual = C1.reshape(m, -1) @ z1.ravel() + (0.0 if z2 is None else C2 @ z2)
    return information_from(quadratic, projected, residual, f, reml, dof)


def sigma_derivatives(structure: Structure, theta: np.ndarray):
    """For each θ element i: i, the index of its factor block k and ∂(T_k T_k')/∂θ_i (q_k x q_k)."""
    for block_index, block in enumerate(structure.blocks):
        T = block.lambda_(theta)
        for j in range(block.n_theta):
            dT = np.zeros_like(T)
            dT[block.theta_rows[j], block.theta_cols[j]] = 1.0
            yield block.theta_offset + j, block_index, dT @ T.T + T @ dT.T


def information_from(quadratic: np.ndarray, projected: np.ndarray, residual: np.ndarray, f: SchurFactor, reml: bool,
                     dof: float) -> np.ndarray:
    """The average information (:func:`average_information`) from w_i'Ṽ⁻¹w_j (``quadratic``), X'Ṽ⁻¹w_i
    (rows of ``projected``) and w_i'e (``residual``), whichever factorisation computed them."""
    if reml and f.p:
        quadratic = quadratic - projected @ f.rx_inverse @ projected.T
    r2 = f.pwrss
    return dof / r2 * (quadratic - np.outer(residual, residual) / r2)


def template_second_order(structure: Structure, theta: np.ndarray, templates: list[np.ndarray]) -> np.ndarray:
    """The criterion's second-order term in θ through Σ_k = T_k T_k': with G_k = ∂d/∂Σ_k =
    (∂d/∂T_k) T_k⁻¹ / 2 (``templates`` as :func:`template_gradients`), the Hessian of d in θ is
    J'(∂²d/∂Σ²)J plus Σ_k tr(G_k ∂²Σ_k/∂θ_i∂θ_j), which is 2 G_k[r_i, r_j] for elements i, j of
    block k in one column of T_k and 0 otherwise; this returns the latter. The average
    information approximates the former; this term vanishes at an optimum off the bounds and
    makes the curvature near a variance of 0 right (for a scalar term it is (∂d/∂θ)/θ). Blocks
    whose template is singular (a diagonal element at 0) get 0."""
    out = np.zeros((structure.n_theta, structure.n_theta))
    for block, D in zip(structure.blocks, templates):
        T = block.lambda_(theta)
        if not (np.diag(T) > 0).all():
            continue
        G = np.linalg.solve(T.T, D.T).T / 2.0  # D T⁻¹ / 2
        G = (G + G.T) / 2.0
        idx = block.theta_offset + np.arange(block.n_theta)
        same_column = block.theta_cols[:, None] == block.theta_cols[None, :]
        out[np.ix_(idx, idx)] = np.where(same_column, 2.0 * G[block.theta_rows[:, None], block.theta_rows[None, :]], 0.0)
    return out


def positive_part(A: np.ndarray) -> np.ndarray:
    """The positive semi-definite part of the symmetric A (its negative eigenvalues set to 0)."""
    values, vectors = np.linalg.eigh(A)
    return (vectors * np.maximum(values, 0.0)) @ vectors.T
