"""Register-tiled float32 matrix products for the small shapes of a training step.

At a step's sizes (a batch of 32–128 rows, layers of 128–512 units) OpenBLAS spends much of a
call packing its operands into buffers; these products read them in place, keep a tile of C in
vector registers for the whole sum over k, and write it once. Same contract as :func:`.blas.gemm`:
C (m, n) = op(A)·op(B), C += op(A)·op(B) when ``accumulate``, every operand a 2-D view whose
last axis is contiguous (the row stride is the leading dimension).

- ``op(B) = B`` (``nn`` and ``tn``, the forward product and the weight gradient): an outer-product
  tile of ``TILE_ROWS`` rows × up to ``TILE_VECTORS`` vectors of ``LANES`` columns; for each p,
  one vector load of each row block of B[p], a broadcast of each A(i, p), one fused multiply-add
  per accumulator. Each C(i, j) = fma(A(i, k-1), B(k-1, j), … fma(A(i, 0), B(0, j), 0)), the
  order OpenBLAS's kernels use.
- ``op(B) = Bᵀ`` (``nt``, the input gradient): both operands are contiguous along k, so a tile of
  ``TILE_ROWS`` × ``TILE_ROWS`` dot products, each a vector of ``LANES`` partial sums over p
  (p ≡ lane mod ``LANES``) added up at the end in a fixed tree.

Edges are masked (vector loads and stores of the columns or the k-tail that exist); rows past
the end of a tile reuse the last row's operands and are not stored. The results depend only on
the shapes, never on how threads cut C into blocks. Vectors are ``LANES`` wide: 16 float32 (one
512-bit register) on a CPU with AVX-512, else 8.
"""

import llvmlite.binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ..config import JIT_INTERNAL, TILE_MAX_WEIGHTS, TILE_MIN_UNITS
from ..jit import njit
from .blas import leading_dimension

LANES = 16 if llvm.get_host_cpu_features().get("avx512f", False) else 8
TILE_ROWS = 4
TILE_VECTORS = 4
TILE_COLS = TILE_VECTORS * LANES

_F32 = ir.FloatType()
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_VEC = ir.VectorType(_F32, LANES)
_SUFFIX = f"v{LANES}f32"


def _const(value):
    return ir.Constant(_I64, value)


def _function(builder, name, result, arguments):
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(result, arguments), name)


def _fma(builder, a, b, c):
    return builder.call(_function(builder, f"llvm.fma.{_SUFFIX}", _VEC, [_VEC] * 3), [a, b, c])


def _broadcast(builder, value, vector_type):
    """A vector of ``vector_type`` with ``value`` in every lane."""
    lanes = vector_type.count
    one = builder.insert_element(ir.Constant(vector_type, ir.Undefined), value,
                                 ir.Constant(_I32, 0))
    return builder.shuffle_vector(one, one, ir.Constant(ir.VectorType(_I32, lanes), [0] * lanes))


def _lane_mask(builder, start, limit):
    """The ``LANES`` lanes l with start + l < limit (i64 values)."""
    index_type = ir.VectorType(_I64, LANES)
    lanes = builder.add(_broadcast(builder, start, index_type),
                        ir.Constant(index_type, list(range(LANES))))
    return builder.icmp_signed("<", lanes, _broadcast(builder, limit, index_type))


def _vector_pointer(builder, data, offset, vector_type=_VEC):
    return builder.bitcast(builder.gep(data, [offset]), vector_type.as_pointer())


def _masked_load(builder, data, offset, mask, vector_type=_VEC):
    """The lanes of ``mask`` read from data[offset:], the others 0."""
    mask_type = ir.VectorType(ir.IntType(1), vector_type.count)
    load = _function(builder, f"llvm.masked.load.v{vector_type.count}f32.p0", vector_type,
                     [vector_type.as_pointer(), _I32, mask_type, vector_type])
    return builder.call(load, [_vector_pointer(builder, data, offset, vector_type),
                               ir.Constant(_I32, 4), mask,
                               ir.Constant(vector_type, [0.0] * vector_type.count)])


