"""The records a whole-network kernel call takes, instead of long lists of positional arguments.

Each is a NamedTuple of arrays and scalars (Numba compiles them as typed tuples):

- ``Network(params, buffers, layer_int, layer_float)``: the flat parameters (P,) and batchnorm
  statistics (R,), and the tables that lay them out (see :mod:`.network`).
- ``Data(X, labels, targets, loss_code, order, bounds)``: the rows (n, d), class indices (n,) int64
  or empty, float targets (n, C) or (0, C), the loss code, and for an epoch the row order (n,)
  int64 and batch boundaries (steps + 1,) int64 (batch k is order[bounds[k]:bounds[k + 1]]).
- ``Workspace(ws, ws_off, ws_off_last, grads, partials, Xb, lb, tb, saved, shared, sync, result)``:
  the flat activation workspace with its layouts for a full and for the last batch, the gradient
  (P,), per-part sums (parts, N_PARTIALS) float64, the batch buffers, a copy of the statistics
  (R,) for undoing a non-finite step, the team's float and int64 arrays, and result (4,) float64.
- ``Update(code, s0, s1, s2, flag, init, coefficients)``: the optimizer kernel code, its state
  arrays (P,) or empty, its flag (nesterov / centered / amsgrad), whether the first step creates
  the SGD momentum buffer, and the scalars of each step (steps, N_COEFFICIENTS).
- ``Run(seed, first_step, l1, l2, clip_norm, parts, members, training, update_stats, count,
  gathered)``: the dropout seed and the step number of the first batch, the penalties, the
  clipping norm (0: off), how many parts every phase is cut into and how many threads share them
  (the results depend on ``parts`` only), the mode flags, whether to count correct predictions,
  and whether the
  batches are gathered from ``Data`` by ``order`` (an epoch) or ``Data.X`` is the batch itself.
"""

from collections import namedtuple

Network = namedtuple("Network", ["params", "buffers", "layer_int", "layer_float"])
Data = namedtuple("Data", ["X", "labels", "targets", "loss_code", "order", "bounds"])
Workspace = namedtuple("Workspace", ["ws", "ws_off", "ws_off_last", "grads", "partials", "Xb", "lb",
                                     "tb", "saved", "shared", "sync", "result"])
Update = namedtuple("Update", ["code", "s0", "s1", "s2", "flag", "init", "coefficients"])
Run = namedtuple("Run", ["seed", "first_step", "l1", "l2", "clip_norm", "parts", "members",
                         "training", "update_stats", "count", "gathered"])
