"""The kernel contract: every code, table column and record the CPU and CUDA kernels share with
the Python side, in one place.

Codes
    Activations (``ACTIVATION_CODES``), losses, optimizers (with ``N_COEFFICIENTS`` scalars per
    step, see ``cpu/optimizers.optimizer_update``), the phases of a kernel call and the tasks.

Tables (int64 or float64 2-D arrays built by ``fastmlp.engines.layout``)
    ``layer_int`` (L, N_LAYER_INT): sizes, codes, options and parameter/buffer offsets (``L_*``);
    ``layer_float`` (L, N_LAYER_FLOAT): the float options (``F_*``); ``ws_off`` (L, N_WS): the
    workspace offsets of one batch size (``W_*`` up to N_WS_OFFSETS) and the plan of how the parts
    of a call share each layer's products (``W_SPLIT_*``, split codes ``SPLIT_*``).

Records (NamedTuples that compiled code takes as typed tuples; see ``engines.records``)
    - ``Network(params, buffers, layer_int, layer_float)``: the flat parameters (P,) and batchnorm
      statistics (R,) with the tables that lay them out.
    - ``Data(X, labels, targets, loss_code, order, bounds)``: rows (n, d), class indices (n,) int64
      or empty, float targets (n, C) or (0, C), the loss code, and for an epoch the row order (n,)
      int64 and batch boundaries (steps + 1,) int64 (batch k is order[bounds[k]:bounds[k + 1]]).
    - ``Workspace(ws, ws_off, ws_off_last, grads, partials, Xb, lb, tb, saved, shared, sync,
      result, half)``: the flat activation workspace with its layouts for a full and for the last
      batch, the gradient (P,), per-part sums (parts, N_PARTIALS) float64, the batch buffers, a
      copy of the statistics (R,) for undoing a non-finite step, the team's float and int64
      arrays, result (N_RESULT,) float64 (``R_*``), and ``half``, a ``Half`` record (None on the
      GPU).
    - ``Half(params, ws, x)``: the bfloat16 operands of the matrix products of a
      ``mixed_bfloat16`` model, as uint16 bits (``cpu/bf16``): params (P,) rounds the parameters
      (same offsets), ws (S,) the layer outputs and pre-activation gradients (same offsets as the
      workspace), x (B, d) the batch's input rows. All three are empty for a float32 or float64
      model, whose products take the float operands themselves.
    - ``Update(code, s0, s1, s2, flag, init, coefficients, bounds)``: the optimizer code, its
      state arrays (P,) or empty, its flag (nesterov / centered / amsgrad), whether the first step
      creates the SGD momentum buffer, the scalars of each step (steps, N_COEFFICIENTS), and
      (N_BOUNDS,) float64 upper bounds of the magnitudes of the parameters and state arrays with
      the limit they must stay below (``rules.update_bound``), kept current by the kernels.
    - ``Run(seed, first_step, l1, l2, clip_norm, parts, members, training, update_stats, count,
      gathered)``: the dropout seed and the step number of the first batch, the penalties, the
      clipping norm (0: off), how many parts every phase is cut into and how many threads share
      them (the results depend on ``parts`` only), the mode flags, whether to count correct
      predictions, and whether batches are gathered from ``Data`` by ``order`` (an epoch) or
      ``Data.X`` is the batch itself.
"""

from collections import namedtuple

# ---------------------------------------------------------------- activations
LINEAR, SIGMOID, TANH, RELU, LEAKY_RELU, ELU, SOFTPLUS, GELU, MAXOUT = range(9)
ACTIVATION_CODES = {
    "linear": LINEAR, "sigmoid": SIGMOID, "tanh": TANH, "relu": RELU, "leaky_relu": LEAKY_RELU,
    "elu": ELU, "softplus": SOFTPLUS, "gelu": GELU, "maxout": MAXOUT,
}

# ---------------------------------------------------------------- losses
CROSS_ENTROPY, CROSS_ENTROPY_PROBS, BINARY_CROSS_ENTROPY, MSE, HINGE = range(5)

