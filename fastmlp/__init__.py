"""fastmlp: fast, trustworthy multilayer-perceptron training with Numba kernels.

Quick tour::

    import fastmlp as fm
    model = fm.MLP(64, [fm.Dense(128, "relu", batchnorm=True), fm.Dense(10)], seed=0)
    trainer = fm.Trainer(model, fm.Adam(1e-3), batch_size=64, epochs=20)
    history = trainer.fit(X, y, validation_split=0.1)
    model.predict(X_test)
"""

__version__ = "0.1.0"

from ._collector import collector_paused  # noqa: E402

# Importing Numba makes many long-lived objects: no collections meanwhile (see _collector).
with collector_paused():
    # First of all: compiled kernels go to a per-user cache folder, never beside the modules.
    from . import (
        datasets,
        kernel_cache,  # noqa: F401
    )
    from .callbacks import Callback, EarlyStopping
    from .engines.bf16_support import BFloat16UnavailableError
    from .engines.cuda_support import CudaUnavailableError, get_cuda_matmul, set_cuda_matmul
    from .ensemble import Bagging
    from .gradcheck import GradcheckError, GradcheckReport, GradcheckWarning, gradcheck
    from .io import FileFormatError
    from .layers import Dense
    from .model import MLP
    from .optimizers import SGD, Adagrad, Adam, AdamW, Optimizer, RMSProp, RMSprop, Rprop
    from .preprocessing import Standardizer
    from .schedules import CosineAnnealingLR, ReduceLROnPlateau, StepLR
    from .threads import get_num_threads, num_threads, set_num_threads
    from .trainer import NonFiniteLossWarning, Trainer

__all__ = [
    "MLP", "Dense", "Trainer", "EarlyStopping", "Callback", "NonFiniteLossWarning",
    "SGD", "Adagrad", "RMSProp", "RMSprop", "Adam", "AdamW", "Rprop", "Optimizer",
    "StepLR", "CosineAnnealingLR", "ReduceLROnPlateau", "Standardizer", "datasets",
    "Bagging", "gradcheck", "GradcheckReport", "GradcheckWarning", "GradcheckError",
    "set_num_threads", "get_num_threads", "num_threads", "set_cuda_matmul", "get_cuda_matmul",
    "FileFormatError", "CudaUnavailableError", "BFloat16UnavailableError", "__version__",
]
