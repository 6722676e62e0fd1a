"""CUDA kernels (``numba.cuda``), mirroring :mod:`fastmlp.kernels.cpu` module by module."""
