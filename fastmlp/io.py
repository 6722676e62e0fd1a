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
import math
import os
import re
import tempfile
import zipfile

import numpy as np

from ._validation import check_memory

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


_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip archive (an empty one: its end record only)
MAX_META_CHARS = 2 ** 26
"""Longest metadata document read (64 Mi characters); a longer one is refused unread."""
_ARRAY_KINDS = "biuf"  # numeric arrays; fastmlp files hold no others (apart from __meta__)


class ArrayHeader(tuple):
    """(shape, dtype) of a stored array, read from its .npy header without reading its data."""

    shape = property(lambda self: self[0])
    dtype = property(lambda self: self[1])


def _foreign_kind(path):
    """What the file at ``path`` looks like when it is not a zip archive (for error messages)."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head.startswith(_ZIP_MAGIC):
        return None
    if head.startswith(_NPY_MAGIC):
        return "a single .npy array (numpy.save)"
    if not head:
        return "an empty file"
    if all(byte in b"\t\n\r" or 32 <= byte < 127 for byte in head):
        return "a text file"
    return "some other binary file"


def _read_header(entry, stored_bytes):
    """ArrayHeader of an open .npy member of ``stored_bytes`` bytes (header and data); ValueError
    for an unreadable header, a negative dimension, or a shape and dtype whose data would take
    another number of bytes than the member holds after its header (so that no array is
    allocated at a size the file does not back)."""
    version = np.lib.format.read_magic(entry)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(entry)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(entry)
    else:
        raise ValueError(f"unsupported .npy format version {version}")
    shape, dtype = tuple(int(n) for n in shape), np.dtype(dtype)
    if any(n < 0 for n in shape):
        raise ValueError(f"its header gives the negative shape {shape}")
    if not dtype.hasobject:  # pickled object arrays are refused by their dtype, later
        needed = math.prod(shape) * dtype.itemsize
        held = stored_bytes - entry.tell()
        if needed != held:
            raise ValueError(f"its header says shape {shape} of {dtype} ({needed:,} bytes of "
                             f"data) but the file holds {held:,} bytes after it")
    return ArrayHeader((shape, dtype))


class NpzReader:
    """An open fastmlp .npz file (see :func:`open_npz`): ``meta`` (the JSON document, a dict) and
    ``headers`` (array name → ArrayHeader) are read; array data only by :meth:`read_all`."""

    def __init__(self, path, archive, members, meta, headers):
        self.path, self._archive, self._members = path, archive, members
        self.meta, self.headers = meta, headers

    def data_bytes(self):
        """The bytes the arrays' data take once read, from their (checked) headers."""
        return sum(math.prod(shape) * dtype.itemsize for shape, dtype in self.headers.values())

    def read_all(self):
        """Every array (name → ndarray), each read only after its header was checked;
        MemoryError, before reading, when together they exceed the physical memory."""
        check_memory(self.data_bytes(), f"the arrays of {self.path!r}")
        arrays = {}
        for key in self.headers:
            try:
                with self._archive.open(self._members[key]) as entry:
                    arrays[key] = np.lib.format.read_array(entry, allow_pickle=False)
            except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
                raise FileFormatError(f"{self.path!r}: array {key!r} cannot be read (truncated or "
                                      f"corrupt): {exc}") from None
        return arrays

    def close(self):
        self._archive.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _members(archive, path):
    """{array name: zip member name} of an npz archive; FileFormatError for other members."""
    members = {}
    for info in archive.infolist():
        if info.is_dir() or not info.filename.endswith(".npy"):
            raise FileFormatError(f"{path!r} is not a fastmlp file: its member "
                                  f"{info.filename!r} is not an .npy array")
        key = info.filename[:-len(".npy")]
        if key in members:
            raise FileFormatError(f"{path!r} is not a fastmlp file: array {key!r} is stored twice")
        members[key] = info.filename
    return members


def _headers(archive, members, path):
    """{name: ArrayHeader} of every member; FileFormatError for unreadable or non-numeric ones."""
    headers = {}
    for key, member in members.items():
        try:
            with archive.open(member) as entry:
                headers[key] = _read_header(entry, archive.getinfo(member).file_size)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, SyntaxError) as exc:
            raise FileFormatError(f"{path!r} is not a readable fastmlp file (truncated or not an "
                                  f".npz): array {key!r}: {exc}") from None
    return headers


