#!/usr/bin/env python
"""Speed of the bfloat16 matrix products (``kernels.cpu.bf16.gemm_bf16``, oneDNN) against the
float32 ones (``kernels.cpu.blas.gemm``, SciPy's OpenBLAS) on the products of a training step,
and of the rounding pass that makes the bfloat16 operands.

Products
--------
For a network I-H1-…-O trained on batches of B rows, layer l (fan-in i, units u) needs

- forward   x·W      C (B, u)  = (B, i)·(i, u)
- dW = xᵀ·dY         C (i, u)  = (B, i)ᵀ·(B, u)
- dX = dY·Wᵀ         C (B, i)  = (B, u)·(i, u)ᵀ       (not for the first layer)

Each product is timed on 1 thread (the whole product) and on 2 threads, each computing one of
two blocks of the result at once, cut as fastmlp's engine cuts them (``fastmlp.engines.layout
.thread_plan``: forward into blocks of units, dW along its longer side, dX into blocks of the
previous layer's units, or of rows where that side is short), on views of the full arrays. The
float32 products run with the BLAS single-threaded (``fastmlp.engines.blas_threads``), as in the
kernels; the bfloat16 ones always run in their calling thread. GFLOP/s counts 2·m·n·k per product.

The rounding pass (``round_to_bf16_block``) is timed on the operands a step rounds: per layer x,
W and dY. GB/s counts 6 bytes per element (a float32 read, a bfloat16 written). The step table
adds the products of a step together, and the bfloat16 total with the rounding pass.

Timing: the compiled kernels are warmed up first; a sample is the mean of k back-to-back calls
(a compiled loop, no Python between calls), k chosen so a sample lasts at least ``--min-time``
seconds; the float32 and bfloat16 samples of a product take turns, so a change of load hits both;
a figure is the fastest of ``--repeats`` samples, and the spread (median over fastest, largest
over all figures) and the load average tell how noisy the machine was. The run drops
``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` from its environment (they force a slower OpenBLAS
kernel than a user's machine gets) unless ``--keep-blas-env`` is given.

Examples::

    python scripts/bench_bf16.py                        # large and medium configurations
    python scripts/bench_bf16.py --quick                # medium only, short samples
    python scripts/bench_bf16.py --configs 784-512-512-10:128 --repeats 9 --output bf16.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_compare import (  # noqa: E402
    BLAS_OVERRIDES,
    CONFIGS,
    cpu_model,
    load_average,
    package_versions,
    parse_configs,
    write_outputs,
)

from fastmlp.kernels.config import COL_ALIGN, MIN_SPLIT_MACS, ROW_ALIGN  # noqa: E402

PACKAGES = ("fastmlp", "numpy", "numba", "scipy", "onednn-cpu-gomp")


# ------------------------------------------------------------------------------ products

def step_products(sizes, batch):
    """[(name, kind, m, k, n)] of one step; kind 'fwd' C = A·B, 'dW' C = Aᵀ·B, 'dX' C = A·Bᵀ."""
    out = []
    for l, (fan_in, units) in enumerate(zip(sizes[:-1], sizes[1:])):
        out.append((f"layer {l} forward x·W", "fwd", batch, fan_in, units))
        out.append((f"layer {l} dW = xᵀ·dY", "dW", fan_in, batch, units))
        if l > 0:
            out.append((f"layer {l} dX = dY·Wᵀ", "dX", batch, units, fan_in))
    return out


def split(kind, m, n, k):
    """'rows', 'cols' or None (one thread): the engine's cut of a product's (m, n) result into
    2 blocks (``fastmlp.engines.layout.thread_plan`` for 2 threads, no batchnorm)."""
    if m * n * k < MIN_SPLIT_MACS:
        return None
    wide, tall = 2 * COL_ALIGN, 2 * ROW_ALIGN
    if kind == "fwd":
        return "cols" if n >= wide else ("rows" if m >= tall else None)
    if kind == "dW":
        if m >= n and m >= tall:
            return "rows"
        return "cols" if n >= wide else ("rows" if m >= tall else None)
    if k < 2 * COL_ALIGN and m >= tall:
        return "rows"
    return "cols" if n >= wide else ("rows" if m >= tall else None)


def halves(n, align):
    """The two pieces [lo, hi) of [0, n) with an inner boundary on a multiple of ``align``
    (kernels/cpu/blocks.py ``part``)."""
    units = (n + align - 1) // align
    mid = min(n, (units // 2) * align)
    return (0, mid), (mid, n)


def thread_blocks(kind, m, n, k, threads):
    """(cut, [(lo, hi)] per thread) of a product's (m, n) result on 1 or 2 threads: the engine's
    cut (``split``), or None and one whole block."""
    cut = split(kind, m, n, k) if threads == 2 else None
    if cut is None:
        return None, [(0, 0)]
    return cut, halves(m, ROW_ALIGN) if cut == "rows" else halves(n, COL_ALIGN)


def operands(kind, m, k, n, dtype, rng):
    """(A, B) of the product in the layouts the layer keeps them: fwd A = x (m, k), B = W (k, n);
    dW A = x (k, m), B = dY (k, n); dX A = dY (m, k), B = W (n, k)."""
    import numpy as np
    shapes = {"fwd": ((m, k), (k, n)), "dW": ((k, m), (k, n)), "dX": ((m, k), (n, k))}[kind]
    return tuple(rng.standard_normal(s).astype(np.float32) for s in shapes)


def block(kind, C, A, B, cut, lo, hi):
    """(C block, A view, B view) of a rows/cols cut of C (views, no copies)."""
    if cut is None:
        return C, A, B
    if cut == "rows":
        if kind == "dW":
            return C[lo:hi], A[:, lo:hi], B
        return C[lo:hi], A[lo:hi], B
    if kind == "dX":
        return C[:, lo:hi], A, B[lo:hi]
    return C[:, lo:hi], A, B[:, lo:hi]


TRANSPOSES = {"fwd": (False, False), "dW": (True, False), "dX": (False, True)}


# ------------------------------------------------------------------------------ compiled loops

def blas_loop():
    """loop(C, A, B, trans_a, trans_b, count): count back-to-back float32 products through the
    kernels' BLAS (``kernels.cpu.blas.gemm``), compiled without the GIL."""
    import numba

    from fastmlp.kernels.cpu.blas import gemm

    @numba.njit(nogil=True)
    def loop_f32(C, A, B, trans_a, trans_b, count):
        for _ in range(count):
            gemm(C, A, B, trans_a, trans_b, False)

    return loop_f32


