"""Numba kernels behind fastmlp: ``cpu`` (``@njit``) and ``cuda`` (``numba.cuda``) twins."""
