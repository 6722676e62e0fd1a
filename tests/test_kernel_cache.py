"""The on-disk kernel cache: two processes compiling into an empty cache at once both succeed and
agree, and a later process loads what they wrote."""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import numpy as np
    import fastmlp as fm
    model = fm.MLP(20, [fm.Dense(16, "relu", batchnorm=True, dropout=0.1), fm.Dense(3)], seed=0)
    X = np.random.default_rng(0).normal(size=(40, 20)).astype(np.float32)
    y = np.arange(40) % 3
    fm.Trainer(model, fm.Adam(1e-2), batch_size=16, epochs=2, progress=False).fit(X, y)
    print(model.params["0.W"].tobytes().hex()[:80], model.forward(X).sum())
""")


def test_concurrent_cold_starts_share_the_cache_safely(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [proc.communicate(timeout=600) for proc in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
    assert outputs[0][0] == outputs[1][0]
    assert any(name.endswith(".nbc") for _, _, files in os.walk(tmp_path / "cache") for name in files)
    again = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr
    assert again.stdout == outputs[0][0]
