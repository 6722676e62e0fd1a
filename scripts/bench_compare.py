#!/usr/bin/env python
"""Training speed of fastmlp against PyTorch (eager and torch.compile), JAX (jit + optax),
scikit-learn's MLPClassifier and a GEMM-only floor, on the same networks and data.

The model is the same everywhere: ReLU hidden layers, a linear output layer, softmax
cross-entropy on integer labels, Adam(lr=1e-3), float32 by default (``--dtype float64`` to
change), inputs drawn from N(0, 1) and labels uniform over the classes.

What is timed
-------------
step
    One training step on one fixed batch: forward, loss, backward, Adam update.

    - fastmlp: ``Trainer.fit`` for one epoch over a data set of exactly one batch (no shuffling):
      one compiled call for the step, plus what ``fit`` does once per call (input checks,
      history), which whole epochs spread over their steps. "fastmlp (public API)" does the step through
      ``MLP.loss_and_grad`` and ``Adam.step(model.params, grads)``.
    - PyTorch eager: ``zero_grad(set_to_none=True)``, ``cross_entropy(model(x), y)``,
      ``backward()``, ``Adam.step()`` with torch's default Adam implementation.
    - torch.compile: the same, with the forward + loss compiled by ``torch.compile`` (the backward
      then comes from AOTAutograd) and ``optimizer.step`` compiled too (falls back to the eager
      step, with a note, where compiling it fails).
    - JAX: one ``jax.jit``-compiled function (value_and_grad + optax.adam update + apply_updates)
      with the parameters and optimizer state donated; the result is waited for
      (``block_until_ready``) at the end of each timed run of steps.
    - JAX scan: JAX in its strongest form for training: a whole epoch is one jitted
      ``lax.scan`` over the steps, each gathering its batch rows from the data set inside the
      compiled function (no step column: it has no step of its own).
    - scikit-learn: one ``MLPClassifier.partial_fit(X_batch, y_batch)`` call (solver "adam",
      alpha=0, batch_size = the batch), which makes exactly one Adam step on that batch; the time
      includes its input validation and bookkeeping, as a user pays it.
    - GEMM-only floor: the step's matrix products alone through NumPy (``np.dot`` with outputs
      preallocated): per layer x·W forward; dY·Wᵀ and xᵀ·dY backward, without dX for the first
      layer. No bias, activation, loss or optimizer work at all.

epoch
    ``--epoch-steps`` steps (default 50) over a fixed synthetic data set of that many batches,
    in order, no shuffling, each framework's ordinary training loop: fastmlp ``Trainer.fit`` for
    one epoch (shuffle=False; includes the Trainer's accuracy count),
    PyTorch/JAX a Python loop over pre-made batches, JAX scan one compiled call per epoch,
    scikit-learn ``partial_fit`` per batch, the floor its matrix products for every batch. The
    summary table is the time per step inside these epochs.

recipe (``--recipe``)
    The MNIST-1D paper's MLP recipe end to end: 40-100-100-10 ReLU, Adam lr 1e-2, batch 100,
    150 epochs over 4,000 rows (6,000 steps), shuffled every epoch, each framework's ordinary
    training loop (fastmlp ``Trainer.fit``, a PyTorch eager loop, JAX scan); ``--recipe-runs``
    runs (default 3) after a warm-up run, each reported, with PyTorch eager ÷ fastmlp per run.

The GEMM floor's products use NumPy's BLAS at 1 and at 2 threads (threadpoolctl); the faster of
the two is the floor.

Timing: every framework runs in its own fresh worker process (so thread pools and compiled
caches of one library cannot slow down another), is warmed up (compilation included) and then
timed with ``time.perf_counter``. A step sample is the mean of k consecutive steps, with k chosen
so that a sample lasts at least ``--min-time`` seconds; the table shows the median over
``--repeats`` samples. An epoch sample is one epoch; the median over ``--epoch-repeats``.

Thread settings are not changed: each library runs with the threads it picks by itself; the
report lists what it uses (torch.get_num_threads, numba.get_num_threads, and the BLAS/OpenMP
pools that threadpoolctl sees, with the kernel each BLAS chose, when it is installed). The
workers run without ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` (settings that force an
OpenBLAS kernel a user's machine would not run), unless ``--keep-blas-env`` is given. ``--threads N`` is an explicit opt-in that
forces every library to N threads (through the workers' environment) and pins each worker to N
cores (sched_setaffinity, which XLA's pools follow), for comparisons on a
machine that other processes share: there, pools of spinning BLAS/OpenMP threads can make small
steps orders of magnitude slower, and a single thread per library gives steadier numbers.

Examples::

    python scripts/bench_compare.py                       # all configurations, all frameworks
    python scripts/bench_compare.py --quick               # smallest configuration, few repeats
    python scripts/bench_compare.py --configs small,medium --repeats 9 --output bench.md
    python scripts/bench_compare.py --configs 100-64-3:16 --frameworks fastmlp,torch
    python scripts/bench_compare.py --threads 1           # every library single-threaded
    python scripts/bench_compare.py --recipe              # MNIST-1D recipe: fastmlp, PyTorch, JAX
    python scripts/bench_compare.py --inference           # predict latency vs onnxruntime
    python scripts/bench_compare.py --bf16 --configs medium,large   # + mixed_bfloat16 rows
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback

CONFIGS = {
    "small": ((40, 256, 256, 10), 32),
    "medium": ((784, 512, 512, 10), 128),
    "large": ((1024, 4096, 4096, 10), 512),
}

# name -> (label in the tables, module that must be importable)
FRAMEWORKS = {
    "floor": ("GEMM-only floor (NumPy)", "numpy"),
    "fastmlp": ("fastmlp", "fastmlp"),
    "fastmlp-api": ("fastmlp (public API)", "fastmlp"),
    "torch": ("PyTorch eager", "torch"),
    "torch-compile": ("torch.compile", "torch"),
    "jax": ("JAX jit + optax", "jax"),
    "jax-scan": ("JAX scan (epoch as one jit)", "jax"),
    "sklearn": ("scikit-learn MLPClassifier", "sklearn"),
    "fastmlp-bf16": ("fastmlp mixed_bfloat16", "fastmlp"),
    "torch-bf16": ("PyTorch bf16 autocast", "torch"),
}
# the mixed-precision rows (bfloat16 products, float32 state) run only when asked for (--bf16)
BF16_FRAMEWORKS = ("fastmlp-bf16", "torch-bf16")
DEFAULT_FRAMEWORKS = tuple(name for name in FRAMEWORKS if name not in BF16_FRAMEWORKS)
EXTRA_MODULES = {"jax": ("optax",), "jax-scan": ("optax",)}
# the OpenBLAS settings the workers run without (see the module docstring)
BLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
RECIPE = {"sizes": (40, 100, 100, 10), "batch": 100, "rows": 4000, "epochs": 150, "lr": 1e-2}
PACKAGES = ("fastmlp", "numpy", "numba", "scipy", "torch", "jax", "jaxlib", "optax",
            "scikit-learn", "threadpoolctl")
RESULT_MARKER = "@@bench_compare_result@@"
LEARNING_RATE = 1e-3


# ------------------------------------------------------------------------------ configurations

def parse_configs(text):
    """'small,medium' or '40-256-256-10:32' specs -> ordered {label: (sizes, batch)}."""
    out = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if item in CONFIGS:
            sizes, batch = CONFIGS[item]
        else:
            try:
                sizes_text, batch_text = item.split(":")
                sizes = tuple(int(v) for v in sizes_text.split("-"))
                batch = int(batch_text)
            except ValueError:
                raise SystemExit(f"bad configuration {item!r}: use one of {', '.join(CONFIGS)} "
                                 f"or SIZES:BATCH such as 40-256-256-10:32") from None
            if len(sizes) < 2 or min(sizes) < 1 or batch < 2 or sizes[-1] < 2:
                raise SystemExit(f"bad configuration {item!r}: need at least an input and an "
                                 f"output size (>= 2 classes) and a batch of >= 2")
        out[config_label(sizes, batch)] = (tuple(sizes), batch)
    if not out:
        raise SystemExit("no configuration given")
    return out


def config_label(sizes, batch):
    return f"{'-'.join(map(str, sizes))}, batch {batch}"


def make_data(sizes, rows, dtype, seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], size=rows).astype(np.int64)
    return X, y


# ------------------------------------------------------------------------------ timing

def time_steps(step, sync, repeats, min_time, warmup):
    """Median-ready samples (seconds per step): each sample is the mean of k back-to-back steps."""
    for _ in range(warmup):
        step()
    sync()
    began = time.perf_counter()
    step()
    sync()
    once = max(time.perf_counter() - began, 1e-7)
    inner = int(min(10_000, max(1, min_time / once)))
    samples = []
    for _ in range(repeats):
        began = time.perf_counter()
        for _ in range(inner):
            step()
        sync()
        samples.append((time.perf_counter() - began) / inner)
    return samples, inner


def time_epochs(epoch, sync, repeats, estimate_s, long_epoch_s):
    """Seconds per epoch: a warm-up epoch, then ``repeats`` timed ones; a single timed epoch and no
    warm-up when one epoch is estimated to last more than ``long_epoch_s`` (the step timings have
    already run the same compiled code by then)."""
    if estimate_s > long_epoch_s:
        repeats = 1
    else:
        epoch()
        sync()
    samples = []
    for _ in range(repeats):
        began = time.perf_counter()
        epoch()
        sync()
        samples.append(time.perf_counter() - began)
    return samples


def _nothing():
    return None


# ------------------------------------------------------------------------------ frameworks
# Each builder returns (step, epoch, sync, notes) for one configuration; ``step`` trains on one
# fixed batch, ``epoch`` over the ``n_batches`` batches of (X, y) in order.

def build_floor(sizes, batch, X, y, dtype, n_batches):
    import numpy as np
    rng = np.random.default_rng(1)
    n_layers = len(sizes) - 1
    W = [rng.standard_normal((sizes[i], sizes[i + 1])).astype(dtype) for i in range(n_layers)]
    Z = [np.empty((batch, sizes[i + 1]), dtype=dtype) for i in range(n_layers)]
    dZ = [rng.standard_normal((batch, sizes[i + 1])).astype(dtype) for i in range(n_layers)]
    dW = [np.empty_like(w) for w in W]
    dH = [np.empty((batch, sizes[i]), dtype=dtype) for i in range(n_layers)]
    batches = [np.ascontiguousarray(X[i * batch:(i + 1) * batch]) for i in range(n_batches)]

    def gemms(xb):
        h = xb
        for i in range(n_layers):
            np.dot(h, W[i], out=Z[i])
            h = Z[i]
        for i in range(n_layers - 1, -1, -1):
            inp = xb if i == 0 else Z[i - 1]
            np.dot(inp.T, dZ[i], out=dW[i])
            if i > 0:
                np.dot(dZ[i], W[i].T, out=dH[i])

    def epoch():
        for xb in batches:
            gemms(xb)

    flops = sum(2 * batch * sizes[i] * sizes[i + 1] * (3 if i > 0 else 2) for i in range(n_layers))
    return (lambda: gemms(batches[0])), epoch, _nothing, [
        f"floor: {3 * n_layers - 1} matrix products per step ({config_label(sizes, batch)}), "
        f"{flops / 1e6:.1f} MFLOP, best of NumPy's BLAS at 1 and 2 threads"]


def _fastmlp_model(sizes, dtype):
    import fastmlp as fm
    layers = [fm.Dense(units, activation="relu") for units in sizes[1:-1]]
    layers.append(fm.Dense(sizes[-1]))
    return fm.MLP(sizes[0], layers, loss="cross_entropy", dtype=dtype, seed=0)


def build_fastmlp(sizes, batch, X, y, dtype, n_batches):
    import fastmlp as fm
    Xb, yb = X[:batch], y[:batch]
    step_trainer = fm.Trainer(_fastmlp_model(sizes, dtype), fm.Adam(lr=LEARNING_RATE),
                              batch_size=batch, epochs=0, shuffle=False, progress=False)

    def step():
        step_trainer.epochs += 1
        step_trainer.fit(Xb, yb)
        if step_trainer.stop_reason is not None:
            raise FloatingPointError("non-finite loss in the fastmlp step")

    epoch_trainer = fm.Trainer(_fastmlp_model(sizes, dtype), fm.Adam(lr=LEARNING_RATE),
                               batch_size=batch, epochs=0, shuffle=False, progress=False)

    def epoch():
        epoch_trainer.epochs += 1
        epoch_trainer.fit(X, y)

    return step, epoch, _nothing, []


def build_fastmlp_api(sizes, batch, X, y, dtype, n_batches):
    import fastmlp as fm
    Xb, yb = X[:batch], y[:batch]
    model = _fastmlp_model(sizes, dtype)
    opt = fm.Adam(lr=LEARNING_RATE)

    def one(xb, lb):
        _, grads = model.loss_and_grad(xb, lb)
        opt.step(model.params, grads)

    batches = [(X[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch])
               for i in range(n_batches)]

    def epoch():
        for xb, lb in batches:
            one(xb, lb)

    return (lambda: one(Xb, yb)), epoch, _nothing, [
        "fastmlp (public API): MLP.loss_and_grad + Adam.step(model.params, grads) per batch"]


def _require_float32(dtype):
    if dtype != "float32":
        raise ValueError("the mixed_bfloat16 rows need --dtype float32")


def build_fastmlp_bf16(sizes, batch, X, y, dtype, n_batches):
    """fastmlp under ``dtype="mixed_bfloat16"`` (float32 data and state, bfloat16 products)."""
    _require_float32(dtype)
    step, epoch, sync, notes = build_fastmlp(sizes, batch, X, y, "mixed_bfloat16", n_batches)
    return step, epoch, sync, notes + [
        "fastmlp mixed_bfloat16: MLP(dtype='mixed_bfloat16'), the Trainer as for fastmlp"]


def build_torch_bf16(sizes, batch, X, y, dtype, n_batches):
    """PyTorch eager with float32 parameters under ``torch.autocast("cpu", torch.bfloat16)``."""
    _require_float32(dtype)
    step, epoch, sync, _ = build_torch(sizes, batch, X, y, dtype, n_batches, autocast=True)
    return step, epoch, sync, [
        "PyTorch bf16 autocast: float32 model and Adam, forward under "
        "torch.autocast('cpu', dtype=torch.bfloat16)"]


def _torch_setup(sizes, batch, X, y, dtype):
    import torch
    torch.manual_seed(0)
    tdtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers).to(tdtype)
    opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    n_batches = X.shape[0] // batch
    batches = [(Xt[i * batch:(i + 1) * batch], yt[i * batch:(i + 1) * batch])
               for i in range(n_batches)]
    return torch, model, opt, batches


def build_torch(sizes, batch, X, y, dtype, n_batches, autocast=False):
    """PyTorch eager; ``autocast``: the forward under ``torch.autocast("cpu", torch.bfloat16)``."""
    import contextlib
    torch, model, opt, batches = _torch_setup(sizes, batch, X, y, dtype)
    F = torch.nn.functional

    def precision():
        if autocast:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def one(xb, yb):
        opt.zero_grad(set_to_none=True)
        with precision():
            loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()

    def epoch():
        for xb, yb in batches:
            one(xb, yb)

    return (lambda: one(*batches[0])), epoch, _nothing, []


def build_torch_compile(sizes, batch, X, y, dtype, n_batches):
    torch, model, opt, batches = _torch_setup(sizes, batch, X, y, dtype)
    F = torch.nn.functional
    notes = []
    forward_loss = torch.compile(lambda xb, yb: F.cross_entropy(model(xb), yb), dynamic=False)

    @torch.compile(fullgraph=False, dynamic=False)
    def compiled_opt_step():
        opt.step()

    optimizer_step = compiled_opt_step

    def one(xb, yb):
        opt.zero_grad(set_to_none=True)
        loss = forward_loss(xb, yb)
        loss.backward()
        optimizer_step()

    try:
        one(*batches[0])
    except Exception as exc:  # noqa: BLE001 - report and fall back to the eager optimizer
        optimizer_step = opt.step
        notes.append(f"torch.compile: compiling optimizer.step failed "
                     f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); eager step used")
        one(*batches[0])

    def epoch():
        for xb, yb in batches:
            one(xb, yb)

    return (lambda: one(*batches[0])), epoch, _nothing, notes


def build_jax(sizes, batch, X, y, dtype, n_batches):
    import warnings

    import jax
    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import optax

    key = jax.random.PRNGKey(0)
    params = []
    for i in range(len(sizes) - 1):
        key, sub = jax.random.split(key)
        W = jax.random.normal(sub, (sizes[i], sizes[i + 1]), dtype=dtype) * jnp.sqrt(
            2.0 / sizes[i]).astype(dtype)
        params.append((W, jnp.zeros(sizes[i + 1], dtype=dtype)))

    def forward(params, x):
        for W, b in params[:-1]:
            x = jax.nn.relu(x @ W + b)
        W, b = params[-1]
        return x @ W + b

    def loss_fn(params, x, labels):
        logits = forward(params, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    tx = optax.adam(LEARNING_RATE)

    def train_step(params, opt_state, x, labels):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, labels)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    train_step = jax.jit(train_step, donate_argnums=(0, 1))
    label_dtype = jnp.int64 if dtype == "float64" else jnp.int32
    batches = [(jax.device_put(X[i * batch:(i + 1) * batch]),
                jax.device_put(y[i * batch:(i + 1) * batch].astype(label_dtype)))
               for i in range(n_batches)]
    state = {"params": params, "opt": tx.init(params), "loss": None}
    warnings.filterwarnings("ignore", message=".*donated.*")

    def one(xb, lb):
        state["params"], state["opt"], state["loss"] = train_step(state["params"], state["opt"],
                                                                  xb, lb)

    def epoch():
        for xb, lb in batches:
            one(xb, lb)

    def sync():
        jax.block_until_ready((state["params"], state["loss"]))

    return (lambda: one(*batches[0])), epoch, sync, []


def build_jax_scan(sizes, batch, X, y, dtype, n_batches):
    import jax
    import numpy as np
    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import optax
    from jax import lax

    params = _jax_params(jax, jnp, sizes, dtype)
    tx = optax.adam(LEARNING_RATE)
    epoch_fn = _jax_scan_epoch(jax, jnp, lax, optax, tx, batch, n_batches)
    label_dtype = jnp.int64 if dtype == "float64" else jnp.int32
    Xd, yd = jax.device_put(X), jax.device_put(y.astype(label_dtype))
    order = jax.device_put(np.arange(X.shape[0], dtype=label_dtype))
    state = {"params": params, "opt": tx.init(params), "loss": None}

    def epoch():
        state["params"], state["opt"], state["loss"] = epoch_fn(state["params"], state["opt"],
                                                                Xd, yd, order)

    def sync():
        jax.block_until_ready((state["params"], state["loss"]))

    return None, epoch, sync, ["JAX scan: the epoch (gather, forward, backward, Adam) is one "
                               "jitted lax.scan; timed per epoch only"]


def _jax_params(jax, jnp, sizes, dtype):
    key = jax.random.PRNGKey(0)
    params = []
    for i in range(len(sizes) - 1):
        key, sub = jax.random.split(key)
        W = jax.random.normal(sub, (sizes[i], sizes[i + 1]), dtype=dtype) * jnp.sqrt(
            2.0 / sizes[i]).astype(dtype)
        params.append((W, jnp.zeros(sizes[i + 1], dtype=dtype)))
    return params


def _jax_scan_epoch(jax, jnp, lax, optax, tx, batch, n_batches):
    """A jitted (params, opt_state, X, y, order) -> (params, opt_state, mean loss) epoch."""
    def forward(params, x):
        for W, b in params[:-1]:
            x = jax.nn.relu(x @ W + b)
        W, b = params[-1]
        return x @ W + b

    def loss_fn(params, x, labels):
        return optax.softmax_cross_entropy_with_integer_labels(forward(params, x), labels).mean()

    def epoch(params, opt_state, X, y, order):
        def body(carry, i):
            params, opt_state = carry
            rows = lax.dynamic_slice(order, (i * batch,), (batch,))
            loss, grads = jax.value_and_grad(loss_fn)(params, jnp.take(X, rows, axis=0),
                                                      jnp.take(y, rows, axis=0))
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, opt_state), losses = lax.scan(body, (params, opt_state), jnp.arange(n_batches))
        return params, opt_state, losses.mean()

    return jax.jit(epoch, donate_argnums=(0, 1))


def build_sklearn(sizes, batch, X, y, dtype, n_batches):
    import warnings

    import numpy as np
    from sklearn.neural_network import MLPClassifier
    warnings.filterwarnings("ignore", category=UserWarning)
    classes = np.arange(sizes[-1])
    clf = MLPClassifier(hidden_layer_sizes=tuple(sizes[1:-1]), activation="relu", solver="adam",
                        alpha=0.0, batch_size=batch, learning_rate_init=LEARNING_RATE,
                        shuffle=False, random_state=0)
    batches = [(X[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch])
               for i in range(n_batches)]
    clf.partial_fit(*batches[0], classes=classes)

    def epoch():
        for xb, lb in batches:
            clf.partial_fit(xb, lb)

    notes = [f"scikit-learn: one partial_fit call on one batch = one Adam step; weights in "
             f"{clf.coefs_[0].dtype}"]
    return (lambda: clf.partial_fit(*batches[0])), epoch, _nothing, notes


BUILDERS = {
    "floor": build_floor,
    "fastmlp": build_fastmlp,
    "fastmlp-api": build_fastmlp_api,
    "torch": build_torch,
    "torch-compile": build_torch_compile,
    "jax": build_jax,
    "jax-scan": build_jax_scan,
    "sklearn": build_sklearn,
    "fastmlp-bf16": build_fastmlp_bf16,
    "torch-bf16": build_torch_bf16,
}


# ------------------------------------------------------------------------------ environment

def package_versions(names=PACKAGES):
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


def load_average():
    try:
        return os.getloadavg()
    except (AttributeError, OSError):
        return None


def thread_report(framework):
    """What the libraries loaded in this worker use, as they chose it themselves."""
    parts = []
    if framework.startswith("torch"):
        import torch
        parts.append(f"torch intra-op {torch.get_num_threads()}, "
                     f"inter-op {torch.get_num_interop_threads()}")
    if framework.startswith("fastmlp"):
        import fastmlp
        if hasattr(fastmlp, "get_num_threads"):
            parts.append(f"fastmlp.get_num_threads() {fastmlp.get_num_threads()}")
    if framework.startswith("fastmlp") or "numba" in sys.modules:
        import numba
        parts.append(f"numba {numba.get_num_threads()}")
    if framework.startswith("jax"):
        import jax
        parts.append(f"jax devices {[d.platform for d in jax.devices()]} "
                     f"(XLA CPU picks its own pool; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r})")
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        parts.append("threadpoolctl not installed: BLAS/OpenMP pools not inspected")
    else:
        for pool in threadpool_info():
            lib = os.path.basename(pool.get("filepath", "")).split(".so")[0]
            version = pool.get("version") or ""
            kernel = pool.get("architecture")
            parts.append(f"{pool['internal_api']} {version} ({lib}) {pool['num_threads']}"
                         f"{f' threads, kernel {kernel}' if kernel else ' threads'}".replace(
                             "  ", " "))
    env = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                      "NUMBA_NUM_THREADS") if k in os.environ}
    if env:
        parts.append(f"env {env}")
    return "; ".join(parts)


# ------------------------------------------------------------------------------ worker

def pin_to_cores(n):
    """Restrict this process (and the threads it starts later) to n of its allowed cores, so that
    libraries that size their pools from the visible cores (XLA) follow --threads too."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    chosen = set(allowed[:n])
    os.sched_setaffinity(0, chosen)
    return sorted(chosen)


