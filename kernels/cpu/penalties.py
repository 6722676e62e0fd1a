"""L1 and L2 penalties on weight matrices (elastic net when both are set).

value = l1 Σ|W| + l2 Σ W²;  gradient dW += l1 sign(W) + 2 l2 W, with sign(0) = 0.
W and dW are arrays of any shape, flattened by the caller into 1-D contiguous views.
"""

import numpy as np

from ..config import JIT, JIT_INTERNAL
from ..jit import njit
from ..rules import penalty_term


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
    for k in range(w.shape[0]):
        dw[k] += penalty_term(w[k], l1, l2)[0]


@njit(**JIT_INTERNAL)
def penalty_block(dW, W, l1, l2, i0, i1, c0, c1):
    """Rows i0:i1, columns c0:c1 of the (I, F) weight matrix W: dW += l1 sign(W) + 2 l2 W there,
    and returns l1 Σ|W| + l2 Σ W² over the block (accumulated in float64)."""
    s1 = 0.0
    s2 = 0.0
    for i in range(i0, i1):
        wi = W[i, c0:c1]
        di = dW[i, c0:c1]
        for j in range(c1 - c0):
            g, a, q = penalty_term(wi[j], l1, l2)
            di[j] += g
            s1 += a
            s2 += q
    return l1 * s1 + l2 * s2
