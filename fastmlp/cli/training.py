"""What a ``fastmlp train`` run trains with, built from its arguments: the model, the optimizer,
the learning-rate schedule and the thread count.
"""

from __future__ import annotations

from .arguments import (
    DEFAULT_HIDDEN,
    DEFAULT_LR,
    MOMENTUM_OPTIMIZERS,
    PLATEAU_FACTOR,
    PLATEAU_PATIENCE,
    SMALL_NETWORK_MACS,
    STEP_FRACTION,
    STEP_GAMMA,
    CLIError,
)


def build_model(args, n_features, n_outputs):
    import fastmlp as fm
    hidden = DEFAULT_HIDDEN if args.hidden is None else [s for group in args.hidden for s in group]
    layers = [fm.Dense(units, activation=args.activation, batchnorm=args.batchnorm,
                       dropout=args.dropout) for units in hidden]
    layers.append(fm.Dense(n_outputs))
    model = fm.MLP(n_features, layers, loss=args.loss, dtype=args.dtype, device=args.device,
                   seed=args.seed)
    if args.device == "cuda":
        fm.set_cuda_matmul(args.cuda_matmul)
    elif args.cuda_matmul != "numba":
        raise CLIError("--cuda-matmul applies to --device cuda")
    return model


def build_optimizer(args):
    from ..optimizers import get_optimizer
    lr = DEFAULT_LR[args.optimizer] if args.lr is None else args.lr
    hyper = {"lr": lr}
    if args.momentum is not None:
        if args.optimizer not in MOMENTUM_OPTIMIZERS:
            raise CLIError(f"--momentum applies to sgd and rmsprop, not {args.optimizer}")
        hyper["momentum"] = args.momentum
    return get_optimizer(args.optimizer, **hyper)


def build_schedule(args, monitor):
    import fastmlp as fm
    if args.schedule == "step":
        return fm.StepLR(step_size=max(1, args.epochs // STEP_FRACTION), gamma=STEP_GAMMA)
    if args.schedule == "cosine":
        return fm.CosineAnnealingLR(T_max=args.epochs)
    if args.schedule == "plateau":
        return fm.ReduceLROnPlateau(monitor=monitor, factor=PLATEAU_FACTOR,
                                    patience=PLATEAU_PATIENCE)
    return None


def max_threads():
    """The most threads Numba runs with (NUMBA_NUM_THREADS)."""
    import numba
    return int(numba.config.NUMBA_NUM_THREADS)


def choose_threads(requested, model, batch_size):
    """Thread count for ``--threads`` (None: leave the library's default, all cores)."""
    if requested != "auto":
        return min(requested, max_threads())
    fan_in, largest = model.input_dim, 0
    for layer in model.layers:
        largest = max(largest, fan_in * layer.width)
        fan_in = layer.units
    return 1 if batch_size * largest < SMALL_NETWORK_MACS else None
