"""The on-disk kernel cache: it lives in a per-user folder (NUMBA_CACHE_DIR, else the platform's
user cache folder), never beside the kernel modules; two processes compiling into an empty cache
at once both succeed and agree, and a later process loads what they wrote; a corrupt or stale
cache is never used. (tests/test_install.py checks the same on a regular install.)"""

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import fastmlp
from fastmlp import kernel_cache

SCRIPT = textwrap.dedent("""
    import numpy as np
    import fastmlp as fm
    model = fm.MLP(20, [fm.Dense(16, "relu", batchnorm=True, dropout=0.1), fm.Dense(3)], seed=0)
    X = np.random.default_rng(0).normal(size=(40, 20)).astype(np.float32)
    y = np.arange(40) % 3
    fm.Trainer(model, fm.Adam(1e-2), batch_size=16, epochs=2, progress=False).fit(X, y)
    print(model.params["0.W"].tobytes().hex()[:80], model.forward(X).sum())
""")


def _module_dirs():
    import fastmlp.kernels
    return [Path(fastmlp.__file__).resolve().parent,
            *(Path(p).resolve() for p in fastmlp.kernels.__path__)]


def _compiled_files(folders):
    return {path for folder in folders for pattern in ("*.nbi", "*.nbc")
            for path in Path(folder).rglob(pattern)}


def test_concurrent_cold_starts_share_the_cache_safely(tmp_path):
    cache = tmp_path / "cache"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    beside_modules = _compiled_files(_module_dirs())
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [proc.communicate(timeout=600) for proc in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
    assert outputs[0][0] == outputs[1][0]
    # everything under NUMBA_CACHE_DIR/fastmlp/<version of the kernel sources>/, nothing new
    # beside the modules (in site-packages or the checkout)
    folder = cache / "fastmlp" / kernel_cache.source_fingerprint(_module_dirs()[1:])
    assert any(path.suffix == ".nbc" for path in folder.rglob("*"))
    assert _compiled_files([cache]) == _compiled_files([folder])
    assert _compiled_files(_module_dirs()) == beside_modules
    again = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr
    assert again.stdout == outputs[0][0]

    # a damaged cache (truncated, foreign or garbage files) is compiled again, not used
    for path in _compiled_files([cache]):
        path.write_bytes(b"not a cache entry")
    damaged = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                             text=True, timeout=600)
    assert damaged.returncode == 0, damaged.stderr
    assert damaged.stdout == outputs[0][0]


# ----------------------------------------------------------------------------- the folder

@pytest.fixture()
def no_numba_cache_dir(monkeypatch):
    monkeypatch.setattr(kernel_cache._numba_config, "CACHE_DIR", "")
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)


def test_numba_cache_dir_is_respected(tmp_path, monkeypatch):
    monkeypatch.setattr(kernel_cache._numba_config, "CACHE_DIR", str(tmp_path / "numba"))
    assert kernel_cache.cache_root() == tmp_path / "numba" / "fastmlp"
    folder = kernel_cache.cache_folder()
    assert folder.parent == tmp_path / "numba" / "fastmlp" and folder.is_dir()
    assert folder.name.startswith(f"{fastmlp.__version__}-")


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="XDG applies to Linux and Unix")
def test_xdg_cache_home_then_home(tmp_path, monkeypatch, no_numba_cache_dir):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert kernel_cache.cache_root() == tmp_path / "xdg" / "fastmlp" / "numba"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # ignored, as the XDG rules say
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert kernel_cache.cache_root() == tmp_path / "home" / ".cache" / "fastmlp" / "numba"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert kernel_cache.cache_root() == tmp_path / "home" / ".cache" / "fastmlp" / "numba"


