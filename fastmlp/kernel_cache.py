"""Where fastmlp's compiled kernels are cached on disk.

The CPU kernels are compiled by Numba on first use (``cache=True``) and kept on disk, so later
processes load them in well under a second. Numba's default would write them into
``__pycache__`` folders beside the kernel modules, that is inside ``site-packages`` (where files
that pip did not install survive an uninstall and then shadow a new install) or inside a
checkout. fastmlp therefore keeps its kernels in a per-user cache folder, :func:`cache_root`:

- ``$NUMBA_CACHE_DIR/fastmlp`` when ``NUMBA_CACHE_DIR`` is set (Numba's own setting);
- otherwise the platform's user cache folder: ``$XDG_CACHE_HOME/fastmlp/numba`` (default
  ``~/.cache/fastmlp/numba``) on Linux and other Unix systems, ``~/Library/Caches/fastmlp/numba``
  on macOS, ``%LOCALAPPDATA%\\fastmlp\\Cache\\numba`` on Windows;
- if that folder cannot be written, a folder of the temporary directory.

Inside it, :func:`cache_folder` is one subfolder per version of the kernel sources, named by
fastmlp's version and a hash of the contents of every kernel module. Numba notices when a cached
function's own module changes, but not when a module it calls into changes; since any edit of
any kernel module leads to a new folder, a stale kernel is never loaded. Numba also keys every
entry by its own version, the Python version and the CPU, and keeps one subfolder per install
location, so a cache written by another install or machine is ignored rather than used; an entry
that cannot be read (a truncated or foreign file) is compiled again instead. Folders
of kernel sources not used for :data:`PRUNE_AFTER_DAYS` days are removed when a new one is made.
Deleting the whole :func:`cache_root` at any time is safe: the kernels are compiled again.

The first time a process compiles one of fastmlp's kernels (a cold cache), a one-line notice goes
to stderr when stderr is a terminal (:func:`compile_notice`); ``fastmlp train`` prints it
before training whenever :func:`is_cold` says the training kernel is not cached yet. While Numba
compiles one of fastmlp's kernels (from the outermost compilation to its end), Python's cyclic
garbage collector is paused and then set back as it was: the compiler's millions of short-lived
objects made it run some twenty full collections, 6–14% of a cold start, for about 240 MB more
memory at the peak of that one compilation. It is paused the same way while a cached kernel is
loaded (``fastmlp._collector``), which also sets up Numba's compiler target the first time.

Only fastmlp's own modules are redirected; other Numba functions in the process keep Numba's
usual cache locations. The redirection uses Numba's setting of the cache locators
(``numba.config.CACHE_LOCATOR_CLASSES``, the ``NUMBA_CACHE_LOCATOR_CLASSES`` environment
variable): when it is empty, :class:`KernelCacheLocator` is put before Numba's default locators
for this process (and again after each compilation, since Numba reloads its settings from the
environment when a ``NUMBA_*`` variable changed); a value the user set is respected as it is.
"""

from __future__ import annotations

import gc
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from numba.core import caching as numba_caching
from numba.core import config as _numba_config
from numba.core import event as _event

from . import __version__
from ._collector import collector_paused

__all__ = ["cache_root", "cache_folder", "is_cold", "source_fingerprint", "compile_notice",
           "KernelCacheLocator", "COMPILE_NOTICE", "PRUNE_AFTER_DAYS"]

COMPILE_NOTICE = ("compiling the kernels for first use (up to a minute; they are cached for later "
                  "runs)...")

PRUNE_AFTER_DAYS = 30
"""A folder of kernels compiled from sources that no process has loaded for this many days is
removed when a new folder is made."""

_STAMP = ".last-used"  # touched whenever a process loads the folder; its age drives the pruning
_PACKAGE_DIR = Path(__file__).resolve().parent


def _user_cache_base():
    """The platform's per-user cache folder."""
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA")
        base = Path(local) if local else Path.home() / "AppData" / "Local"
        return base / "fastmlp" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "fastmlp"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # the XDG specification ignores relative paths
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "fastmlp"


def _numba_cache_dir():
    return _numba_config.CACHE_DIR or os.environ.get("NUMBA_CACHE_DIR", "")


def cache_root():
    """The folder that holds fastmlp's compiled kernels (see the module docstring)."""
    numba_dir = _numba_cache_dir()
    if numba_dir:
        return Path(numba_dir).expanduser() / "fastmlp"
    return _user_cache_base() / "numba"


def _fallback_root():
    if hasattr(os, "getuid"):
        user = str(os.getuid())
    else:
        user = os.environ.get("USERNAME") or "user"
    return Path(tempfile.gettempdir()) / f"fastmlp-{user}" / "numba"


_kernel_dirs_value = None