def compile_loops():
    """The timed loops: count back-to-back calls of each kernel, compiled without the GIL."""
    import numba

    from fastmlp.kernels.cpu.bf16 import gemm_bf16, round_to_bf16_block

    @numba.njit(nogil=True)
    def loop_bf16(C, A, B, trans_a, trans_b, count):
        status = 0
        for _ in range(count):
            status |= gemm_bf16(C, A, B, trans_a, trans_b, False)
        return status

    @numba.njit(nogil=True)
    def loop_round(out, x, r0, r1, count):
        for _ in range(count):
            round_to_bf16_block(out, x, r0, r1, 0, x.shape[1])

    return blas_loop(), loop_bf16, loop_round


def timed(calls, count):
    """Seconds for ``count`` calls of every function in ``calls`` run at once, one thread each
    (the slowest thread's time)."""
    if len(calls) == 1:
        start = time.perf_counter()
        calls[0](count)
        return time.perf_counter() - start
    barrier = threading.Barrier(len(calls))
    spans = [0.0] * len(calls)

    def run(i):
        barrier.wait()
        start = time.perf_counter()
        calls[i](count)
        spans[i] = time.perf_counter() - start

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return max(spans)


def calibrated_count(calls, min_time):
    """Calls per sample so that one lasts about ``min_time`` seconds (after one warm-up call)."""
    timed(calls, 1)
    count = 1
    while True:
        span = timed(calls, count)
        if span >= min_time / 4 or count >= 1 << 20:
            break
        count *= 4
    return max(1, int(count * min_time / max(span, 1e-9)))


def interleaved_samples(call_sets, repeats, min_time):
    """{name: [per-call seconds] × repeats} for every set of calls in ``call_sets``, the sets
    taking turns sample by sample, so that a change of load hits them alike."""
    counts = {name: calibrated_count(calls, min_time) for name, calls in call_sets.items()}
    samples = {name: [] for name in call_sets}
    for _ in range(repeats):
        for name, calls in call_sets.items():
            samples[name].append(timed(calls, counts[name]) / counts[name])
    return samples


