"""Smoke tests of the experiment scripts in scripts/: ``--help`` and a ``--quick`` run of each,
in a subprocess with a temporary output folder and the Agg matplotlib back end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"

pytest.importorskip("matplotlib")
pytest.importorskip("mnist1d")


def run_script(name, *args, cwd=None, timeout=300):
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.run([sys.executable, str(SCRIPTS / name), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def check_ok(proc):
    assert proc.returncode == 0, (f"exit {proc.returncode}\nstdout:\n{proc.stdout}\n"
                                  f"stderr:\n{proc.stderr}")


def table_rows(stdout):
    """The markdown table's body rows (after the header separator), as lists of cells."""
    lines = [line for line in stdout.splitlines() if line.startswith("|")]
    assert len(lines) >= 3, stdout
    assert set(lines[1].replace("|", "").split()) <= {"---", "---:"}, lines[1]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


@pytest.mark.parametrize("name, words", [
    ("optimizer_study.py", ["--epochs", "--seed", "--output", "--quick"]),
    ("regularization_study.py", ["--epochs", "--seed", "--output", "--quick", "--n-jobs"]),
    ("mnist1d_recipe.py", ["--seed", "--output", "--quick"]),
    ("bench_mpi.py", ["--rows", "--batch", "--ranks", "--validation-split", "--quick"]),
    ("startup_time.py", ["--runs", "--no-cold", "--quick"]),
    ("bench_gpu.py", ["--configs", "--steps", "--repeats", "--matmul", "--quick"]),
    ("bench_inference.py", ["--rows", "--sizes", "--threads", "--frameworks", "--quick"]),
    ("bench_bf16.py", ["--configs", "--repeats", "--min-time", "--threads", "--quick"]),
    ("bench_products.py", ["--configs", "--repeats", "--min-time", "--threads", "--quick"]),
    ("mixed_precision_quality.py", ["--seeds", "--tasks", "--json", "--quick"]),
])
def test_help(name, words):
    proc = run_script(name, "--help")
    check_ok(proc)
    assert proc.stdout.startswith("usage:")
    for word in words:
        assert word in proc.stdout


def test_optimizer_study_quick(tmp_path):
    out = tmp_path / "sub" / "opt.png"
    proc = run_script("optimizer_study.py", "--quick", "--output", str(out), cwd=tmp_path)
    check_ok(proc)
    rows = table_rows(proc.stdout)
    names = [row[0] for row in rows]
    assert names == ["SGD", "SGD+momentum", "SGD+Nesterov", "Adagrad", "RMSProp", "Adam", "AdamW",
                     "Rprop (full batch)"]
    assert rows[-1][2] == "800"  # Rprop's batch is the whole (quick) training set
    assert out.stat().st_size > 0
    payload = json.loads(out.with_suffix(".json").read_text())
    assert payload["quick"] is True and len(payload["results"]) == 8
    for result in payload["results"]:
        assert 0.0 <= result["test_accuracy"] <= 1.0
        assert result["final_train_loss"] > 0
        assert len(result["loss_curve"]) == result["epochs"]
    assert payload["results"][-1]["updates"] == payload["results"][0]["updates"]


def test_regularization_study_quick(tmp_path):
    out = tmp_path / "reg.png"
    proc = run_script("regularization_study.py", "--quick", "--n-jobs", "1", "--output", str(out),
                      cwd=tmp_path)
    check_ok(proc)
    rows = table_rows(proc.stdout)
    assert [row[0] for row in rows] == ["none", "dropout", "batchnorm", "L1", "L2", "elastic net",
                                        "early stopping", "bagging"]
    assert all(row[6].endswith("pp") for row in rows)
    assert out.stat().st_size > 0
    payload = json.loads(out.with_suffix(".json").read_text())
    for result in payload["results"]:
        assert result["gap"] == pytest.approx(result["train_accuracy"] - result["test_accuracy"])
    assert len(payload["results"][-1]["runs"][0]["member_test_accuracy"]) == 2


def test_mnist1d_recipe_quick(tmp_path):
    out = tmp_path / "recipe.png"
    proc = run_script("mnist1d_recipe.py", "--quick", "--output", str(out), cwd=tmp_path)
    check_ok(proc)
    assert "paper recipe" in proc.stdout
    assert "chosen recipe" in proc.stdout
    rows = table_rows(proc.stdout)
    assert len(rows) >= 2
    assert out.stat().st_size > 0
    payload = json.loads(out.with_suffix(".json").read_text())
    assert 0.0 <= payload["paper_recipe"]["test_accuracy_mean"] <= 1.0
    chosen = payload["search"]["chosen"]
    best_val = max(c["val_accuracy"] for c in payload["search"]["candidates"])
    assert chosen["val_accuracy"] == best_val  # chosen on validation, not on test
    assert 0.0 <= payload["search"]["test_accuracy"] <= 1.0


def test_thread_policy_quick():
    check_ok(run_script("thread_policy.py", "--help"))
    proc = run_script("thread_policy.py", "--quick", "--busy", "1")
    check_ok(proc)
    threads, busy = proc.stdout.split("\n\n")
    rows = table_rows(threads)
    assert rows[0][0] == "40-256-256-10/32" and float(rows[0][1]) > 0 and float(rows[0][2]) > 0
    busy_row = table_rows(busy)[0]
    quiet, loaded, ratio = (float(v) for v in busy_row[1:])
    assert busy_row[0] == "40-256-256-10/32" and quiet > 0 and loaded > 0
    assert ratio == pytest.approx(loaded / quiet, rel=0.02, abs=0.01)