def _kernel_dirs():
    """The folders of the kernel modules (``fastmlp/kernels`` in an install, ``kernels/`` of a
    checkout in an editable install)."""
    global _kernel_dirs_value
    if _kernel_dirs_value is None:
        package = sys.modules.get("fastmlp.kernels")
        if package is not None:
            paths = list(package.__path__)
        else:
            import importlib.util
            spec = importlib.util.find_spec("fastmlp.kernels")
            paths = list(spec.submodule_search_locations or ()) if spec is not None else []
        _kernel_dirs_value = [Path(p).resolve() for p in paths]
    return _kernel_dirs_value


def source_fingerprint(folders):
    """fastmlp's version and a hash of the relative path and contents of every ``.py`` file in
    ``folders`` (the kernel modules): the name of the cache subfolder of those sources."""
    digest = hashlib.sha256()
    for folder in folders:
        folder = Path(folder)
        for path in sorted(folder.rglob("*.py")):
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return f"{__version__}-{digest.hexdigest()[:16]}"


_fingerprint_value = None


def _fingerprint():
    global _fingerprint_value
    if _fingerprint_value is None:
        _fingerprint_value = source_fingerprint(_kernel_dirs())
    return _fingerprint_value


def _inside(path, folders):
    return any(path == folder or folder in path.parents for folder in folders)


_belongs = {}  # py_file -> whether it is one of fastmlp's modules (asked once per kernel)


def _belongs_to_fastmlp(py_file):
    if py_file not in _belongs:
        try:
            path = Path(py_file).resolve()
        except (OSError, ValueError):
            return False
        _belongs[py_file] = _inside(path, [_PACKAGE_DIR, *_kernel_dirs()])
    return _belongs[py_file]


_chosen = (None, None)  # (cache_root(), the folder chosen for it) once a kernel module asked


def _usable(folder):
    try:
        new = not folder.exists()
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        return False
    if new:
        _prune(folder.parent, keep=folder.name)
    try:
        (folder / _STAMP).touch()
    except OSError:
        pass
    return True


