"""Export of a :class:`fastmlp.MLP` to an ONNX file that reproduces its evaluation-mode predictions.

The graph has one input ``X`` of shape (n, input_dim), n dynamic, in the model's float dtype
(float32 or float64), and computes, in order:

1. the model's stored :class:`fastmlp.Standardizer` (``model.standardizer``), if any:
   x ← (x - mean) / scale, so raw features go in;
2. per :class:`fastmlp.Dense` layer: z = x·W + b (Gemm; W is (in, width)) → batchnorm in
   evaluation mode, z ← (z - running_mean)·(1/sqrt(running_var + eps))·γ + β with eps = 1e-5 →
   the activation (:mod:`.onnx_activations`) → dropout, which is the identity in evaluation and
   adds no node;
3. the outputs of the loss (:data:`OUTPUTS`), from the last layer's raw outputs z (n, C):

   ======================  =========================================================================
   cross_entropy           ``label`` int64 (n,) = argmax z (``predict``),
                           ``probabilities`` (n, C) = softmax z (``predict_proba``)
   binary_cross_entropy    ``label`` int64 = [z > 0], (n,) for one output, else (n, C),
                           ``probabilities`` (n, C) = σ(z)
   hinge                   ``label`` int64 (n,) = argmax z, ``scores`` (n, C) = z
   mse                     ``output`` (n, C) = z (``forward``)
   ======================  =========================================================================

The model passes ``onnx.checker.check_model`` (with shape inference) before it is written, and the
file is written atomically (:func:`fastmlp.io.atomic_write`). Needs the ``onnx`` extra.
"""

from __future__ import annotations

import json
import numbers
import os

import numpy as np

from .. import __version__
from ..engines.layout import BN_EPS
from ..io import atomic_write
from ..model import MLP
from ._onnx_graph import GraphBuilder
from ._optional import require
from .onnx_activations import add_activation, sigmoid

INPUT_NAME = "X"
BATCH_DIM = "n"
# the ai.onnx opset written when none is asked for: read by onnxruntime >= 1.14
DEFAULT_OPSET = 18
# the oldest opset with the operator signatures used here (Softmax over one axis, Squeeze axes)
MIN_OPSET = 13
OUTPUTS = {
    "cross_entropy": ("label", "probabilities"),
    "binary_cross_entropy": ("label", "probabilities"),
    "hinge": ("label", "scores"),
    "mse": ("output",),
}
_PROTOBUF_LIMIT = 2 ** 31 - 1  # bytes of one serialized protobuf message


def check_path(path):
    """``path`` as a str; TypeError unless it is a str or os.PathLike."""
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike; got {type(path).__name__}")
    path = os.fspath(path)
    if not isinstance(path, str):
        raise TypeError(f"path must name a file as text, not bytes; got {path!r}")
    return path


def check_opset(opset):
    """The opset to write: DEFAULT_OPSET for None, else an int in MIN_OPSET … the newest opset the
    installed ``onnx`` knows (TypeError / ValueError otherwise). Imports ``onnx`` for the bound."""
    if opset is not None and (isinstance(opset, bool) or not isinstance(opset, numbers.Integral)):
        raise TypeError(f"opset must be an int or None; got {type(opset).__name__} {opset!r}")
    onnx = require("onnx", "ONNX export")
    newest = onnx.defs.onnx_opset_version()
    if opset is None:
        return DEFAULT_OPSET
    opset = int(opset)
    if not MIN_OPSET <= opset <= newest:
        raise ValueError(f"opset must be in {MIN_OPSET}..{newest} (the newest the installed onnx "
                         f"{onnx.__version__} knows); got {opset}")
    return opset


def _check_model(model):
    if not isinstance(model, MLP):
        raise TypeError(f"model must be a fastmlp.MLP; got {type(model).__name__}")
    if model.dtype.name not in ("float32", "float64"):
        raise ValueError(f"ONNX export supports float32 and float64 models; this one is "
                         f"{model.dtype.name}")
    if model.loss not in OUTPUTS:
        raise ValueError(f"ONNX export has no outputs for loss {model.loss!r}")
    standardizer = model.standardizer
    if standardizer is not None:
        fitted = getattr(standardizer, "n_features_in_", None)
        if fitted is None:
            raise ValueError("model.standardizer is not fitted; fit it or set it to None")
        if fitted != model.input_dim:
            raise ValueError(f"model.standardizer was fitted on {fitted} features; the model "
                             f"takes {model.input_dim}")


def _standardize(g, x, standardizer):
    """(x - mean) / scale with the constants cast to the graph dtype, as Standardizer.transform
    computes in that dtype."""
    with g.scope("standardizer"):
        centred = g.op("Sub", x, g.constant(standardizer.mean_, "mean"))
        return g.op("Div", centred, g.constant(standardizer.scale_, "scale"))


def _batchnorm(g, z, model, index):
    """Evaluation-mode batchnorm of the (n, width) pre-activations ``z`` of layer ``index``; the
    factor 1/sqrt(running_var + eps) is formed in float64 and then rounded, as the kernel does."""
    params, buffers = model.params, model.buffers
    inv_std = 1.0 / np.sqrt(buffers[f"{index}.running_var"].astype(np.float64) + BN_EPS)
    centred = g.op("Sub", z, g.constant(buffers[f"{index}.running_mean"], "running_mean"))
    normalized = g.op("Mul", centred, g.constant(inv_std, "inv_std"))
    scaled = g.op("Mul", normalized, g.constant(params[f"{index}.gamma"], "gamma"))
    return g.op("Add", scaled, g.constant(params[f"{index}.beta"], "beta"))