def figure(samples):
    best = min(samples)
    return {"best_s": best, "median_s": statistics.median(samples),
            "spread": statistics.median(samples) / best - 1.0, "samples": samples}


# ------------------------------------------------------------------------------ measurements

def measure_config(sizes, batch, thread_counts, repeats, min_time, loops):
    import numpy as np

    from fastmlp.engines.blas_threads import single_threaded_blas
    from fastmlp.kernels.cpu.bf16 import round_to_bf16_block

    loop_f32, loop_bf16, loop_round = loops
    rng = np.random.default_rng(0)
    rows = []
    for name, kind, m, k, n in step_products(sizes, batch):
        A, B = operands(kind, m, k, n, np.float32, rng)
        Ab, Bb = np.empty(A.shape, np.uint16), np.empty(B.shape, np.uint16)
        round_to_bf16_block(Ab, A, 0, A.shape[0], 0, A.shape[1])
        round_to_bf16_block(Bb, B, 0, B.shape[0], 0, B.shape[1])
        C32, C16 = np.empty((m, n), np.float32), np.empty((m, n), np.float32)
        ta, tb = TRANSPOSES[kind]
        row = {"name": name, "kind": kind, "m": m, "k": k, "n": n, "flops": 2.0 * m * n * k}
        for threads in thread_counts:
            cut, pieces = thread_blocks(kind, m, n, k, threads)
            f32_calls, bf16_calls = [], []
            for lo, hi in pieces:
                c, a, b = block(kind, C32, A, B, cut, lo, hi)
                f32_calls.append(lambda count, c=c, a=a, b=b: loop_f32(c, a, b, ta, tb, count))
                c, a, b = block(kind, C16, Ab, Bb, cut, lo, hi)
                bf16_calls.append(lambda count, c=c, a=a, b=b: check(loop_bf16(c, a, b, ta, tb,
                                                                              count)))
            with single_threaded_blas():
                samples = interleaved_samples({"f32": f32_calls, "bf16": bf16_calls}, repeats,
                                              min_time)
            row[f"f32_{threads}"] = figure(samples["f32"])
            row[f"bf16_{threads}"] = figure(samples["bf16"])
            row[f"cut_{threads}"] = cut or "one block"
        reference = (A.T if ta else A).astype(np.float64) @ (B.T if tb else B).astype(np.float64)
        row["rel_error_bf16"] = float(np.abs(C16 - reference).max() / np.abs(reference).max())
        row["rel_error_f32"] = float(np.abs(C32 - reference).max() / np.abs(reference).max())
        rows.append(row)
    rounding = measure_rounding(sizes, batch, thread_counts, repeats, min_time, loop_round)
    return {"products": rows, "rounding": rounding}


def measure_rounding(sizes, batch, thread_counts, repeats, min_time, loop_round):
    """Per thread count: seconds to round every x, W and dY of one step, and GB/s."""
    import numpy as np
    rng = np.random.default_rng(1)
    shapes = []
    for fan_in, units in zip(sizes[:-1], sizes[1:]):
        shapes += [(batch, fan_in), (fan_in, units), (batch, units)]
    arrays = [(rng.standard_normal(s).astype(np.float32), np.empty(s, np.uint16)) for s in shapes]
    elements = sum(x.size for x, _ in arrays)
    out = {"elements": elements}
    for threads in thread_counts:
        calls = []
        for t in range(threads):
            def call(count, t=t):
                for x, o in arrays:
                    lo, hi = halves(x.shape[0], ROW_ALIGN)[t] if threads == 2 else (0, x.shape[0])
                    loop_round(o, x, lo, hi, count)
            calls.append(call)
        fig = figure(interleaved_samples({"round": calls}, repeats, min_time)["round"])
        fig["GB_per_s"] = 6.0 * elements / fig["best_s"] / 1e9
        out[str(threads)] = fig
    return out


def check(status):
    if status != 0:
        raise RuntimeError(f"gemm_bf16 returned status {status}")


