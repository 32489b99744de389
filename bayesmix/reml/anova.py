"""t and F tests of linear hypotheses about β for REML and ML fits, as lmerTest's ``summary``,
``contest`` and ``anova(type = 3)``, with Satterthwaite's or Kenward and Roger's degrees of freedom.

The type III hypotheses are lmerTest's (``get_contrasts_type3``) for the treatment coding
bayesmix uses: with one term (or one column), the term's rows of the Doolittle factor of X'X
(lmerTest falls back on type I there); otherwise, per term, its coefficients of the full dummy
coding of each term ("rdX": every level of every factor, as ``~ 0 + term`` codes it), made
orthogonal to the terms that contain it (a main effect to its interactions). For a model without
interactions this is the hypothesis that the term's coefficients are 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import ArgumentError

DDF_METHODS = ("satterthwaite", "kenward-roger")
DDF_NAMES = {"satterthwaite": "Satterthwaite", "kenward-roger": "Kenward-Roger"}


def check_ddf(ddf: str, reml: bool) -> str:
    """The df method, lower-cased; ArgumentError for an unknown one, or Kenward-Roger on an ML fit."""
    method = ddf.lower() if isinstance(ddf, str) else ddf
    if method not in DDF_METHODS:
        raise ArgumentError(f"ddf must be one of {DDF_METHODS}, not {ddf!r}.")
    if method == "kenward-roger" and not reml:
        raise ArgumentError(
            "Kenward-Roger's method is defined for REML fits (as in pbkrtest and lmerTest): refit with "
            "model.fit_reml(), or use ddf='satterthwaite'."
        )
    return method


def t_table(fit, L: np.ndarray, ddf: str, rhs: np.ndarray | float = 0.0, level: float = 0.95,
            names: list | None = None) -> pd.DataFrame:
    """One t test per row l of L, l'β = rhs (lmerTest's ``contest1D``): estimate, standard error
    (Kenward-Roger's adjusted one for that method), df, t value, a ``level`` interval and the
    two-sided p value."""
    from scipy.stats import t as student_t

    method = check_ddf(ddf, fit.reml)
    L = np.atleast_2d(np.asarray(L, dtype=float))
    rhs = np.broadcast_to(np.asarray(rhs, dtype=float), (L.shape[0],))
    estimate = L @ fit.beta_values
    if method == "satterthwaite":
        derivatives = fit.variance_derivatives
        variance = np.einsum("ri,ij,rj->r", L, derivatives.vcov_beta, L)
        df = np.array([derivatives.df(row) for row in L])
    else:
        kr = fit.kenward_roger
        variance = np.einsum("ri,ij,rj->r", L, kr.vcov_adjusted, L)
        df = np.array([kr.df(row) for row in L])
    se = np.sqrt(variance)
    t = (estimate - rhs) / se
    half = student_t.ppf(0.5 + level / 2.0, df) * se
    return pd.DataFrame(
        {"estimate": estimate, "std_error": se, "df": df, "t_value": t, "lower": estimate - half,
         "upper": estimate + half, "p_value": 2.0 * student_t.sf(np.abs(t), df)},
        index=names,
    )


def f_row(fit, L: np.ndarray, ddf: str, rhs: np.ndarray | float = 0.0) -> dict:
    """The joint F test of Lβ = rhs (lmerTest's ``contestMD``, or pbkrtest's ``KRmodcomp``):
    sums of squares (F σ² times the numerator df, as lmerTest reports them), numerator and
    denominator df, F and its p value."""
    from scipy.stats import f as fisher_f

    method = check_ddf(ddf, fit.reml)
    L = np.atleast_2d(np.asarray(L, dtype=float))
    rhs = np.broadcast_to(np.asarray(rhs, dtype=float), (L.shape[0],))
    beta = fit.beta_values - np.linalg.pinv(L) @ rhs
    if method == "satterthwaite":
        F, q, ddf_value = fit.variance_derivatives.f_test(L, beta)
        unscaled = F
    else:
        if np.linalg.matrix_rank(L) < L.shape[0]:
            raise ArgumentError(
                "The rows of L are linearly dependent, and Kenward-Roger's F test (as pbkrtest's) needs independent "
                "rows: drop the redundant ones, or use ddf='satterthwaite', which tests their span."
            )
        F, q, ddf_value, scaling = fit.kenward_roger.f_test(L, beta)
        unscaled = F / scaling
    mean_sq = unscaled * fit.sigma**2
    return {"sum_sq": mean_sq * q, "mean_sq": mean_sq, "num_df": q, "den_df": ddf_value, "F": F,
            "p_value": float(fisher_f.sf(F, q, ddf_value))}


def contrast_matrix(fit, L) -> np.ndarray:
    """L as a (rows, p) float array; ArgumentError unless it has one column per fixed effect."""
    names = list(fit.design.fixed_names)
    if isinstance(L, pd.DataFrame):
        missing = [c for c in L.columns if c not in names]
        if missing:
            raise ArgumentError(f"L has column(s) {missing} that are not fixed effects; the fixed effects are {names}.")
        L = L.reindex(columns=names, fill_value=0.0).to_numpy(dtype=float)
    L = np.atleast_2d(np.asarray(L, dtype=float))
    if L.ndim != 2 or L.shape[1] != len(names):
        raise ArgumentError(
            f"L must have one column per fixed effect ({len(names)}: {names}), but it has shape {L.shape}; "
            "or pass a DataFrame whose columns name fixed effects."
        )
    if not np.isfinite(L).all():
        raise ArgumentError("L has non-finite entries.")
    zero = np.flatnonzero(~L.any(axis=1))
    if len(zero):
        raise ArgumentError(f"Row(s) {zero.tolist()} of L are all 0, which tests nothing: drop them.")
    return L


def type3_hypotheses(fit) -> dict[str, np.ndarray]:
    """lmerTest's type III hypothesis matrix of each fixed-effect term (see the module docstring)."""
    design = fit.design
    spec, kept = design.recipe.fixed_spec, design.recipe.kept
    column = np.cumsum(kept) - 1
    terms = [t for t in spec.terms if str(t) != "1"]
    columns = {str(t): [int(column[i]) for i in spec.term_indices[t] if kept[i]] for t in terms}
    X = design.rows.X
    if design.p <= 1 or len(terms) <= 1:
        L = _doolittle_rows(X.T @ X)
        return {name: L[cols] for name, cols in columns.items() if cols}
    rdX = _dummy_design(design, terms)
    L = _zapsmall(np.linalg.lstsq(X, rdX, rcond=None)[0].T)  # rdX's columns in X's coefficients
    variables = {str(t): {str(f) for f in t.factors} for t in terms}
    numeric = {name: {v for v in vs if design.recipe.variable_levels.get(v, None) is None} for name, vs in variables.items()}
    for term in sorted(terms, key=lambda t: -t.degree):
        name = str(term)
        containing = [other for other in columns if variables[name] < variables[other] and numeric[name] == numeric[other]]
        if containing:
            basis = L[:, [c for other in containing for c in columns[other]]]
            target = L[:, columns[name]]
            L[:, columns[name]] = _zapsmall(target - basis @ np.linalg.lstsq(basis, target, rcond=None)[0])
    match = [_matching_column(rdX, X[:, j], design.fixed_names[j]) for j in range(design.p)]
    out = {}
    for name, cols in columns.items():
        H = L[match][:, cols].T
        H = H[np.abs(H).sum(axis=1) > 1e-8] + 0.0  # + 0.0: no negative zeros
        if len(H):
            out[name] = H
    return out


def _doolittle_rows(A: np.ndarray) -> np.ndarray:
    """t(L) of the Doolittle factorisation A = L U (unit lower-triangular L), entries below 1e-6 set to 0 as lmerTest's ``doolittle``."""
    R = np.linalg.cholesky(A).T
    L = R / np.diag(R)[:, None]
    L[np.abs(L) < 1e-6] = 0.0
    return L


def _dummy_design(design, terms) -> np.ndarray:
    """The intercept (if any) and, per term, every level combination of its factors times its
    numeric variables (R's ``model.matrix(~ 0 + term)``)."""
    frame, levels = design.rows.frame, design.recipe.variable_levels
    blocks = [np.ones((design.n, 1))] if any(str(t) == "1" for t in design.recipe.fixed_spec.terms) else []
    for term in terms:
        block = np.ones((design.n, 1))
        for factor in term.factors:
            name = str(factor)
            if name not in frame.columns or name not in levels:
                raise ArgumentError(
                    f"The type III hypotheses need the term {str(term)!r} to be made of data columns, and {name!r} is not one; "
                    "test it with fit.contest(L) and a hypothesis matrix of your own."
                )
            values = frame[name].to_numpy()
            if levels[name] is None:
                part = values.astype(float)[:, None]
            else:
                part = (values[:, None] == np.array(sorted(levels[name]), dtype=object)[None, :]).astype(float)
            block = (block[:, :, None] * part[:, None, :]).reshape(design.n, -1)
        blocks.append(block)
    return np.hstack(blocks)


def _matching_column(rdX: np.ndarray, x: np.ndarray, name: str) -> int:
    """The column of rdX equal to the fixed-effect column x."""
    hits = np.flatnonzero(np.all(np.isclose(rdX, x[:, None], rtol=1e-12, atol=1e-12), axis=0))
    if not len(hits):
        raise ArgumentError(
            f"The fixed-effect column {name!r} is not a column of the full dummy coding, so lmerTest's type III "
            "hypotheses do not apply (a transformed or non-treatment-coded term); use fit.contest(L)."
        )
    return int(hits[0])


def _zapsmall(x: np.ndarray, digits: int = 7) -> np.ndarray:
    """R's ``zapsmall``: round to ``digits`` significant digits of the largest entry."""
    largest = np.max(np.abs(x)) if x.size else 0.0
    return np.round(x, max(0, digits - int(np.ceil(np.log10(largest)))) if largest > 0 else digits)
