"""Start-up costs, each measured in a fresh interpreter (asv ``timeraw_``: the returned code runs
in a new process and its whole run time is the result).

- ``timeraw_import``: ``import fastmlp`` (numpy, numba and the kernel modules included).
- ``timeraw_import_and_first_step``: import, build the 40-256-256-10 model and train one batch of
  32 with ``Trainer.fit``; the kernels come from Numba's on-disk cache when it is warm, which is
  what a user sees from the second run of a program on.
- ``timeraw_first_step_cold_compile``: the same with an empty Numba cache directory, so every
  kernel the step needs is compiled from scratch (what the very first run after an install or a
  change of the kernels costs).
"""

FIRST_STEP = """
import numpy as np
import fastmlp as fm
rng = np.random.default_rng(0)
X = rng.standard_normal((32, 40)).astype(np.float32)
y = rng.integers(0, 10, size=32)
model = fm.MLP(40, [fm.Dense(256, activation="relu"), fm.Dense(256, activation="relu"),
                    fm.Dense(10)], loss="cross_entropy", dtype="float32", seed=0)
trainer = fm.Trainer(model, fm.Adam(lr=1e-3), batch_size=32, epochs=1, shuffle=False,
                     progress=False)
trainer.fit(X, y)
"""

# untimed set-up code run in the same fresh process before the timed code: an empty Numba cache
# directory, removed when the timing is over
COLD_CACHE = """
import os, tempfile
cache_dir = tempfile.TemporaryDirectory(prefix="fastmlp-bench-numba-cache-")
os.environ["NUMBA_CACHE_DIR"] = cache_dir.name
"""


class Startup:
    timeout = 600
    repeat = (1, 5, 30.0)

    def timeraw_import(self):
        return "import fastmlp"

    def timeraw_import_and_first_step(self):
        return FIRST_STEP


class ColdCompile:
    timeout = 600
    repeat = (1, 2, 60.0)

    def timeraw_first_step_cold_compile(self):
        return FIRST_STEP, COLD_CACHE
