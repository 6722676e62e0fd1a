#!/usr/bin/env python
"""Inference latency of fastmlp against onnxruntime (and PyTorch eager, when installed) on the
same network: what serving a trained model costs per call.

The model is a ReLU MLP with a linear output layer and softmax cross-entropy (784-512-512-10 by
default), float32 by default, built by fastmlp with seed 0; inputs are N(0, 1) rows.

What is timed
-------------
- fastmlp: ``model.predict_proba(X)`` (input validation, the compiled forward pass, softmax).
- onnxruntime: ``InferenceSession.run(None, {"X": X})`` on ``model.to_onnx``'s graph (both
  outputs, label and probabilities), CPU execution provider, default session options.
- PyTorch eager: ``torch.softmax(module(torch.from_numpy(X)), 1)`` under
  ``torch.inference_mode()`` with ``module = model.to_torch()``.

Each framework runs in its own fresh worker process, so one library's thread pools cannot slow
another down. A sample is the mean of k back-to-back calls, with k chosen so that a sample lasts at
least ``--min-time`` seconds; the table shows the median (and the fastest) of ``--repeats``
samples after ``--warmup`` calls (timed by bench_compare.py's ``time_steps``). Thread counts are
each library's own choice unless ``--threads`` forces one for all (fm.set_num_threads,
intra_op_num_threads, torch.set_num_threads).
Every row also reports the largest difference of its probabilities from fastmlp's.

Examples::

    python scripts/bench_inference.py                 # 1 and 1,000 rows, 784-512-512-10
    python scripts/bench_inference.py --quick         # short samples, few repeats
    python scripts/bench_inference.py --rows 1,64,1000 --threads 1 --output inference.md
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_compare import cpu_model, package_versions, time_steps  # noqa: E402

# name -> (label in the table, modules the worker needs)
FRAMEWORKS = {
    "fastmlp": ("fastmlp predict_proba", ("fastmlp",)),
    "onnxruntime": ("onnxruntime InferenceSession.run", ("onnx", "onnxruntime")),
    "torch": ("PyTorch eager (inference_mode)", ("torch",)),
}
PACKAGES = ("fastmlp", "numpy", "numba", "onnx", "onnxruntime", "torch")
RESULT_MARKER = "@@bench_inference_result@@"


def parse_sizes(text):
    try:
        sizes = tuple(int(v) for v in text.split("-"))
    except ValueError:
        raise SystemExit(f"bad --sizes {text!r}: use e.g. 784-512-512-10") from None
    if len(sizes) < 2 or min(sizes) < 1 or sizes[-1] < 2:
        raise SystemExit(f"bad --sizes {text!r}: need an input size and >= 2 classes")
    return sizes


def parse_rows(text):
    try:
        rows = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"bad --rows {text!r}: use e.g. 1,1000") from None
    if not rows or min(rows) < 1:
        raise SystemExit(f"bad --rows {text!r}: need row counts >= 1")
    return rows


def build_model(sizes, dtype):
    import fastmlp as fm
    layers = [fm.Dense(units, "relu") for units in sizes[1:-1]] + [fm.Dense(sizes[-1])]
    return fm.MLP(sizes[0], layers, dtype=dtype, seed=0)


# ------------------------------------------------------------------------------ frameworks
# Each builder takes the fastmlp model and the forced thread count (None: the library's own)
# and returns predict(X) -> probabilities (n, classes).

def build_fastmlp(model, threads):
    import fastmlp as fm
    if threads is not None:
        fm.set_num_threads(threads)
    return model.predict_proba


def build_onnxruntime(model, threads):
    import onnxruntime as ort

    from fastmlp.interop import build_onnx_model
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    session = ort.InferenceSession(build_onnx_model(model).SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])

    def predict(X):
        return session.run(None, {"X": X})[1]
    return predict


def build_torch(model, threads):
    import torch
    if threads is not None:
        torch.set_num_threads(threads)
    module = model.to_torch()

    def predict(X):
        with torch.inference_mode():
            return torch.softmax(module(torch.from_numpy(X)), 1).numpy()
    return predict


BUILDERS = {"fastmlp": build_fastmlp, "onnxruntime": build_onnxruntime, "torch": build_torch}


def run_worker(args):
    import numpy as np
    sizes = parse_sizes(args.sizes)
    began = time.perf_counter()
    model = build_model(sizes, args.dtype)
    predict = BUILDERS[args.worker](model, args.threads)
    result = {"framework": args.worker, "rows": {}}
    rng = np.random.default_rng(0)
    for n in parse_rows(args.rows):
        X = rng.standard_normal((n, sizes[0])).astype(args.dtype)
        first = time.perf_counter()
        probabilities = predict(X)
        entry = {"first_call_s": time.perf_counter() - first,
                 "max_abs_diff": float(np.max(np.abs(probabilities - model.predict_proba(X))))}
        entry["samples_s"], _ = time_steps(lambda: predict(X), lambda: None, args.repeats,
                                           args.min_time, args.warmup)
        result["rows"][str(n)] = entry
    result["setup_s"] = time.perf_counter() - began
    print(RESULT_MARKER + json.dumps(result), flush=True)
    return 0


def spawn_worker(framework, args):
    argv = [sys.executable, os.path.abspath(__file__), "--worker", framework,
            "--sizes", args.sizes, "--rows", args.rows, "--dtype", args.dtype,
            "--repeats", str(args.repeats), "--min-time", str(args.min_time),
            "--warmup", str(args.warmup)]
    if args.threads is not None:
        argv += ["--threads", str(args.threads)]
    print(f"[{framework}] timing ...", file=sys.stderr, flush=True)
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=args.worker_timeout)
    except subprocess.TimeoutExpired:
        return {"framework": framework, "error": f"timed out after {args.worker_timeout:g} s"}
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER):])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"framework": framework, "error": f"exit {proc.returncode}: {tail}"}


# ------------------------------------------------------------------------------ report

def _fmt_us(seconds):
    value = seconds * 1e6
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def render(results, args, started, wall_s):
    rows = parse_rows(args.rows)
    lines = [f"# Inference latency: fastmlp vs onnxruntime ({args.sizes} ReLU, {args.dtype})", ""]
    lines.append(f"- Date: {started.strftime('%Y-%m-%d %H:%M UTC')}")
    lines.append(f"- Machine: {cpu_model()}, {os.cpu_count()} cores, {platform.system()} "
                 f"{platform.release()}, Python {platform.python_version()}")
    lines.append("- Libraries: " + ", ".join(f"{k} {v}"
                                             for k, v in package_versions(PACKAGES).items()))
    lines.append(f"- Median of {args.repeats} samples, each the mean of k back-to-back calls "
                 f"lasting >= {args.min_time:g} s, after {args.warmup} warm-up calls; each "
                 f"framework in its own process; whole run {wall_s:.0f} s")
    lines.append("- Threads: " + ("each library's own default" if args.threads is None
                                  else f"{args.threads} for every library (--threads)"))
    lines.append("")
    lines.append("| framework | rows | µs per call | best sample (µs) | ÷ fastmlp | "
                 "first call (ms) | max abs diff vs fastmlp |")
    lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    ours = results.get("fastmlp", {}).get("rows", {})
    for name, result in results.items():
        label = FRAMEWORKS[name][0]
        if "error" in result or "skipped" in result:
            why = result.get("error") or result.get("skipped")
            lines.append(f"| {label} | | {why.replace('|', '/')[:120]} | | | | |")
            continue
        for n in rows:
            entry = result["rows"][str(n)]
            median = statistics.median(entry["samples_s"])
            base = ours.get(str(n))
            ratio = (f"{median / statistics.median(base['samples_s']):.2f}×" if base else "—")
            lines.append(f"| {label} | {n:,} | {_fmt_us(median)} | "
                         f"{_fmt_us(min(entry['samples_s']))} | {ratio} | "
                         f"{entry['first_call_s'] * 1e3:,.1f} | {entry['max_abs_diff']:.1e} |")
    lines.append("")
    lines.append("÷ fastmlp: this row's time over fastmlp's for the same rows (< 1: faster than "
                 "fastmlp). First call: the first prediction after building the model or session "
                 "(fastmlp loads its compiled kernels from the disk cache when warm).")
    lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ main

def build_parser():
    parser = argparse.ArgumentParser(
        description="Inference latency (µs per call) of fastmlp's predict_proba vs onnxruntime "
                    "on model.to_onnx's graph (and PyTorch eager on model.to_torch() when "
                    "installed), for 1 and 1,000 rows; prints a markdown table.",
        epilog="Frameworks: " + ", ".join(FRAMEWORKS) + ".")
    parser.add_argument("--quick", action="store_true",
                        help="fast smoke run: 3 repeats of short samples (0.02 s)")
    parser.add_argument("--sizes", default="784-512-512-10",
                        help="layer sizes, input to output (default 784-512-512-10)")
    parser.add_argument("--rows", default="1,1000",
                        help="comma-separated rows per call (default 1,1000)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                        help="floating-point type of the model and inputs (default float32)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="samples per framework and row count (default 7; 3 quick)")
    parser.add_argument("--min-time", type=float, default=None,
                        help="seconds one sample lasts at least (default 0.2; 0.02 quick)")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up calls (default 3)")
    parser.add_argument("--threads", type=int, default=None,
                        help="force every library to this many threads (default: each "
                             "library's own choice)")
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS),
                        help="comma-separated subset of: " + ", ".join(FRAMEWORKS))
    parser.add_argument("--output", metavar="FILE.md", help="also write the markdown report here")
    parser.add_argument("--worker-timeout", type=float, default=600.0,
                        help="seconds one framework may take (default 600)")
    parser.add_argument("--worker", choices=tuple(FRAMEWORKS), help=argparse.SUPPRESS)
    return parser


def resolve_defaults(args):
    if args.repeats is None:
        args.repeats = 3 if args.quick else 7
    if args.min_time is None:
        args.min_time = 0.02 if args.quick else 0.2
    if args.repeats < 1 or args.warmup < 0 or args.min_time <= 0:
        raise SystemExit("--repeats must be >= 1, --warmup >= 0 and --min-time > 0")
    if args.threads is not None and args.threads < 1:
        raise SystemExit("--threads must be >= 1")
    parse_sizes(args.sizes)
    parse_rows(args.rows)
    return args


def main(argv=None):
    args = resolve_defaults(build_parser().parse_args(argv))
    if args.worker:
        return run_worker(args)
    wanted = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    unknown = [f for f in wanted if f not in FRAMEWORKS]
    if unknown:
        raise SystemExit(f"unknown framework(s) {unknown}; choose from {', '.join(FRAMEWORKS)}")
    started = datetime.datetime.now(datetime.timezone.utc)
    began = time.perf_counter()
    results = {}
    for name in (f for f in FRAMEWORKS if f in wanted):
        missing = [m for m in FRAMEWORKS[name][1] if importlib.util.find_spec(m) is None]
        if missing:
            results[name] = {"framework": name, "skipped": f"skipped: {', '.join(missing)} not "
                                                           f"installed"}
            print(f"[{name}] skipped: {', '.join(missing)} not installed", file=sys.stderr)
            continue
        results[name] = spawn_worker(name, args)
    report = render(results, args, started, time.perf_counter() - began)
    print(report)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
