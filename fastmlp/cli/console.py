"""How the ``fastmlp`` command talks to the terminal: one style for its messages on stderr
(``fastmlp train: error: ...``, ``fastmlp train: note: ...``) and a standard output that survives
a reader that stops reading (``fastmlp train | head``).
"""

from __future__ import annotations

import os
import sys


def message(prog, kind, text):
    """``<prog>: <kind>: <text>``, the one form of every line the command writes to stderr."""
    return f"{prog}: {kind}: {text}"


def say(prog, kind, text, stream=None):
    """Print :func:`message` to ``stream`` (stderr by default)."""
    print(message(prog, kind, text), file=sys.stderr if stream is None else stream, flush=True)


class QuietPipe:
    """A text stream wrapper that stops writing, silently, once its reader has gone.

    Writing to a pipe whose reader exited (``fastmlp train | head -3``) raises BrokenPipeError.
    From then on everything written is dropped and the file descriptor is pointed at the null
    device, so that neither the run (which goes on and writes its files) nor the interpreter's
    final flush at exit reports an error.
    """

    def __init__(self, stream):
        self._stream = stream
        self.broken = False

    def _silence(self):
        self.broken = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self._stream.fileno())
            finally:
                os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass  # not a real file (e.g. captured in tests): dropping the writes is enough

    def write(self, text):
        if self.broken:
            return len(text)
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._silence()
            return len(text)

    def flush(self):
        if self.broken:
            return
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._silence()

    def __getattr__(self, name):
        return getattr(self._stream, name)
