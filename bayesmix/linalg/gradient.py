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
from .factorization import Factorization
from .kernels import rest_block_trace, rest_pairs_trace


def schur_gradient(structure: Structure, cp: CrossProducts, f: Factorization, F: np.ndarray) -> np.ndarray:
    """∂/∂θ of log|Λ'Z'ZΛ + I| + h(S) at the factor ``f`` of the cross-products ``cp``, given
    the symmetric F = ∂h/∂S ((p+1) x (p+1)).

    Returns the gradient in :class:`~bayesmix.data.layout.Structure` order.
    """
    blocks = structure.blocks
    P11, P21, P22 = f.selected_inverse
    G1, G2 = f.effects_solution()
    T1 = f.lambda1
    LG1 = np.einsum("ij,ljc->lic", T1, G1)
    K1 = cp.A1X - cp.A11 @ LG1
    if G2 is not None:
        lam2 = f.lambda2
        LG2 = lam2.rows(G2)
        K1 -= (cp.A21.T @ LG2).reshape(K1.shape)
    H = [np.einsum("lak,lkb->ab", P11, T1.T @ cp.A11) - _level_sum(G1, F, K1)]
    if G2 is not None:
        K2 = cp.A2X - cp.A21 @ LG1.reshape(-1, LG1.shape[2]) - cp.A22 @ LG2
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
    grad = np.empty(structure.n_theta)
    for block, Hk in zip(blocks, H):
        grad[block.theta_offset : block.theta_offset + block.n_theta] = 2.0 * Hk.T[block.theta_rows, block.theta_cols]
    return grad


def _level_sum(G: np.ndarray, F: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Σ_l G_l F K_l' over the levels of one factor (G, K of shape (levels, q, p+1))."""
    return np.einsum("lam,mn,lbn->ab", G, F, K)