def run_worker(args):
    framework = args.worker
    pinned = pin_to_cores(args.threads) if args.threads is not None else None
    result = {"framework": framework, "available": True, "notes": [], "configs": {},
              "threads": ""}
    try:
        __import__(FRAMEWORKS[framework][1])
        for extra in EXTRA_MODULES.get(framework, ()):
            __import__(extra)
    except Exception as exc:  # noqa: BLE001 - any import failure means "skip with a note"
        result["available"] = False
        result["notes"].append(f"{FRAMEWORKS[framework][0]} not importable: "
                               f"{type(exc).__name__}: {exc}")
        print(RESULT_MARKER + json.dumps(result), flush=True)
        return 0
    if args.threads is not None and framework.startswith("torch"):
        import torch
        torch.set_num_threads(args.threads)
    if args.recipe:
        return run_recipe_worker(framework, args, result)
    configs = parse_configs(args.configs)
    for label, (sizes, batch) in configs.items():
        print(f"[{framework}] {label} ...", file=sys.stderr, flush=True)
        entry = {}
        try:
            X, y = make_data(sizes, batch * args.epoch_steps, args.dtype)
            notes = []
            for limit in (floor_thread_limits() if framework == "floor" else (None,)):
                with thread_limit(limit):
                    measured, notes = measure(framework, sizes, batch, X, y, args)
                better = ("epoch_s" in measured and "epoch_s" in entry
                          and min(measured["epoch_s"]) < min(entry["epoch_s"]))
                if not entry or better:
                    entry = dict(measured, blas_threads=limit)
            for note in notes:
                if note not in result["notes"]:
                    result["notes"].append(note)
        except Exception as exc:  # noqa: BLE001 - one failing configuration must not stop the rest
            entry["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            traceback.print_exc(file=sys.stderr)
        result["configs"][label] = entry
        if not result["threads"]:
            try:
                result["threads"] = thread_report(framework)
            except Exception as exc:  # noqa: BLE001
                result["threads"] = f"unknown ({exc})"
            if pinned is not None:
                result["threads"] += f"; process pinned to cores {pinned}"
    print(RESULT_MARKER + json.dumps(result), flush=True)
    return 0


def recipe_fastmlp(X, y):
    import fastmlp as fm

    def run():
        sizes = RECIPE["sizes"]
        model = fm.MLP(sizes[0], [fm.Dense(u, "relu") for u in sizes[1:-1]] + [fm.Dense(sizes[-1])],
                       seed=0)
        fm.Trainer(model, fm.Adam(RECIPE["lr"]), batch_size=RECIPE["batch"],
                   epochs=RECIPE["epochs"], seed=0, progress=False).fit(X, y)
    return run, _nothing


def recipe_torch(X, y):
    import torch
    sizes = RECIPE["sizes"]
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    F = torch.nn.functional

    def run():
        torch.manual_seed(0)
        layers = []
        for i in range(len(sizes) - 1):
            layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
            if i < len(sizes) - 2:
                layers.append(torch.nn.ReLU())
        model = torch.nn.Sequential(*layers)
        opt = torch.optim.Adam(model.parameters(), lr=RECIPE["lr"])
        generator = torch.Generator().manual_seed(0)
        for _ in range(RECIPE["epochs"]):
            order = torch.randperm(X.shape[0], generator=generator)
            for start in range(0, X.shape[0], RECIPE["batch"]):
                rows = order[start:start + RECIPE["batch"]]
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(Xt[rows]), yt[rows]).backward()
                opt.step()
    return run, _nothing


