"""``njit`` for the CPU kernels: Numba's, with each kernel compiled once per argument *type*.

Called from other compiled code with a constant argument (a phase code, a layer index 0, a flag
True), Numba compiles the callee again for that constant's literal type. Across the layered
kernels that multiplied the compile work several times over (a cold start took minutes). Here the
arguments of calls between kernels are typed without their literal values, so each kernel is
compiled once per dtype; the branches on codes are taken at run time, which costs nothing
measurable next to the matrix products.
"""

import numba
from numba.core import types


def _unliteral_call_template(dispatcher):
    typed = type(dispatcher).get_call_template

    def get_call_template(args, kws):
        args = tuple(types.unliteral(a) for a in args)
        kws = {k: types.unliteral(v) for k, v in kws.items()}
        return typed(dispatcher, args, kws)

    dispatcher.get_call_template = get_call_template
    return dispatcher


def njit(*args, **options):
    """``numba.njit`` (same arguments) whose dispatcher ignores literal values of its arguments."""
    if args and callable(args[0]) and not options:
        return _unliteral_call_template(numba.njit(args[0]))
    decorate = numba.njit(*args, **options)
    return lambda function: _unliteral_call_template(decorate(function))
