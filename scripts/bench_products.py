#!/usr/bin/env python
"""Speed of the float32 matrix products of a training step through SciPy's OpenBLAS
(``kernels.cpu.blas.gemm``) and through fastmlp's register tiles (``kernels.cpu.tiles``), and
which of the two each layer takes (``tiles.suits_tiles``, by the shape of its weights).

The products of layer l (fan-in i, units u, batch B) are those of ``bench_bf16.py``: the
forward x·W, dW = xᵀ·dY and dX = dY·Wᵀ (not for the first layer). Each is timed on 1 thread
(the whole product) and on 2 threads (each computing one of two blocks of the result at once, cut
as the engine cuts them), with the BLAS single-threaded as inside the kernels; the two paths take
turns sample by sample, and a figure is the fastest of ``--repeats`` samples. The step rows add
up the products as each path computes them alone and as the layers pick them. The run drops
``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` from its environment unless ``--keep-blas-env``.

    python scripts/bench_products.py                      # small, the MNIST-1D recipe, medium
    python scripts/bench_products.py --configs 40-256-256-10:32 --repeats 9
    python scripts/bench_products.py --quick
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_bf16 import (  # noqa: E402
    TRANSPOSES,
    add_product_options,
    blas_loop,
    block,
    figure,
    fmt_load,
    interleaved_samples,
    operands,
    resolve_product_options,
    restart_without_blas_overrides,
    step_products,
    thread_blocks,
)
from bench_compare import (  # noqa: E402
    RECIPE,
    cpu_model,
    load_average,
    package_versions,
    parse_configs,
    write_outputs,
)

PATHS = ("blas", "tiles")
DEFAULT_CONFIGS = f"small,{'-'.join(map(str, RECIPE['sizes']))}:{RECIPE['batch']},medium"


def compile_loops():
    """{path: loop(C, A, B, trans_a, trans_b, count)} and the layer's choice, compiled."""
    import numba

    from fastmlp.kernels.cpu.tiles import suits_tiles, tiled_gemm

    @numba.njit(nogil=True)
    def loop_tiles(C, A, B, trans_a, trans_b, count):
        for _ in range(count):
            tiled_gemm(C, A, B, trans_a, trans_b, False)

    @numba.njit
    def layer_takes_tiles(W):
        return suits_tiles(W)

    return {"blas": blas_loop(), "tiles": loop_tiles}, layer_takes_tiles


def measure_config(sizes, batch, thread_counts, repeats, min_time, loops, layer_takes_tiles):
    import numpy as np

    from fastmlp.engines.blas_threads import single_threaded_blas

    rng = np.random.default_rng(0)
    rows = []
    for name, kind, m, k, n in step_products(sizes, batch):
        A, B = operands(kind, m, k, n, np.float32, rng)
        fan_in, units = (m, n) if kind == "dW" else ((k, n) if kind == "fwd" else (n, k))
        ta, tb = TRANSPOSES[kind]
        row = {"name": name, "m": m, "k": k, "n": n, "flops": 2.0 * m * n * k,
               "layer_path": "tiles" if layer_takes_tiles(np.empty((fan_in, units), np.float32))
               else "blas"}
        outputs = {path: np.empty((m, n), np.float32) for path in PATHS}
        for threads in thread_counts:
            cut, pieces = thread_blocks(kind, m, n, k, threads)
            call_sets = {}
            for path in PATHS:
                calls = []
                for lo, hi in pieces:
                    c, a, b = block(kind, outputs[path], A, B, cut, lo, hi)
                    calls.append(lambda count, c=c, a=a, b=b, loop=loops[path]:
                                 loop(c, a, b, ta, tb, count))
                call_sets[path] = calls
            with single_threaded_blas():
                samples = interleaved_samples(call_sets, repeats, min_time)
            for path in PATHS:
                row[f"{path}_{threads}"] = figure(samples[path])
        reference = (A.T if ta else A).astype(np.float64) @ (B.T if tb else B).astype(np.float64)
        scale = np.abs(reference).max()
        row["rel_error"] = {path: float(np.abs(outputs[path] - reference).max() / scale)
                            for path in PATHS}
        rows.append(row)
    return rows


