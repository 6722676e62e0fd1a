"""Per-epoch progress display: tqdm when installed, a plain line per epoch otherwise; shown only
when enabled and stderr is a terminal."""

from __future__ import annotations

import sys


def _format(metrics):
    return "  ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k not in ("epoch_time",))


class _Silent:
    def update(self, epoch, metrics):
        pass

    def close(self):
        pass


class _Plain:
    def __init__(self, total, stream):
        self.total, self.stream = total, stream

    def update(self, epoch, metrics):
        print(f"epoch {epoch}/{self.total}  {_format(metrics)}", file=self.stream, flush=True)

    def close(self):
        pass


class _Tqdm:
    def __init__(self, tqdm, total, initial, stream):
        self.bar = tqdm(total=total, initial=initial, unit="epoch", file=stream, dynamic_ncols=True)

    def update(self, epoch, metrics):
        self.bar.set_postfix_str(_format(metrics), refresh=False)
        self.bar.update(1)

    def close(self):
        self.bar.close()


def epoch_progress(enabled, total, initial=0, stream=None):
    """An object with ``update(epoch, metrics)`` and ``close()``."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    if not enabled or not (isatty and isatty()):
        return _Silent()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _Plain(total, stream)
    return _Tqdm(tqdm, total, initial, stream)
