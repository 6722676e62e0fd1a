"""Seconds from a fresh interpreter to the end of the first epoch, with the kernel cache warm and
cold, against the start-up of a trivial cached Numba function.

Each measurement is a new Python process (``python -c``), timed from the first line of its code:

- ``warm``: ``import fastmlp``, a 784-512-512-10 ReLU model, one epoch of 1,024 rows in batches of
  128 (Adam, float32), with the kernels already in the on-disk cache;
- ``numba floor``: ``import numpy, numba`` and the first call of a one-line ``@njit(cache=True)``
  function already in its cache, which is what any Numba program pays before its first cached
  kernel runs (Numba sets up its compiler target, and imports ``scipy.linalg``, once per process);
- ``cold``: ``warm`` with ``NUMBA_CACHE_DIR`` an empty folder, so every kernel is compiled.

    python scripts/startup_time.py              # 5 warm runs, 5 floor runs, 1 cold run
    python scripts/startup_time.py --runs 3 --no-cold
    python scripts/startup_time.py --quick      # one warm and one floor run
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap

FIRST_EPOCH = """
import time; began = time.perf_counter()
import numpy as np
import fastmlp as fm
rng = np.random.default_rng(0)
X = rng.normal(size=(1024, 784)).astype(np.float32); y = rng.integers(0, 10, 1024)
model = fm.MLP(784, [fm.Dense(512, "relu"), fm.Dense(512, "relu"), fm.Dense(10)], seed=0)
fm.Trainer(model, fm.Adam(1e-3), batch_size=128, epochs=1, progress=False).fit(X, y)
print(time.perf_counter() - began)
"""

NUMBA_FLOOR = """
import time; began = time.perf_counter()
import numpy, numba
from trivial_kernel import add
add(1.0, 2.0)
print(time.perf_counter() - began)
"""

TRIVIAL_KERNEL = """
import numba

@numba.njit(cache=True)
def add(a, b):
    return a + b
"""


def seconds(code, env=None, cwd=None):
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=1800)
    if proc.returncode != 0:
        sys.exit(f"a measurement failed:\n{proc.stdout}\n{proc.stderr}")
    return float(proc.stdout.strip().splitlines()[-1])


def summary(name, values):
    return (f"| {name} | {len(values)} | {min(values):.2f} | {statistics.median(values):.2f} | "
            f"{max(values):.2f} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="warm and floor runs (default 5)")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold-cache run")
    parser.add_argument("--quick", action="store_true", help="--runs 1 --no-cold, for CI")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.no_cold = 1, True
    rows = []
    seconds(FIRST_EPOCH)  # fills the kernel cache (and writes the .pyc files) if needed
    rows.append(summary("warm: import fastmlp to the end of the first epoch",
                        [seconds(FIRST_EPOCH) for _ in range(args.runs)]))
    with tempfile.TemporaryDirectory(prefix="fastmlp-startup-") as folder:
        with open(os.path.join(folder, "trivial_kernel.py"), "w") as module:
            module.write(textwrap.dedent(TRIVIAL_KERNEL))
        env = dict(os.environ, NUMBA_CACHE_DIR=os.path.join(folder, "cache"))
        seconds(NUMBA_FLOOR, env, folder)
        rows.append(summary("numba floor: a trivial cached @njit function's first call",
                            [seconds(NUMBA_FLOOR, env, folder) for _ in range(args.runs)]))
        if not args.no_cold:
            env = dict(os.environ, NUMBA_CACHE_DIR=os.path.join(folder, "cold"))
            rows.append(summary("cold: the same with an empty kernel cache",
                                [seconds(FIRST_EPOCH, env)]))
    print("| start-up | runs | min s | median s | max s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