def recipe_jax_scan(X, y):
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from jax import lax
    batch, sizes = RECIPE["batch"], RECIPE["sizes"]
    tx = optax.adam(RECIPE["lr"])
    epoch_fn = _jax_scan_epoch(jax, jnp, lax, optax, tx, batch, X.shape[0] // batch)
    Xd, yd = jax.device_put(X), jax.device_put(y.astype(np.int32))
    state = {}

    def run():
        params = _jax_params(jax, jnp, sizes, "float32")
        opt_state = tx.init(params)
        rng = np.random.default_rng(0)
        for _ in range(RECIPE["epochs"]):
            order = jax.device_put(rng.permutation(X.shape[0]).astype(np.int32))
            params, opt_state, state["loss"] = epoch_fn(params, opt_state, Xd, yd, order)
        state["params"] = params

    def sync():
        jax.block_until_ready((state["params"], state["loss"]))
    return run, sync


RECIPE_BUILDERS = {"fastmlp": recipe_fastmlp, "torch": recipe_torch, "jax-scan": recipe_jax_scan}


def run_recipe_worker(framework, args, result):
    """Time the MNIST-1D recipe (RECIPE) ``args.recipe_runs`` times after a warm-up run."""
    if framework not in RECIPE_BUILDERS:
        result["notes"].append(f"{FRAMEWORKS[framework][0]}: no recipe runner")
        print(RESULT_MARKER + json.dumps(result), flush=True)
        return 0
    X, y = make_data(RECIPE["sizes"], RECIPE["rows"], "float32")
    run, sync = RECIPE_BUILDERS[framework](X, y)
    run()
    sync()
    seconds = []
    for _ in range(args.recipe_runs):
        began = time.perf_counter()
        run()
        sync()
        seconds.append(time.perf_counter() - began)
    result["recipe_s"] = seconds
    result["threads"] = thread_report(framework)
    print(RESULT_MARKER + json.dumps(result), flush=True)
    return 0


def render_recipe(results, args, started, wall_s):
    sizes = "-".join(map(str, RECIPE["sizes"]))
    steps = RECIPE["epochs"] * RECIPE["rows"] // RECIPE["batch"]
    lines = [f"# MNIST-1D recipe: {sizes} ReLU, Adam lr {RECIPE['lr']:g}, batch {RECIPE['batch']}, "
             f"{RECIPE['epochs']} epochs of {RECIPE['rows']} rows ({steps} steps), float32", ""]
    lines.append(f"- Date: {started.strftime('%Y-%m-%d %H:%M UTC')}; machine: {cpu_model()}, "
                 f"{usable_cores()} usable cores; whole run {wall_s:.0f} s")
    lines.append("- Libraries: " + ", ".join(f"{k} {v}" for k, v in package_versions().items()))
    lines.append("")
    torch_runs = results.get("torch", {}).get("recipe_s")
    ours = results.get("fastmlp", {}).get("recipe_s")
    lines.append("| framework | seconds per run (each run) | µs per step (median) | "
                 "PyTorch eager ÷ this, per run |")
    lines.append("| --- | --- | ---: | --- |")
    for name in ("fastmlp", "torch", "jax-scan"):
        runs = results.get(name, {}).get("recipe_s")
        if not runs:
            continue
        ratios = ("—" if not torch_runs else
                  ", ".join(f"{t / r:.1f}×" for t, r in zip(torch_runs, runs)))
        lines.append(f"| {FRAMEWORKS[name][0]} | {', '.join(f'{r:.2f}' for r in runs)} | "
                     f"{statistics.median(runs) / steps * 1e6:,.0f} | {ratios} |")
    lines.append("")
    if ours and torch_runs:
        lines.append(f"PyTorch eager ÷ fastmlp: worst pair {min(t / r for t, r in zip(torch_runs, ours)):.1f}×, "
                     f"median runs {statistics.median(torch_runs) / statistics.median(ours):.1f}×")
        lines.append("")
    lines.append("## Threads (as each library chose them)")
    lines.append("")
    for name, res in results.items():
        if res.get("threads"):
            lines.append(f"- {FRAMEWORKS[name][0]}: {res['threads']}")
    return "\n".join(lines)


def measure(framework, sizes, batch, X, y, args):
    """({first_step_s, step_s, inner, epoch_s}, notes) of one framework on one configuration."""
    entry = {}
    began = time.perf_counter()
    step, epoch, sync, notes = BUILDERS[framework](sizes, batch, X, y, args.dtype,
                                                   args.epoch_steps)
    if step is None:  # a framework timed per epoch only (JAX scan)
        epoch()
        sync()
        entry["first_step_s"] = time.perf_counter() - began
        once = time.perf_counter()
        epoch()
        sync()
        estimate = time.perf_counter() - once
    else:
        step()  # first step: compilation / tracing / lazy state creation
        sync()
        entry["first_step_s"] = time.perf_counter() - began
        samples, inner = time_steps(step, sync, args.repeats, args.min_time, args.warmup)
        entry["step_s"] = samples
        entry["inner"] = inner
        estimate = statistics.median(samples) * args.epoch_steps
    entry["epoch_s"] = time_epochs(epoch, sync, args.epoch_repeats, estimate, args.long_epoch)
    return entry, notes


def floor_thread_limits():
    """The BLAS thread counts the floor is measured at (1 and 2), or (None,) without
    threadpoolctl."""
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:
        return (None,)
    return (1, 2)


def thread_limit(limit):
    """A context limiting the BLAS threads to ``limit`` (None: unchanged)."""
    import contextlib
    if limit is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits
    return threadpool_limits(limits=limit, user_api="blas")


def worker_environment(args):
    env = dict(os.environ)
    if not args.keep_blas_env:
        for name in BLAS_OVERRIDES:
            env.pop(name, None)
    if args.threads is not None:
        n = str(args.threads)
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                     "NUMBA_NUM_THREADS"):
            env[name] = n
        if args.threads == 1:
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "")
                                + " --xla_cpu_multi_thread_eigen=false").strip()
    return env


