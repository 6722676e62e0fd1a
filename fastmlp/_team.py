"""Running a kernel task on a team of threads: the calling thread leads, pool threads help.

``run_task(task, net, data, work, opt, run)`` calls the compiled entry point
``kernels.cpu.train.team_member`` once per member: member 0 in the calling thread, members
1 … T-1 in persistent pool threads (started on first use, one per extra member). The kernel
releases the GIL, so they run in parallel; they meet through the call's own synchronization
array (a fresh one per call, so a helper that arrives after its call ended only sees that call's
"finished" flag and leaves). The call returns when the leader is done; helpers need not have
returned by then, and a helper still busy with an earlier call simply joins this one late (the
leader runs every part nobody has claimed).

While the team runs, the BLAS behind the kernels is single-threaded (``_blas_threads``).
"""

from __future__ import annotations

import queue
import threading

from ._blas_threads import single_threaded_blas
from .kernels.cpu.team import new_sync
from .kernels.cpu.train import team_member

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


def run_task(task, net, data, work, opt, run):
    """Run kernel task ``task`` with ``run.threads`` members; returns ``work`` (its ``result``
    holds the task's scalars)."""
    threads = run.threads
    if threads == 1:
        team_member(0, task, net, data, work, opt, run)
        return work
    work = work._replace(sync=new_sync())
    arguments = (task, net, data, work, opt, run)
    with single_threaded_blas():
        for member in range(1, threads):
            _helper_queue(member - 1).put((member, arguments))
        team_member(0, *arguments)
    return work
