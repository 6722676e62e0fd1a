"""Data-parallel training over MPI: each test starts ``mpiexec -n R`` on tests/mpi_scenarios.py
(or the fastmlp command) and checks what the ranks wrote, their exit status and their output."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
SCENARIOS = HERE / "mpi_scenarios.py"
# Rank 1 waits at most this long in a scenario's collectives; a test fails long before a hang.
JOB_LIMIT = 240


def mpiexec():
    from fastmlp.parallel.mpi import find_mpiexec
    path = find_mpiexec()
    assert path, 'mpiexec not found: pip install "fastmlp[mpi]" (mpi4py and the mpich wheel)'
    return path


def run(args, ranks, tmp_path):
    """Run ``args`` on ``ranks`` ranks (ranks=None: one process without mpiexec)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    command = [sys.executable, *map(str, args)]
    if ranks is not None:
        command = [mpiexec(), "-n", str(ranks), *command]
    began = time.monotonic()
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=JOB_LIMIT)
    return proc, time.monotonic() - began


def scenario(name, ranks, tmp_path, *extra):
    return run([SCENARIOS, name, tmp_path, *extra], ranks, tmp_path)


def load(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def test_two_ranks_match_one_rank_and_the_trainer(tmp_path):
    proc, _ = scenario("equality", None, tmp_path, "plain")
    assert proc.returncode == 0, proc.stderr
    proc, _ = scenario("equality", 2, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("adam", "nesterov"):
        one, plain = load(tmp_path / f"{name}_1_0.npz"), load(tmp_path / f"{name}_plain.npz")
        rank0, rank1 = load(tmp_path / f"{name}_2_0.npz"), load(tmp_path / f"{name}_2_1.npz")
        # one rank runs the same compiled step as Trainer: bitwise equal
        np.testing.assert_array_equal(one["params"], plain["params"])
        np.testing.assert_array_equal(one["loss"], plain["loss"])
        # two ranks: the same global batches, gradients summed in a different order
        np.testing.assert_allclose(rank0["params"], one["params"], rtol=0, atol=1e-10)
        np.testing.assert_array_equal(rank0["params"], rank1["params"])
        for key in ("loss", "val_loss", "val_accuracy"):
            np.testing.assert_allclose(rank0[key], one[key], rtol=1e-10, atol=1e-12)
            np.testing.assert_array_equal(rank0[key], rank1[key])
    # only rank 0 wrote its checkpoint
    assert (tmp_path / "checkpoint_adam_rank0.npz").exists()
    assert not (tmp_path / "checkpoint_adam_rank1.npz").exists()


def test_the_shared_memory_sum_adds_every_rank_in_rank_order(tmp_path):
    ranks = 3
    proc, _ = scenario("sums", ranks, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for trial in range(3):
        packs = [np.random.default_rng([trial, r]).normal(size=1001).astype(np.float32)
                 for r in range(ranks)]
        expected = (packs[0] + packs[1]) + packs[2]
        expected_scalars = sum(np.arange(8.0) * (r + 1) + trial for r in range(ranks))
        for r in range(ranks):
            got = load(tmp_path / f"sum_{trial}_{r}.npz")
            np.testing.assert_array_equal(got["pack"], expected)
            np.testing.assert_array_equal(got["scalars"], expected_scalars)
    for r in range(ranks):
        node, allreduce = load(tmp_path / f"node_{r}.npz"), load(tmp_path / f"allreduce_{r}.npz")
        assert node["used_node_sum"] and not allreduce["used_node_sum"]
        # three ranks: MPICH may add the three gradients in another order
        np.testing.assert_allclose(node["params"], allreduce["params"], rtol=0, atol=1e-10)
        np.testing.assert_array_equal(node["params"], load(tmp_path / "node_0.npz")["params"])
        for key in ("loss", "val_loss"):
            np.testing.assert_allclose(node[key], allreduce[key], rtol=1e-10)


def test_a_mixed_bfloat16_model_trains_data_parallel(tmp_path):
    from fastmlp.kernels.cpu.onednn import bf16_support
    if bf16_support() is not None:
        pytest.skip(bf16_support())
    proc, _ = scenario("mixed", None, tmp_path, "plain")
    assert proc.returncode == 0, proc.stderr
    proc, _ = scenario("mixed", 2, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    one, plain = load(tmp_path / "mixed_1_0.npz"), load(tmp_path / "mixed_plain.npz")
    rank0, rank1 = load(tmp_path / "mixed_2_0.npz"), load(tmp_path / "mixed_2_1.npz")
    # one rank rounds the same parameters and batches to bfloat16 as the Trainer's epoch kernel
    np.testing.assert_array_equal(one["params"], plain["params"])
    np.testing.assert_array_equal(one["loss"], plain["loss"])
    assert one["params"].dtype == np.float32
    np.testing.assert_array_equal(rank0["params"], rank1["params"])
    np.testing.assert_allclose(rank0["loss"], one["loss"], rtol=2e-2)


def test_local_batchnorm_keeps_the_ranks_identical(tmp_path):
    proc, _ = scenario("batchnorm", 2, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rank0, rank1 = load(tmp_path / "bn_0.npz"), load(tmp_path / "bn_1.npz")
    np.testing.assert_array_equal(rank0["params"], rank1["params"])
    np.testing.assert_array_equal(rank0["buffers"], rank1["buffers"])
    assert rank0["buffers"].any()
    assert rank0["accuracy"] == rank1["accuracy"] > 0.6


def test_synchronized_batchnorm_matches_one_rank(tmp_path):
    proc, _ = scenario("sync_batchnorm", None, tmp_path, "plain")
    assert proc.returncode == 0, proc.stderr
    proc, _ = scenario("sync_batchnorm", 2, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    plain = load(tmp_path / "plain.npz")
    rank0, rank1 = load(tmp_path / "sync_2_0.npz"), load(tmp_path / "sync_2_1.npz")
    for key in ("params", "buffers"):
        np.testing.assert_allclose(rank0[key], plain[key], rtol=0, atol=1e-10)
        np.testing.assert_array_equal(rank0[key], rank1[key])
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(rank0[key], plain[key], rtol=1e-10)


def test_a_non_finite_step_leaves_every_rank_at_the_last_finite_step(tmp_path):
    proc, _ = scenario("non_finite", 2, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rank0, rank1 = load(tmp_path / "non_finite_0.npz"), load(tmp_path / "non_finite_1.npz")
    assert rank0["stopped_2"] == 2 and rank0["reference_2"] == 3
    for i in (0, 1):  # parameters, batchnorm statistics
        np.testing.assert_array_equal(rank0[f"stopped_{i}"], rank0[f"reference_{i}"])
        np.testing.assert_array_equal(rank0[f"stopped_{i}"], rank1[f"stopped_{i}"])
        assert np.all(np.isfinite(rank0[f"stopped_{i}"]))


@pytest.mark.parametrize("how, message", [("raise", "simulated failure on rank 1"),
                                          ("stall", "did not complete within 4 s")])
def test_a_failed_rank_ends_the_job(tmp_path, how, message):
    proc, seconds = scenario(how, 2, tmp_path)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
    assert "aborting the MPI job" in proc.stderr
    assert seconds < 120  # ended by the error or the 4 s timeout, not by the test's limit


def test_an_input_error_on_one_rank_is_reported_on_every_rank(tmp_path):
    proc, _ = scenario("bad_input", 2, tmp_path)
    assert proc.returncode != 0
    assert (tmp_path / "bad_input_1.txt").read_text() == (
        "ValueError: X and y have different numbers of samples: 240 and 239")
    assert (tmp_path / "bad_input_0.txt").read_text() == (
        "DistributedError: rank 1 stopped with an error in the checks before training "
        "(see that rank's output)")
    assert "aborting" not in proc.stderr


def test_different_data_on_the_ranks_is_an_error(tmp_path):
    proc, _ = scenario("other_data", 2, tmp_path)
    assert proc.returncode != 0
    for rank in (0, 1):
        assert "different training data" in (tmp_path / f"other_data_{rank}.txt").read_text()


def test_distributed_command_line(tmp_path):
    args = ["-m", "fastmlp", "train", "--distributed", "--epochs", "3", "--hidden", "32",
            "--no-progress", "--output", "run", "--mpi-timeout", "60", "--sync-batchnorm"]
    proc, _ = run(args, 2, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("wrote history.json") == 1  # rank 0 alone prints
    assert proc.stdout.count("distributed: 2 MPI ranks") == 1
    document = json.loads((tmp_path / "run" / "history.json").read_text())
    assert document["metrics"]["ranks"] == 2
    assert document["metrics"]["test_accuracy"] > 0.6
    assert sorted(p.name for p in (tmp_path / "run").iterdir() if p.suffix != ".png") == [
        "history.json", "model.npz"]


def test_distributed_command_line_set_up_error_ends_every_rank(tmp_path):
    args = ["-m", "fastmlp", "train", "--distributed", "--dataset", "missing.csv",
            "--target", "y", "--mpi-timeout", "60"]
    proc, seconds = run(args, 2, tmp_path)
    assert proc.returncode == 2
    assert "data set file 'missing.csv' does not exist" in proc.stderr
    assert seconds < 60


def test_distributed_command_line_without_mpi4py(tmp_path):
    """Without mpi4py, --distributed is a usage error naming the extra to install."""
    blocker = tmp_path / "block" / "mpi4py"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('blocked for the test')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "block"))
    proc = subprocess.run([sys.executable, "-m", "fastmlp", "train", "--distributed"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert 'pip install "fastmlp[mpi]"' in proc.stderr


def test_the_room_in_shared_memory_is_unknown_without_statvfs(monkeypatch):
    from fastmlp.parallel import node_sum
    free = node_sum._shared_memory_free()
    assert free is None or free > 0
    monkeypatch.setattr(node_sum, "_SHARED_MEMORY", "/no/such/folder")
    assert node_sum._shared_memory_free() is None
    monkeypatch.undo()
    monkeypatch.delattr(node_sum.os, "statvfs", raising=False)  # as on Windows
    assert node_sum._shared_memory_free() is None
