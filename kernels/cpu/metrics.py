"""Accuracy reductions on the network output z (B, C).

- label losses (cross_entropy, hinge) and probability rows: a row is correct when argmax z equals
  the label (or argmax of the target row); counts rows.
- binary_cross_entropy: an element is correct when [z > 0] equals [t ≥ 0.5]; counts elements.
- mse has no accuracy (returns 0 of 0).
Ties in argmax go to the first maximum, as numpy.argmax.
"""

from ..config import JIT, JIT_INTERNAL
from ..jit import njit
from ..rules import row_correct


@njit(**JIT_INTERNAL)
def count_correct_rows(z, labels, targets, code, r0, r1):
    """(number correct, number counted) over rows r0:r1 (:func:`fastmlp.kernels.rules.row_correct`)."""
    correct = 0
    counted = 0
    for i in range(r0, r1):
        c, k = row_correct(z, labels, targets, code, i)
        correct += c
        counted += k
    return correct, counted


@njit(**JIT)
def count_correct(z, labels, targets, code):
    """(number correct, number counted) for one batch; see the module docstring."""
    return count_correct_rows(z, labels, targets, code, 0, z.shape[0])