def test_bench_mpi_quick():
    proc = run_script("bench_mpi.py", "--quick", "--validation-split", "0.25")
    check_ok(proc)
    epochs, sums = proc.stdout.split("The step's gradient sum")
    assert "validation split 0.25" in epochs
    rows = table_rows(epochs)
    assert [row[0] for row in rows] == ["fm.Trainer, 1 process"] * len(rows[:-2]) + [
        "DistributedTrainer, 1 rank", "DistributedTrainer, 2 ranks"]
    assert all(float(row[2]) > 0 for row in rows)
    assert rows[-2][4] == "1.00×"
    [(ranks, values, allreduce, shared)] = table_rows(sums)
    assert ranks == "2" and int(values.replace(",", "")) > 0
    assert float(allreduce.replace(",", "")) > 0 and float(shared.replace(",", "")) > 0


def test_startup_time_quick():
    proc = run_script("startup_time.py", "--quick")
    check_ok(proc)
    rows = table_rows(proc.stdout)
    assert [row[0].split(":")[0] for row in rows] == ["warm", "numba floor"]
    assert all(row[1] == "1" and float(row[2]) > 0 for row in rows)


def test_bench_gpu_without_a_gpu_says_why():
    from fastmlp.engines.cuda_support import driver_gpu_count
    if driver_gpu_count()[0] > 0:
        pytest.skip("a GPU is present: scripts/bench_gpu.py measures instead")
    env_free = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    proc = subprocess.run([sys.executable, str(SCRIPTS / "bench_gpu.py"), "--quick"],
                          env=env_free, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.startswith("no usable GPU, nothing to measure: ")


def test_bench_inference_quick_on_a_small_model():
    pytest.importorskip("onnxruntime")
    proc = run_script("bench_inference.py", "--quick", "--sizes", "8-6-3", "--rows", "1,40",
                      "--frameworks", "fastmlp,onnxruntime")
    check_ok(proc)
    rows = table_rows(proc.stdout)
    assert [(row[0], row[1]) for row in rows] == [
        ("fastmlp predict_proba", "1"), ("fastmlp predict_proba", "40"),
        ("onnxruntime InferenceSession.run", "1"), ("onnxruntime InferenceSession.run", "40")]
    assert all(float(row[2].replace(",", "")) > 0 for row in rows)
    assert all(float(row[6]) < 1e-5 for row in rows)  # onnxruntime agrees with predict_proba


def test_bench_products_quick_names_each_layers_path(tmp_path):
    out = tmp_path / "products.json"
    proc = run_script("bench_products.py", "--quick", "--configs", "64-128-160-10:32",
                      "--json", str(out))
    check_ok(proc)
    rows = table_rows(proc.stdout)
    paths = {row[0]: row[2] for row in rows if row[0].startswith("layer")}
    assert paths == {"layer 0 forward x·W": "blas", "layer 0 dW = xᵀ·dY": "blas",
                     "layer 1 forward x·W": "tiles", "layer 1 dW = xᵀ·dY": "tiles",
                     "layer 1 dX = dY·Wᵀ": "tiles", "layer 2 forward x·W": "blas",
                     "layer 2 dW = xᵀ·dY": "blas", "layer 2 dX = dY·Wᵀ": "blas"}
    assert "| as the layers pick |" in proc.stdout
    result = json.loads(out.read_text())["results"]["64-128-160-10, batch 32"]
    for product in result:
        assert max(product["rel_error"].values()) < 1e-5
        assert all(product[f"{p}_{t}"]["best_s"] > 0 for p in ("blas", "tiles") for t in (1, 2))


def test_bench_bf16_quick_on_a_small_network(tmp_path):
    from fastmlp.kernels.cpu.bf16 import bf16_support
    reason = bf16_support()
    if reason is not None:
        pytest.skip(reason)
    out = tmp_path / "bf16.json"
    proc = run_script("bench_bf16.py", "--quick", "--configs", "64-128-96-10:32",
                      "--json", str(out))
    check_ok(proc)
    rows = table_rows(proc.stdout)
    products = [row[0] for row in rows if row[0].startswith("layer")]
    assert products == ["layer 0 forward x·W", "layer 0 dW = xᵀ·dY", "layer 1 forward x·W",
                        "layer 1 dW = xᵀ·dY", "layer 1 dX = dY·Wᵀ", "layer 2 forward x·W",
                        "layer 2 dW = xᵀ·dY", "layer 2 dX = dY·Wᵀ"]
    assert "| rounding pass GB/s |" in proc.stdout
    result = json.loads(out.read_text())["results"]["64-128-96-10, batch 32"]
    for product in result["products"]:
        assert product["rel_error_bf16"] < 2e-2 and product["rel_error_f32"] < 1e-5
        assert all(product[f"{p}_{t}"]["best_s"] > 0 for p in ("f32", "bf16") for t in (1, 2))
    assert result["rounding"]["2"]["GB_per_s"] > 0


def test_mixed_precision_quality_quick(tmp_path):
    from fastmlp.kernels.cpu.onednn import bf16_support
    if bf16_support() is not None:
        pytest.skip(bf16_support())
    out = tmp_path / "quality.json"
    proc = run_script("mixed_precision_quality.py", "--quick", "--json", str(out))
    check_ok(proc)
    rows = table_rows(proc.stdout)
    assert [row[0] for row in rows] == ["digits (30 epochs)", "mnist1d (10 epochs)"]
    results = json.loads(out.read_text())
    assert all(len(results[task][policy]) == 2 for task in results
               for policy in ("float32", "mixed_bfloat16"))
