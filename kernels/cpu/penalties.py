"""L1 and L2 penalties on weight matrices (elastic net when both are set).

value = l1 Σ|W| + l2 Σ W²;  gradient dW += l1 sign(W) + 2 l2 W, with sign(0) = 0.
W and dW are arrays of any shape, flattened by the caller into 1-D contiguous views.
"""

import numpy as np
from ..jit import njit

from ..config import JIT, JIT_INTERNAL


@njit(**JIT)
def penalty_value(w, l1, l2):
    """l1 Σ|w| + l2 Σ w², accumulated in float64. w is 1-D."""
    s1 = 0.0
    s2 = 0.0
    for k in range(w.shape[0]):
        v = np.float64(w[k])
        s1 += abs(v)
        s2 += v * v
    return l1 * s1 + l2 * s2


@njit(**JIT)
def penalty_grad(dw, w, l1, l2):
    """dw += l1 sign(w) + 2 l2 w, elementwise over 1-D arrays."""
    two_l2 = 2.0 * l2
    for k in range(w.shape[0]):
        v = w[k]
        s = 1.0 if v > 0 else (-1.0 if v < 0 else 0.0)
        dw[k] += l1 * s + two_l2 * v


@njit(**JIT_INTERNAL)
def penalty_block(dW, W, l1, l2, i0, i1, c0, c1):
    """Rows i0:i1, columns c0:c1 of the (I, F) weight matrix W: dW += l1 sign(W) + 2 l2 W there,
    and returns l1 Σ|W| + l2 Σ W² over the block (accumulated in float64)."""
    two_l2 = 2.0 * l2
    s1 = 0.0
    s2 = 0.0
    for i in range(i0, i1):
        wi = W[i, c0:c1]
        di = dW[i, c0:c1]
        for j in range(c1 - c0):
            v = wi[j]
            s = 1.0 if v > 0 else (-1.0 if v < 0 else 0.0)
            di[j] += l1 * s + two_l2 * v
            w = np.float64(v)
            s1 += abs(w)
            s2 += w * w
    return l1 * s1 + l2 * s2
