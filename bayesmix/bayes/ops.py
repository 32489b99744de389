"""PyTensor Ops of the collapsed Gaussian likelihood (:mod:`bayesmix.linalg.collapsed`), for
the PyMC model of the collapsed method (``sampler="pymc"`` and priors without a native form)."""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key

from ..jit import njit
from ..linalg.collapsed import collapsed_loglik, loglik_kernel


class _CollapsedOp(Op):
    """An Op of (β, C, σ, A11, A1X, AXX, n) for q effects per level (q is a prop: it keys the compiled kernel)."""

    __props__ = ("q",)

    def __init__(self, q: int):
        self.q = int(q)

    def _apply(self, inputs, outputs) -> Apply:
        return Apply(self, [pt.as_tensor_variable(x).astype("float64") for x in inputs], outputs)


class CollapsedLogLik(_CollapsedOp):
    """PyTensor Op: the collapsed log-likelihood of (β, C, σ) given the cross-products, for q effects per level."""

    def make_node(self, beta, C, sigma, A11, A1X, AXX, n):
        return self._apply((beta, C, sigma, A11, A1X, AXX, n), [pt.dscalar()])

    def perform(self, node, inputs, outputs):
        value, *_ = collapsed_loglik(*inputs, False)
        outputs[0][0] = np.asarray(value)

    def connection_pattern(self, node):
        """Only β, C and σ influence the output differentiably; the cross-products are data."""
        return [[True], [True], [True], [False], [False], [False], [False]]

    def pullback(self, inputs, outputs, cotangents):
        d_beta, d_C, d_sigma = CollapsedLogLikGrad(self.q)(*inputs)
        g = cotangents[0]
        return [g * d_beta, g * d_C, g * d_sigma] + [DisconnectedType()() for _ in range(4)]


class CollapsedLogLikGrad(_CollapsedOp):
    """PyTensor Op: the gradient of :class:`CollapsedLogLik` with respect to β, C and σ."""

    def make_node(self, beta, C, sigma, A11, A1X, AXX, n):
        return self._apply((beta, C, sigma, A11, A1X, AXX, n), [pt.dvector(), pt.dmatrix(), pt.dscalar()])

    def perform(self, node, inputs, outputs):
        _, d_beta, d_C, d_sigma = collapsed_loglik(*inputs, True)
        outputs[0][0], outputs[1][0], outputs[2][0] = d_beta, d_C, np.asarray(d_sigma)


@register_funcify_default_op_cache_key(CollapsedLogLik)
def _numba_collapsed_loglik(op, node=None, **kwargs):
    kernel = loglik_kernel(op.q)

    @njit
    def value(beta, C, sigma, A11, A1X, AXX, n):
        return np.asarray(kernel(beta, C, sigma[()], A11, A1X, AXX, n[()], False)[0])

    return value


@register_funcify_default_op_cache_key(CollapsedLogLikGrad)
def _numba_collapsed_grad(op, node=None, **kwargs):
    kernel = loglik_kernel(op.q)

    @njit
    def gradient(beta, C, sigma, A11, A1X, AXX, n):
        _, d_beta, d_C, d_sigma = kernel(beta, C, sigma[()], A11, A1X, AXX, n[()], True)
        return d_beta, d_C, np.asarray(d_sigma)

    return gradient
