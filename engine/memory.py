"""Memory guard: estimate what a network and a training batch need before allocating them."""
import os

import numpy as np

from .errors import ConfigError
from .network import parameter_count

DEFAULT_BUDGET_MB = float(os.environ.get("DIGITLAB_MEMORY_BUDGET_MB", 2048))
# Copies of the parameters while training: weights, gradients, Adam's m and v, Adam's
# scratch buffer, and the epoch-start snapshot kept to survive a diverging run.
PARAMETER_COPIES = 6


def training_memory_bytes(sizes, batch_size=100, dtype="float32", use_bias=True):
    """Bytes to train: parameter copies plus the activations and deltas of one batch."""
    itemsize = np.dtype(dtype).itemsize
    params = parameter_count(sizes, use_bias) * PARAMETER_COPIES
    # Forward keeps each layer's input and hidden output (+ dropout mask); backward a delta.
    activations = batch_size * sum(sizes) * 4
    return int((params + activations) * itemsize)


def check_memory(sizes, batch_size=100, dtype="float32", use_bias=True, budget_mb=None):
    """Raise ConfigError, showing the estimate, when training would exceed the budget
    (DIGITLAB_MEMORY_BUDGET_MB) or 80% of the memory this machine has free: better refused
    up front than killed by the kernel halfway through."""
    budget_mb = DEFAULT_BUDGET_MB if budget_mb is None else budget_mb
    need = training_memory_bytes(sizes, batch_size, dtype, use_bias)
    if need > budget_mb * 2**20:
        raise ConfigError(f"This network would need about {format_bytes(need)} to train, above the "
                          f"{budget_mb:,.0f} MB budget (DIGITLAB_MEMORY_BUDGET_MB): use narrower "
                          "layers, fewer layers, float32 or a smaller batch.")
    from .info import memory_info
    available = memory_info()[1]
    if available and need > 0.8 * available:
        raise ConfigError(f"This network would need about {format_bytes(need)} to train; only "
                          f"{format_bytes(available)} of memory is free on this machine. Use fewer or "
                          "narrower layers.")
    return need


def format_bytes(n):
    """1536 -> '1.5 KB'."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
