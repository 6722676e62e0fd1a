"""The Quick start's two installs, in either order, leave a working install.

A throwaway virtual environment gets this checkout installed the two ways the README's Quick
start does (``pip install .`` then ``fastmlp train``, and ``pip install -e .``), one over the
other and back. Its dependencies come from the environment running the tests (a ``.pth`` file
puts that environment's site-packages on the new one's path), so nothing is downloaded:
``--no-deps --no-build-isolation``. The training run compiles the kernels from scratch (a fresh
user cache folder), which is what makes this test take about a minute.

What used to go wrong: the first run compiled the kernels into ``site-packages/fastmlp/kernels/
cpu/__pycache__/``; uninstalling left those files behind, and the leftover ``fastmlp`` folder
shadowed the editable install (``import fastmlp`` gave an empty namespace package).
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.install


def _site_packages(venv):
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    out = subprocess.run([str(_bin(venv, "python")), "-I", "-c", code], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    return Path(out.strip())


def _bin(venv, name):
    folder = venv / ("Scripts" if os.name == "nt" else "bin")
    return folder / (name + (".exe" if os.name == "nt" else ""))


@pytest.fixture()
def venv(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    parents = [p for p in (*site.getsitepackages(), site.getusersitepackages()) if Path(p).is_dir()]
    (_site_packages(venv) / "_parent_environment.pth").write_text("\n".join(parents) + "\n")
    return venv


def _environment(tmp_path):
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "user-cache"), OMP_NUM_THREADS="1")
    for name in ("NUMBA_CACHE_DIR", "PYTHONPATH", "PYTHONHOME"):
        env.pop(name, None)
    return env


def _run(command, env, cwd, timeout=600):
    result = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, f"{command}:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


def _pip_install(venv, env, cwd, *options):
    python = _bin(venv, "python")
    return _run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                 "--disable-pip-version-check", *options, ROOT], env, cwd)


def _recorded(site_packages):
    """The files pip's RECORD lists for the installed fastmlp."""
    records = list(site_packages.glob("fastmlp-*.dist-info/RECORD"))
    assert len(records) == 1, records
    return {(site_packages / line.split(",")[0]).resolve()
            for line in records[0].read_text().splitlines() if line}


def _imports(venv, env, cwd):
    """(version, file of fastmlp, file of the training kernel module) in the venv."""
    code = ("import fastmlp, fastmlp.kernels.cpu.train as t; "
            "print(fastmlp.__version__); print(fastmlp.__file__); print(t.__file__)")
    out = _run([_bin(venv, "python"), "-c", code], env, cwd).stdout.split("\n")
    return out[0], Path(out[1]).resolve(), Path(out[2]).resolve()


def test_regular_then_editable_then_regular_install(venv, tmp_path):
    env = _environment(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    site_packages = _site_packages(venv)

    # 1. pip install ".[datasets,plot,progress]" && fastmlp train
    _pip_install(venv, env, work, "--ignore-installed")
    train = _run([_bin(venv, "fastmlp"), "train", "--hidden", "16", "--epochs", "2",
                  "--no-progress", "--output", "run"], env, work)
    assert "fastmlp train: note: compiling the kernels for first use" in train.stderr
    assert (work / "run" / "model.npz").is_file()
    package = site_packages / "fastmlp"
    compiled = [p for p in package.rglob("*") if p.suffix in (".nbi", ".nbc")]
    assert compiled == [], compiled[:5]
    recorded = _recorded(site_packages)
    unrecorded = [p for p in package.rglob("*")
                  if p.is_file() and p.suffix != ".pyc" and p.resolve() not in recorded]
    assert unrecorded == [], unrecorded[:5]  # nothing an uninstall would leave behind
    if sys.platform.startswith("linux"):  # $XDG_CACHE_HOME/fastmlp/numba
        user_cache = tmp_path / "user-cache" / "fastmlp" / "numba"
        assert any(p.suffix == ".nbc" for p in user_cache.rglob("*"))
    again = _run([_bin(venv, "fastmlp"), "train", "--hidden", "16", "--epochs", "2",
                  "--no-progress", "--output", "run"], env, work)
    assert "compiling the kernels" not in again.stderr  # warm: no notice

    # 2. pip install -e ".[test]" over it: the regular install goes away completely
    _pip_install(venv, env, work, "-e")
    assert not package.exists(), sorted(str(p) for p in package.rglob("*"))[:5]
    version, init, kernel = _imports(venv, env, work)
    assert init == ROOT / "fastmlp" / "__init__.py"
    assert kernel == ROOT / "kernels" / "cpu" / "train.py"
    assert _run([_bin(venv, "fastmlp"), "--version"], env, work).stdout.strip() == \
        f"fastmlp {version}"

    # 3. and back: a regular install over the editable one
    _pip_install(venv, env, work)
    version, init, kernel = _imports(venv, env, tmp_path)
    assert init == (site_packages / "fastmlp" / "__init__.py").resolve()
    assert kernel == (site_packages / "fastmlp" / "kernels" / "cpu" / "train.py").resolve()
    assert _run([_bin(venv, "fastmlp"), "--version"], env, tmp_path).stdout.strip() == \
        f"fastmlp {version}"
