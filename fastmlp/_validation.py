"""Host-side checks of user input, done once before any kernel touches memory."""

from __future__ import annotations

import numbers
import os

import numpy as np

DTYPES = {"float32": np.float32, "float64": np.float64}
MIXED_BFLOAT16 = "mixed_bfloat16"
"""The mixed-precision policy (Keras's name): float32 parameters, gradients, optimizer state,
statistics and loss; every matrix product on bfloat16 operands, summed in float32."""


def dtype_policy(dtype):
    """The name of a model's dtype policy: 'float32', 'float64' (or the NumPy types) or
    'mixed_bfloat16'; anything else is a ValueError."""
    if isinstance(dtype, str) and dtype == MIXED_BFLOAT16:
        return MIXED_BFLOAT16
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved is None or resolved.name not in DTYPES or isinstance(dtype, bool):
        raise ValueError(f"dtype must be 'float32', 'float64' or 'mixed_bfloat16'; got {dtype!r}")
    return resolved.name


def resolve_dtype(dtype):
    """The np.dtype of the arrays under a dtype policy (:func:`dtype_policy`): float32 or
    float64 (float32 for 'mixed_bfloat16')."""
    name = dtype_policy(dtype)
    return np.dtype(np.float32 if name == MIXED_BFLOAT16 else DTYPES[name])


def as_numeric_array(value, name):
    """np.asarray(value) for real numeric data; TypeError for objects, strings, complex, sparse."""
    if hasattr(value, "tocsr") and hasattr(value, "nnz"):
        raise TypeError(f"{name} must be a dense array; got a sparse matrix (use .toarray())")
    if hasattr(value, "__cuda_array_interface__"):
        raise TypeError(f"{name} is a GPU array (__cuda_array_interface__); this takes host "
                        f"arrays: copy it to the host first (cupy: .get(), torch: .cpu().numpy())")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} could not be converted to a numeric array: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers (bool, int or float); got dtype {arr.dtype}")
    return arr


_FINITE_CHECK_BLOCK = 1 << 18  # elements per block: the check allocates at most this many bools


def all_finite(arr):
    """True when no element is NaN or inf, checked a block at a time (no full-size temporary)."""
    if arr.dtype.kind != "f":
        return True
    flat = arr.reshape(-1) if arr.flags.c_contiguous else arr.ravel()
    return all(np.isfinite(flat[i:i + _FINITE_CHECK_BLOCK]).all()
               for i in range(0, flat.size, _FINITE_CHECK_BLOCK))


def check_finite(arr, name):
    if not all_finite(arr):
        raise ValueError(f"{name} contains NaN or inf")


def check_features(X, n_features, dtype, name="X"):
    """X as a C-contiguous (n, n_features) array of ``dtype``; ValueError/TypeError otherwise."""
    arr = as_numeric_array(X, name)
    if arr.ndim != 2:
        hint = " (reshape a single feature with X.reshape(-1, 1))" if arr.ndim == 1 else ""
        raise ValueError(f"{name} must be 2-D (n_samples, n_features); got shape {arr.shape}{hint}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} has zero samples; at least one is required")
    if arr.shape[1] != n_features:
        raise ValueError(f"{name} has {arr.shape[1]} features but the model expects {n_features} "
                         f"(input_dim)")
    return cast_finite(arr, dtype, name)


def cast_finite(arr, dtype, name, hint=None):
    """C-contiguous ``arr`` as ``dtype``; ValueError when it contains NaN or inf, or when finite
    values overflow ``dtype`` (e.g. 1e300 → float32). ``hint`` says what to do instead (default:
    use a float64 model). One pass over the values when they are fine: the cast result is
    checked, and ``arr`` only to tell the two errors apart."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = writable_contiguous(arr, dtype)
    if not all_finite(out):
        if not all_finite(arr):
            raise ValueError(f"{name} contains NaN or inf")
        raise ValueError(overflow_message(arr, dtype, name, hint))
    return out


def overflow_message(arr, dtype, name, hint=None):
    """Why finite ``arr`` does not fit in ``dtype``: its largest magnitude and the dtype's."""
    dtype = np.dtype(dtype)
    largest = float(np.max(np.abs(arr)))
    hint = "use a float64 model (dtype='float64') or rescale the data" if hint is None else hint
    return (f"{name} has values that overflow {dtype.name} (largest magnitude {largest:.3g}; "
            f"{dtype.name} holds up to {float(np.finfo(dtype).max):.3g}): {hint}")


