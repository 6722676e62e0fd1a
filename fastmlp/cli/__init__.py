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

Modules: :mod:`~fastmlp.cli.main` (the entry point and its error handling),
:mod:`~fastmlp.cli.arguments` (the parser, option defaults, exit statuses and :class:`CLIError`),
:mod:`~fastmlp.cli.data` (loading and splitting the data), :mod:`~fastmlp.cli.training` (model,
optimizer, schedule and threads from the arguments), :mod:`~fastmlp.cli.train` (the ``train``
command), :mod:`~fastmlp.cli.outputs` (the files written and the lines printed),
:mod:`~fastmlp.cli.console` (the form of its messages, standard output into a pipe) and
:mod:`~fastmlp.cli.export` (the ``export`` command).
"""

from .main import build_parser, main

__all__ = ["main", "build_parser"]
