"""Crash-safe ``.npz`` files: no pickle, JSON metadata, atomic replacement.

A file holds named arrays plus one JSON document (the array ``__meta__``, a unicode string) with
``format`` (what the file is), ``format_version`` and ``library_version``. Writing goes to a
temporary file in the destination folder, is flushed to disk, and then ``os.replace``s the target,
so an interrupted save — even by SIGKILL — leaves the previous file intact. Temporary files left by
a killed writer are removed by the next save to the same folder. Reading uses
``allow_pickle=False``: nothing in a file is ever executed.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import tempfile
import zipfile

import numpy as np

META_KEY = "__meta__"
# object arrays are refused before writing; older NumPy has no allow_pickle argument to savez
_SAVEZ_OPTIONS = {"allow_pickle": False} if "allow_pickle" in inspect.signature(np.savez).parameters else {}
_TMP_PATTERN = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[^.]+\.fastmlp-tmp$")


class FileFormatError(ValueError):
    """The file is not a valid fastmlp file of the expected kind and version."""


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder, name):
    """Delete temporary files of earlier saves of ``name`` whose writer process no longer runs."""
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    for entry in entries:
        match = _TMP_PATTERN.match(entry)
        if match and match["name"] == name and not _pid_alive(int(match["pid"])):
            try:
                os.unlink(os.path.join(folder, entry))
            except OSError:
                pass


def _fsync_folder(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save_npz(path, arrays, meta):
    """Write ``arrays`` (str → ndarray) and the JSON-able ``meta`` to ``path`` atomically."""
    if META_KEY in arrays:
        raise ValueError(f"array name {META_KEY!r} is reserved")
    payload = {key: np.asarray(value, order="C") for key, value in arrays.items()}
    for key, value in payload.items():
        if value.dtype.kind == "O":
            raise TypeError(f"array {key!r} has dtype object, which cannot be saved without pickle")
    payload[META_KEY] = np.array(json.dumps(meta, sort_keys=True))
    atomic_write(path, lambda handle: np.savez(handle, **_SAVEZ_OPTIONS, **payload))


def _give_usual_mode(fd, path):
    """mkstemp creates 0600 files: give the new file the mode of the one it replaces, or the mode
    a new file gets under the umask."""
    if not hasattr(os, "fchmod"):
        return
    try:
        mode = os.stat(path).st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    os.fchmod(fd, mode)


def atomic_write(path, write):
    """Call ``write(binary file handle)`` on a temporary file beside ``path``, flush it to disk and
    ``os.replace`` it onto ``path``: readers see the old file or the new one, never a part."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(path)
    if not name:
        raise ValueError(f"path must name a file; got {path!r}")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"folder {folder!r} does not exist")
    remove_stale_temporaries(folder, name)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.{os.getpid()}.", suffix=".fastmlp-tmp")
    try:
        _give_usual_mode(fd, path)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_folder(folder)


def load_npz(path, expected_format, max_version):
    """(arrays dict, meta dict) from a file written by :func:`atomic_save_npz`.

    Raises FileFormatError when the file is truncated, not an npz, lacks fastmlp metadata, is of
    another kind than ``expected_format``, or has a format version newer than ``max_version``.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path!r}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as exc:
        raise FileFormatError(f"{path!r} is not a readable fastmlp file (truncated or not an .npz): "
                              f"{exc}") from None
    if META_KEY not in arrays:
        raise FileFormatError(f"{path!r} is an .npz file but not a fastmlp file (no metadata)")
    raw = arrays.pop(META_KEY)
    try:
        meta = json.loads(str(raw[()]))
    except (ValueError, TypeError) as exc:
        raise FileFormatError(f"{path!r} has unreadable metadata: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != expected_format:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise FileFormatError(f"{path!r} is not a {expected_format} file (format {found!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise FileFormatError(f"{path!r} has an invalid format_version {version!r}")
    if version > max_version:
        raise FileFormatError(
            f"{path!r} uses {expected_format} format version {version}, newer than the versions "
            f"this fastmlp reads (up to {max_version}); upgrade fastmlp "
            f"(file written by version {meta.get('library_version', '?')})")
    return arrays, meta