# ---------------------------------------------------------------- optimizers
SGD, ADAGRAD, RMSPROP, ADAM, RPROP = range(5)
N_COEFFICIENTS = 9

# ---------------------------------------------------------------- layer tables
L_IN, L_UNITS, L_ACT, L_PIECES, L_BN, L_DROPOUT = 0, 1, 2, 3, 4, 5
L_W, L_B, L_GAMMA, L_BETA, L_RMEAN, L_RVAR = 6, 7, 8, 9, 10, 11
N_LAYER_INT = 12
F_ALPHA, F_DROP_P, F_BN_EPS, F_BN_MOMENTUM = 0, 1, 2, 3
N_LAYER_FLOAT = 4

# ---------------------------------------------------------------- workspace layout and plan
# (B, F) pre, (B, F) xhat, (B, U) act, (B, U) dropout out, (B, U) mask, (B, U) gradient of the
# layer output, (B, F) gradient of pre, (F,) batch mean, (F,) 1/std
W_PRE, W_XHAT, W_ACT, W_OUT, W_MASK, W_DOUT, W_DPRE, W_MEAN, W_INVSTD = range(9)
N_WS_OFFSETS = 9
W_SPLIT_FWD, W_SPLIT_DW, W_SPLIT_DX = 9, 10, 11   # the forward product, dW and dh of a layer
N_WS = 12
# split codes: part 0 alone, blocks of rows, blocks of columns, the last part alone
SPLIT_ONE, SPLIT_ROWS, SPLIT_COLS, SPLIT_LAST = 0, 1, 2, 3

# ---------------------------------------------------------------- per-part sums
# loss terms, correct, counted, squared gradient norm, penalty; from the check of an update: the
# first non-finite new value (1 + 4·i + a for element i of array a: 0 param, 1-3 s0-s2; 0: none)
# and the largest |new value| of the param and of s0, s1, s2
P_LOSS, P_CORRECT, P_COUNTED, P_GRAD_SQ, P_PENALTY, P_BAD = range(6)
P_MAX = 6
N_PARTIALS = 10

# ---------------------------------------------------------------- results of a task
# work.result: steps done (or the task's loss), Σ loss · rows, correct, counted, why the steps
# stopped (STOP_*), and for STOP_OVERFLOW the first non-finite new value (as P_BAD)
R_DONE, R_TOTAL, R_CORRECT, R_COUNTED, R_STOP, R_BAD = range(6)
N_RESULT = 6
STOP_NONE, STOP_NONFINITE, STOP_OVERFLOW = range(3)

# ---------------------------------------------------------------- update bounds
# Update.bounds: upper bounds of |param|, |s0|, |s1|, |s2|, and the limit they must stay below
B_PARAM, B_LIMIT = 0, 4
N_BOUNDS = 5

# ---------------------------------------------------------------- phases and tasks
GATHER, FORWARD, FORWARD_ROWS, LOSS, LAST_BATCHNORM, BACKWARD, UPDATE, GRAD_NORM = range(8)
CHECK_UPDATE, ROUND = 8, 9
TASK_FORWARD, TASK_LOSS, TASK_GRADIENT, TASK_EPOCH, TASK_LOCAL_GRADIENT, TASK_UPDATE = range(6)

# ---------------------------------------------------------------- records
Network = namedtuple("Network", ["params", "buffers", "layer_int", "layer_float"])
Data = namedtuple("Data", ["X", "labels", "targets", "loss_code", "order", "bounds"])
Workspace = namedtuple("Workspace", ["ws", "ws_off", "ws_off_last", "grads", "partials", "Xb", "lb",
                                     "tb", "saved", "shared", "sync", "result", "half"],
                       defaults=(None,))
Half = namedtuple("Half", ["params", "ws", "x"])
Update = namedtuple("Update", ["code", "s0", "s1", "s2", "flag", "init", "coefficients",
                               "bounds"])
Run = namedtuple("Run", ["seed", "first_step", "l1", "l2", "clip_norm", "parts", "members",
                         "training", "update_stats", "count", "gathered"])