def render(results, args, started, load_start, load_end, wall_s):
    threads = args.thread_counts
    lines = [f"# float32 products: OpenBLAS against the register tiles ({started:%Y-%m-%d %H:%M} "
             "UTC)", "", f"CPU: {cpu_model()}; packages: "
             + ", ".join(f"{k} {v}" for k, v in package_versions(
                 ("fastmlp", "numpy", "numba", "scipy")).items()), ""]
    for label, rows in results.items():
        head, sep = "| product | m×k×n | layer takes |", "| --- | --- | --- |"
        for t in threads:
            head += f" BLAS µs {t}T | tiles µs {t}T | BLAS÷tiles {t}T |"
            sep += " ---: | ---: | ---: |"
        lines += [f"## {label}", "", "µs per product, fastest of the samples.", "", head, sep]
        totals = {(key, t): 0.0 for key in ("blas", "tiles", "layers") for t in threads}
        for row in rows:
            cells = f"| {row['name']} | {row['m']}×{row['k']}×{row['n']} | {row['layer_path']} |"
            for t in threads:
                blas_s, tiles_s = row[f"blas_{t}"]["best_s"], row[f"tiles_{t}"]["best_s"]
                cells += f" {blas_s * 1e6:,.1f} | {tiles_s * 1e6:,.1f} | {blas_s / tiles_s:.2f} |"
                totals["blas", t] += blas_s
                totals["tiles", t] += tiles_s
                totals["layers", t] += row[f"{row['layer_path']}_{t}"]["best_s"]
            lines.append(cells)
        columns = " | ".join(f"{t} thread{'s' * (t > 1)}" for t in threads)
        lines += ["", f"| one step's products, µs | {columns} |",
                  "| --- |" + " ---: |" * len(threads)]
        for key, text in (("blas", "all through BLAS"), ("tiles", "all through the tiles"),
                          ("layers", "as the layers pick")):
            lines.append(f"| {text} | " + " | ".join(f"{totals[key, t] * 1e6:,.1f}"
                                                    for t in threads) + " |")
        lines.append("| BLAS ÷ as the layers pick | " + " | ".join(
            f"{totals['blas', t] / totals['layers', t]:.2f}" for t in threads) + " |")
        worst = max(row["rel_error"]["tiles"] for row in rows)
        lines += ["", f"Largest relative error of a tiled product against float64: {worst:.1e}.",
                  ""]
    env = "kept" if args.keep_blas_env else "removed"
    lines += [f"Samples: {args.repeats} per figure, each ≥ {args.min_time} s. Load average "
              f"{fmt_load(load_start)} before, {fmt_load(load_end)} after; wall {wall_s:.0f} s. "
              f"OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE {env}.", ""]
    return "\n".join(lines)


DEFAULTS = (DEFAULT_CONFIGS, "small", 0.1)  # default configurations, with --quick, --min-time


def build_parser():
    parser = argparse.ArgumentParser(
        description="µs of a training step's float32 products through OpenBLAS and through the "
                    "register tiles, on 1 and 2 threads, and which path each layer takes; prints "
                    "a markdown report.")
    return add_product_options(parser, *DEFAULTS)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = resolve_product_options(build_parser().parse_args(argv), *DEFAULTS)
    restart_without_blas_overrides(args, __file__, argv)
    configs = parse_configs(args.configs)
    started = datetime.datetime.now(datetime.timezone.utc)
    load_start, began = load_average(), time.perf_counter()
    loops, layer_takes_tiles = compile_loops()
    results = {label: measure_config(sizes, batch, args.thread_counts, args.repeats,
                                     args.min_time, loops, layer_takes_tiles)
               for label, (sizes, batch) in configs.items()}
    report = render(results, args, started, load_start, load_average(),
                    time.perf_counter() - began)
    write_outputs(report, args, started, results)


if __name__ == "__main__":
    main()