def add_network(g, x, model):
    """The layers of ``model`` applied to the (n, input_dim) tensor ``x`` (standardizer
    excluded); returns the name of the (n, n_outputs) raw outputs. Layer l's nodes and constants
    are named ``layer{l}/…`` (``layer0/W`` holds ``model.params["0.W"]``)."""
    h = x
    for index, layer in enumerate(model.layers):
        with g.scope(f"layer{index}"):
            z = g.op("Gemm", h, g.constant(model.params[f"{index}.W"], "W"),
                     g.constant(model.params[f"{index}.b"], "b"))
            if layer.batchnorm:
                z = _batchnorm(g, z, model, index)
            h = add_activation(g, z, layer)
    return h


def add_predictions(g, z, model):
    """The outputs of :data:`OUTPUTS` for ``model.loss`` computed from the raw outputs ``z``;
    returns [(name, elem_type, shape)] in output order."""
    int64 = g.onnx.TensorProto.INT64
    names = OUTPUTS[model.loss]
    for name in names:
        g.reserve(name)
    classes = model.n_outputs
    if model.loss == "mse":
        return [(g.op("Identity", z, output=names[0]), g.elem_type, [BATCH_DIM, classes])]
    if model.loss in ("cross_entropy", "hinge"):
        label = g.op("ArgMax", z, output=names[0], axis=1, keepdims=0)
        if model.loss == "cross_entropy":
            scores = g.op("Softmax", z, output=names[1], axis=1)
        else:
            scores = g.op("Identity", z, output=names[1])
        return [(label, int64, [BATCH_DIM]), (scores, g.elem_type, [BATCH_DIM, classes])]
    positive = g.op("Cast", g.op("Greater", z, g.scalar(0.0)), to=int64)
    if classes == 1:
        label = g.op("Squeeze", positive, g.int64s([1], "label_axes"), output=names[0])
        label_shape = [BATCH_DIM]
    else:
        label = g.op("Identity", positive, output=names[0])
        label_shape = [BATCH_DIM, classes]
    probabilities = sigmoid(g, z, output=names[1])
    return [(label, int64, label_shape), (probabilities, g.elem_type, [BATCH_DIM, classes])]


def _describe(model):
    sizes = "-".join(str(n) for n in [model.input_dim] + [layer.units for layer in model.layers])
    outputs = ", ".join(OUTPUTS[model.loss])
    folded = "; its Standardizer is folded in (raw features go in)" if model.standardizer else ""
    return (f"fastmlp MLP {sizes} ({model.loss}, {model.dtype.name}): input {INPUT_NAME} "
            f"(n, {model.input_dim}){folded}; outputs {outputs}")


def build_onnx_model(model, opset=None):
    """The ONNX ``ModelProto`` of ``model`` (see the module docstring), checked with
    ``onnx.checker.check_model``. ``opset`` is the ai.onnx opset (None: DEFAULT_OPSET)."""
    _check_model(model)
    opset = check_opset(opset)
    onnx = require("onnx", "ONNX export")
    g = GraphBuilder(model.dtype, opset)
    x = g.reserve(INPUT_NAME)
    if model.standardizer is not None:
        x = _standardize(g, x, model.standardizer)
    outputs = add_predictions(g, add_network(g, x, model), model)
    graph = onnx.helper.make_graph(
        g.nodes, "fastmlp_mlp",
        [g.value_info(INPUT_NAME, g.elem_type, [BATCH_DIM, model.input_dim])],
        [g.value_info(name, elem_type, shape) for name, elem_type, shape in outputs],
        initializer=g.initializers)
    opset_imports = [onnx.helper.make_opsetid("", opset)]
    proto = onnx.helper.make_model(graph, opset_imports=opset_imports, producer_name="fastmlp",
                                   producer_version=__version__, doc_string=_describe(model))
    # the oldest IR version that carries this opset, so older runtimes read the file too
    proto.ir_version = onnx.helper.find_min_ir_version_for(opset_imports)
    onnx.helper.set_model_props(proto, {
        "fastmlp.config": json.dumps(model.get_config(), sort_keys=True),
        "fastmlp.standardizer_folded": "true" if model.standardizer is not None else "false"})
    if proto.ByteSize() > _PROTOBUF_LIMIT:
        raise ValueError(f"the model is {proto.ByteSize():,} bytes as ONNX, over protobuf's limit "
                         f"of {_PROTOBUF_LIMIT:,} bytes for one file")
    onnx.checker.check_model(proto, full_check=True)
    return proto


def save_onnx(model, path, opset=None):
    """Write ``model`` as an ONNX file at ``path`` (see the module docstring), atomically: an
    interrupted export leaves any previous file at ``path`` as it was. Arguments are checked
    before anything is written. Returns ``path`` as a str."""
    path = check_path(path)
    proto = build_onnx_model(model, opset)
    payload = proto.SerializeToString()
    atomic_write(path, lambda handle: handle.write(payload))
    return path