def spawn_worker(framework, args):
    command = [sys.executable, os.path.abspath(__file__), "--worker", framework,
               "--configs", args.configs, "--dtype", args.dtype, "--repeats", str(args.repeats),
               "--epoch-repeats", str(args.epoch_repeats), "--epoch-steps", str(args.epoch_steps),
               "--min-time", str(args.min_time), "--warmup", str(args.warmup),
               "--long-epoch", str(args.long_epoch)]
    if args.threads is not None:
        command += ["--threads", str(args.threads)]
    if args.recipe:
        command += ["--recipe", "--recipe-runs", str(args.recipe_runs)]
    try:
        proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=None, text=True,
                              timeout=args.worker_timeout, env=worker_environment(args))
    except subprocess.TimeoutExpired:
        return {"framework": framework, "available": True, "configs": {}, "threads": "",
                "notes": [f"{FRAMEWORKS[framework][0]}: worker timed out after "
                          f"{args.worker_timeout} s"]}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER):])
    return {"framework": framework, "available": True, "configs": {}, "threads": "",
            "notes": [f"{FRAMEWORKS[framework][0]}: worker exited with status {proc.returncode} "
                      f"and no result"]}


# ------------------------------------------------------------------------------ report

def _median_us(entry, key):
    values = entry.get(key) if entry else None
    return statistics.median(values) * 1e6 if values else None


