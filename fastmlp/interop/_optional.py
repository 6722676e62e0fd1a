"""Imports of the optional packages that interoperability needs, with errors naming the extra."""

from __future__ import annotations

import importlib

# package → the fastmlp extra that installs it
EXTRAS = {"onnx": "onnx", "onnxruntime": "onnx", "torch": "torch"}


def require(package, purpose):
    """Import and return ``package``; a missing one raises ImportError saying which
    ``pip install "fastmlp[extra]"`` brings it (``purpose`` says what needs it)."""
    try:
        return importlib.import_module(package)
    except ImportError as exc:
        extra = EXTRAS[package]
        raise ImportError(f"{purpose} needs the {package!r} package, which is not installed: "
                          f'pip install "fastmlp[{extra}]"') from exc
