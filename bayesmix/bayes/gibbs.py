"""The collapsed Gibbs sampler (``method="gibbs"``) for Gaussian models whose random effects are
scalar, ``(1 | g)`` or ``(0 + x | g)``, on any number of grouping factors, crossed or nested.

The model is the full model's (:mod:`bayesmix.bayes.full_density`): y ~ N(X β + Σ_k z_k u_k[level],
σ²), u_k ~ N(0, τ_k²) per level, the same priors. One sweep updates, for each term k in turn,

1. (θ_b, u_k) jointly from their conditional given the other terms' effects, σ and τ_k: first
   θ_b (the population's coordinates of the fixed effects, β = A θ_b; Normal or flat priors,
   precisions Λ_b) with u_k integrated out, then u_k given θ_b, level by level. With w the rows'
   residuals without term k and without X̃ θ_b (X̃ = X A), and per level l of the term
   a_l = z_l'z_l, g_l = X̃_l'z_l, S_l = z_l'w_l and c_l = τ²/(σ² + τ² a_l) (Woodbury: the
   level's rows have covariance σ²I + τ² z_l z_l'),

       θ_b ~ N(P⁻¹h, P⁻¹),  P = Λ_b + (X̃'X̃ - Σ_l c_l g_l g_l')/σ²,  h = Λ_b μ_b + (X̃'w - Σ_l c_l g_l S_l)/σ²,
       u_l ~ N(m_l / π_l, 1/π_l),  π_l = a_l/σ² + 1/τ²,  m_l = (S_l - g_l'θ_b)/σ²;

2. τ_k from its conditional given u_k (the prior of τ_k times N(u_k | 0, τ_k²)), by slice sampling
   of log τ_k (:func:`slice_log_scale`);

and, first in each sweep, σ from its conditional given the residual sum of squares, the same way.

Drawing the fixed effects with each factor's effects integrated out is the collapsed Gibbs
sampler of Papaspiliopoulos, Roberts and Zanella (2020, "Scalable inference for crossed random
effects models", Biometrika 107(1)): for crossed designs its mixing does not degrade as the
numbers of rows and levels grow, which plain Gibbs (θ_b and each u_k given everything else) and
NUTS on the full model (the common level of every factor's effects, with the intercept, is a
slow direction) do not offer. A sweep costs one pass over the rows per term (each pass takes
the residuals from one term to the next: w ← w - z_k u_k + z_{k+1} u_{k+1}, and accumulates
S and X̃'w; the first also the residual sum of squares) and work per level; no gradient, no
factorisation beyond p x p. On InstEval (73,421 rows, three crossed and nested factors) a sweep
takes about 1 ms.

Chains run in threads (the kernels release the GIL), each from its own seed of
``numpy.random.SeedSequence(seed)`` and from the full model's jittered initial point; ``tune``
sweeps are discarded (a Gibbs sampler has nothing to tune: the slice sampler steps out from a
unit width on the log scale), then ``draws`` are kept. Nested factors can mix more slowly (their
effects trade off against each other, which step 1 does not integrate): R-hat and ESS are
checked as for every method.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import xarray as xr

from ..data.layout import GroupLayout
from ..errors import ArgumentError
from ..jit import njit
from ..linalg.kernels import cholesky_into
from .density import (N_EXPANDED, OFF_SD_PRIOR, OFF_SIGMA_PRIOR, OFF_TERMS, P, Q, TERMS, Variable, matrix,
                      natively_supported, positive_prior)
from .full_density import N_DIM, N_EFFECTS, Z_START, expand, full_density
from .parameterization import hierarchy
from .partially_collapsed import fixed_effects_integrable, gaussian_fixed_effects_prior
from .priors import PriorSet

CHUNK = 50
"""Sweeps per call of the compiled kernel: how often a chain reports progress and notices Ctrl-C."""

MAX_STEPS_OUT = 64
"""The slice sampler's limit on stepping out, per side (Neal 2003, section 4.1: any limit keeps
the update exact)."""


def gibbs_applicable(design, priors: PriorSet) -> str | None:
    """Why ``method="gibbs"`` cannot sample ``design`` with ``priors`` (None if it can)."""
    if not design.family.has_sufficient_statistics:
        return f"it samples the Gaussian family with the identity link, not the {design.family}: use method='full'"
    if not design.in_memory:
        return "it passes over the rows in memory, and this design was built from dask or Parquet data: use method='collapsed'"
    if design.rows.weights is not None or design.rows.offset is not None:
        return "it does not take prior weights or offsets: use method='full' (or drop weights=, offset= and offset() terms)"
    wide = [f"({' + '.join(term.columns)} | {term.group})" for term in design.terms if term.q > 1]
    if wide:
        return (f"its random effects must be scalar ((1 | g) or (0 + x | g)), and {', '.join(wide)} has correlated "
                f"columns: use method='collapsed' or method='full', or write the columns as separate terms (x || g)")
    if not fixed_effects_integrable(priors):
        return "it draws the fixed effects from a Gaussian, so their priors must be Normal or flat: use method='full'"
    if not natively_supported(priors):
        return ("its priors on σ and the SDs must be of a native form (HalfNormal, HalfStudentT or Exponential): "
                "use method='full', or change the priors")
    return None


@njit(cache=True, nogil=True, error_model="numpy")
def _log_scale_target(spec, t, sigma2, count, ss, a, n, m2):
    """log p(t) for t = log v up to a constant: the prior of v (with its log-Jacobian) times, with
    ``a`` empty, v^-count exp(-ss / (2v²)) (σ given the residual sum of squares ss of ``count``
    rows), else the likelihood of a term's SD τ = v with its effects integrated out,
    Π_j (1 + τ²a_j/σ²)^(-n_j/2) exp(τ² m2_j / (2σ²(σ² + τ²a_j))): its levels grouped by
    a_l = z_l'z_l (the value a_j, n_j levels, m2_j the sum of their (z_l'(w_l - X̃_lθ_b))²)."""
    value = positive_prior(spec, t)[0]
    if a.shape[0] == 0:
        return value - count * t - 0.5 * ss * np.exp(-2.0 * t)
    tau2 = np.exp(2.0 * t)
    for j in range(a.shape[0]):
        value += -0.5 * n[j] * np.log1p(tau2 * a[j] / sigma2) + 0.5 * tau2 * m2[j] / (sigma2 * (sigma2 + tau2 * a[j]))
    return value


@njit(cache=True, nogil=True, error_model="numpy")
def slice_log_scale(t, spec, sigma2, count, ss, a, n, m2, rng):
    """One slice-sampling update of t = log v (Neal 2003, "Slice sampling", Ann. Statist. 31(3):
    stepping out from a unit width, at most :data:`MAX_STEPS_OUT` steps a side, then shrinkage),
    whose conditional density is :func:`_log_scale_target`: the update of σ and of a term's SD."""
    level = _log_scale_target(spec, t, sigma2, count, ss, a, n, m2) - rng.standard_exponential()
    left = t - rng.random()
    right = left + 1.0
    steps_left = int(rng.random() * MAX_STEPS_OUT)
    steps_right = MAX_STEPS_OUT - 1 - steps_left
    while steps_left > 0 and _log_scale_target(spec, left, sigma2, count, ss, a, n, m2) > level:
        left -= 1.0
        steps_left -= 1
    while steps_right > 0 and _log_scale_target(spec, right, sigma2, count, ss, a, n, m2) > level:
        right += 1.0
        steps_right -= 1
    while True:
        proposal = left + rng.random() * (right - left)
        if _log_scale_target(spec, proposal, sigma2, count, ss, a, n, m2) > level:
            return proposal
        if proposal < t:
            left = proposal
        else:
            right = proposal


