"""Whether the bfloat16 products of ``dtype="mixed_bfloat16"`` can run in this process.

They need oneDNN (the ``fastmlp[bf16]`` extra) and a CPU with bfloat16 instructions (AVX512_BF16
or AMX-BF16) that oneDNN dispatches to; ``kernels.cpu.onednn.bf16_support`` finds out once per
process. :func:`require_bf16` raises :class:`BFloat16UnavailableError` naming what is missing, for
a mixed model's engine; there is no emulated fallback.
"""

__all__ = ["BFloat16UnavailableError", "require_bf16"]


class BFloat16UnavailableError(RuntimeError):
    """Raised when ``dtype="mixed_bfloat16"`` is requested where its bfloat16 products cannot
    run (the message says why: the extra, or the CPU's instructions)."""


def require_bf16():
    """Nothing when the bfloat16 products can run here, else BFloat16UnavailableError."""
    from ..kernels.cpu.onednn import bf16_support
    reason = bf16_support()
    if reason is not None:
        raise BFloat16UnavailableError(reason)
