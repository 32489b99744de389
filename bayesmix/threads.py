"""One BLAS thread for the fits.

BLAS threads save at most a factor of the core count on the dense crossed block, and cost 5
to 30 times that when another process keeps a core busy (a 181 x 181 Cholesky factor takes
0.25 ms on one thread and 11 ms on two threads of a loaded 2-core machine): the fits run with
one thread.
"""

from __future__ import annotations

import functools
from contextlib import AbstractContextManager

from threadpoolctl import ThreadpoolController


def one_blas_thread() -> AbstractContextManager:
    """A context in which BLAS runs on one thread."""
    return _controller().limit(limits=1, user_api="blas")


@functools.cache
def _controller() -> ThreadpoolController:
    return ThreadpoolController()
