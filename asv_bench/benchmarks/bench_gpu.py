"""GPU training (``device="cuda"``) against PyTorch CUDA; skipped without a usable GPU.

Configurations (sizes, batch): the three CPU ones plus 4096-4096-4096-10/4096; ReLU, cross-entropy,
Adam(lr=1e-3), float32, synthetic data resident on the GPU. One timed call is one epoch of
``STEPS`` batches (``STEPS_XLARGE`` for the largest), so the per-step time is the reported time
divided by the step count.
"""

import numpy as np

import fastmlp as fm

from . import make_data

GPU_CONFIGS = {
    "40-256-256-10/32": ((40, 256, 256, 10), 32),
    "784-512-512-10/128": ((784, 512, 512, 10), 128),
    "1024-4096-4096-10/512": ((1024, 4096, 4096, 10), 512),
    "4096-4096-4096-10/4096": ((4096, 4096, 4096, 10), 4096),
}
STEPS, STEPS_XLARGE = 20, 5


def _require_gpu():
    from fastmlp.engines.cuda_support import cuda_status, simulator_enabled
    available, reason = cuda_status()
    if not available or simulator_enabled():
        raise NotImplementedError(f"no GPU: {reason}")


def _steps(config):
    return STEPS_XLARGE if config.startswith("4096-") else STEPS


class _GpuConfigs:
    params = [list(GPU_CONFIGS)]
    param_names = ["config"]
    repeat = (1, 10, 20.0)
    timeout = 600


class GpuTrainEpoch(_GpuConfigs):
    """fastmlp: one epoch of ``Trainer.fit`` on the device (data, model and optimizer state
    uploaded once per call; the model copied back to the host at the end of the epoch). ``matmul`` is the
    product path of ``fm.set_cuda_matmul``: the tiled numba.cuda kernel or cuBLAS (CuPy)."""

    params = [list(GPU_CONFIGS), ["numba", "cublas"]]
    param_names = ["config", "matmul"]

    def setup(self, config, matmul):
        _require_gpu()
        from fastmlp.engines.cuda_support import CudaUnavailableError
        try:
            self.previous = fm.set_cuda_matmul(matmul)
        except CudaUnavailableError as exc:
            raise NotImplementedError(str(exc)) from None
        sizes, batch = GPU_CONFIGS[config]
        X, y = make_data(sizes[0], sizes[-1], batch * _steps(config), "float32")
        layers = [fm.Dense(u, activation="relu") for u in sizes[1:-1]] + [fm.Dense(sizes[-1])]
        model = fm.MLP(sizes[0], layers, dtype="float32", device="cuda", seed=0)
        self.trainer = fm.Trainer(model, fm.Adam(lr=1e-3), batch_size=batch, epochs=0,
                                  shuffle=False, progress=False)
        self.data = (X, y)
        self.time_epoch(config, matmul)  # compile, upload

    def teardown(self, config, matmul):
        if getattr(self, "previous", None):  # setup got as far as choosing the path
            fm.set_cuda_matmul(self.previous)

    def time_epoch(self, config, matmul):
        self.trainer.epochs += 1
        self.trainer.fit(*self.data)


class TorchCudaTrainEpoch(_GpuConfigs):
    """PyTorch CUDA, the same epoch: zero_grad, forward, cross_entropy, backward, Adam (foreach),
    then ``torch.cuda.synchronize``; ``tf32`` selects TF32 matrix products."""

    params = [list(GPU_CONFIGS), [False, True]]
    param_names = ["config", "tf32"]

    def setup(self, config, tf32):
        _require_gpu()
        try:
            import torch
        except ImportError:
            raise NotImplementedError("PyTorch is not installed") from None
        if not torch.cuda.is_available():
            raise NotImplementedError("PyTorch has no CUDA device")
        torch.backends.cuda.matmul.allow_tf32 = tf32
        sizes, batch = GPU_CONFIGS[config]
        X, y = make_data(sizes[0], sizes[-1], batch * _steps(config), "float32")
        layers = []
        for fan_in, units in zip(sizes[:-2], sizes[1:-1]):
            layers += [torch.nn.Linear(fan_in, units), torch.nn.ReLU()]
        self.model = torch.nn.Sequential(*layers, torch.nn.Linear(sizes[-2], sizes[-1])).cuda()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3, foreach=True)
        self.batches = [(torch.from_numpy(np.ascontiguousarray(X[k:k + batch])).cuda(),
                         torch.from_numpy(y[k:k + batch]).cuda())
                        for k in range(0, X.shape[0], batch)]
        self.torch = torch
        self.time_epoch(config, tf32)

    def time_epoch(self, config, tf32):
        torch = self.torch
        for xb, yb in self.batches:
            self.opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(self.model(xb), yb).backward()
            self.opt.step()
        torch.cuda.synchronize()
