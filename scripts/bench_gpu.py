"""GPU training speed of fastmlp (numba.cuda, device-resident) against PyTorch CUDA, in one run.

The model is the same for both: ReLU hidden layers, a linear output layer, softmax cross-entropy
on integer labels, Adam(lr=1e-3), float32, inputs from N(0, 1) and uniform labels. Data, model
and optimizer state live on the GPU for both.

What is timed (medians over ``--repeats`` samples):

- epoch: ``--steps`` batches in order, no shuffling: fastmlp ``Trainer.fit`` for one epoch on a
  ``device="cuda"`` model (one launch sequence per step, scalars back once per epoch, the model
  copied to the host after the epoch), PyTorch a Python loop of ``zero_grad``,
  ``cross_entropy(model(x), y)``, ``backward``, ``Adam.step`` (``foreach``), ended by
  ``torch.cuda.synchronize``;
- step: the epoch time divided by ``--steps``;
- fastmlp runs once per ``--matmul`` choice (``fm.set_cuda_matmul``): ``numba``, the tiled
  numba.cuda product with fused epilogues, and ``cublas``, cuBLAS through CuPy with the epilogues
  as numba.cuda launches (left out, with a note, when CuPy is missing);
- PyTorch runs twice: TF32 off (``torch.backends.cuda.matmul.allow_tf32 = False``, true float32,
  the reference of the targets) and TF32 on (for reference).

    python scripts/bench_gpu.py                       # the four configurations
    python scripts/bench_gpu.py --configs small medium --repeats 9
    python scripts/bench_gpu.py --configs xlarge --matmul numba cublas
    python scripts/bench_gpu.py --quick               # smallest configuration, few repeats

Without a usable GPU it prints why and exits with status 1. PyTorch is optional (its columns are
left out when it or its CUDA support is missing).
"""

import argparse
import statistics
import sys
import time

import numpy as np

CONFIGS = {"small": ((40, 256, 256, 10), 32),
           "medium": ((784, 512, 512, 10), 128),
           "large": ((1024, 4096, 4096, 10), 512),
           "xlarge": ((4096, 4096, 4096, 10), 4096)}


def synthetic(sizes, batch, steps, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(batch * steps, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], batch * steps)
    return X, y


def time_fastmlp(sizes, batch, steps, repeats, matmul="numba"):
    """Median seconds per epoch of ``steps`` batches on the GPU, products by ``matmul``."""
    import fastmlp as fm
    previous = fm.set_cuda_matmul(matmul)
    try:
        return _time_fastmlp(fm, sizes, batch, steps, repeats)
    finally:
        fm.set_cuda_matmul(previous)


def _time_fastmlp(fm, sizes, batch, steps, repeats):
    X, y = synthetic(sizes, batch, steps)
    layers = [fm.Dense(u, "relu") for u in sizes[1:-1]] + [fm.Dense(sizes[-1])]
    model = fm.MLP(sizes[0], layers, dtype="float32", device="cuda", seed=0)
    trainer = fm.Trainer(model, fm.Adam(1e-3), batch_size=batch, epochs=repeats + 1,
                         shuffle=False, progress=False)
    trainer.fit(X, y)  # one fit: the data and state go up once; the first epoch also compiles
    return statistics.median(trainer.history["epoch_time"][1:])


def time_torch(sizes, batch, steps, repeats, tf32):
    import torch
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.manual_seed(0)
    X, y = synthetic(sizes, batch, steps)
    X = torch.from_numpy(X).cuda()
    y = torch.from_numpy(y).cuda()
    layers = []
    for fan_in, units in zip(sizes[:-2], sizes[1:-1]):
        layers += [torch.nn.Linear(fan_in, units), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(sizes[-2], sizes[-1])).cuda()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=True)

    def epoch():
        for k in range(steps):
            xb, yb = X[k * batch:(k + 1) * batch], y[k * batch:(k + 1) * batch]
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
        torch.cuda.synchronize()

    epoch()
    samples = []
    for _ in range(repeats):
        began = time.perf_counter()
        epoch()
        samples.append(time.perf_counter() - began)
    return statistics.median(samples)


def torch_cuda_reason():
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed"
    if not torch.cuda.is_available():
        return "PyTorch has no CUDA device"
    return None


def cupy_reason():
    from fastmlp.kernels.cuda.cublas import cupy_status
    cupy, reason = cupy_status()
    return None if cupy is not None else reason


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--steps", type=int, default=50, help="batches per epoch (default 50)")
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs (default 5)")
    parser.add_argument("--matmul", nargs="*", default=["numba", "cublas"],
                        choices=["numba", "cublas", "auto"],
                        help="fastmlp matrix-product paths to time (default: numba cublas)")
    parser.add_argument("--quick", action="store_true", help="small config, 2 repeats, 10 steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.configs, args.repeats, args.steps = ["small"], 2, 10

    from fastmlp.engines.cuda_support import cuda_status, simulator_enabled
    available, reason = cuda_status()
    if not available or simulator_enabled():
        print(f"no usable GPU, nothing to measure: {reason}", file=sys.stderr)
        return 1
    no_torch = torch_cuda_reason()
    if no_torch:
        print(f"note: {no_torch}; PyTorch columns left out", file=sys.stderr)
    no_cupy = cupy_reason()
    if no_cupy and "cublas" in args.matmul:
        print(f"note: {no_cupy}; the cublas column is left out", file=sys.stderr)
        args.matmul = [m for m in args.matmul if m != "cublas"]
    from numba import cuda
    print(f"GPU: {cuda.get_current_device().name.decode()}, float32, Adam, {args.steps} steps "
          f"per epoch, median of {args.repeats}, {time.strftime('%Y-%m-%d')}\n")
    columns = ["config"] + [f"fastmlp {m} µs/step" for m in args.matmul]
    if not no_torch:
        columns += ["torch TF32 off µs/step", "torch TF32 on µs/step"]
        columns += [f"{m} / torch (TF32 off) time" for m in args.matmul]
    print("| " + " | ".join(columns) + " |")
    print("|" + " --- |" * len(columns))
    for name in args.configs:
        sizes, batch = CONFIGS[name]
        steps = max(2, args.steps // 10) if name == "xlarge" else args.steps
        ours = [time_fastmlp(sizes, batch, steps, args.repeats, m) / steps for m in args.matmul]
        cells = [f"{'-'.join(map(str, sizes))}/{batch}"] + [f"{1e6 * t:,.0f}" for t in ours]
        if not no_torch:
            off = time_torch(sizes, batch, steps, args.repeats, tf32=False) / steps
            on = time_torch(sizes, batch, steps, args.repeats, tf32=True) / steps
            cells += [f"{1e6 * off:,.0f}", f"{1e6 * on:,.0f}"] + [f"{t / off:.2f}×" for t in ours]
        print("| " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
