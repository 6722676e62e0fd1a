"""A team of threads inside one parallel region: phases cut into parts, claimed and waited on
with atomic counters instead of one Numba parallel region per phase.

Starting a Numba (OpenMP) parallel region and joining it costs 1–10 µs — more on virtual machines,
where a sleeping thread is woken through the hypervisor — and a training step has 2L + 2 phases.
So a kernel opens one region for a whole call and runs its phases through a team:

- the leader (region iteration 0, the calling thread) posts each phase — a kind, a layer, a step
  and the number of parts — by writing a descriptor and then bumping the ``POSTED`` generation;
- every thread (leader included) claims parts of the posted phase with a compare-and-swap on the
  part's ``CLAIM`` slot, its own index first, then any left, and runs each part it wins, adding 1
  to ``DONE`` after it;
- the leader waits until ``DONE`` counts every part, makes the phase's decisions from the per-part
  results and posts the next phase; at the end it sets ``QUIT``.

Nothing depends on which thread ran a part (per-part results go to row ``part`` of the partials),
so the results are the same whether 1 or T threads took part. A helper that starts late, or never,
costs parallelism, never correctness: the leader runs every part nobody claimed. Waiting spins
(no pause instruction, which makes hypervisors deschedule the vCPU) and yields the core after a
while; a helper that has seen no new phase for about a second leaves the region.

``sync`` (N_SYNC_SLOTS · SLOT,) int64, zeroed before each region; slots are SLOT apart (one cache
line each). ``shared`` (N_SHARED,) float64 carries the leader's float decisions to the parts.
"""

import os

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ..config import JIT, JIT_INTERNAL
from ..jit import njit

SLOT = 8  # int64 values per cache line
POSTED, DONE, QUIT, KIND, LAYER, STEP, PARTS, TARGET = 0, 1, 2, 3, 4, 5, 6, 7
FIRST_CLAIM = 8  # CLAIM of part i is slot FIRST_CLAIM + i
MAX_PARTS = 64
N_SYNC_SLOTS = FIRST_CLAIM + MAX_PARTS
SHARED_SCALE, SHARED_LOSS, N_SHARED = 0, 1, 4
SPINS_BEFORE_YIELD = 1 << 18
YIELDS_BEFORE_LEAVING = 1_000_000

if os.name == "posix":
    _SCHED_YIELD = types.ExternalFunction("sched_yield", types.intc())

    @njit(**JIT_INTERNAL)
    def _yield_core():
        _SCHED_YIELD()
else:
    @njit(**JIT)
    def _yield_core():
        pass


def new_sync():
    """A zeroed synchronization array for one parallel region."""
    return np.zeros(N_SYNC_SLOTS * SLOT, dtype=np.int64)


def _slot_pointer(context, builder, sig, args):
    aryty = sig.args[0]
    ary = context.make_array(aryty)(context, builder, args[0])
    index = builder.mul(args[1], ir.Constant(args[1].type, SLOT))
    return cgutils.get_item_pointer(context, builder, aryty, ary, [index])


@intrinsic
def atomic_add(typingctx, sync, slot, value):
    """sync[slot·SLOT] += value atomically (sequentially consistent); returns the old value."""
    def codegen(context, builder, sig, args):
        ptr = _slot_pointer(context, builder, sig, args)
        return builder.atomic_rmw("add", ptr, args[2], "seq_cst")
    return types.int64(sync, slot, types.int64), codegen


@intrinsic
def atomic_load(typingctx, sync, slot):
    """sync[slot·SLOT] read with acquire ordering."""
    def codegen(context, builder, sig, args):
        ptr = _slot_pointer(context, builder, sig, args)
        return builder.load_atomic(ptr, "acquire", 8)
    return types.int64(sync, slot), codegen


@intrinsic
def atomic_store(typingctx, sync, slot, value):
    """sync[slot·SLOT] = value with release ordering."""
    def codegen(context, builder, sig, args):
        ptr = _slot_pointer(context, builder, sig, args)
        builder.store_atomic(args[2], ptr, "release", 8)
        return context.get_dummy_value()
    return types.void(sync, slot, types.int64), codegen


@intrinsic
def compare_and_swap(typingctx, sync, slot, expected, value):
    """Set sync[slot·SLOT] to value if it equals expected; returns whether it did."""
    def codegen(context, builder, sig, args):
        ptr = _slot_pointer(context, builder, sig, args)
        pair = builder.cmpxchg(ptr, args[2], args[3], "seq_cst", "seq_cst")
        return builder.extract_value(pair, 1)
    return types.boolean(sync, slot, types.int64, types.int64), codegen


@njit(**JIT_INTERNAL)
def relax(spins):
    """One round of waiting: spin, and give the core away once ``spins`` is large. Returns the
    updated count."""
    spins += 1
    if spins > SPINS_BEFORE_YIELD:
        _yield_core()
    return spins


@njit(**JIT_INTERNAL)
def claim(sync, part, generation):
    """Whether this thread wins part ``part`` of the phase ``generation`` (claims only rise)."""
    seen = atomic_load(sync, FIRST_CLAIM + part)
    while seen < generation:
        if compare_and_swap(sync, FIRST_CLAIM + part, seen, generation):
            return True
        seen = atomic_load(sync, FIRST_CLAIM + part)
    return False


@njit(**JIT_INTERNAL)
def post(sync, generation, kind, layer, step, parts):
    """Leader: publish phase ``generation`` (descriptor first, then the generation)."""
    atomic_store(sync, KIND, kind)
    atomic_store(sync, LAYER, layer)
    atomic_store(sync, STEP, step)
    atomic_store(sync, PARTS, parts)
    atomic_store(sync, POSTED, generation)


@njit(**JIT_INTERNAL)
def wait_done(sync, parts):
    """Leader: wait until the ``parts`` parts of the phase just posted have been finished (the
    leader alone keeps the running total in TARGET)."""
    target = sync[TARGET * SLOT] + parts
    sync[TARGET * SLOT] = target
    spins = 0
    while atomic_load(sync, DONE) < target:
        spins = relax(spins)


@njit(**JIT_INTERNAL)
def reset(sync):
    """Zero the synchronization array before a parallel region."""
    for i in range(sync.shape[0]):
        sync[i] = 0


@njit(**JIT_INTERNAL)
def finish(sync):
    """Leader: tell the helpers to leave the region."""
    atomic_store(sync, QUIT, 1)


@njit(**JIT_INTERNAL)
def read_posted(sync, last):
    """Helper: (generation, kind, layer, step, parts) of a phase posted after ``last``, or
    generation -1 when the leader has finished (or nothing new came for a long time)."""
    spins = 0
    while True:
        if atomic_load(sync, QUIT):
            return -1, 0, 0, 0, 0
        generation = atomic_load(sync, POSTED)
        if generation > last:
            kind = atomic_load(sync, KIND)
            layer = atomic_load(sync, LAYER)
            step = atomic_load(sync, STEP)
            parts = atomic_load(sync, PARTS)
            if atomic_load(sync, POSTED) == generation:
                return generation, kind, layer, step, parts
            continue
        spins = relax(spins)
        if spins > SPINS_BEFORE_YIELD + YIELDS_BEFORE_LEAVING:
            return -1, 0, 0, 0, 0
