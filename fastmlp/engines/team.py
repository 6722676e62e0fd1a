"""Running a kernel task on a team of threads: the calling thread leads, pool threads help.

``run_task(task, net, data, work, opt, run)`` calls the compiled entry point
``kernels.cpu.train.team_member`` once per member: member 0 in the calling thread, members
1 … T-1 in persistent pool threads (started on first use, one per extra member). The kernel
releases the GIL, so they run in parallel; they meet through the call's own synchronization
array (a fresh one per call, so a helper that arrives after its call ended only sees that call's
"finished" flag and leaves). The call returns when the leader is done; helpers need not have
returned by then, and a helper still busy with an earlier call simply joins this one late (the
leader runs every part nobody has claimed).

While a task runs — on one thread too — the BLAS behind the kernels is single-threaded
(``_blas_threads``): a BLAS starting threads of its own next to the kernels' would fight them for
the cores, and its threads stall badly when other processes keep the cores busy (a 40-256-256-10
step was measured 40–80× slower with 2 BLAS threads under two CPU-bound processes).
"""

from __future__ import annotations

import queue
import threading

from ..kernels.cpu.team import new_sync
from ..kernels.cpu.train import team_member
from ..threads import team_members
from .blas_threads import single_threaded_blas

_pool_lock = threading.Lock()
_helpers = []  # queue per pool thread; pool thread i runs member i + 1


def _helper_loop(tasks):
    while True:
        member, arguments = tasks.get()
        team_member(member, *arguments)


def _helper_queue(index):
    with _pool_lock:
        while len(_helpers) <= index:
            tasks = queue.SimpleQueue()
            thread = threading.Thread(target=_helper_loop, args=(tasks,), daemon=True,
                                      name=f"fastmlp-kernel-{len(_helpers) + 1}")
            thread.start()
            _helpers.append(tasks)
        return _helpers[index]


def run_task(task, net, data, work, opt, run, members=None):
    """Run kernel task ``task``, its phases cut into ``run.parts`` parts, on ``members`` threads
    (default :func:`fastmlp.threads.team_members`); returns ``work`` (its ``result`` holds the
    task's scalars)."""
    members = team_members(run.parts) if members is None else max(1, min(members, run.parts))
    run = run._replace(members=members)
    if members > 1:
        work = work._replace(sync=new_sync())
    arguments = (task, net, data, work, opt, run)
    with single_threaded_blas():
        for member in range(1, members):
            _helper_queue(member - 1).put((member, arguments))
        team_member(0, *arguments)
    return work