def _masked_store(builder, value, data, offset, mask):
    """The lanes of ``mask`` of ``value`` written to data[offset:], the others left alone."""
    vector_type = value.type
    mask_type = ir.VectorType(ir.IntType(1), vector_type.count)
    store = _function(builder, f"llvm.masked.store.v{vector_type.count}f32.p0", ir.VoidType(),
                      [vector_type, vector_type.as_pointer(), _I32, mask_type])
    builder.call(store, [value, _vector_pointer(builder, data, offset, vector_type),
                         ir.Constant(_I32, 4), mask])


def _data(context, builder, array_type, array):
    return context.make_array(array_type)(context, builder, array).data


def _sum_loop(builder, start, stop, step, initial, body):
    """for (p = start; p < stop; p += step) acc = body(p, acc), the vector accumulators starting
    at ``initial``; returns their final values."""
    before = builder.block
    head = builder.append_basic_block("tile.head")
    loop = builder.append_basic_block("tile.body")
    after = builder.append_basic_block("tile.after")
    builder.branch(head)
    builder.position_at_end(head)
    p = builder.phi(_I64)
    p.add_incoming(start, before)
    accumulators = []
    for value in initial:
        phi = builder.phi(_VEC)
        phi.add_incoming(value, before)
        accumulators.append(phi)
    builder.cbranch(builder.icmp_signed("<", p, stop), loop, after)
    builder.position_at_end(loop)
    updated = body(p, accumulators)
    p_next = builder.add(p, _const(step))
    end = builder.block
    builder.branch(head)
    p.add_incoming(p_next, end)
    for phi, value in zip(accumulators, updated):
        phi.add_incoming(value, end)
    builder.position_at_end(after)
    return accumulators


def _zeros(count):
    return [ir.Constant(_VEC, [0.0] * LANES)] * count


def _row_of(builder, i, rows):
    """min(i, rows - 1): the operand row a tile row reads (rows past the end reuse the last)."""
    last = builder.sub(rows, _const(1))
    return builder.select(builder.icmp_signed("<", _const(i), rows), _const(i), last)


def _float32_only(codegen):
    """The tile's code for float32 arrays; for any other dtype no code at all (the kernels compile
    a float64 variant too, where :func:`suits_tiles` never lets a call reach a tile)."""
    def guarded(context, builder, sig, args):
        if all(getattr(t, "dtype", None) == types.float32 for t in sig.args if
               isinstance(t, types.Array)):
            return codegen(context, builder, sig, args)
        return context.get_dummy_value()
    return guarded


def _outer_tile_codegen(n_vectors):
    @_float32_only
    def codegen(context, builder, sig, args):
        (C, c_off, ldc, rows, cols, A, a_off, a_rs, a_cs, B, b_off, ldb, k, accumulate) = args
        c_data = _data(context, builder, sig.args[0], C)
        a_data = _data(context, builder, sig.args[5], A)
        b_data = _data(context, builder, sig.args[9], B)
        masks = [_lane_mask(builder, _const(v * LANES), cols) for v in range(n_vectors)]
        a_rows = [builder.add(a_off, builder.mul(_row_of(builder, i, rows), a_rs))
                  for i in range(TILE_ROWS)]

        def body(p, acc):
            b_row = builder.add(b_off, builder.mul(p, ldb))
            b = [_masked_load(builder, b_data, builder.add(b_row, _const(v * LANES)), masks[v])
                 for v in range(n_vectors)]
            updated = []
            for i in range(TILE_ROWS):
                a = builder.load(builder.gep(a_data, [builder.add(a_rows[i],
                                                                  builder.mul(p, a_cs))]))
                a = _broadcast(builder, a, _VEC)
                updated += [_fma(builder, a, b[v], acc[i * n_vectors + v])
                            for v in range(n_vectors)]
            return updated

        acc = _sum_loop(builder, _const(0), k, 1, _zeros(TILE_ROWS * n_vectors), body)
        for i in range(TILE_ROWS):
            with builder.if_then(builder.icmp_signed("<", _const(i), rows)):
                c_row = builder.add(c_off, builder.mul(_const(i), ldc))
                for v in range(n_vectors):
                    offset = builder.add(c_row, _const(v * LANES))
                    value = acc[i * n_vectors + v]
                    old = _masked_load(builder, c_data, offset, masks[v])
                    value = builder.select(accumulate, builder.fadd(value, old), value)
                    _masked_store(builder, value, c_data, offset, masks[v])
        return context.get_dummy_value()
    return codegen


