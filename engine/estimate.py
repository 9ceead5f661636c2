"""How long a network will take on this machine, before it exists: to create, to train an
epoch, to test. From one quick measurement (~0.1 s) of the engine's own step and Adam on a
mid-sized network, scaled by the work a network does:

    step  ~ flops x seconds_per_flop + parameters x seconds_per_parameter
    flops = 6 x batch x weights (forward 2, backward 4: the weights' and the inputs' gradients)

so a user is told "about 40 s per epoch" before pressing Create on 4000, 4000, 4000.
benchmarks/estimates.py compares the estimates with measured runs.
"""
import functools
import time
from dataclasses import dataclass

import numpy as np

from .network import Network, parameter_count
from .optimizers import Adam

PROBE_SIZES = (784, 512, 256, 10)       # the matrix products of a mid-sized step
LARGE_SIZES = (784, 4096, 160, 10)      # 3.9M parameters: Adam and allocation beyond the CPU's caches
LARGE_FROM = 1_000_000                  # networks this large update at the speed of memory
PROBE_BATCH = 100


@dataclass(frozen=True)
class MachineSpeed:
    """Seconds per unit of work, measured with the engine itself (as many BLAS threads as the
    caller allows: measure inside the same thread limits as training)."""
    per_flop: float                # a training step's matrix products
    per_parameter: float           # Adam's update, per parameter, for a network in cache
    per_parameter_large: float     # ... and for one far larger than the caches
    per_init: float                # allocating and drawing one float weight (with its gradient)


def _best_of(repeats, action):
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - began)
    return best


def _adam_seconds(net, x, y):
    optimizer = Adam()
    net.gradients(x, y)
    optimizer.step(net)  # the first step allocates Adam's moments: not what is measured
    return _best_of(3, lambda: optimizer.step(net))


@functools.lru_cache(maxsize=4)
def measure(dtype="float32"):
    """Measure this machine once per process and precision (best of a few, ~0.2 s in all)."""
    rng = np.random.default_rng(0)
    x = rng.random((PROBE_BATCH, PROBE_SIZES[0])).astype(dtype)
    y = rng.integers(0, PROBE_SIZES[-1], PROBE_BATCH)
    net = Network(list(PROBE_SIZES), dtype=dtype, seed=0)
    net.gradients(x, y)  # the first call allocates the workspace
    step = _best_of(5, lambda: net.gradients(x, y))
    adam = _adam_seconds(net, x, y)
    net.release_buffers()
    began = time.perf_counter()
    large = Network(list(LARGE_SIZES), dtype=dtype, seed=0)  # once: fresh memory, as a new network has
    create = time.perf_counter() - began
    adam_large = _adam_seconds(large, x, y)
    large.release_buffers()
    return MachineSpeed(step / (6 * PROBE_BATCH * _weights(PROBE_SIZES)), adam / net.parameter_count,
                        adam_large / large.parameter_count, create / large.parameter_count)


def _weights(sizes):
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def create_seconds(sizes, use_bias=True, dtype="float32", speed=None):
    """Seconds to allocate and initialise the network."""
    speed = speed or measure(np.dtype(dtype).name)
    return parameter_count(sizes, use_bias) * speed.per_init


def step_seconds(sizes, batch_size, use_bias=True, dtype="float32", speed=None):
    """Seconds for one training step (forward, backward, Adam) of a full batch."""
    speed = speed or measure(np.dtype(dtype).name)
    params = parameter_count(sizes, use_bias)
    per_parameter = speed.per_parameter_large if params >= LARGE_FROM else speed.per_parameter
    return 6 * batch_size * _weights(sizes) * speed.per_flop + params * per_parameter


def test_seconds(sizes, n_samples, dtype="float32", speed=None):
    """Seconds to run `n_samples` through the network (a forward pass: a third of a step's products)."""
    speed = speed or measure(np.dtype(dtype).name)
    return 2 * n_samples * _weights(sizes) * speed.per_flop


def epoch_seconds(sizes, batch_size, n_train, n_validation=0, use_bias=True, dtype="float32", speed=None):
    """Seconds for one epoch: every batch's step, then the validation pass."""
    batches = -(-n_train // max(int(batch_size), 1))
    return (batches * step_seconds(sizes, batch_size, use_bias, dtype, speed)
            + test_seconds(sizes, n_validation, dtype, speed))
