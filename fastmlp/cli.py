"""The ``fastmlp`` command line: ``fastmlp train`` trains an MLP and writes its results;
``fastmlp export`` writes a saved model as an ONNX file.

::

    fastmlp train                                    # digits, sensible defaults, a few seconds
    fastmlp train --dataset mnist1d --hidden 256,256 --epochs 50
    fastmlp train --dataset data.csv --target label --loss cross_entropy
    fastmlp export fastmlp-run/model.npz model.onnx  # needs the onnx extra
    python -m fastmlp train --help

A run writes three files into ``--output`` (default ``./fastmlp-run``):

- ``history.json``: the per-epoch history of the Trainer, the run's arguments, data and model
  description and the final metrics (written atomically);
- ``model.npz``: the trained model (``fastmlp.MLP.load``), with the fitted Standardizer when
  standardization is on (``model.standardizer``);
- ``curves.png``: loss and accuracy against the epoch (needs matplotlib).

:func:`main` returns the exit status: 0 on success, 2 for a usage or input error (reported on
stderr as one line ``fastmlp train: error: ...``, without a traceback), 130 when interrupted. A
failed run leaves no output folder behind that it created; when standard output is a pipe whose
reader stops early (``fastmlp train | head``), the run carries on quietly and writes its files.

The command's parts live in private modules: :mod:`fastmlp._cli_arguments` (the parser, option
defaults and :class:`CLIError`), :mod:`fastmlp._cli_data` (loading and splitting the data),
:mod:`fastmlp._cli_training` (model, optimizer, schedule and threads from the arguments),
:mod:`fastmlp._cli_outputs` (the files written and the lines printed),
:mod:`fastmlp._cli_console` (the form of its messages, standard output into a pipe) and
:mod:`fastmlp._cli_export` (the ``export`` command). This module
runs the ``train`` command; their public names can also be imported from here.
"""

from __future__ import annotations

import os
import sys
import time
import warnings

from ._cli_arguments import (
    BUILTIN_DATASETS,
    DEFAULT_ACTIVATION,
    DEFAULT_BATCH_SIZE,
    DEFAULT_DATASET,
    DEFAULT_DROPOUT,
    DEFAULT_EPOCHS,
    DEFAULT_HIDDEN,
    DEFAULT_LR,
    DEFAULT_OPTIMIZER,
    DEFAULT_OUTPUT,
    DEFAULT_SCHEDULE,
    DEFAULT_TEST_SIZE,
    DEFAULT_VALIDATION_SPLIT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    LOSSES,
    MOMENTUM_OPTIMIZERS,
    OPTIMIZER_NAMES,
    PLATEAU_FACTOR,
    PLATEAU_PATIENCE,
    SCHEDULES,
    SMALL_NETWORK_MACS,
    STEP_FRACTION,
    STEP_GAMMA,
    CLIError,
)
from ._cli_arguments import build_parser as _build_parser
from ._cli_console import QuietPipe
from ._cli_console import say as _say
from ._cli_data import (
    Data,
    Splits,
    load_dataset,
    load_npz_dataset,
    prepare_splits,
    prepare_targets,
    read_csv,
    validation_fraction,
)
from ._cli_export import run_export
from ._cli_outputs import (
    CURVES_FILE,
    HISTORY_FILE,
    MODEL_FILE,
    PLOT_HINT,
    architecture,
    describe_run,
    history_document,
    missing_folders,
    prepare_output,
    print_table,
    remove_empty_folders,
    write_curves,
    write_json_atomic,
)
from ._cli_training import (
    build_model,
    build_optimizer,
    build_schedule,
    choose_threads,
    max_threads,
)
from .engines.cuda_support import CudaUnavailableError
from .parallel.mpi import DistributedError

