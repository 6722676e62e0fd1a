"""CPU kernels (``@njit``), one module per concern; every kernel writes into preallocated outputs."""
