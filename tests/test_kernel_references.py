"""Reference counts across the CPU kernels.

The kernels that only other kernels call are compiled without Numba's reference counting
(``_nrt=False`` in ``kernels/config.py``): the views they make of the caller's arrays cost no
atomic operations. That is sound while none of them hands an array back to a caller (a caller that
counts references would release a reference it was never given), and while none allocates.
"""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fastmlp.kernels as kernels

KERNELS = Path(kernels.__file__).parent
UNCOUNTED = {"JIT_INTERNAL", "JIT_REDUCTION_INTERNAL"}
# parameters that are integers, which an uncounted kernel may hand back
INTEGER_RESULTS = {"blocks.py:split_block": {"rows", "cols"}, "team.py:relax": {"spins"}}


def uncounted_kernels():
    """{"file:function": function node} of every function decorated ``@njit(**JIT_INTERNAL)`` or
    the reduction variant, across the CPU kernels."""
    found = {}
    for path in sorted([*KERNELS.glob("*.py"), *(KERNELS / "cpu").glob("*.py")]):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef):
                continue
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Call) and any(
                        keyword.arg is None and isinstance(keyword.value, ast.Name)
                        and keyword.value.id in UNCOUNTED for keyword in decorator.keywords):
                    found.setdefault(f"{path.name}:{node.name}", node)
    return found


UNCOUNTED_KERNELS = uncounted_kernels()


def test_there_are_uncounted_kernels():
    assert len(UNCOUNTED_KERNELS) > 30


@pytest.mark.parametrize("name", sorted(UNCOUNTED_KERNELS))
def test_uncounted_kernel_returns_no_argument(name):
    """Numba refuses an uncounted kernel that returns an array it made; returning an array it was
    given compiles, and would be released once too often by a caller that counts."""
    node = UNCOUNTED_KERNELS[name]
    parameters = {a.arg for a in node.args.args}
    for returned in ast.walk(node):
        if not isinstance(returned, ast.Return) or returned.value is None:
            continue
        value = returned.value
        items = value.elts if isinstance(value, ast.Tuple) else [value]
        handed_back = ({item.id for item in items if isinstance(item, ast.Name)} & parameters
                       - INTEGER_RESULTS.get(name, set()))
        assert not handed_back, f"{name} returns its argument {sorted(handed_back)}"


SCRIPT = r"""
import gc, json, sys
import numpy as np
import fastmlp as fm
from numba.core.runtime import rtsys

rng = np.random.default_rng(0)
X = rng.standard_normal((96, 12)).astype(np.float32)
y = rng.integers(0, 4, 96)

def models():
    yield fm.MLP(12, [fm.Dense(24, "relu", dropout=0.2), fm.Dense(4)], seed=0)
    yield fm.MLP(12, [fm.Dense(24, "relu", batchnorm=True), fm.Dense(4)], seed=1)
    yield fm.MLP(12, [fm.Dense(24, "tanh"), fm.Dense(4)], seed=2, dtype="mixed_bfloat16")

def work(threads):
    with fm.num_threads(threads):
        for model in models():
            trainer = fm.Trainer(model, fm.Adam(1e-2), batch_size=16, epochs=2, seed=0,
                                 progress=False, clip_norm=1.0)
            trainer.fit(X, y)
            model.predict(X)
            model.loss_and_grad(X, y)
            counts = [sys.getrefcount(v) for v in model.params.values()]
            trainer.fit(X, y)
            model.predict(X)
            model.loss_and_grad(X, y)
            assert counts == [sys.getrefcount(v) for v in model.params.values()], "params"

work(1)
work(2)
gc.collect()
before = rtsys.get_allocation_stats()
work(1)
work(2)
gc.collect()
after = rtsys.get_allocation_stats()
print(json.dumps(dict(before=before._asdict(), after=after._asdict())))
"""


def test_training_leaves_every_reference_count_as_it_found_it(tmp_path):
    """Fits, predictions and gradients on one and two threads (dropout, batchnorm, clipping,
    mixed precision) leave the parameters' reference counts and Numba's live memory blocks as
    they were: no reference taken and never given back."""
    env = dict(os.environ, NUMBA_NRT_STATS="1")
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    stats = json.loads(done.stdout.strip().splitlines()[-1])
    before, after = stats["before"], stats["after"]
    assert after["mi_alloc"] > before["mi_alloc"]  # the second round made blocks ...
    live_before = before["mi_alloc"] - before["mi_free"]
    assert after["mi_alloc"] - after["mi_free"] == live_before  # ... and released every one
    assert after["alloc"] - after["free"] == before["alloc"] - before["free"]
