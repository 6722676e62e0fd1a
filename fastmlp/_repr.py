"""``repr`` of fastmlp's objects in the form scikit-learn's estimators print in:
``ClassName(argument=value, ...)`` with the constructor's arguments, so that printing an object
shows how to build it again."""

from __future__ import annotations

import inspect


def constructor_arguments(obj, given=None):
    """{name: value} for the arguments of ``type(obj).__init__`` (in order), taken from ``given``
    (a dict) where it holds them, else from the attribute of the same name; arguments found in
    neither, and ``*args`` / ``**kwargs``, are left out."""
    try:
        signature = inspect.signature(type(obj).__init__)
    except (TypeError, ValueError):
        return {}
    given = given or {}
    values = {}
    for name, parameter in list(signature.parameters.items())[1:]:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if name in given:
            values[name] = given[name]
        elif hasattr(obj, name):
            values[name] = getattr(obj, name)
    return values


def constructor_repr(obj, given=None):
    """``ClassName(argument=value, ...)`` from :func:`constructor_arguments`."""
    arguments = ", ".join(f"{name}={value!r}"
                          for name, value in constructor_arguments(obj, given).items())
    return f"{type(obj).__name__}({arguments})"


class ConstructorRepr:
    """Mixin: ``repr`` is :func:`constructor_repr`; a class whose constructor arguments are not
    all kept under their own names says where they are in ``_repr_arguments``."""

    def _repr_arguments(self):
        return {}

    def __repr__(self):
        return constructor_repr(self, self._repr_arguments())