def _outer_tile(n_vectors):
    @intrinsic
    def outer_tile(typingctx, C, c_off, ldc, rows, cols, A, a_off, a_rs, a_cs, B, b_off, ldb, k,
                   accumulate):
        i = types.intp
        sig = types.void(C, i, i, i, i, A, i, i, i, B, i, i, i, types.boolean)
        return sig, _outer_tile_codegen(n_vectors)
    return outer_tile


_outer_tile_1 = _outer_tile(1)
_outer_tile_2 = _outer_tile(2)
_outer_tile_3 = _outer_tile(3)
_outer_tile_4 = _outer_tile(4)


def _lane_tree_sums(builder, vectors):
    """The lane sums of ``TILE_ROWS²`` (≥ LANES) vectors, each added up in the same fixed tree:
    pairs of vectors are halved and added until each lane holds one whole sum. Returns a list of
    (vector, labels): lane l of that vector is the sum of vectors[labels[l]]."""
    items = [(vector, [index] * LANES) for index, vector in enumerate(vectors)]
    half = LANES // 2
    while half >= 1 and len(items) > 1:
        merged = []
        for (a, a_labels), (b, b_labels) in zip(items[0::2], items[1::2]):
            low, high, labels = [], [], []
            for block in range(0, LANES, 2 * half):
                low += list(range(block, block + half)) + \
                    list(range(LANES + block, LANES + block + half))
                high += list(range(block + half, block + 2 * half)) + \
                    list(range(LANES + block + half, LANES + block + 2 * half))
                labels += a_labels[block:block + half] + b_labels[block:block + half]
            index_type = ir.VectorType(_I32, LANES)
            merged.append((builder.fadd(
                builder.shuffle_vector(a, b, ir.Constant(index_type, low)),
                builder.shuffle_vector(a, b, ir.Constant(index_type, high))), labels))
        items = merged
        half //= 2
    return items


@_float32_only
def _dot_tile_codegen(context, builder, sig, args):
    (C, c_off, ldc, rows, cols, A, a_off, lda, B, b_off, ldb, k, accumulate) = args
    c_data = _data(context, builder, sig.args[0], C)
    a_data = _data(context, builder, sig.args[5], A)
    b_data = _data(context, builder, sig.args[8], B)
    a_rows = [builder.add(a_off, builder.mul(_row_of(builder, i, rows), lda))
              for i in range(TILE_ROWS)]
    b_rows = [builder.add(b_off, builder.mul(_row_of(builder, j, cols), ldb))
              for j in range(TILE_ROWS)]

    def products(a, b, acc):
        return [_fma(builder, a[i], b[j], acc[i * TILE_ROWS + j])
                for i in range(TILE_ROWS) for j in range(TILE_ROWS)]

    def full_chunk(p, acc):
        a = [builder.load(_vector_pointer(builder, a_data, builder.add(row, p)), align=4)
             for row in a_rows]
        b = [builder.load(_vector_pointer(builder, b_data, builder.add(row, p)), align=4)
             for row in b_rows]
        return products(a, b, acc)

    def last_chunk(p, acc):
        mask = _lane_mask(builder, p, k)
        a = [_masked_load(builder, a_data, builder.add(row, p), mask) for row in a_rows]
        b = [_masked_load(builder, b_data, builder.add(row, p), mask) for row in b_rows]
        return products(a, b, acc)

    full = builder.sub(k, builder.srem(k, _const(LANES)))
    acc = _sum_loop(builder, _const(0), full, LANES, _zeros(TILE_ROWS * TILE_ROWS), full_chunk)
    acc = _sum_loop(builder, full, k, LANES, acc, last_chunk)
    row_type = ir.VectorType(_F32, TILE_ROWS)
    row_lanes = ir.Constant(ir.VectorType(_I32, TILE_ROWS), list(range(TILE_ROWS)))
    row_mask = _lane_mask(builder, _const(0), cols)
    row_mask = builder.shuffle_vector(row_mask, row_mask, row_lanes)
    sums = _lane_tree_sums(builder, acc)
    where = {label: n * LANES + lane for n, (_, labels) in enumerate(sums)
             for lane, label in enumerate(labels)}
    for i in range(TILE_ROWS):
        picks = [where[i * TILE_ROWS + j] for j in range(TILE_ROWS)]
        row = builder.shuffle_vector(sums[0][0], sums[-1][0], ir.Constant(
            ir.VectorType(_I32, TILE_ROWS), picks))
        with builder.if_then(builder.icmp_signed("<", _const(i), rows)):
            offset = builder.add(c_off, builder.mul(_const(i), ldc))
            old = _masked_load(builder, c_data, offset, row_mask, row_type)
            row = builder.select(accumulate, builder.fadd(row, old), row)
            _masked_store(builder, row, c_data, offset, row_mask)
    return context.get_dummy_value()