def _read_meta(archive, members, headers, path):
    """The metadata document (a dict), its header checked before its data is read."""
    if META_KEY not in headers:
        raise FileFormatError(f"{path!r} is an .npz file but not a fastmlp file (no metadata)")
    shape, dtype = headers.pop(META_KEY)
    for key, header in headers.items():
        if header.dtype.kind not in _ARRAY_KINDS or header.dtype.fields is not None:
            raise FileFormatError(f"{path!r}: array {key!r} has dtype {header.dtype}; fastmlp "
                                  f"files hold numeric arrays only")
    if shape != () or dtype.kind != "U" or dtype.itemsize // 4 > MAX_META_CHARS:
        raise FileFormatError(f"{path!r} has unreadable metadata: expected one string of at most "
                              f"{MAX_META_CHARS} characters; got shape {shape}, dtype {dtype}")
    try:
        with archive.open(members[META_KEY]) as entry:
            raw = np.lib.format.read_array(entry, allow_pickle=False)
        meta = json.loads(str(raw[()]))
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, TypeError) as exc:
        raise FileFormatError(f"{path!r} has unreadable metadata: {exc}") from None
    return meta


def _check_kind(meta, path, expected_format, max_version):
    """FileFormatError unless ``meta`` is of ``expected_format`` at a version <= max_version."""
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


def open_npz(path, expected_format, max_version):
    """An :class:`NpzReader` of a file written by :func:`atomic_save_npz`, with its metadata and
    array headers read and no array data.

    Raises FileFormatError when the file is not a zip archive (a .npy array, text, ...), is
    truncated, holds members that are not numeric .npy arrays, lacks fastmlp metadata, is of
    another kind than ``expected_format``, or has a format version newer than ``max_version``.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path!r}")
    kind = _foreign_kind(path)
    if kind is not None:
        raise FileFormatError(f"{path!r} is not a fastmlp .npz file: it is {kind}")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise FileFormatError(f"{path!r} is not a readable fastmlp file (truncated or not an "
                              f".npz): {exc}") from None
    try:
        members = _members(archive, path)
        headers = _headers(archive, members, path)
        meta = _read_meta(archive, members, headers, path)
        _check_kind(meta, path, expected_format, max_version)
    except BaseException:
        archive.close()
        raise
    return NpzReader(path, archive, members, meta, headers)


def load_npz(path, expected_format, max_version):
    """(arrays dict, meta dict) from a file written by :func:`atomic_save_npz`; the errors of
    :func:`open_npz`. Callers that can say which arrays to expect should use :func:`open_npz`
    and :func:`check_arrays` first, so that nothing is read that does not belong."""
    with open_npz(path, expected_format, max_version) as npz:
        return npz.read_all(), npz.meta


def check_arrays(headers, source, required, optional=None, together=False):
    """FileFormatError unless the stored arrays (``headers``: name → ArrayHeader) are exactly
    the ``required`` ones plus some of the ``optional`` ones, each with the expected shape and
    dtype (name → (shape, dtype); dtype None: any float dtype). With ``together`` the optional
    arrays are all present or all absent."""
    optional = optional or {}
    missing = sorted(set(required) - set(headers))
    extra = sorted(set(headers) - set(required) - set(optional))
    present = set(optional) & set(headers)
    if together and present and present != set(optional):
        missing += sorted(set(optional) - present)
    if missing or extra:
        raise FileFormatError(f"{source} does not match the architecture: missing {missing}, "
                              f"unexpected {extra}")
    for name, (shape, dtype) in headers.items():
        want_shape, want_dtype = required.get(name) or optional[name]
        dtype_ok = dtype.kind == "f" if want_dtype is None else dtype == want_dtype
        if shape != tuple(want_shape) or not dtype_ok:
            wanted = "float" if want_dtype is None else np.dtype(want_dtype).name
            raise FileFormatError(f"{source}: {name} has shape {shape} and dtype {dtype}; its "
                                  f"metadata needs {tuple(want_shape)} {wanted}")


_JSON_TYPES = {dict: "a JSON object", list: "a list", str: "a string", bool: "true or false",
               int: "an integer", float: "a number", type(None): "null"}


def config_error(source, field, expected, value):
    """The FileFormatError for metadata ``field`` holding ``value`` instead of ``expected``."""
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    found = _JSON_TYPES.get(type(value), type(value).__name__)
    return FileFormatError(f"{source}: metadata field {field!r} must be {expected}; got {found} "
                           f"{shown}")


def meta_field(meta, field, types, source, expected=None):
    """``meta[field]`` (``field`` dotted for nested objects, e.g. "model.config") when it is an
    instance of ``types`` (bool is not an int here); FileFormatError naming the field
    otherwise. ``expected`` describes ``types`` in the message."""
    value = meta
    for part in field.split("."):
        if not isinstance(value, dict) or part not in value:
            raise FileFormatError(f"{source}: metadata field {field!r} is missing")
        value = value[part]
    types = types if isinstance(types, tuple) else (types,)
    is_bool = isinstance(value, bool) and bool not in types
    if is_bool or not isinstance(value, types):
        expected = expected or " or ".join(_JSON_TYPES.get(t, t.__name__) for t in types)
        raise config_error(source, field, expected, value)
    return value