__all__ = [
    "main", "build_parser", "run_train", "run_export", "final_metrics", "CLIError",
    "EXIT_OK", "EXIT_USAGE", "EXIT_INTERRUPTED",
    "BUILTIN_DATASETS", "LOSSES", "OPTIMIZER_NAMES", "SCHEDULES", "DEFAULT_DATASET",
    "DEFAULT_HIDDEN", "DEFAULT_ACTIVATION", "DEFAULT_OPTIMIZER", "DEFAULT_BATCH_SIZE",
    "DEFAULT_EPOCHS", "DEFAULT_DROPOUT", "DEFAULT_SCHEDULE", "DEFAULT_TEST_SIZE",
    "DEFAULT_VALIDATION_SPLIT", "DEFAULT_OUTPUT", "DEFAULT_LR", "MOMENTUM_OPTIMIZERS",
    "SMALL_NETWORK_MACS", "STEP_GAMMA", "STEP_FRACTION", "PLATEAU_FACTOR", "PLATEAU_PATIENCE",
    "Data", "Splits", "load_dataset", "load_npz_dataset", "read_csv", "prepare_targets",
    "prepare_splits",
    "build_model", "build_optimizer", "build_schedule", "choose_threads",
    "HISTORY_FILE", "MODEL_FILE", "CURVES_FILE", "PLOT_HINT", "write_json_atomic", "write_curves",
]


PROG = "fastmlp train"


def _fit(trainer, splits):
    """Train; returns the seconds taken. Non-finite-loss warnings become one stderr line."""
    from .trainer import NonFiniteLossWarning
    validation = None if splits.X_val is None else (splits.X_val, splits.y_val)
    began = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NonFiniteLossWarning)
        trainer.fit(splits.X_train, splits.y_train, validation_data=validation)
    seconds = time.perf_counter() - began
    for warning in caught:
        if issubclass(warning.category, NonFiniteLossWarning):
            _say(PROG, "warning", warning.message)
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename,
                                 warning.lineno)
    return seconds


def final_metrics(trainer, splits, fit_seconds):
    """Loss (and accuracy for classification) on every split, plus speed and stop details."""
    model = trainer.model
    epochs_run = len(trainer.history.get("loss", []))
    metrics = {}
    parts = [("train", splits.X_train, splits.y_train), ("test", splits.X_test, splits.y_test)]
    if splits.X_val is not None:
        parts.append(("val", splits.X_val, splits.y_val))
    for name, X, y in parts:
        result = trainer.evaluate(X, y)
        metrics[f"{name}_loss"] = result["loss"]
        if model.is_classifier:
            metrics[f"{name}_accuracy"] = result.get("accuracy")
    metrics["epochs_run"] = epochs_run
    metrics["stop_reason"] = trainer.stop_reason
    if trainer.early_stopping is not None:
        metrics["best_epoch"] = trainer.early_stopping.best_epoch
    metrics["train_time_s"] = fit_seconds
    metrics["samples_per_second"] = (splits.X_train.shape[0] * epochs_run / fit_seconds
                                     if fit_seconds > 0 else None)
    return metrics


def _communicator(args):
    """The MPI communicator of a ``--distributed`` run, else None."""
    if not args.distributed:
        if args.sync_batchnorm:
            raise CLIError("--sync-batchnorm applies to --distributed runs")
        return None
    if args.device != "cpu":
        raise CLIError("--distributed trains on the CPU; drop --device cuda")
    from .parallel.mpi import Communicator
    return Communicator(timeout=args.mpi_timeout)


class _Run:
    """What ``fastmlp train`` builds before training."""


def _set_up(args, comm, root):
    """Data, model, optimizer and trainer of the run; only rank 0 makes the output folder."""
    import fastmlp as fm
    run = _Run()
    run.validation = validation_fraction(args)
    run.optimizer = optimizer = build_optimizer(args)
    run.optimizer_config = optimizer.get_config()  # before a schedule changes lr
    run.folder = prepare_output(args.output) if root else None
    run.data = data = load_dataset(args)
    for note in data.notes if root else ():
        _say(PROG, "note", note)
    prepare_targets(data, args.loss)
    run.splits = splits = prepare_splits(args, data, run.validation)
    run.model = model = build_model(args, splits.X_train.shape[1], data.n_outputs)
    run.early = None
    if args.early_stopping is not None:
        run.early = fm.EarlyStopping(monitor="val_loss", patience=args.early_stopping,
                                     restore_best=True)
    schedule = build_schedule(args, "val_loss" if splits.X_val is not None else "loss")
    options = dict(optimizer=optimizer, batch_size=args.batch_size, epochs=args.epochs,
                   shuffle=True, seed=args.seed, l1=args.l1, l2=args.l2, early_stopping=run.early,
                   lr_schedule=schedule, clip_norm=args.clip_norm,
                   progress=not (args.quiet or args.no_progress))
    if comm is None:
        run.trainer = fm.Trainer(model, **options)
    else:
        from .parallel.mpi import DistributedTrainer
        run.trainer = DistributedTrainer(
            model, comm=comm, batchnorm="sync" if args.sync_batchnorm else "local", **options)
    return run


