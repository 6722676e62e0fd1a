"""Batch assembly: the rows of a batch copied from the data set into contiguous buffers.

Shapes: X (n, d), labels (n,) int64 or empty, targets (n, C) or (0, C); order (n,) int64 the row
order of the epoch; Xb (B, d), lb (B,) or empty, tb (B, C) or (0, C) the buffers.
"""

from ..config import JIT_INTERNAL, ROW_ALIGN
from ..jit import njit
from .blocks import part


@njit(**JIT_INTERNAL)
def gather_part(index, parts, Xb, lb, tb, X, labels, targets, order, start, stop):
    """Part ``index`` of ``parts`` of the rows order[start:stop], copied into Xb, lb, tb."""
    d = X.shape[1]
    r0, r1 = part(stop - start, parts, index, ROW_ALIGN)
    for r in range(r0, r1):
        i = order[start + r]
        xb = Xb[r]
        x = X[i]
        for j in range(d):
            xb[j] = x[j]
        if labels.shape[0]:
            lb[r] = labels[i]
        if targets.shape[0]:
            tbr = tb[r]
            t = targets[i]
            for j in range(targets.shape[1]):
                tbr[j] = t[j]
