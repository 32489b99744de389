"""The linear algebra both backends share: the blocked Cholesky factor of Λ'Z'ZΛ + I and
``[X y]``, its numba kernels, and the collapsed Gaussian likelihood with exact draws of u."""
