"""Inverted dropout on a (B, U) batch.

Training: keep ~ Bernoulli(1 - p) per element, mask = keep / (1 - p), out = x ⊙ mask;
backward dx = dout ⊙ mask. Evaluation is the identity (the caller skips the layer).
Element (i, j) draws uniform(key, i·U + j) from :mod:`.random`, so the mask is reproducible.
"""

from ..config import JIT, JIT_INTERNAL
from ..jit import njit
from ..rules import uniform


@njit(**JIT_INTERNAL)
def dropout_forward_block(out, mask, x, p, key, r0, r1, c0, c1):
    """For rows r0:r1, columns c0:c1 of (B, U) arrays: mask[i, j] = 1/(1-p) where
    uniform(key, i·U + j) ≥ p, else 0, and out = x ⊙ mask; out may be x."""
    u = mask.shape[1]
    scale = 1.0 / (1.0 - p)
    width = c1 - c0
    for i in range(r0, r1):
        mi = mask[i, c0:c1]
        oi = out[i, c0:c1]
        xi = x[i, c0:c1]
        base = i * u + c0
        for j in range(width):
            mi[j] = scale if uniform(key, base + j) >= p else 0.0
            oi[j] = xi[j] * mi[j]


@njit(**JIT)
def dropout_mask(mask, p, key):
    """mask[i, j] = 1/(1-p) where uniform(key, i·U + j) ≥ p, else 0. mask (B, U), 0 ≤ p < 1."""
    n, u = mask.shape
    scale = 1.0 / (1.0 - p)
    for i in range(n):
        for j in range(u):
            mask[i, j] = scale if uniform(key, i * u + j) >= p else 0.0


@njit(**JIT)
def dropout_forward(out, mask, x, p, key):
    """Draws the mask (see :func:`dropout_mask`) and writes out = x ⊙ mask; out may be x."""
    dropout_forward_block(out, mask, x, p, key, 0, x.shape[0], 0, x.shape[1])


@njit(**JIT_INTERNAL)
def dropout_backward_block(dx, dout, mask, r0, r1, c0, c1):
    """dx = dout ⊙ mask for rows r0:r1, columns c0:c1; dx may be dout."""
    width = c1 - c0
    for i in range(r0, r1):
        di = dx[i, c0:c1]
        gi = dout[i, c0:c1]
        mi = mask[i, c0:c1]
        for j in range(width):
            di[j] = gi[j] * mi[j]


@njit(**JIT)
def dropout_backward(dx, dout, mask):
    """dx = dout ⊙ mask; all (B, U); dx may be dout."""
    dropout_backward_block(dx, dout, mask, 0, dout.shape[0], 0, dout.shape[1])