# ------------------------------------------------------------------------------ report

def gflops(row, key):
    return row["flops"] / row[key]["best_s"] / 1e9


def render(results, args, started, load_start, load_end, wall_s):
    threads = args.thread_counts
    lines = [f"# bfloat16 vs float32 matrix products ({started:%Y-%m-%d %H:%M} UTC)", "",
             f"CPU: {cpu_model()}; packages: "
             + ", ".join(f"{k} {v}" for k, v in package_versions(PACKAGES).items()), ""]
    spreads = []
    for label, res in results.items():
        lines += [f"## {label}", "",
                  "GFLOP/s, fastest of the samples (2 threads: each computes one block at once).",
                  ""]
        head = "| product | m×k×n |"
        sep = "| --- | --- |"
        for t in threads:
            head += f" f32 {t}T | bf16 {t}T | bf16÷f32 {t}T |"
            sep += " ---: | ---: | ---: |"
        lines += [head + " bf16 rel. error |", sep + " ---: |"]
        totals = {f"{p}_{t}": 0.0 for p in ("f32", "bf16") for t in threads}
        for row in res["products"]:
            cells = f"| {row['name']} | {row['m']}×{row['k']}×{row['n']} |"
            for t in threads:
                f32, b16 = gflops(row, f"f32_{t}"), gflops(row, f"bf16_{t}")
                cells += f" {f32:,.0f} | {b16:,.0f} | {b16 / f32:.2f} |"
                for p in ("f32", "bf16"):
                    totals[f"{p}_{t}"] += row[f"{p}_{t}"]["best_s"]
                    spreads.append(row[f"{p}_{t}"]["spread"])
            lines.append(cells + f" {row['rel_error_bf16']:.1e} |")
        lines += ["", "bf16 rel. error: max |C − C₆₄| / max |C₆₄|, C₆₄ the float64 product of the "
                  "float32 operands before rounding."]
        lines += ["", "| one step's products, ms | " + " | ".join(f"{t} thread{'s' * (t > 1)}"
                                                               for t in threads) + " |",
                  "| --- |" + " ---: |" * len(threads)]
        rounding = res["rounding"]
        f32_row = "| float32 products |"
        b16_row = "| bfloat16 products |"
        rnd_row = f"| rounding pass ({rounding['elements'] / 1e6:.1f} M elements) |"
        all_row = "| bfloat16 products + rounding |"
        ratio_row = "| (bfloat16 + rounding) ÷ float32 |"
        gbs_row = "| rounding pass GB/s |"
        for t in threads:
            f32_s, b16_s = totals[f"f32_{t}"], totals[f"bf16_{t}"]
            rnd_s = rounding[str(t)]["best_s"]
            spreads.append(rounding[str(t)]["spread"])
            f32_row += f" {f32_s * 1e3:,.2f} |"
            b16_row += f" {b16_s * 1e3:,.2f} |"
            rnd_row += f" {rnd_s * 1e3:,.2f} |"
            all_row += f" {(b16_s + rnd_s) * 1e3:,.2f} |"
            ratio_row += f" {(b16_s + rnd_s) / f32_s:.2f} |"
            gbs_row += f" {rounding[str(t)]['GB_per_s']:,.1f} |"
        lines += [f32_row, b16_row, rnd_row, all_row, ratio_row, gbs_row]
        if set(threads) == {1, 2}:
            # 2.0 when each of the two threads computes its block as fast as one thread alone
            lines.append("| bfloat16 products: 1 thread ÷ 2 threads | | "
                         f"{totals['bf16_1'] / totals['bf16_2']:.2f} |")
        lines.append("")
    env = "kept" if args.keep_blas_env else "removed"
    lines += [f"Samples: {args.repeats} per figure, each ≥ {args.min_time} s; median over fastest "
              f"is at most {max(spreads) * 100:.0f}% "
              f"(median {statistics.median(spreads) * 100:.0f}%) "
              f"across figures. Load average {fmt_load(load_start)} before, {fmt_load(load_end)} "
              f"after; wall {wall_s:.0f} s. OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE {env}.", ""]
    return "\n".join(lines)


def fmt_load(load):
    return "n/a" if load is None else "/".join(f"{v:.2f}" for v in load)