@njit(cache=True, nogil=True, error_model="numpy")
def draw_fixed_effects(x, k, S, Xw, sigma2, tau2, starts, a, g, XX, precision, shift, eps_b):
    """θ_b into x[:p] from its conditional with term k's effects integrated out (step 1 of the
    sweep: see the module docstring), given S (the term's levels' z_l'w_l) and X̃'w, from the
    standard normals eps_b; False if P is not positive definite (then nothing is drawn)."""
    p = XX.shape[0]
    Pm = np.empty((p, p))
    h = np.empty(p)
    for i in range(p):
        h[i] = Xw[i] / sigma2 + shift[i]
        for j in range(p):
            Pm[i, j] = XX[i, j] / sigma2
        Pm[i, i] += precision[i]
    for level in range(starts[k], starts[k + 1]):
        c = tau2 / (sigma2 + tau2 * a[level]) / sigma2
        for i in range(p):
            h[i] -= c * g[level, i] * S[level]
            for j in range(p):
                Pm[i, j] -= c * g[level, i] * g[level, j]
    L = np.zeros((p, p))
    if not cholesky_into(Pm, L, p):
        return False
    # θ_b = L'⁻¹ (L⁻¹h + ε): mean P⁻¹h, covariance (LL')⁻¹
    v = np.empty(p)
    for i in range(p):
        value = h[i]
        for j in range(i):
            value -= L[i, j] * v[j]
        v[i] = value / L[i, i]
    for i in range(p):
        v[i] += eps_b[i]
    for i in range(p - 1, -1, -1):
        value = v[i]
        for j in range(i + 1, p):
            value -= L[j, i] * x[j]
        x[i] = value / L[i, i]
    return True


