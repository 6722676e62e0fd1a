"""skl2onnx converters for :mod:`fastmlp.sklearn`'s estimators, so that a scikit-learn
``Pipeline`` holding an ``MLPClassifier`` or ``MLPRegressor`` exports with ``skl2onnx.to_onnx``.

Call :func:`register_skl2onnx_converters` once, then convert as usual::

    from fastmlp.interop.skl2onnx_converters import register_skl2onnx_converters
    register_skl2onnx_converters()
    onx = skl2onnx.to_onnx(pipeline, X[:1].astype(np.float32))

The estimator's network (``model_``) becomes the same subgraph as :mod:`.onnx_export` writes,
computed in the element type of the tensor that reaches it (float32 for FloatTensorType, float64
for DoubleTensorType; other inputs are cast to float32). Outputs follow skl2onnx's conventions:

- MLPClassifier: ``label`` (n,) = ``classes_[argmax z]`` (int64 for numeric classes, strings
  otherwise; the class index itself with the option ``nocl=True``) and ``probabilities``
  (n, C) = softmax z, turned into a ZipMap unless the option ``zipmap=False`` is given;
- MLPRegressor: ``variable`` (n, n_targets) = z (one column for 1-d targets, as skl2onnx's other
  regressors).

The estimators predict in float64; with float32 inputs the graph agrees with them to float32
rounding (about 1e-6 here), with float64 inputs to about 1e-12. Needs skl2onnx
(``pip install skl2onnx``) besides the ``onnx`` extra.
"""

from __future__ import annotations

import numpy as np

from ._onnx_graph import GraphBuilder
from .onnx_export import MIN_OPSET, add_network

CLASSIFIER_ALIAS = "FastmlpMLPClassifier"
REGRESSOR_ALIAS = "FastmlpMLPRegressor"


def _require_skl2onnx():
    try:
        import skl2onnx
    except ImportError as exc:
        raise ImportError('the skl2onnx converters need the skl2onnx package: pip install '
                          'skl2onnx (and pip install "fastmlp[onnx]")') from exc
    return skl2onnx


def _network_builder(scope, operator, container):
    """(builder, name of the input as a float tensor) for the estimator of ``operator``."""
    from skl2onnx.common.data_types import DoubleTensorType
    opset = container.target_opset
    if opset < MIN_OPSET:
        raise ValueError(f"the fastmlp converters need target_opset >= {MIN_OPSET}; got {opset}")
    source = operator.inputs[0]
    dtype = np.float64 if isinstance(source.type, DoubleTensorType) else np.float32
    g = GraphBuilder(dtype, opset, prefix=scope.get_unique_variable_name("fastmlp") + "/")
    x = source.full_name
    if source.type.to_onnx_type().tensor_type.elem_type != g.elem_type:
        x = g.op("Cast", x, to=g.elem_type)
    return g, x


def _emit(g, container):
    """Move the builder's initializers and nodes into the skl2onnx container."""
    from onnx import TensorProto, helper, numpy_helper
    for tensor in g.initializers:
        content = tensor
        if tensor.data_type == TensorProto.STRING:  # the container copies raw data only
            content = [str(v) for v in numpy_helper.to_array(tensor).ravel()]
        container.add_initializer(tensor.name, tensor.data_type, list(tensor.dims), content)
    for node in g.nodes:
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        container.add_node(node.op_type, list(node.input), list(node.output), name=node.name,
                           **attributes)


def convert_mlp_classifier(scope, operator, container):
    """skl2onnx converter of :class:`fastmlp.sklearn.MLPClassifier`."""
    estimator = operator.raw_operator
    g, x = _network_builder(scope, operator, container)
    z = add_network(g, x, estimator.model_)
    g.op("Softmax", z, output=operator.outputs[1].full_name, axis=1)
    label = operator.outputs[0].full_name
    if container.get_options(estimator, dict(nocl=False))["nocl"]:
        g.op("ArgMax", z, output=label, axis=1, keepdims=0)
        _emit(g, container)
        return
    index = g.op("ArgMax", z, axis=1, keepdims=0)
    classes = np.asarray(estimator.classes_)
    if classes.dtype.kind in "biu":
        table = g.constant(classes.astype(np.int64), "classes", dtype=np.int64)
    elif classes.dtype.kind in "US" or classes.dtype == object:
        table = g.constant(np.array([str(c) for c in classes], dtype=object), "classes",
                           dtype=object)
    else:
        raise ValueError(f"the fastmlp converter exports integer or string class labels; "
                         f"classes_ has dtype {classes.dtype}")
    g.op("Gather", table, index, output=label, axis=0)
    _emit(g, container)


def convert_mlp_regressor(scope, operator, container):
    """skl2onnx converter of :class:`fastmlp.sklearn.MLPRegressor`."""
    g, x = _network_builder(scope, operator, container)
    z = add_network(g, x, operator.raw_operator.model_)
    g.op("Identity", z, output=operator.outputs[0].full_name)
    _emit(g, container)


def _regressor_output_shape(operator):
    """(n, n_outputs) in the input's float type (float32 for other inputs)."""
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType
    source = operator.inputs[0]
    kind = DoubleTensorType if isinstance(source.type, DoubleTensorType) else FloatTensorType
    operator.outputs[0].type = kind([source.get_first_dimension(),
                                     operator.raw_operator.model_.n_outputs])


def register_skl2onnx_converters():
    """Register the converters of MLPClassifier and MLPRegressor with skl2onnx (idempotent)."""
    skl2onnx = _require_skl2onnx()
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
    )

    from ..sklearn import MLPClassifier, MLPRegressor
    skl2onnx.update_registered_converter(
        MLPClassifier, CLASSIFIER_ALIAS, calculate_linear_classifier_output_shapes,
        convert_mlp_classifier, options={"zipmap": [True, False, "columns"], "nocl": [False, True]})
    skl2onnx.update_registered_converter(
        MLPRegressor, REGRESSOR_ALIAS, _regressor_output_shape, convert_mlp_regressor)