def _prune(root, keep):
    """Remove folders of other kernel sources that no process has used for PRUNE_AFTER_DAYS."""
    limit = time.time() - PRUNE_AFTER_DAYS * 86400
    try:
        entries = list(root.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.name == keep or not entry.is_dir() or not (entry / _STAMP).exists():
            continue  # only folders this module made (they hold the stamp file)
        try:
            if (entry / _STAMP).stat().st_mtime < limit:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass


def cache_folder():
    """The folder of this install's kernel sources inside :func:`cache_root` (or, when that
    cannot be written, inside a per-user folder of the temporary directory)."""
    global _chosen
    root = cache_root()
    if _chosen[0] == root and _chosen[1] is not None:
        return _chosen[1]
    for candidate in (root / _fingerprint(), _fallback_root() / _fingerprint()):
        if _usable(candidate):
            _chosen = (root, candidate)
            return candidate
    return None


_ensured = set()  # cache paths this process made sure exist and are writable


class KernelCacheLocator(numba_caching.UserProvidedCacheLocator):
    """Numba cache locator for fastmlp's modules: ``cache_folder()/<module folder>_<hash>``
    (Numba's locator of a user-given folder, with the folder chosen here); other modules get
    None, so Numba's next locator serves them."""

    def __init__(self, py_func, py_file, folder):  # not Numba's: its folder is config.CACHE_DIR
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = os.path.join(os.fspath(folder), self.get_suitable_cache_subpath(py_file))

    def get_cache_path(self):
        return self._cache_path

    @classmethod
    def from_function(cls, py_func, py_file):
        if not os.path.exists(py_file) or not _belongs_to_fastmlp(py_file):
            return None
        folder = cache_folder()
        if folder is None:
            return None
        locator = cls(py_func, py_file, folder)
        if locator._cache_path not in _ensured:  # a folder and a test file: once per module
            try:
                locator.ensure_cache_path()
            except OSError:
                return None
            _ensured.add(locator._cache_path)
        return locator


def _subfolder_of(py_file):
    """Where Numba keeps the entries of the functions of ``py_file``."""
    folder = cache_folder()
    if folder is None:
        return None
    return folder / KernelCacheLocator.get_suitable_cache_subpath(str(py_file))


def is_cold():
    """True when the training kernel of this install has not been compiled into the cache yet,
    so the first training step will compile the kernels (tens of seconds)."""
    import importlib.util
    spec = importlib.util.find_spec("fastmlp.kernels.cpu.train")
    if spec is None or not spec.origin:
        return False
    subfolder = _subfolder_of(spec.origin)
    if subfolder is None:
        return True
    stem = Path(spec.origin).stem
    try:
        return not any(subfolder.glob(f"{stem}.*.nbi"))
    except OSError:
        return True


def _ours(cache):
    """Whether the Numba ``cache`` keeps its entries in fastmlp's folder."""
    path, folder = getattr(cache, "cache_path", None), cache_folder()
    if not path or folder is None:
        return False
    try:
        return _inside(Path(path).resolve(), [folder.resolve()])
    except (OSError, ValueError):
        return False


def _forget(cache):
    """Empty the index of ``cache`` (so its entries are compiled again and rewritten)."""
    try:
        cache.flush()
    except Exception:  # an index that cannot be written either: the next load fails again
        pass


def _guarded_load(original):
    def load_overload(self, sig, target_context):
        ours = _ours(self)
        try:
            if not ours:
                return original(self, sig, target_context)
            with collector_paused():
                return original(self, sig, target_context)
        except Exception:
            if not ours:
                raise
            # an unreadable, truncated or foreign entry: compile instead of failing
            _forget(self)
            return None
    load_overload.fastmlp_guard = True
    return load_overload


def _guarded_save(original):
    def save_overload(self, sig, data):
        try:
            return original(self, sig, data)
        except Exception:
            if not _ours(self):
                raise
            # a cache that cannot be written (full disk, unreadable index): run uncached
            _forget(self)
    save_overload.fastmlp_guard = True
    return save_overload


_notice_given = False


def compile_notice(prog="fastmlp", stream=None, always=False):
    """Print ``<prog>: note: compiling the kernels for first use ...`` to ``stream`` (stderr)
    once per process: when ``always`` or the stream is a terminal. Returns True when printed.
    Once printed (or once ``always`` was asked for), later calls print nothing."""
    global _notice_given
    if _notice_given:
        return False
    stream = sys.stderr if stream is None else stream
    try:
        terminal = bool(stream.isatty())
    except (AttributeError, ValueError):
        terminal = False
    if not (always or terminal):
        return False
    _notice_given = True
    line = f"{prog}: note: {COMPILE_NOTICE}"
    try:
        if terminal:  # start at the left edge, over a progress bar already drawn there
            stream.write(f"\r{line}\033[K\n")
        else:
            stream.write(line + "\n")
        stream.flush()
    except (OSError, ValueError):
        pass
    return True


_compiling = {"depth": 0, "resume_gc": False}  # changed under Numba's global compiler lock


class _CompileListener(_event.Listener):
    """Numba event listener: the first compilation of a fastmlp kernel that is cached on disk
    (the CPU kernels) shows the notice; an outermost compilation of one pauses the garbage
    collector until it ends (module docstring)."""

    def on_start(self, event):
        stats = getattr((event.data or {}).get("dispatcher"), "stats", None)
        ours = _ours(stats)  # a kernel cached in fastmlp's folder
        if _compiling["depth"] == 0 and ours and gc.isenabled():
            gc.disable()
            _compiling["resume_gc"] = True
        _compiling["depth"] += 1
        if ours and not _notice_given:
            compile_notice()

    def on_end(self, event):
        _compiling["depth"] -= 1
        if _compiling["depth"] == 0 and _compiling["resume_gc"]:
            _compiling["resume_gc"] = False
            gc.enable()
        _use_kernel_locator()  # a compilation may have reloaded Numba's settings


_listener = None


NUMBA_DEFAULT_LOCATORS = ("UserProvidedCacheLocator", "InTreeCacheLocator", "UserWideCacheLocator",
                          "IPythonCacheLocator", "ZipCacheLocator")
"""Numba's own cache locators, in the order it tries them when its setting is empty."""

LOCATOR_SETTING = ",".join([f"{__name__}.{KernelCacheLocator.__name__}", *NUMBA_DEFAULT_LOCATORS])
"""The value of ``numba.config.CACHE_LOCATOR_CLASSES`` while fastmlp redirects its kernels."""


def _use_kernel_locator():
    """Numba's locator setting made :data:`LOCATOR_SETTING` unless the user chose one."""
    if not _numba_config.CACHE_LOCATOR_CLASSES:
        _numba_config.CACHE_LOCATOR_CLASSES = LOCATOR_SETTING


def install():
    """Put :class:`KernelCacheLocator` first among the cache locators Numba tries, make reading
    or writing an entry of fastmlp's kernels that fails fall back to compiling, and listen for
    the first compilation of a kernel (idempotent)."""
    global _listener
    _use_kernel_locator()
    cache = numba_caching.Cache
    if not getattr(cache.load_overload, "fastmlp_guard", False):
        cache.load_overload = _guarded_load(cache.load_overload)
    if not getattr(cache.save_overload, "fastmlp_guard", False):
        cache.save_overload = _guarded_save(cache.save_overload)
    if _listener is None:
        _listener = _CompileListener()
        _event.register("numba:compile", _listener)


install()
