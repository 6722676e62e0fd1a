"""Weight initialization (biases start at zero, batchnorm gamma at 1 and beta at 0).

- xavier (Glorot uniform): W ~ U(-a, a), a = sqrt(6 / (fan_in + fan_out))
- he (Kaiming normal): W ~ N(0, 2 / fan_in)

fan_out is the number of pre-activations (units·pieces for maxout).
"""

import numpy as np

INITS = ("auto", "he", "xavier")


def xavier_uniform(rng, fan_in, fan_out):
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out))


def he_normal(rng, fan_in, fan_out):
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_in, fan_out))


INITIALIZERS = {"xavier": xavier_uniform, "he": he_normal}
