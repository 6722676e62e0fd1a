"""fastmlp: fast, trustworthy multilayer-perceptron training with Numba kernels.

Quick tour::

    import fastmlp as fm
    model = fm.MLP(64, [fm.Dense(128, "relu", batchnorm=True), fm.Dense(10)], seed=0)
    trainer = fm.Trainer(model, fm.Adam(1e-3), batch_size=64, epochs=20)
    history = trainer.fit(X, y, validation_split=0.1)
    model.predict(X_test)
"""

__version__ = "0.1.0"

# First of all: compiled kernels go to a per-user cache folder, never beside the modules.
from . import (
    datasets,  # noqa: E402
    kernel_cache,  # noqa: E402, F401
)
from .callbacks import Callback, EarlyStopping  # noqa: E402
from .engines.bf16_support import BFloat16UnavailableError  # noqa: E402
from .engines.cuda_support import CudaUnavailableError, get_cuda_matmul, set_cuda_matmul  # noqa: E402
from .ensemble import Bagging  # noqa: E402
from .gradcheck import GradcheckError, GradcheckReport, GradcheckWarning, gradcheck  # noqa: E402
from .io import FileFormatError  # noqa: E402
from .layers import Dense  # noqa: E402
from .model import MLP  # noqa: E402
from .optimizers import SGD, Adagrad, Adam, AdamW, Optimizer, RMSProp, RMSprop, Rprop  # noqa: E402
from .preprocessing import Standardizer  # noqa: E402
from .schedules import CosineAnnealingLR, ReduceLROnPlateau, StepLR  # noqa: E402
from .threads import get_num_threads, num_threads, set_num_threads  # noqa: E402
from .trainer import NonFiniteLossWarning, Trainer  # noqa: E402

__all__ = [
    "MLP", "Dense", "Trainer", "EarlyStopping", "Callback", "NonFiniteLossWarning",
    "SGD", "Adagrad", "RMSProp", "RMSprop", "Adam", "AdamW", "Rprop", "Optimizer",
    "StepLR", "CosineAnnealingLR", "ReduceLROnPlateau", "Standardizer", "datasets",
    "Bagging", "gradcheck", "GradcheckReport", "GradcheckWarning", "GradcheckError",
    "set_num_threads", "get_num_threads", "num_threads", "set_cuda_matmul", "get_cuda_matmul",
    "FileFormatError", "CudaUnavailableError", "BFloat16UnavailableError", "__version__",
]
