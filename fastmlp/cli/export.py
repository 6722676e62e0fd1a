"""``fastmlp export MODEL.npz MODEL.onnx [--opset N]``: a saved model written as an ONNX file."""

from __future__ import annotations

import sys

from .arguments import EXIT_OK


def describe_export(model, path, opset):
    """One line saying what was written: the file, the opset, the input and the outputs."""
    from ..interop.onnx_export import INPUT_NAME, OUTPUTS
    dtype = model.dtype.name
    raw = ", a Standardizer folded in" if model.standardizer is not None else ""
    shapes = {"label": "int64 (n,)" if model.loss != "binary_cross_entropy" or model.n_outputs == 1
              else f"int64 (n, {model.n_outputs})"}
    outputs = ", ".join(f"{name} {shapes.get(name, f'{dtype} (n, {model.n_outputs})')}"
                        for name in OUTPUTS[model.loss])
    return (f"wrote {path} (ONNX opset {opset}): input {INPUT_NAME} {dtype} "
            f"(n, {model.input_dim}){raw}; outputs {outputs}")


def run_export(args, started):
    """Carry out ``fastmlp export``; returns the exit status. Errors propagate to ``cli.main``,
    which reports them as one ``error:`` line with exit status 2."""
    from ..interop.onnx_export import check_opset
    from ..model import MLP
    opset = check_opset(args.opset)  # before reading the model: a bad opset fails fast
    model = MLP.load(args.model, device="cpu")
    path = model.to_onnx(args.output, opset=opset)
    if not args.quiet:
        print(describe_export(model, path, opset), file=sys.stdout, flush=True)
    return EXIT_OK