@njit(cache=True, nogil=True, error_model="numpy")
def level_residuals(x, k, S, starts, g, out):
    """Per level of term k, m_l = z_l'(w_l - X̃_lθ_b) = S_l - g_l'θ_b into out (the term's levels)."""
    for level in range(starts[k], starts[k + 1]):
        m = S[level]
        for i in range(g.shape[1]):
            m -= g[level, i] * x[i]
        out[level - starts[k]] = m


@njit(cache=True, nogil=True, error_model="numpy")
def draw_term_effects(u, k, m, sigma2, tau2, starts, a, eps_u):
    """Term k's effects into u from their conditional given θ_b (through m: :func:`level_residuals`),
    σ and τ_k, level by level, from the standard normals eps_u (step 3 of the sweep)."""
    for level in range(starts[k], starts[k + 1]):
        pi = a[level] / sigma2 + 1.0 / tau2
        u[level] = m[level - starts[k]] / sigma2 / pi + eps_u[level - starts[k]] / np.sqrt(pi)


@njit(cache=True, nogil=True, error_model="numpy")
def shift_nested(x, u, w, Z, codes, starts, sd_at, pairs, parent_level, rng):
    """Step 4 of the sweep: for each term nested in another with the same column (``pairs``:
    child and parent terms), per level of the parent, its effect moved by δ and its children's
    by -δ, with δ drawn from its conditional. The rows see only their sum, so δ's conditional
    is the priors' along that line, N(((Σ_c u_c)/τ_c² - u_P/τ_P²)/π, 1/π), π = 1/τ_P² + n_c/τ_c²
    (a translation move: Liu and Sabatti 2000, "Generalised Gibbs sampler and multigrid Monte
    Carlo", JASA 95). It is the direction along which Gibbs steps on the two terms crawl. ``w``
    follows when the last term is one of the two (see :func:`sweeps`); ``parent_level`` gives
    each child effect's parent level."""
    last = Z.shape[1] - 1
    for pr in range(pairs.shape[0]):
        child, parent = pairs[pr, 0], pairs[pr, 1]
        tau2_child, tau2_parent = np.exp(2.0 * x[sd_at[child]]), np.exp(2.0 * x[sd_at[parent]])
        n_parent = starts[parent + 1] - starts[parent]
        total, count, delta = np.zeros(n_parent), np.zeros(n_parent), np.empty(n_parent)
        for level in range(starts[child], starts[child + 1]):
            total[parent_level[level]] += u[level]
            count[parent_level[level]] += 1.0
        for j in range(n_parent):
            pi = 1.0 / tau2_parent + count[j] / tau2_child
            delta[j] = (total[j] / tau2_child - u[starts[parent] + j] / tau2_parent) / pi + rng.standard_normal() / np.sqrt(pi)
            u[starts[parent] + j] += delta[j]
        for level in range(starts[child], starts[child + 1]):
            u[level] -= delta[parent_level[level]]
        if child == last or parent == last:  # w holds the other one's effects
            sign = -1.0 if child == last else 1.0
            for r in range(w.shape[0]):
                w[r] += sign * Z[r, child] * delta[codes[r, parent]]


