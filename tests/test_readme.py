"""README.md must stay true: every ```python block runs as pasted (each in a fresh interpreter,
in an empty folder, with this environment's packages), as NumPy and pandas check their docs;
shell commands are in ```bash blocks; the install lines work from a checkout; and the asv
instructions give what a fresh machine needs.

A block whose first line reads ``# NAME.py, started with: mpiexec -n R python NAME.py`` is written
to NAME.py and run that way (with the ``mpiexec`` of the MPICH wheel, ``fastmlp.mpi.find_mpiexec``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FENCE = re.compile(r"^```([\w+-]*)[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
MPI_LINE = re.compile(r"^# (\w+\.py), started with: mpiexec -n (\d+) python \1\s*$")
TIMEOUT = 600  # seconds per block: a cold kernel cache compiles for a minute or two


def blocks(language=None):
    """(language, first line number, code) of every fenced block of README.md."""
    text = README.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        if language is None or match.group(1) == language:
            found.append((match.group(1), line, match.group(2)))
    return found


PYTHON_BLOCKS = blocks("python")


def _environment():
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the installed fastmlp, as a user would have it
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def test_the_readme_has_the_examples_it_should():
    assert len(PYTHON_BLOCKS) >= 3  # the API tour, the Dask example, the MPI script
    languages = {language for language, _, _ in blocks()}
    assert "" not in languages, "every fenced block names its language"


@pytest.mark.parametrize("line, code", [(line, code) for _, line, code in PYTHON_BLOCKS],
                         ids=[f"line{line}" for _, line, _ in PYTHON_BLOCKS])
def test_python_block_runs_as_pasted(line, code, tmp_path):
    compile(code, f"README.md:{line}", "exec")  # a syntax error is reported with its line
    first = code.splitlines()[0] if code.strip() else ""
    mpi = MPI_LINE.match(first)
    env = _environment()
    if mpi:
        from fastmlp.mpi import find_mpiexec
        pytest.importorskip("mpi4py")
        mpiexec = find_mpiexec()
        assert mpiexec, 'mpiexec not found: pip install ".[mpi]" brings the MPICH wheel'
        script = tmp_path / mpi.group(1)
        script.write_text(code, encoding="utf-8")
        command = [mpiexec, "-n", mpi.group(2), sys.executable, script.name]
    else:
        script = tmp_path / f"readme_line{line}.py"
        script.write_text(code, encoding="utf-8")
        command = [sys.executable, script.name]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert result.returncode == 0, (
        f"README.md block at line {line} failed ({' '.join(command)}):\n"
        f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    assert "Traceback" not in result.stderr, result.stderr[-6000:]
    # a clean run, as a user sees it: no warnings either
    assert not re.search(r"\w+Warning: ", result.stderr), result.stderr[-6000:]


def test_shell_commands_are_bash_blocks():
    for language, line, code in blocks():
        if language == "python":
            for text in code.splitlines():
                assert not re.match(r"\s*(pip|mpiexec|fastmlp|asv|cd|python -m)\s", text), (
                    f"README.md line {line}: shell command in a python block: {text}")


def _extras():
    """{extra: [requirement names]} of the installed fastmlp (its metadata, from pyproject)."""
    from importlib.metadata import metadata
    meta = metadata("fastmlp")
    extras = {name: [] for name in meta.get_all("Provides-Extra") or ()}
    for requirement in meta.get_all("Requires-Dist") or ():
        marker = re.search(r"""extra\s*==\s*["']([\w-]+)["']""", requirement)
        if marker:
            extras.setdefault(marker.group(1), []).append(
                re.match(r"[\w.-]+", requirement).group(0).lower())
    return extras


def test_install_lines_work_from_a_checkout():
    """The package is installed from this repository: `pip install ".[extra]"`, never from an
    index by name, and every extra named exists."""
    extras = _extras()
    text = README.read_text(encoding="utf-8")
    assert not re.search(r"pip install \"?fastmlp\[", text), "use pip install \".[extra]\""
    named = re.findall(r'pip install (?:-e )?"\.\[([\w,-]+)\]"', text)
    assert named, "the README gives install lines"
    for group in named:
        for extra in group.split(","):
            assert extra in extras, f"README names the extra {extra!r}, which pyproject lacks"
    assert 'pip install ".[mpi]"' in text


def _asv_commands():
    """The shell commands of the README's bash blocks, in order."""
    commands = []
    for _, _, code in blocks("bash"):
        for text in code.splitlines():
            commands += [part.strip() for part in text.split("&&") if part.strip()]
    return commands


def test_asv_instructions_install_asv_and_record_the_machine():
    commands = _asv_commands()
    runs = [i for i, c in enumerate(commands) if c.startswith("asv run")]
    assert runs, "the README shows how to run the benchmarks"
    first = runs[0]
    assert 'pip install ".[bench]"' in commands[:first]
    assert "asv machine --yes" in commands[:first]  # otherwise asv run asks questions
    assert "asv" in _extras()["bench"]


def test_asv_machine_and_check_run_without_questions(tmp_path):
    """What the README's asv lines do on a fresh machine (a home folder without asv's machine
    file): `asv machine --yes` answers itself, and the suite passes `asv check`."""
    asv = shutil.which("asv") or shutil.which("asv", path=os.path.dirname(sys.executable))
    assert asv, 'asv is missing: pip install ".[bench]" (the test extra includes it)'
    env = dict(_environment(), HOME=str(tmp_path), USERPROFILE=str(tmp_path))
    bench = ROOT / "asv_bench"
    machine = subprocess.run([asv, "machine", "--yes"], cwd=bench, env=env, capture_output=True,
                             text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert machine.returncode == 0, machine.stdout + machine.stderr
    assert (tmp_path / ".asv-machine.json").is_file()
    check = subprocess.run([asv, "check", "--python=same"], cwd=bench, env=env,
                           capture_output=True, text=True, timeout=300,
                           stdin=subprocess.DEVNULL)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "No problems found" in check.stdout, check.stdout + check.stderr
