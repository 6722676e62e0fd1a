"""Squared L2 norms of gradient blocks, for the finite check and the gradient clipping of a step,
and the largest magnitude of an array (from its bits), for the bounds of the update check.

Each function returns Σ v² over its block, accumulated in float64; a NaN or inf anywhere in the
block makes the result NaN or inf, so one sum per block serves both as the check and as the norm.
The order of the terms may be reassociated (``JIT_REDUCTION``) so the loops vectorize.
"""

import numpy as np

from ..config import JIT_REDUCTION, JIT_REDUCTION_INTERNAL
from ..jit import njit


@njit(**JIT_REDUCTION)
def sum_squares(v):
    """Σ v[k]² over a 1-D array."""
    total = 0.0
    for k in range(v.shape[0]):
        x = np.float64(v[k])
        total += x * x
    return total


@njit(**JIT_REDUCTION)
def largest_masked_bits(bits, mask):
    """max over k of (bits[k] & mask), for a 1-D unsigned array; 0 for an empty one.

    On the bits of IEEE floats with ``mask`` clearing the sign bit this is the bit pattern of the
    largest magnitude (non-negative floats order as their bits do), NaN above inf; one integer
    pass, which vectorizes where a float max reduction with NaN checks does not.
    """
    largest = mask ^ mask
    for k in range(bits.shape[0]):
        largest = max(largest, bits[k] & mask)
    return largest


@njit(**JIT_REDUCTION_INTERNAL)
def sum_squares_block(A, r0, r1, c0, c1):
    """Σ A[i, j]² over rows r0:r1 and columns c0:c1 of a 2-D array."""
    total = 0.0
    for i in range(r0, r1):
        row = A[i, c0:c1]
        for j in range(c1 - c0):
            x = np.float64(row[j])
            total += x * x
    return total