def _min_us(entry, key):
    values = entry.get(key) if entry else None
    return min(values) * 1e6 if values else None


def _fmt_us(value):
    if value is None:
        return "—"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def _fmt_ratio(value):
    if value is None:
        return "—"
    return f"{value:.2f}×" if value < 100 else f"{value:.0f}×"


def _ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


def render(results, configs, args, started, load_start, load_end, wall_s):
    frameworks = [name for name in FRAMEWORKS if name in results]
    label = {name: FRAMEWORKS[name][0] for name in FRAMEWORKS}
    versions = package_versions()
    lines = [f"# Training speed: fastmlp vs other frameworks ({args.dtype})", ""]
    lines.append(f"- Date: {started.strftime('%Y-%m-%d %H:%M UTC')}")
    lines.append(f"- Machine: {cpu_model()}, {os.cpu_count()} cores ({usable_cores()} usable), "
                 f"{platform.system()} {platform.release()}, Python {platform.python_version()}")
    if load_start is not None and load_end is not None:
        lines.append(f"- Load average (1/5/15 min) at start {load_start[0]:.2f}/{load_start[1]:.2f}"
                     f"/{load_start[2]:.2f}, at end {load_end[0]:.2f}/{load_end[1]:.2f}/"
                     f"{load_end[2]:.2f}")
    lines.append("- Libraries: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    lines.append(f"- Model: ReLU hidden layers, linear output, softmax cross-entropy, "
                 f"Adam(lr={LEARNING_RATE:g}), {args.dtype}; synthetic N(0, 1) inputs, uniform "
                 f"integer labels")
    lines.append(f"- Step: one training step on one fixed batch; median of {args.repeats} samples,"
                 f" each the mean of k back-to-back steps lasting >= {args.min_time:g} s, after "
                 f"{args.warmup} warm-up steps")
    lines.append(f"- Epoch: {args.epoch_steps} steps over a fixed data set of {args.epoch_steps} "
                 f"batches, in order; median of {args.epoch_repeats} epochs after a warm-up epoch")
    lines.append(f"- Epochs estimated to last more than {args.long_epoch:g} s: one timed epoch, "
                 f"no warm-up epoch")
    if args.threads is None:
        lines.append("- Threads: each library's own default (nothing changed; see the Threads "
                     "table)")
    else:
        lines.append(f"- Threads: FORCED to {args.threads} for every library by --threads "
                     f"(environment variables OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS"
                     f"{', XLA Eigen pool off' if args.threads == 1 else ''}, "
                     f"torch.set_num_threads, each worker pinned to {args.threads} core(s))")
    lines.append(f"- Each framework in its own worker process; whole run {wall_s:.0f} s")
    lines.append("")

    # summary: one row per configuration, µs per step inside whole epochs
    shown = [f for f in frameworks if f != "fastmlp-api"]

    def per_step(name, cfg):
        value = _median_us(results.get(name, {}).get("configs", {}).get(cfg), "epoch_s")
        return None if value is None else value / args.epoch_steps

    lines.append("## Summary: median µs per training step inside whole epochs")
    lines.append("")
    bf16 = "fastmlp-bf16" in results
    header = (["config"] + [label[f] for f in shown]
              + ["fastmlp ÷ floor", "JAX scan ÷ fastmlp", "PyTorch eager ÷ fastmlp"]
              + (["fastmlp bf16 ÷ floor", "fastmlp ÷ fastmlp bf16", "torch bf16 ÷ fastmlp bf16"]
                 if bf16 else []))
    lines.append("| " + " | ".join(header) + " |")
    lines.append("| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |")
    for cfg in configs:
        row = [cfg] + [_fmt_us(per_step(f, cfg)) for f in shown]
        ours = per_step("fastmlp", cfg)
        row += [_fmt_ratio(_ratio(ours, per_step("floor", cfg))),
                _fmt_ratio(_ratio(per_step("jax-scan", cfg), ours)),
                _fmt_ratio(_ratio(per_step("torch", cfg), ours))]
        if bf16:
            mixed = per_step("fastmlp-bf16", cfg)
            row += [_fmt_ratio(_ratio(mixed, per_step("floor", cfg))),
                    _fmt_ratio(_ratio(ours, mixed)),
                    _fmt_ratio(_ratio(per_step("torch-bf16", cfg), mixed))]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")

    for cfg in configs:
        lines.append(f"## {cfg}")
        lines.append("")
        lines.append("| framework | step (µs) | best step sample (µs) | step ÷ floor | epoch (µs) | "
                     "epoch ÷ floor | µs per step in epoch | eager ÷ this, step | "
                     "eager ÷ this, epoch | first step (s) |")
        lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        floor_entry = results.get("floor", {}).get("configs", {}).get(cfg)
        eager_entry = results.get("torch", {}).get("configs", {}).get(cfg)
        floor_step, floor_epoch = _median_us(floor_entry, "step_s"), _median_us(floor_entry,
                                                                                 "epoch_s")
        eager_step, eager_epoch = _median_us(eager_entry, "step_s"), _median_us(eager_entry,
                                                                                 "epoch_s")
        for f in frameworks:
            res = results[f]
            entry = res["configs"].get(cfg)
            if not res.get("available", True):
                lines.append(f"| {label[f]} | skipped: not installed | | | | | | | | |")
                continue
            if not entry or "error" in entry:
                why = entry["error"] if entry else "no result"
                lines.append(f"| {label[f]} | failed: {why.replace('|', '/')[:120]} | | | | | | | | |")
                continue
            step, epoch = _median_us(entry, "step_s"), _median_us(entry, "epoch_s")
            lines.append("| " + " | ".join([
                label[f], _fmt_us(step), _fmt_us(_min_us(entry, "step_s")),
                _fmt_ratio(_ratio(step, floor_step)), _fmt_us(epoch),
                _fmt_ratio(_ratio(epoch, floor_epoch)),
                _fmt_us(epoch / args.epoch_steps if epoch is not None else None),
                _fmt_ratio(_ratio(eager_step, step)), _fmt_ratio(_ratio(eager_epoch, epoch)),
                f"{entry['first_step_s']:.2f}"]) + " |")
        lines.append("")

    lines.append("## Threads (as each library chose them)")
    lines.append("")
    lines.append("| framework | threads |")
    lines.append("| --- | --- |")
    for f in frameworks:
        if results[f].get("available", True):
            lines.append(f"| {label[f]} | {results[f].get('threads') or '—'} |")
    lines.append("")
    notes = [n for f in frameworks for n in results[f].get("notes", [])]
    notes.append("step ÷ floor: time over the GEMM-only floor's time (1× = nothing but the matrix "
                 "products); eager ÷ this: PyTorch eager's time over this row's (> 1: faster than "
                 "PyTorch eager)")
    notes.append("best step sample: the fastest of the step samples (each a mean of k steps), "
                 "a guide when other processes share the machine")
    notes.append("first step: seconds to build the model and run its first step (JIT / trace / "
                 "compile included; Numba loads cached kernels when its cache is warm)")
    lines.append("## Notes")
    lines.append("")
    lines.extend(f"- {n}" for n in notes)
    lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ main

