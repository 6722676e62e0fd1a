"""Interoperability: models that leave fastmlp as ONNX files and move to and from PyTorch.

- :func:`save_onnx` / :func:`build_onnx_model` (:mod:`.onnx_export`): an ONNX graph whose outputs
  equal ``predict`` / ``predict_proba`` (or ``forward`` for mse), with a stored Standardizer
  folded in. Needs ``pip install "fastmlp[onnx]"``.
- :func:`from_torch` / :func:`to_torch` (:mod:`.torch_convert`): a ``torch.nn.Sequential`` of
  Linear, BatchNorm1d, activations and Dropout to and from an MLP. Needs PyTorch
  (``pip install "fastmlp[torch]"``).
- :func:`~.skl2onnx_converters.register_skl2onnx_converters` (:mod:`.skl2onnx_converters`):
  skl2onnx converters of ``fastmlp.sklearn.MLPClassifier`` / ``MLPRegressor``, so Pipelines that
  hold them export with ``skl2onnx.to_onnx``. Needs skl2onnx.

The methods ``MLP.to_onnx``, ``MLP.from_torch`` and ``MLP.to_torch`` call these. Importing this
package imports none of onnx, torch and skl2onnx; they load when first used.
"""

from .onnx_export import (
                          DEFAULT_OPSET,
                          INPUT_NAME,
                          MIN_OPSET,
                          OUTPUTS,
                          build_onnx_model,
                          save_onnx,
)
from .torch_convert import from_torch, to_torch

__all__ = ["save_onnx", "build_onnx_model", "from_torch", "to_torch", "DEFAULT_OPSET",
           "MIN_OPSET", "INPUT_NAME", "OUTPUTS"]
