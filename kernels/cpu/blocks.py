"""How the threads of a kernel call cut a result into blocks, one per part.

``part(n, parts, index, align)`` cuts [0, n) into contiguous pieces whose inner boundaries are
multiples of ``align``; ``split_block`` applies a layer's split code to a (rows, cols) result.
"""

from ..config import COL_ALIGN, JIT_INTERNAL, ROW_ALIGN
from ..contract import SPLIT_COLS, SPLIT_LAST, SPLIT_ONE, SPLIT_ROWS
from ..jit import njit


@njit(**JIT_INTERNAL)
def part(n, parts, index, align):
    """[lo, hi) of piece ``index`` when [0, n) is cut into ``parts`` contiguous pieces whose
    inner boundaries are multiples of ``align``; pieces may be empty."""
    units = (n + align - 1) // align
    lo = min(n, (units * index // parts) * align)
    hi = min(n, (units * (index + 1) // parts) * align)
    return lo, hi


@njit(**JIT_INTERNAL)
def split_block(split, rows, cols, parts, index):
    """(r0, r1, c0, c1): part ``index`` of ``parts``'s block of a (rows, cols) result under the
    split code (SPLIT_ROWS cuts rows in multiples of ROW_ALIGN, SPLIT_COLS cuts columns in
    multiples of COL_ALIGN, SPLIT_ONE gives everything to part 0 and SPLIT_LAST to the last
    part)."""
    if (parts == 1 or (split == SPLIT_ONE and index == 0)
            or (split == SPLIT_LAST and index == parts - 1)):
        return 0, rows, 0, cols
    if split == SPLIT_ROWS:
        r0, r1 = part(rows, parts, index, ROW_ALIGN)
        return r0, r1, 0, cols
    if split == SPLIT_COLS:
        c0, c1 = part(cols, parts, index, COL_ALIGN)
        return 0, rows, c0, c1
    return 0, 0, 0, 0
