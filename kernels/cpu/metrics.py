"""Accuracy reductions on the network output z (B, C).

- label losses (cross_entropy, hinge) and probability rows: a row is correct when argmax z equals
  the label (or argmax of the target row); counts rows.
- binary_cross_entropy: an element is correct when [z > 0] equals [t ≥ 0.5]; counts elements.
- mse has no accuracy (returns 0 of 0).
Ties in argmax go to the first maximum, as numpy.argmax.
"""

from ..jit import njit

from ..config import JIT, JIT_INTERNAL
from .losses import BINARY_CROSS_ENTROPY, CROSS_ENTROPY, CROSS_ENTROPY_PROBS, HINGE


@njit(inline="always", **JIT)
def _row_argmax(z, i):
    best = 0
    for j in range(1, z.shape[1]):
        if z[i, j] > z[i, best]:
            best = j
    return best


@njit(**JIT_INTERNAL)
def count_correct_rows(z, labels, targets, code, r0, r1):
    """(number correct, number counted) over rows r0:r1; see the module docstring."""
    c = z.shape[1]
    correct = 0
    if code == CROSS_ENTROPY or code == HINGE:
        for i in range(r0, r1):
            if _row_argmax(z, i) == labels[i]:
                correct += 1
        return correct, r1 - r0
    if code == CROSS_ENTROPY_PROBS:
        for i in range(r0, r1):
            if _row_argmax(z, i) == _row_argmax(targets, i):
                correct += 1
        return correct, r1 - r0
    if code == BINARY_CROSS_ENTROPY:
        for i in range(r0, r1):
            for j in range(c):
                if (z[i, j] > 0) == (targets[i, j] >= 0.5):
                    correct += 1
        return correct, (r1 - r0) * c
    return 0, 0


@njit(**JIT)
def count_correct(z, labels, targets, code):
    """(number correct, number counted) for one batch; see the module docstring."""
    return count_correct_rows(z, labels, targets, code, 0, z.shape[0])