def check_state_values(arr, name, non_negative=False, error=ValueError):
    """``error`` naming ``name`` unless every value of the float array ``arr`` is finite (and
    >= 0 with ``non_negative``): the rules that ``model.params[key] = value`` applies."""
    if not all_finite(arr):
        raise error(f"{name} contains NaN or inf")
    if non_negative and arr.size and float(np.min(arr)) < 0.0:
        raise error(f"{name} must be non-negative; got {float(np.min(arr)):.6g}")
    return arr


def writable_contiguous(arr, dtype):
    """C-contiguous, writable ``arr`` as ``dtype`` (a read-only array would make Numba compile a
    second copy of every kernel, so it is copied)."""
    out = np.ascontiguousarray(arr, dtype=dtype)
    return out if out.flags.writeable else out.copy()


# Limits of the integers that reach the kernels or size an allocation (stated in README "Errors").
MAX_SEED = 2 ** 63 - 1
"""Largest seed: seeds reach the kernels as int64."""
MAX_STEP = 2 ** 62
"""Largest step or epoch counter (dropout_step, optimizer steps, epochs): int64 in the kernels,
with room left to count 2**62 further steps."""
MAX_SIZE = 2 ** 31 - 1
"""Largest input_dim, layer width (units × pieces) and batch size: matrix dimensions reach BLAS as
32-bit integers."""
MAX_PARAMS = 2 ** 48
"""Largest number of parameters (or running statistics) of one model, so that every offset and
byte count of the model's flat arrays fits in int64 with room to spare."""


def describe_int(n):
    """``n`` as text, large powers of two (and one less) written ``2**k`` / ``2**k - 1``."""
    k = n.bit_length()
    if n >= 2 ** 20 and n == 2 ** (k - 1):
        return f"2**{k - 1}"
    if n >= 2 ** 20 and n == 2 ** k - 1:
        return f"2**{k} - 1"
    return str(n)


