"""A small builder of ONNX graphs on top of ``onnx.helper``: nodes, constants and readable names.

Every method that adds a node returns the name of the node's output, so subgraphs compose like
expressions::

    g = GraphBuilder("float32", opset=18)
    y = g.op("Add", g.op("Mul", x, g.constant(w, "w")), g.scalar(1.0))

Float constants take the graph's float dtype; integer constants (shapes, axes) are int64.
"""

from __future__ import annotations

import contextlib

import numpy as np

from ._optional import require


class GraphBuilder:
    """Nodes and initializers of one graph under construction.

    Parameters
    ----------
    float_dtype : str or numpy dtype
        ``float32`` or ``float64``: the element type of every float constant.
    opset : int
        The ai.onnx opset the graph is written for (ops whose signature changed pick their form).
    prefix : str
        Prepended to every name the builder makes (to embed the graph in a larger one).
    """

    def __init__(self, float_dtype, opset, prefix=""):
        self.onnx = require("onnx", "ONNX export")
        self.float_dtype = np.dtype(float_dtype)
        self.elem_type = self.onnx.helper.np_dtype_to_tensor_dtype(self.float_dtype)
        self.opset = int(opset)
        self.prefix = prefix
        self.nodes = []
        self.initializers = []
        self._scope = ""
        self._taken = set()
        self._scalars = {}

    @contextlib.contextmanager
    def scope(self, name):
        """Names made inside the ``with`` block start with ``name/``."""
        outer = self._scope
        self._scope = f"{outer}{name}/"
        try:
            yield
        finally:
            self._scope = outer

    def _unique(self, name):
        candidate, count = name, 1
        while candidate in self._taken:
            candidate = f"{name}_{count}"
            count += 1
        self._taken.add(candidate)
        return candidate

    def reserve(self, name):
        """Claim the exact ``name`` (a graph input or output) so no generated name takes it."""
        if name in self._taken:
            raise ValueError(f"the name {name!r} is already used in this graph")
        self._taken.add(name)
        return name

    def constant(self, value, name, dtype=None):
        """An initializer holding ``value`` in the graph's float dtype (or ``dtype``); returns
        its name, ``prefix + scope + name`` (made unique)."""
        array = np.ascontiguousarray(value, dtype=self.float_dtype if dtype is None else dtype)
        full = self._unique(f"{self.prefix}{self._scope}{name}")
        self.initializers.append(self.onnx.numpy_helper.from_array(array, full))
        return full

    def scalar(self, value):
        """A 0-d float constant (one initializer per distinct value), for broadcasting."""
        key = float(value)
        if key not in self._scalars:
            saved, self._scope = self._scope, ""
            try:
                self._scalars[key] = self.constant(key, f"const_{key!r}")
            finally:
                self._scope = saved
        return self._scalars[key]

    def int64s(self, values, name):
        """A 1-d int64 constant (shapes, axes)."""
        return self.constant(np.asarray(values, dtype=np.int64), name, dtype=np.int64)

    def op(self, op_type, *inputs, output=None, **attributes):
        """Add one ``op_type`` node reading ``inputs``; returns its output's name: ``output``
        exactly when given (a graph output, claimed with :meth:`reserve`), else a fresh name
        made from the scope and the op type."""
        if output is None:
            output = self._unique(f"{self.prefix}{self._scope}{op_type}")
        node = self.onnx.helper.make_node(op_type, list(inputs), [output], name=output,
                                          **attributes)
        self.nodes.append(node)
        return output

    def value_info(self, name, elem_type, shape):
        """A typed graph input/output description; ``shape`` entries are ints or dim names."""
        return self.onnx.helper.make_tensor_value_info(name, elem_type, list(shape))
