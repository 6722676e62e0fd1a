"""The benchmark suite must not rot: every asv benchmark's setup and body run once (on the
smallest network configuration only), and the cross-framework comparison script prints its table.

Nothing here looks at how long anything took.
"""

import importlib
import importlib.util
import inspect
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "asv_bench" / "benchmarks"
COMPARE = ROOT / "scripts" / "bench_compare.py"
PACKAGE = "fastmlp_asv_benchmarks"  # a private name, so no other "benchmarks" package can clash
PREFIXES = ("time_", "timeraw_", "peakmem_", "mem_", "track_")
# compiles every kernel from scratch in a fresh process (tens of seconds): only checked to parse
SLOW_TIMERAW = ("timeraw_first_step_cold_compile",)


def _package():
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            PACKAGE, BENCH_DIR / "__init__.py", submodule_search_locations=[str(BENCH_DIR)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = module
        spec.loader.exec_module(module)
    return sys.modules[PACKAGE]


def _modules():
    _package()
    return [importlib.import_module(f"{PACKAGE}.{path.stem}")
            for path in sorted(BENCH_DIR.glob("bench_*.py"))]


def _benchmarks():
    """(id, class, method names) for every benchmark class, as asv discovers them."""
    found = []
    for module in _modules():
        for name, obj in vars(module).items():
            if name.startswith("_") or not inspect.isclass(obj) or obj.__module__ != module.__name__:
                continue
            methods = sorted(m for m in dir(obj) if m.startswith(PREFIXES))
            if methods:
                found.append((f"{module.__name__.rsplit('.', 1)[1]}.{name}", obj, methods))
        for name, obj in vars(module).items():
            if inspect.isfunction(obj) and name.startswith(PREFIXES) and \
                    obj.__module__ == module.__name__:
                raise AssertionError(f"{module.__name__}.{name}: keep benchmarks in classes")
    return found


def _combinations(cls):
    params = getattr(cls, "params", [])
    names = list(getattr(cls, "param_names", []))
    if not params:
        return [()]
    if not isinstance(params[0], (list, tuple)):
        params = [params]
    smallest = _package().SMALLEST_CONFIG
    choices = [[smallest] if names[i:i + 1] == ["config"] else list(values)
               for i, values in enumerate(params)]
    return list(itertools.product(*choices))


BENCHMARKS = _benchmarks()


def test_every_area_has_benchmarks():
    names = {bench_id.split(".")[0] for bench_id, _, _ in BENCHMARKS}
    assert {"bench_training", "bench_dense", "bench_batchnorm", "bench_losses",
            "bench_optimizers", "bench_startup", "bench_products"} <= names
    methods = {m for _, _, ms in BENCHMARKS for m in ms}
    assert {"track_step_us", "track_step_over_floor", "time_public_step", "time_epoch",
            "peakmem_epoch", "time_predict",
            "timeraw_import", "timeraw_import_and_first_step"} <= methods


def test_training_configs_cover_the_three_networks():
    pkg = _package()
    assert [pkg.layer_sizes(c) for c in pkg.CONFIG_NAMES] == [
        (40, 256, 256, 10), (784, 512, 512, 10), (1024, 4096, 4096, 10)]
    assert [pkg.batch_size(c) for c in pkg.CONFIG_NAMES] == [32, 128, 512]
    assert pkg.SMALLEST_CONFIG == "40-256-256-10/32"


def _run_timeraw(code):
    setup = ""
    if isinstance(code, tuple):
        code, setup = code
    compile(setup, "<timeraw setup>", "exec")
    compile(code, "<timeraw>", "exec")
    return subprocess.run([sys.executable, "-c", setup + "\n" + code], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("bench_id, cls, methods", BENCHMARKS,
                         ids=[b[0] for b in BENCHMARKS])
def test_benchmark_runs_once(bench_id, cls, methods):
    for combo in _combinations(cls):
        instance = cls()
        if hasattr(instance, "setup"):
            try:
                instance.setup(*combo)
            except NotImplementedError:
                continue  # asv's way of skipping a parameter combination
        try:
            for method in methods:
                result = getattr(instance, method)(*combo)
                if method.startswith("timeraw_"):
                    assert isinstance(result, (str, tuple))
                    if method in SLOW_TIMERAW:
                        code, setup = result if isinstance(result, tuple) else (result, "")
                        compile(setup, "<timeraw setup>", "exec")
                        compile(code, "<timeraw>", "exec")
                        continue
                    proc = _run_timeraw(result)
                    assert proc.returncode == 0, proc.stderr[-2000:]
        finally:
            if hasattr(instance, "teardown"):
                instance.teardown(*combo)


def test_asv_config_is_valid_json_with_comments():
    import json
    import re
    text = (ROOT / "asv_bench" / "asv.conf.json").read_text()
    conf = json.loads(re.sub(r"^\s*//.*$", "", text, flags=re.M))
    assert conf["repo"] == ".."
    assert conf["environment_type"] == "existing"
    assert conf["benchmark_dir"] == "benchmarks"


def test_bench_compare_help():
    proc = subprocess.run([sys.executable, str(COMPARE), "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0
    for option in ("--quick", "--repeats", "--configs", "--dtype", "--output"):
        assert option in proc.stdout


def test_bench_compare_quick_prints_a_table(tmp_path):
    output = tmp_path / "compare.md"
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, str(COMPARE), "--quick", "--output", str(output)],
                          cwd=ROOT, capture_output=True, text=True, timeout=1500, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "## Summary: median µs per training step" in out
    assert "| framework | step (µs) |" in out
    assert "| 40-256-256-10, batch 32 |" in out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines()
            if line.startswith("| ") and line.count("|") > 8}
    # the floor and fastmlp always run; the other frameworks run when installed (else a note)
    for name in ("GEMM-only floor (NumPy)", "fastmlp", "fastmlp (public API)"):
        assert name in rows, out
        cells = [c.strip() for c in rows[name].split("|")[2:-1]]
        assert cells[0][0].isdigit(), rows[name]
    for modules, name in ((("torch",), "PyTorch eager"), (("torch",), "torch.compile"),
                          (("jax", "optax"), "JAX jit + optax"),
                          (("sklearn",), "scikit-learn MLPClassifier")):
        if any(importlib.util.find_spec(m) is None for m in modules):
            assert f"{name} skipped" in out
        else:
            assert name in rows
    assert "- Machine: " in out and "cores" in out
    assert output.read_text(encoding="utf-8").strip() == out.strip()


def test_bench_compare_bf16_rows_and_columns():
    from fastmlp.kernels.cpu.onednn import bf16_support
    if bf16_support() is not None:
        pytest.skip(bf16_support())
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, str(COMPARE), "--quick", "--bf16", "--frameworks",
                           "floor,fastmlp", "--configs", "40-32-10:16"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    header = next(line for line in out.splitlines() if line.startswith("| config |"))
    assert "fastmlp bf16 ÷ floor" in header and "torch bf16 ÷ fastmlp bf16" in header
    rows = {line.split("|")[1].strip(): line for line in out.splitlines()
            if line.startswith("| ") and line.count("|") > 8}
    cells = [c.strip() for c in rows["fastmlp mixed_bfloat16"].split("|")[2:-1]]
    assert cells[0][0].isdigit(), rows["fastmlp mixed_bfloat16"]
    if importlib.util.find_spec("torch") is None:
        assert "PyTorch bf16 autocast skipped" in out
    else:
        assert "PyTorch bf16 autocast" in rows