def check_int(value, name, minimum=None, maximum=None, why=None):
    """``value`` as a Python int: TypeError unless it is an integer (bools excluded), ValueError
    outside [minimum, maximum]; ``why`` (e.g. "the kernels take int64") explains the maximum."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    if maximum is not None and value > maximum:
        reason = f" ({why})" if why else ""
        raise ValueError(f"{name} must be <= {describe_int(maximum)}{reason}; got {value}")
    return value


def check_seed(value, name="seed"):
    """An integer seed in [0, MAX_SEED]."""
    return check_int(value, name, 0, MAX_SEED, "seeds reach the kernels as int64")


def check_step(value, name="dropout_step", minimum=0):
    """A step or epoch counter in [minimum, MAX_STEP]."""
    return check_int(value, name, minimum, MAX_STEP, "counters are int64 in the kernels")


def check_size(value, name, minimum=1):
    """A dimension (input_dim, units, pieces, batch_size) in [minimum, MAX_SIZE]."""
    return check_int(value, name, minimum, MAX_SIZE,
                     "matrix dimensions reach BLAS as 32-bit integers")


def check_real(value, name, minimum=None, maximum=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {value!r}")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite; got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}; got {value}")
    return value


def count_network(input_dim, layers):
    """(parameters, running statistics) of a network of ``layers`` (objects with ``units``,
    ``width`` and ``batchnorm``, like :class:`fastmlp.Dense`) fed ``input_dim`` features, counted
    with Python integers: nothing is allocated."""
    n_params = n_buffers = 0
    fan_in = input_dim
    for layer in layers:
        n_params += (fan_in + 1 + 2 * layer.batchnorm) * layer.width
        n_buffers += 2 * layer.batchnorm * layer.width
        fan_in = layer.units
    return n_params, n_buffers


def check_network_size(input_dim, layers):
    """ValueError when the network holds more than MAX_PARAMS parameters; returns
    (parameters, running statistics)."""
    n_params, n_buffers = count_network(input_dim, layers)
    if n_params > MAX_PARAMS:
        widths = ", ".join(str(layer.width) for layer in layers)
        raise ValueError(f"the network has {n_params:,} parameters (input_dim={input_dim}, layer "
                         f"widths [{widths}]); a model holds at most {describe_int(MAX_PARAMS)}")
    return n_params, n_buffers


def format_bytes(n):
    """``n`` bytes as text in the largest binary unit that keeps it >= 1 (e.g. '18.6 GiB')."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def physical_memory():
    """The machine's physical memory in bytes, or None where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def check_memory(nbytes, what):
    """MemoryError naming ``what`` when ``nbytes`` exceed the machine's physical memory: such a
    request is refused before it is made (on a system that overcommits memory it could
    otherwise succeed and end the process when the pages are touched)."""
    total = physical_memory()
    if total is not None and nbytes > total:
        raise MemoryError(f"not enough memory for {what}: it needs {format_bytes(nbytes)}, more "
                          f"than this machine's {format_bytes(total)}")


def allocate(size, dtype, what):
    """``np.zeros(size, dtype)``; MemoryError naming ``what`` and its size when it does not fit
    (more than the physical memory is not attempted, see :func:`check_memory`)."""
    dtype = np.dtype(dtype)
    check_memory(size * dtype.itemsize, f"{what} ({size:,} {dtype.name} numbers)")
    try:
        return np.zeros(size, dtype=dtype)
    except MemoryError:
        raise MemoryError(f"not enough memory for {what}: {size:,} {dtype.name} numbers "
                          f"({format_bytes(size * dtype.itemsize)})") from None


_SHUFFLE_STATE_KEYS = {"bit_generator", "state", "has_uint32", "uinteger"}


def check_shuffle_state(state, name="shuffle_state"):
    """A copy of ``state`` when it is the state of a PCG64 generator, as
    ``numpy.random.default_rng().bit_generator.state`` gives it: the keys bit_generator
    ("PCG64"), state ({"state": int, "inc": int}, each in [0, 2**128)), has_uint32 (0 or 1) and
    uinteger (in [0, 2**32)). TypeError/ValueError naming ``name`` and the entry otherwise."""
    if not isinstance(state, dict):
        raise TypeError(f"{name} must be a dict (a PCG64 bit-generator state); got "
                        f"{type(state).__name__}")
    if set(state) != _SHUFFLE_STATE_KEYS:
        raise ValueError(f"{name} must have the keys {sorted(_SHUFFLE_STATE_KEYS)}; got "
                         f"{sorted(map(str, state))}")
    if state["bit_generator"] != "PCG64":
        raise ValueError(f"{name}['bit_generator'] must be 'PCG64'; got {state['bit_generator']!r}")
    inner = state["state"]
    if not isinstance(inner, dict) or set(inner) != {"state", "inc"}:
        raise ValueError(f"{name}['state'] must be a dict with the keys 'inc' and 'state'; got "
                         f"{inner!r}")
    for key in ("state", "inc"):
        check_int(inner[key], f"{name}['state'][{key!r}]", 0, 2 ** 128 - 1)
    check_int(state["has_uint32"], f"{name}['has_uint32']", 0, 1)
    check_int(state["uinteger"], f"{name}['uinteger']", 0, 2 ** 32 - 1)
    return {"bit_generator": "PCG64",
            "state": {"state": int(inner["state"]), "inc": int(inner["inc"])},
            "has_uint32": int(state["has_uint32"]), "uinteger": int(state["uinteger"])}