def build_parser():
    parser = argparse.ArgumentParser(
        description="Per-step and per-epoch training time of fastmlp vs PyTorch eager, "
                    "torch.compile, JAX (jit + optax), scikit-learn MLPClassifier and a "
                    "GEMM-only NumPy floor; prints a markdown table.",
        epilog="Configurations: " + "; ".join(f"{k} = {config_label(*v)}"
                                               for k, v in CONFIGS.items())
               + ". Frameworks: " + ", ".join(FRAMEWORKS) + ".")
    parser.add_argument("--quick", action="store_true",
                        help="fast smoke run: smallest configuration (unless --configs is given), "
                             "3 repeats, 5-step epochs, short samples")
    parser.add_argument("--repeats", type=int, default=None,
                        help="step samples per framework and configuration (default 5; 3 quick)")
    parser.add_argument("--epoch-repeats", type=int, default=None,
                        help="timed epochs per framework and configuration (default 3; 2 quick)")
    parser.add_argument("--epoch-steps", type=int, default=None,
                        help="steps (batches) in one epoch (default 50; 5 quick)")
    parser.add_argument("--min-time", type=float, default=None,
                        help="seconds one step sample lasts at least (default 0.2; 0.02 quick)")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up steps (default 2)")
    parser.add_argument("--configs", default=None,
                        help="comma-separated names (small, medium, large) or SIZES:BATCH specs "
                             "like 40-256-256-10:32 (default: all three; small with --quick)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                        help="floating-point type for every framework (default float32)")
    parser.add_argument("--frameworks", default=",".join(DEFAULT_FRAMEWORKS),
                        help="comma-separated subset of: " + ", ".join(FRAMEWORKS)
                             + " (default: all but the bf16 ones)")
    parser.add_argument("--bf16", action="store_true",
                        help="also run fastmlp-bf16 (dtype='mixed_bfloat16') and torch-bf16 "
                             "(torch.autocast bfloat16), with summary columns against the float32 "
                             "floor; needs --dtype float32 and fastmlp[bf16]")
    parser.add_argument("--output", metavar="FILE.md", help="also write the markdown report here")
    parser.add_argument("--json", metavar="FILE.json", help="also write the raw samples here")
    parser.add_argument("--long-epoch", type=float, default=10.0,
                        help="epochs estimated to take longer than this many seconds are timed "
                             "once, without a warm-up epoch (default 10)")
    parser.add_argument("--threads", type=int, default=None,
                        help="force every library to this many threads (OMP/OpenBLAS/MKL/Numba "
                             "environment variables, torch.set_num_threads, XLA's Eigen pool off "
                             "for 1) and pin each worker process to that many cores; default: "
                             "leave each library's own choice alone")
    parser.add_argument("--worker-timeout", type=float, default=None,
                        help="seconds one framework may take for all configurations "
                             "(default 1800; 600 quick)")
    parser.add_argument("--keep-blas-env", action="store_true",
                        help="keep OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE in the workers' "
                             "environment (default: removed, as on a user's machine)")
    parser.add_argument("--recipe", action="store_true",
                        help="time the MNIST-1D paper recipe end to end instead (fastmlp, "
                             "PyTorch eager, JAX scan by default)")
    parser.add_argument("--inference", action="store_true",
                        help="time inference instead: fastmlp against onnxruntime (and PyTorch) "
                             "for 1 and 1,000 rows (scripts/bench_inference.py)")
    parser.add_argument("--recipe-runs", type=int, default=3,
                        help="timed runs of the recipe per framework (default 3)")
    parser.add_argument("--worker", choices=tuple(FRAMEWORKS), help=argparse.SUPPRESS)
    return parser


def resolve_defaults(args):
    quick = args.quick
    if args.repeats is None:
        args.repeats = 3 if quick else 5
    if args.epoch_repeats is None:
        args.epoch_repeats = 2 if quick else 3
    if args.epoch_steps is None:
        args.epoch_steps = 5 if quick else 50
    if args.min_time is None:
        args.min_time = 0.02 if quick else 0.2
    if args.worker_timeout is None:
        args.worker_timeout = 600.0 if quick else 1800.0
    if args.configs is None:
        args.configs = "small" if quick else ",".join(CONFIGS)
    if args.threads is not None and args.threads < 1:
        raise SystemExit("--threads must be >= 1")
    for name in ("repeats", "epoch_repeats", "epoch_steps"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv=None):
    args = resolve_defaults(build_parser().parse_args(argv))
    if args.worker:
        return run_worker(args)
    if args.inference:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import bench_inference
        extra = ["--quick"] if args.quick else []
        if args.output:
            extra += ["--output", args.output]
        return bench_inference.main(extra)
    configs = parse_configs(args.configs)
    if args.recipe and args.frameworks == ",".join(DEFAULT_FRAMEWORKS):
        args.frameworks = ",".join(RECIPE_BUILDERS)
    wanted = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    if args.bf16:
        wanted += [f for f in BF16_FRAMEWORKS if f not in wanted]
    unknown = [f for f in wanted if f not in FRAMEWORKS]
    if unknown:
        raise SystemExit(f"unknown framework(s) {unknown}; choose from {', '.join(FRAMEWORKS)}")
    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = load_average()
    began = time.perf_counter()
    results = {}
    for framework in FRAMEWORKS:
        if framework not in wanted:
            continue
        modules = (FRAMEWORKS[framework][1],) + EXTRA_MODULES.get(framework, ())
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        if missing:
            results[framework] = {"framework": framework, "available": False, "configs": {},
                                  "notes": [f"{FRAMEWORKS[framework][0]} skipped: "
                                            f"{', '.join(missing)} not installed"]}
            print(f"[{framework}] skipped: {', '.join(missing)} not installed", file=sys.stderr)
            continue
        results[framework] = spawn_worker(framework, args)
    if args.recipe:
        report = render_recipe(results, args, started, time.perf_counter() - began)
    else:
        report = render(results, configs, args, started, load_start, load_average(),
                        time.perf_counter() - began)
    write_outputs(report, args, started, results)
    return 0


def write_outputs(report, args, started, results):
    """Print the markdown report; write it to ``args.output`` and the raw results to
    ``args.json`` when given."""
    print(report)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(report)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"started": started.isoformat(), "args": vars(args), "results": results},
                      fh, indent=1)


if __name__ == "__main__":
    sys.exit(main())