def run_train(args, started):
    """Carry out ``fastmlp train``; returns the exit status. When it fails, the output folders
    it created are removed again if they are still empty."""
    comm = _communicator(args)
    root = comm is None or comm.rank == 0
    created = missing_folders(args.output) if root else []
    try:
        return _train(args, started, comm, root)
    except BaseException:
        remove_empty_folders(created)
        raise


def _train(args, started, comm, root):
    import contextlib

    import fastmlp as fm

    if not root:
        args.quiet = True  # rank 0 alone prints and writes files
    out = sys.stdout
    say = (lambda text: None) if args.quiet else (lambda text: print(text, file=out, flush=True))
    try:
        run = _set_up(args, comm, root)
    except (CLIError, ValueError, TypeError, OSError, ImportError) as exc:
        if comm is None:
            raise
        comm.agree(exc, "the set-up of the run")  # raises exc here, DistributedError elsewhere
    if comm is not None:
        comm.agree(None, "the set-up of the run")
    data, splits, model, trainer, early = run.data, run.splits, run.model, run.trainer, run.early
    for line in describe_run(args, data, splits, model, run.optimizer):
        say(line)
    if comm is not None:
        say(f"distributed: {comm.size} MPI ranks, global batch {args.batch_size}")

    threads = choose_threads(args.threads, model, args.batch_size)
    if comm is not None and args.threads == "auto":
        from .parallel.mpi import default_threads
        threads = default_threads(comm.comm)
    if not args.quiet and model.device == "cpu":
        from . import kernel_cache
        if kernel_cache.is_cold():  # before the progress bar, so the two do not mix
            kernel_cache.compile_notice(PROG, always=True)
    with contextlib.nullcontext() if threads is None else fm.num_threads(threads):
        fit_seconds = _fit(trainer, splits)
        metrics = final_metrics(trainer, splits, fit_seconds)
    if not root:
        return EXIT_OK

    folder = run.folder
    model.save(folder / MODEL_FILE, standardizer=splits.standardizer)
    plotted = write_curves(folder / CURVES_FILE, trainer.history,
                           f"{data.name}: {architecture(model)} {model.loss}",
                           best_epoch=early.best_epoch if early is not None else None)
    if not plotted:
        _say(PROG, "note", f"matplotlib is not installed, so {CURVES_FILE} was not written; "
                           f"{PLOT_HINT} adds it")
    metrics["wall_time_s"] = time.perf_counter() - started
    metrics["threads"] = threads if threads is not None else max_threads()
    metrics["ranks"] = 1 if comm is None else comm.size
    write_json_atomic(folder / HISTORY_FILE, history_document(args, run, metrics, plotted))

    if not args.quiet:
        print_table(metrics, out)
        written = [HISTORY_FILE, MODEL_FILE] + ([CURVES_FILE] if plotted else [])
        print(f"wrote {', '.join(written)} to {folder}{os.sep}", file=out, flush=True)
    return EXIT_OK


def build_parser():
    """The argparse parser of the ``fastmlp`` command (subcommands ``train``, run by
    :func:`run_train`, and ``export``, run by :func:`run_export`)."""
    return _build_parser(train_handler=run_train, export_handler=run_export)


def main(argv=None):
    """Entry point of the ``fastmlp`` command; returns the exit status (0 ok, 2 error)."""
    started = time.perf_counter()
    argv = list(sys.argv[1:] if argv is None else argv)
    stdout = sys.stdout
    sys.stdout = QuietPipe(stdout)  # a reader that stops early (| head) ends nothing
    try:
        return _main(argv, started)
    finally:
        sys.stdout = stdout


def _main(argv, started):
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        _say("fastmlp", "error", "a command is needed: fastmlp train ... (see 'fastmlp --help')")
        return EXIT_USAGE
    args._argv = argv
    prog = f"fastmlp {args.command}"
    try:
        return args.handler(args, started)
    except (CLIError, ValueError, TypeError, OSError, ImportError, CudaUnavailableError,
            DistributedError) as exc:
        message = str(exc) or type(exc).__name__
        if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
            message = f"{exc.strerror}: {exc.filename}"
        _say(prog, "error", message)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
