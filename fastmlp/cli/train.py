"""``fastmlp train``: load and split the data, build the model, optimizer and trainer from the
arguments, train (data-parallel over MPI with ``--distributed``), then write ``model.npz``,
``curves.png`` and ``history.json`` into the output folder and print the summary table."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings

import fastmlp as fm

from .arguments import EXIT_OK, CLIError
from .console import say
from .data import load_dataset, prepare_splits, prepare_targets, validation_fraction
from .outputs import (
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
from .training import build_model, build_optimizer, build_schedule, choose_threads, max_threads

PROG = "fastmlp train"


def _fit(trainer, splits):
    """Train; returns the seconds taken. Non-finite-loss warnings become one stderr line."""
    from ..trainer import NonFiniteLossWarning
    validation = None if splits.X_val is None else (splits.X_val, splits.y_val)
    began = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NonFiniteLossWarning)
        trainer.fit(splits.X_train, splits.y_train, validation_data=validation)
    seconds = time.perf_counter() - began
    for warning in caught:
        if issubclass(warning.category, NonFiniteLossWarning):
            say(PROG, "warning", warning.message)
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
    from ..parallel.mpi import Communicator
    return Communicator(timeout=args.mpi_timeout)


class _Run:
    """What ``fastmlp train`` builds before training."""


def _model(args, splits, data):
    """The run's model; CLIError (one line) when it does not fit in memory, saying why the
    output layer is as wide as it is when the labels made it so."""
    try:
        return build_model(args, splits.X_train.shape[1], data.n_outputs)
    except MemoryError as exc:
        why = f" ({data.outputs_note})" if data.outputs_note else ""
        raise CLIError(f"{exc}{why}") from None


def _set_up(args, comm, root):
    """Data, model, optimizer and trainer of the run; only rank 0 makes the output folder."""
    run = _Run()
    run.validation = validation_fraction(args)
    run.optimizer = optimizer = build_optimizer(args)
    run.optimizer_config = optimizer.get_config()  # before a schedule changes lr
    run.folder = prepare_output(args.output) if root else None
    run.data = data = load_dataset(args)
    for note in data.notes if root else ():
        say(PROG, "note", note)
    prepare_targets(data, args.loss)
    run.splits = splits = prepare_splits(args, data, run.validation)
    run.model = model = _model(args, splits, data)
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
        from ..parallel.mpi import DistributedTrainer
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
    if not root:
        args.quiet = True  # rank 0 alone prints and writes files
    out = sys.stdout
    show = (lambda text: None) if args.quiet else (lambda text: print(text, file=out, flush=True))
    try:
        run = _set_up(args, comm, root)
    except (CLIError, ValueError, TypeError, OSError, ImportError, MemoryError) as exc:
        if comm is None:
            raise
        comm.agree(exc, "the set-up of the run")  # raises exc here, DistributedError elsewhere
    if comm is not None:
        comm.agree(None, "the set-up of the run")
    data, splits, model, trainer, early = run.data, run.splits, run.model, run.trainer, run.early
    for line in describe_run(args, data, splits, model, run.optimizer):
        show(line)
    if comm is not None:
        show(f"distributed: {comm.size} MPI ranks, global batch {args.batch_size}")

    threads = choose_threads(args.threads, model, args.batch_size)
    if comm is not None and args.threads == "auto":
        from ..parallel.mpi import default_threads
        threads = default_threads(comm)
    if not args.quiet and model.device == "cpu":
        from .. import kernel_cache
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
        say(PROG, "note", f"matplotlib is not installed, so {CURVES_FILE} was not written; "
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