def test_an_unwritable_cache_root_falls_back_to_the_temporary_folder(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setattr(kernel_cache._numba_config, "CACHE_DIR", str(blocker))
    monkeypatch.setattr(kernel_cache.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    folder = kernel_cache.cache_folder()
    assert folder is not None and folder.is_dir()
    assert Path(tmp_path / "tmp") in folder.parents


def test_the_folder_name_changes_with_any_kernel_source(tmp_path):
    import shutil
    kernels = Path(_module_dirs()[1])
    copy = tmp_path / "kernels"
    shutil.copytree(kernels, copy, ignore=shutil.ignore_patterns("__pycache__"))
    original = kernel_cache.source_fingerprint([copy])
    assert original == kernel_cache.source_fingerprint([kernels])
    assert original == kernel_cache.source_fingerprint([copy])  # stable
    # an edit of a module that other kernels only call into gives a new folder too
    path = copy / "cpu" / "activations.py"
    path.write_text(path.read_text() + "\n# edited\n")
    assert kernel_cache.source_fingerprint([copy]) != original


def test_only_fastmlp_modules_are_redirected(tmp_path):
    def function():
        pass
    outside = tmp_path / "user_module.py"
    outside.write_text("def function():\n    pass\n")
    assert kernel_cache.KernelCacheLocator.from_function(function, str(outside)) is None
    import fastmlp.kernels.cpu.train as train
    locator = kernel_cache.KernelCacheLocator.from_function(function, train.__file__)
    assert locator is not None
    assert Path(locator.get_cache_path()).parent == kernel_cache.cache_folder()


def test_cold_detection(tmp_path, monkeypatch):
    monkeypatch.setattr(kernel_cache._numba_config, "CACHE_DIR", str(tmp_path))
    assert kernel_cache.is_cold()
    import fastmlp.kernels.cpu.train as train
    subfolder = kernel_cache._subfolder_of(train.__file__)
    subfolder.mkdir(parents=True, exist_ok=True)
    (subfolder / "network.network_output-10.py311.nbi").write_bytes(b"")
    assert kernel_cache.is_cold()  # other kernels compiled, the training kernel not yet
    (subfolder / "train.team_member-112.py311.nbi").write_bytes(b"")
    assert not kernel_cache.is_cold()


def test_folders_of_old_sources_are_pruned(tmp_path, monkeypatch):
    monkeypatch.setattr(kernel_cache._numba_config, "CACHE_DIR", str(tmp_path))
    root = tmp_path / "fastmlp"
    old, recent, foreign = root / "0.0.1-old", root / "0.0.2-recent", root / "not-ours"
    for folder in (old, recent, foreign):
        folder.mkdir(parents=True)
        (folder / "entry.nbi").write_bytes(b"")
    for folder in (old, recent):
        (folder / kernel_cache._STAMP).touch()
    long_ago = time.time() - (kernel_cache.PRUNE_AFTER_DAYS + 1) * 86400
    os.utime(old / kernel_cache._STAMP, (long_ago, long_ago))
    os.utime(foreign, (long_ago, long_ago))
    folder = kernel_cache.cache_folder()  # a new folder for these sources: prunes
    assert folder.is_dir() and (folder / kernel_cache._STAMP).is_file()
    assert not old.exists()
    assert recent.is_dir() and foreign.is_dir()  # in use lately / not made by fastmlp


# ----------------------------------------------------------------------------- the notice

class _Terminal:
    def __init__(self, terminal):
        self.terminal, self.text = terminal, ""

    def isatty(self):
        return self.terminal

    def write(self, text):
        self.text += text

    def flush(self):
        pass


def test_compile_notice_once_and_only_on_a_terminal(monkeypatch):
    monkeypatch.setattr(kernel_cache, "_notice_given", False)
    log = _Terminal(False)
    assert not kernel_cache.compile_notice(stream=log) and log.text == ""  # a log file: quiet
    terminal = _Terminal(True)
    assert kernel_cache.compile_notice(stream=terminal)
    assert terminal.text.strip("\r\n\x1b[K") == f"fastmlp: note: {kernel_cache.COMPILE_NOTICE}"
    assert not kernel_cache.compile_notice(stream=terminal)  # once per process
    monkeypatch.setattr(kernel_cache, "_notice_given", False)
    assert kernel_cache.compile_notice("fastmlp train", stream=log, always=True)
    assert log.text == f"fastmlp train: note: {kernel_cache.COMPILE_NOTICE}\n"


def test_the_first_compilation_of_a_kernel_shows_the_notice(monkeypatch):
    """What a library user sees on a cold cache: Numba's compile event for a fastmlp kernel
    (not for other code) prints the notice on a terminal."""
    from numba import njit
    from numba.core import event

    kernel, user = _a_kernel(), njit(lambda x: x + 1)
    terminal = _Terminal(True)
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(kernel_cache, "_notice_given", False)
    with event.trigger_event("numba:compile", data={"dispatcher": user}):
        pass
    assert terminal.text == ""
    with event.trigger_event("numba:compile", data={"dispatcher": kernel}):
        pass
    assert kernel_cache.COMPILE_NOTICE in terminal.text


def _a_kernel():
    import fastmlp.kernels.cpu.activations as activations
    return next(obj for obj in vars(activations).values()
                if hasattr(obj, "py_func") and obj.py_func.__module__ == activations.__name__)


def test_the_garbage_collector_pauses_while_a_kernel_compiles(monkeypatch):
    """From the outermost compilation of a fastmlp kernel to its end (also when it fails) the
    cyclic garbage collector is off; a user's own compilation, or a collector the user turned off,
    is left alone."""
    import gc

    from numba import njit
    from numba.core import event

    kernel, user = _a_kernel(), njit(lambda x: x + 1)
    monkeypatch.setattr(kernel_cache, "_notice_given", True)
    assert gc.isenabled()
    try:
        with event.trigger_event("numba:compile", data={"dispatcher": kernel}):
            assert not gc.isenabled()
            with event.trigger_event("numba:compile", data={"dispatcher": user}):
                assert not gc.isenabled()
            assert not gc.isenabled()
        assert gc.isenabled()
        with pytest.raises(RuntimeError):
            with event.trigger_event("numba:compile", data={"dispatcher": kernel}):
                raise RuntimeError("a failed compilation")
        assert gc.isenabled()
        with event.trigger_event("numba:compile", data={"dispatcher": user}):
            assert gc.isenabled()
            with event.trigger_event("numba:compile", data={"dispatcher": kernel}):
                assert gc.isenabled()  # inside the user's compilation: not ours to change
        gc.disable()
        with event.trigger_event("numba:compile", data={"dispatcher": kernel}):
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
    assert kernel_cache._compiling == {"depth": 0, "resume_gc": False}


class _CacheAt:
    """Stands in for a Numba cache: its folder, and how often its index was emptied."""

    def __init__(self, cache_path):
        self.cache_path, self.flushed = str(cache_path), 0

    def flush(self):
        self.flushed += 1


def test_the_garbage_collector_pauses_while_a_kernel_loads(tmp_path):
    """Loading a cached fastmlp kernel runs with the collector off and turns it back on after,
    also when the entry cannot be read (then compiled instead: None); another function's cache,
    or a collector the user turned off, is left alone."""
    import gc

    seen = []

    def load(cache, sig, target_context):
        seen.append(gc.isenabled())
        if sig == "unreadable":
            raise EOFError("a truncated entry")
        return "loaded"

    guarded = kernel_cache._guarded_load(load)
    ours, theirs = _CacheAt(kernel_cache.cache_folder() / "k"), _CacheAt(tmp_path)
    assert gc.isenabled()
    try:
        assert guarded(ours, "sig", None) == "loaded" and seen == [False] and gc.isenabled()
        assert guarded(ours, "unreadable", None) is None and ours.flushed == 1
        assert seen[-1] is False and gc.isenabled()
        assert guarded(theirs, "sig", None) == "loaded" and seen[-1] is True
        with pytest.raises(EOFError):
            guarded(theirs, "unreadable", None)
        assert gc.isenabled() and theirs.flushed == 0
        gc.disable()
        assert guarded(ours, "sig", None) == "loaded" and not gc.isenabled()
    finally:
        gc.enable()


def test_importing_fastmlp_runs_no_middle_or_full_collection():
    """``import fastmlp`` (Numba's import inside it) runs with the collector paused, then set back
    as it was: on, or off when the user had turned it off."""
    code = textwrap.dedent("""
        import gc, sys
        was_on = sys.argv[1] == "on"
        gc.enable() if was_on else gc.disable()
        gc.collect()
        runs = []
        gc.callbacks.append(lambda phase, info: phase == "start" and runs.append(info["generation"]))
        import fastmlp
        print(max(runs, default=0), gc.isenabled() == was_on)
    """)
    for collector in ("on", "off"):
        proc = subprocess.run([sys.executable, "-c", code, collector], capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == ["0", "True"], (collector, proc.stdout)


# ----------------------------------------------------------------------------- Numba's setting

def test_the_locator_setting_keeps_numbas_default_locators_in_order():
    from numba.core import caching
    defaults = [cls.__name__ for cls in caching.CacheImpl._locator_classes]
    assert list(kernel_cache.NUMBA_DEFAULT_LOCATORS) == defaults
    assert kernel_cache.LOCATOR_SETTING.split(",") == [
        "fastmlp.kernel_cache.KernelCacheLocator", *defaults]


def test_the_locator_setting_survives_a_reload_of_numbas_settings(monkeypatch):
    """Numba reloads its settings from the environment when a NUMBA_* variable changed (at the
    next compilation); fastmlp's locator is in place again once that compilation ends."""
    from numba import njit
    from numba.core import config
    assert config.CACHE_LOCATOR_CLASSES == kernel_cache.LOCATOR_SETTING
    monkeypatch.setenv("NUMBA_FASTMLP_TEST_SETTING", "1")
    assert njit(lambda x: x + 1)(1) == 2
    assert config.CACHE_LOCATOR_CLASSES == kernel_cache.LOCATOR_SETTING


def test_a_locator_setting_of_the_users_is_respected(monkeypatch):
    from numba.core import config
    monkeypatch.setattr(config, "CACHE_LOCATOR_CLASSES", "InTreeCacheLocator")
    kernel_cache.install()
    assert config.CACHE_LOCATOR_CLASSES == "InTreeCacheLocator"