@njit(cache=True, nogil=True, error_model="numpy")
def sweeps(x, u, w, blob, X, Z, codes, starts, a, g, XX, precision, shift, sd_at, sigma_at, groups, group_starts,
           group_a, group_n, pairs, parent_level, count, keep_from, rng, out_x, out_u):
    """``count`` sweeps of one chain from the state (x: the population's coordinates, u: the
    effects, w: the rows' residuals without the last term's effects and without X̃θ_b), updated in
    place; the states after sweeps ``keep_from``, ... are stored in out_x and out_u. ``groups``
    (per effect), ``group_starts`` (per term), ``group_a`` and ``group_n``: the levels of each
    term grouped by their a_l, for the SD's update (:func:`_log_scale_target`); ``pairs`` and
    ``parent_level``: the nested terms (:func:`shift_nested`). Returns the
    number of sweeps done (fewer if a P was not positive definite)."""
    n, p, K = X.shape[0], X.shape[1], Z.shape[1]
    sd_spec = matrix(blob, int(blob[OFF_SD_PRIOR]), int(blob[Q]), 4)
    tspec = matrix(blob, int(blob[OFF_TERMS]), int(blob[TERMS]), 4)
    sigma_spec = blob[int(blob[OFF_SIGMA_PRIOR]):]
    S = np.zeros(u.shape[0])
    Xw = np.empty(p)
    eps_b = np.empty(p)
    eps_u = np.empty(u.shape[0])
    m = np.empty(u.shape[0])
    m2 = np.empty(group_a.shape[0])
    none = np.zeros(0)
    for sweep in range(count):
        for k in range(K):
            previous = (k - 1) % K  # whose effects w holds and loses now; k's come back in
            for level in range(starts[k], starts[k + 1]):
                S[level] = 0.0
            for i in range(p):
                Xw[i] = 0.0
            rss = 0.0
            for r in range(n):
                old = Z[r, previous] * u[starts[previous] + codes[r, previous]]
                if k == 0:  # the residual of the state the last sweep left, for σ
                    e = w[r] - old
                    for i in range(p):
                        e -= X[r, i] * x[i]
                    rss += e * e
                level = starts[k] + codes[r, k]
                value = w[r] - old + Z[r, k] * u[level]
                w[r] = value
                S[level] += Z[r, k] * value
                for i in range(p):
                    Xw[i] += X[r, i] * value
            if k == 0:
                x[sigma_at] = slice_log_scale(x[sigma_at], sigma_spec, 0.0, n, rss, none, none, none, rng)
            sigma2 = np.exp(2.0 * x[sigma_at])
            for i in range(p):
                eps_b[i] = rng.standard_normal()
            if not draw_fixed_effects(x, k, S, Xw, sigma2, np.exp(2.0 * x[sd_at[k]]), starts, a, g, XX, precision,
                                      shift, eps_b):
                return sweep
            level_residuals(x, k, S, starts, g, m)
            first, last = group_starts[k], group_starts[k + 1]
            for j in range(first, last):
                m2[j] = 0.0
            for level in range(starts[k], starts[k + 1]):
                m2[groups[level]] += m[level - starts[k]] ** 2
            x[sd_at[k]] = slice_log_scale(x[sd_at[k]], sd_spec[int(tspec[k, 3])], sigma2, 0, 0.0, group_a[first:last],
                                          group_n[first:last], m2[first:last], rng)
            for level in range(starts[k + 1] - starts[k]):
                eps_u[level] = rng.standard_normal()
            draw_term_effects(u, k, m, sigma2, np.exp(2.0 * x[sd_at[k]]), starts, a, eps_u)
        shift_nested(x, u, w, Z, codes, starts, sd_at, pairs, parent_level, rng)
        if sweep >= keep_from:
            out_x[sweep - keep_from, :] = x
            out_u[sweep - keep_from, :] = u
    return count


@njit(cache=True, error_model="numpy")
def expand_draws(xs, us, blob, sd_at, starts, out):
    """The expanded variables (:func:`bayesmix.bayes.full_density.expand`) of each stored state:
    the full model's coordinates are the population's and z = u / τ per term."""
    start = int(blob[Z_START])
    full = np.empty(int(blob[N_DIM]))
    for d in range(xs.shape[0]):
        full[:start] = xs[d]
        for k in range(sd_at.shape[0]):
            tau = np.exp(xs[d, sd_at[k]])
            for level in range(starts[k], starts[k + 1]):
                full[start + level] = us[d, level] / tau
        expand(full, blob, out[d])