@intrinsic
def _dot_tile(typingctx, C, c_off, ldc, rows, cols, A, a_off, lda, B, b_off, ldb, k, accumulate):
    i = types.intp
    sig = types.void(C, i, i, i, i, A, i, i, B, i, i, i, types.boolean)
    return sig, _dot_tile_codegen


@njit(**JIT_INTERNAL)
def _outer_tiles(C, A, B, trans_a, accumulate):
    """C (+)= op(A)·B by outer-product tiles; op(A) = Aᵀ when ``trans_a``."""
    m, n = C.shape
    k = B.shape[0]
    ldc, lda, ldb = leading_dimension(C), leading_dimension(A), leading_dimension(B)
    a_rs, a_cs = (1, lda) if trans_a else (lda, 1)
    for i0 in range(0, m, TILE_ROWS):
        rows = min(TILE_ROWS, m - i0)
        for j0 in range(0, n, TILE_COLS):
            cols = min(TILE_COLS, n - j0)
            c_off = i0 * ldc + j0
            a_off = i0 * a_rs
            if cols > 3 * LANES:
                _outer_tile_4(C, c_off, ldc, rows, cols, A, a_off, a_rs, a_cs, B, j0, ldb, k,
                              accumulate)
            elif cols > 2 * LANES:
                _outer_tile_3(C, c_off, ldc, rows, cols, A, a_off, a_rs, a_cs, B, j0, ldb, k,
                              accumulate)
            elif cols > LANES:
                _outer_tile_2(C, c_off, ldc, rows, cols, A, a_off, a_rs, a_cs, B, j0, ldb, k,
                              accumulate)
            else:
                _outer_tile_1(C, c_off, ldc, rows, cols, A, a_off, a_rs, a_cs, B, j0, ldb, k,
                              accumulate)


@njit(**JIT_INTERNAL)
def _dot_tiles(C, A, B, accumulate):
    """C (+)= A·Bᵀ by dot-product tiles. A (m, k), B (n, k)."""
    m, n = C.shape
    k = A.shape[1]
    ldc, lda, ldb = leading_dimension(C), leading_dimension(A), leading_dimension(B)
    for i0 in range(0, m, TILE_ROWS):
        rows = min(TILE_ROWS, m - i0)
        for j0 in range(0, n, TILE_ROWS):
            cols = min(TILE_ROWS, n - j0)
            _dot_tile(C, i0 * ldc + j0, ldc, rows, cols, A, i0 * lda, lda, B, j0 * ldb, ldb, k,
                      accumulate)


@njit(**JIT_INTERNAL)
def suits_tiles(W):
    """Whether the products of a layer with weights W (I, F) go through the tiles: float32, both
    sides ≥ ``TILE_MIN_UNITS`` and I·F ≤ ``TILE_MAX_WEIGHTS`` (``kernels/config.py``)."""
    I, F = W.shape
    return W.itemsize == 4 and min(I, F) >= TILE_MIN_UNITS and I * F <= TILE_MAX_WEIGHTS


@njit(**JIT_INTERNAL)
def tiled_gemm(C, A, B, trans_a, trans_b, accumulate):
    """C = op(A)·op(B), or C += op(A)·op(B) when ``accumulate`` (float32 views, module
    docstring); op(A)ᵀ·op(B)ᵀ is not offered (no kernel needs it). Nothing is done for an empty
    C."""
    m, n = C.shape
    if m == 0 or n == 0:
        return
    if trans_b:
        _dot_tiles(C, A, B, accumulate)
    else:
        _outer_tiles(C, A, B, trans_a, accumulate)
