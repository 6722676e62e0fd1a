"""The entry point of the ``fastmlp`` command: parse the arguments, run the command's handler,
and turn the errors a user can cause (bad input, a model too large for memory) into one
``fastmlp COMMAND: error: ...`` line on stderr with exit status 2 (130 when interrupted)."""

from __future__ import annotations

import sys
import time

from ..engines.bf16_support import BFloat16UnavailableError
from ..engines.cuda_support import CudaUnavailableError
from ..parallel.mpi import DistributedError
from .arguments import EXIT_INTERRUPTED, EXIT_USAGE, CLIError
from .arguments import build_parser as _build_parser
from .console import QuietPipe, say
from .export import run_export
from .train import run_train


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
        say("fastmlp", "error", "a command is needed: fastmlp train ... (see 'fastmlp --help')")
        return EXIT_USAGE
    args.argv = argv
    prog = f"fastmlp {args.command}"
    try:
        return args.handler(args, started)
    except (CLIError, ValueError, TypeError, OSError, ImportError, MemoryError,
            CudaUnavailableError, BFloat16UnavailableError, DistributedError) as exc:
        message = str(exc) or type(exc).__name__
        if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
            message = f"{exc.strerror}: {exc.filename}"
        say(prog, "error", message)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