@dataclass(frozen=True, eq=False)
class GibbsSampler:
    """A model ready for the collapsed Gibbs sampler (see the module docstring).

    Attributes
    ----------
    blob, variables, coords
        The full model's blob (every term non-centred: only its population part, priors and
        expansion plan are read), expanded variables and coordinates.
    y
        The (standardised) response.
    X
        X̃ = X A (rows x p).
    Z, codes
        Per row and term, the term's column and the row's level (rows x terms).
    starts
        Where each term's effects begin (terms + 1), as the full model lays them out.
    a, g
        Per effect (level of a term): z_l'z_l and X̃_l'z_l.
    XX, precision, shift
        X̃'X̃, θ_b's prior precisions Λ_b and Λ_b μ_b.
    sd_at, sigma_at
        Where each term's log SD and log σ sit among the population's coordinates.
    init
        seed -> the full model's initial point.
    """

    blob: np.ndarray
    variables: list[Variable]
    coords: dict
    y: np.ndarray
    X: np.ndarray
    Z: np.ndarray
    codes: np.ndarray
    starts: np.ndarray
    a: np.ndarray
    g: np.ndarray
    XX: np.ndarray
    precision: np.ndarray
    shift: np.ndarray
    sd_at: np.ndarray
    sigma_at: int
    groups: np.ndarray
    group_starts: np.ndarray
    group_a: np.ndarray
    group_n: np.ndarray
    pairs: np.ndarray
    parent_level: np.ndarray
    init: object

    @property
    def n_population(self) -> int:
        """Number of population coordinates (θ_b, log σ, the log SDs)."""
        return int(self.blob[Z_START])

    def with_data(self, y: np.ndarray | None = None) -> GibbsSampler:
        """The same model with the (standardised) response ``y``."""
        return self if y is None else dataclasses.replace(self, y=np.ascontiguousarray(y, dtype=float))

    def compile(self) -> None:
        """Load (or compile, once per installation) the kernels: one sweep and one expansion of a copy."""
        x, u, w = self._start(0)
        out_x, out_u = np.empty((1, x.size)), np.empty((1, u.size))
        self._run(x, u, w, 1, 0, np.random.default_rng(0), out_x, out_u)
        expand_draws(out_x, out_u, self.blob, self.sd_at, self.starts, np.empty((1, int(self.blob[N_EXPANDED]))))

    def _start(self, seed) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A chain's initial state: the full model's initial population point, effects 0."""
        x = np.ascontiguousarray(self.init(seed)[: self.n_population])
        return x, np.zeros(int(self.blob[N_EFFECTS])), self.y.copy()

    def _run(self, x, u, w, count, keep_from, rng, out_x, out_u) -> int:
        return sweeps(x, u, w, self.blob, self.X, self.Z, self.codes, self.starts, self.a, self.g, self.XX,
                      self.precision, self.shift, self.sd_at, self.sigma_at, self.groups, self.group_starts, self.group_a,
                      self.group_n, self.pairs, self.parent_level, count, keep_from, rng, out_x, out_u)

    def run(self, settings) -> xr.DataTree:
        """Sample: ``settings.chains`` chains of ``settings.tune`` discarded and ``settings.draws``
        kept sweeps, in threads; a progress bar if ``settings.progressbar``; Ctrl-C stops every
        chain and raises KeyboardInterrupt."""
        seeds = np.random.SeedSequence(settings.seed).spawn(settings.chains)
        total = settings.tune + settings.draws
        xs = np.empty((settings.chains, settings.draws, self.n_population))
        us = np.empty((settings.chains, settings.draws, int(self.blob[N_EFFECTS])))
        done = [0] * settings.chains
        stop = threading.Event()

        def chain(c: int) -> None:
            x, u, w = self._start(int(seeds[c].generate_state(1)[0]))
            rng = np.random.default_rng(seeds[c])
            while done[c] < total and not stop.is_set():
                count = min(CHUNK, total - done[c])
                first_kept = max(settings.tune - done[c], 0)
                at = max(done[c] - settings.tune, 0)
                kept = max(count - first_kept, 0)
                finished = self._run(x, u, w, count, first_kept, rng, xs[c, at:at + kept], us[c, at:at + kept])
                if finished < count:
                    raise FloatingPointError(f"chain {c}: the fixed effects' conditional precision is not positive "
                                             "definite (collinear columns of X with flat priors?)")
                done[c] += count

        with ThreadPoolExecutor(max_workers=min(settings.chains, os.cpu_count() or 1)) as pool:
            futures = [pool.submit(chain, c) for c in range(settings.chains)]
            try:
                _follow(futures, done, settings.chains * total, settings.progressbar)
            except BaseException:
                stop.set()
                raise
            for f in futures:
                f.result()
        return self._tree(xs, us)

    def _tree(self, xs: np.ndarray, us: np.ndarray) -> xr.DataTree:
        """The posterior variables of the stored states, as the full model names them."""
        chains, draws = xs.shape[:2]
        out = np.empty((chains * draws, int(self.blob[N_EXPANDED])))
        expand_draws(xs.reshape(chains * draws, -1), us.reshape(chains * draws, -1), self.blob, self.sd_at,
                     self.starts, out)
        variables, start = {}, 0
        coords = {"chain": np.arange(chains), "draw": np.arange(draws)}
        for v in self.variables:
            size = int(np.prod(v.shape))
            values = out[:, start:start + size].reshape((chains, draws, *v.shape))
            variables[v.name] = xr.DataArray(values, dims=("chain", "draw", *v.dims),
                                             coords={d: self.coords[d] for d in v.dims if d in self.coords})
            start += size
        return xr.DataTree.from_dict({"posterior": xr.Dataset(variables, coords=coords),
                                      "sample_stats": xr.Dataset(coords=coords)})


def _follow(futures, done: list[int], total: int, progressbar: bool) -> None:
    """Wait for the chains, showing their sweeps in a progress bar if asked."""
    if not progressbar:
        while not all(f.done() for f in futures):
            time.sleep(0.05)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("Gibbs sweeps"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()) as progress:
        task = progress.add_task("", total=total)
        while not all(f.done() for f in futures):
            progress.update(task, completed=sum(done))
            time.sleep(0.1)
        progress.update(task, completed=sum(done))


def gibbs_sampler(design, priors: PriorSet, labels: list[str], layouts: list[GroupLayout], coords: dict) -> GibbsSampler:
    """The collapsed Gibbs sampler of ``design`` (rows in memory, scalar random effects, Gaussian
    family; :func:`gibbs_applicable`) with ``priors``."""
    why = gibbs_applicable(design, priors)
    if why is not None:
        raise ArgumentError(f"method='gibbs' cannot sample this model: {why}.")
    full = full_density(design, priors, labels, layouts, coords)
    blob = full.blob
    rows = design.rows
    p, K = int(blob[P]), len(design.terms)
    mix, precision, shift = gaussian_fixed_effects_prior(blob)
    X = np.ascontiguousarray(rows.X @ mix)
    Z = np.ascontiguousarray(np.column_stack([z[:, 0] for z in rows.z]))
    codes = np.ascontiguousarray(np.column_stack(rows.codes).astype(np.int64))
    starts = np.concatenate([[0], np.cumsum([term.n_levels for term in design.terms])]).astype(np.int64)
    a = np.concatenate([np.bincount(codes[:, k], weights=Z[:, k] ** 2, minlength=design.terms[k].n_levels)
                        for k in range(K)])
    g = np.concatenate([np.column_stack([np.bincount(codes[:, k], weights=Z[:, k] * X[:, i],
                                                     minlength=design.terms[k].n_levels) for i in range(p)]).reshape(-1, p)
                        for k in range(K)])
    sigma_at = p
    sd_at = np.arange(p + 1, p + 1 + K, dtype=np.int64)  # scalar terms: one log SD each, no correlations
    groups, group_a, group_n, group_starts = [], [], [], [0]
    for k in range(K):  # the levels of each term grouped by a_l (the intercept's: by their numbers of rows)
        values, inverse, counts = np.unique(a[starts[k]:starts[k + 1]], return_inverse=True, return_counts=True)
        groups.append(group_starts[-1] + inverse)
        group_a.append(values)
        group_n.append(counts.astype(float))
        group_starts.append(group_starts[-1] + values.size)
    found = hierarchy(design)
    pairs = [(k, found.parent[k]) for k in range(K) if found.parent[k] >= 0 and found.parent_columns[k][0] >= 0]
    parent_level = np.full(starts[-1], -1, np.int64)
    for child, parent in pairs:
        parent_level[starts[child]:starts[child + 1]] = codes[found.first_rows[child], parent]
    return GibbsSampler(blob, full.variables, dict(full.coords), np.ascontiguousarray(rows.y, dtype=float), X, Z, codes,
                        starts, a, g, np.ascontiguousarray(X.T @ X), precision, shift, sd_at, sigma_at,
                        np.concatenate(groups).astype(np.int64), np.asarray(group_starts, np.int64), np.concatenate(group_a),
                        np.concatenate(group_n), np.asarray(pairs, np.int64).reshape(-1, 2), parent_level, full.init)