# ------------------------------------------------------------------------------ main

def add_product_options(parser, default_configs, quick_configs, min_time):
    """The options this script and ``bench_products.py`` share (``resolve_product_options``
    fills in their defaults): configurations, samples, thread counts, outputs."""
    parser.add_argument("--quick", action="store_true",
                        help=f"fast smoke run: {quick_configs} (unless --configs is given), "
                             "2 repeats, short samples")
    parser.add_argument("--configs", default=None,
                        help="comma-separated names (small, medium, large) or SIZES:BATCH specs "
                             f"like 784-512-512-10:128 (default: {default_configs}; "
                             f"{quick_configs} with --quick)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="samples per figure (default 7; 2 quick)")
    parser.add_argument("--min-time", type=float, default=None,
                        help=f"seconds one sample lasts at least (default {min_time:g}; "
                             "0.01 quick)")
    parser.add_argument("--threads", default="1,2",
                        help="thread counts to time, from 1 and 2 (default 1,2)")
    parser.add_argument("--output", metavar="FILE.md", help="also write the report here")
    parser.add_argument("--json", metavar="FILE.json", help="also write the raw samples here")
    parser.add_argument("--keep-blas-env", action="store_true",
                        help="keep OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (default: removed)")
    return parser


def resolve_product_options(args, default_configs, quick_configs, min_time):
    """``args`` with the defaults of :func:`add_product_options` filled in and
    ``args.thread_counts`` parsed; a bad value exits with a message."""
    if args.repeats is None:
        args.repeats = 2 if args.quick else 7
    if args.min_time is None:
        args.min_time = 0.01 if args.quick else min_time
    if args.configs is None:
        args.configs = quick_configs if args.quick else default_configs
    try:
        args.thread_counts = sorted({int(t) for t in args.threads.split(",") if t.strip()})
    except ValueError:
        raise SystemExit("--threads takes a comma-separated list of 1 and 2") from None
    if not args.thread_counts or not set(args.thread_counts) <= {1, 2}:
        raise SystemExit("--threads takes a comma-separated list of 1 and 2")
    if args.repeats < 1 or args.min_time <= 0:
        raise SystemExit("--repeats must be >= 1 and --min-time > 0")
    return args


def restart_without_blas_overrides(args, script, argv):
    """Start ``script`` again without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (the BLAS reads them
    when it loads) unless ``--keep-blas-env`` or neither is set."""
    if not args.keep_blas_env and any(name in os.environ for name in BLAS_OVERRIDES):
        env = {k: v for k, v in os.environ.items() if k not in BLAS_OVERRIDES}
        os.execve(sys.executable, [sys.executable, os.path.abspath(script), *argv], env)


DEFAULTS = ("large,medium", "medium", 0.2)  # default configurations, with --quick, --min-time


def build_parser():
    parser = argparse.ArgumentParser(
        description="GFLOP/s of the bfloat16 matrix products (oneDNN) against float32 (OpenBLAS) "
                    "on a training step's products, on 1 and 2 threads, and the rounding pass's "
                    "GB/s; prints a markdown report.",
        epilog="Configurations: " + "; ".join(f"{k} = {'-'.join(map(str, s))}, batch {b}"
                                               for k, (s, b) in CONFIGS.items()) + ".")
    return add_product_options(parser, *DEFAULTS)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = resolve_product_options(build_parser().parse_args(argv), *DEFAULTS)
    restart_without_blas_overrides(args, __file__, argv)
    configs = parse_configs(args.configs)  # bench_compare's names: small, medium, large

    from fastmlp.kernels.cpu.bf16 import bf16_support
    reason = bf16_support()
    if reason is not None:
        raise SystemExit(reason)
    started = datetime.datetime.now(datetime.timezone.utc)
    load_start, began = load_average(), time.perf_counter()
    loops = compile_loops()
    results = {}
    for label, (sizes, batch) in configs.items():
        print(f"[bench_bf16] {label} …", file=sys.stderr, flush=True)
        results[label] = measure_config(sizes, batch, args.thread_counts, args.repeats,
                                        args.min_time, loops)
    report = render(results, args, started, load_start, load_average(),
                    time.perf_counter() - began)
    write_outputs(report, args, started, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
