"""fastmlp: fast, trustworthy multilayer-perceptron training with Numba kernels."""

__version__ = "0.1.0"

from .io import FileFormatError  # noqa: E402
from .layers import Dense  # noqa: E402
from .model import MLP  # noqa: E402

__all__ = ["MLP", "Dense", "FileFormatError", "__version__"]
