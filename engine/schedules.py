"""Learning-rate schedules: the rate as a function of how far training has got."""
import math
from dataclasses import asdict, dataclass

from .errors import ConfigError

SCHEDULES = ("constant", "step", "cosine")


@dataclass(frozen=True)
class Schedule:
    """kind: constant | step (x gamma every step_epochs) | cosine (to min_fraction of the base rate).

    warmup_epochs > 0 ramps the rate linearly from 0 during the first epochs.
    """
    kind: str = "constant"
    step_epochs: float = 5.0
    gamma: float = 0.5
    min_fraction: float = 0.0
    warmup_epochs: float = 0.0

    def __post_init__(self):
        if self.kind not in SCHEDULES:
            raise ConfigError(f"Unknown schedule {self.kind!r}; choose one of {', '.join(SCHEDULES)}.")
        if not self.step_epochs > 0:
            raise ConfigError("The step schedule needs step_epochs > 0.")
        if not 0 < self.gamma <= 1:
            raise ConfigError("The step schedule's gamma must be in (0, 1].")
        if not 0 <= self.min_fraction <= 1:
            raise ConfigError("min_fraction must be in [0, 1].")
        if not self.warmup_epochs >= 0:
            raise ConfigError("warmup_epochs must be 0 or more.")

    def to_dict(self):
        return asdict(self)


def learning_rate(base_lr, schedule, progress, total_epochs):
    """The rate at `progress` epochs done (a float: 2.5 = halfway through the third epoch)."""
    if schedule.warmup_epochs and progress < schedule.warmup_epochs:
        return base_lr * progress / schedule.warmup_epochs
    if schedule.kind == "step":
        return base_lr * schedule.gamma ** math.floor(progress / schedule.step_epochs)
    if schedule.kind == "cosine":
        span = max(total_epochs - schedule.warmup_epochs, 1e-12)
        done = min(max(progress - schedule.warmup_epochs, 0) / span, 1.0)
        low = base_lr * schedule.min_fraction
        return low + (base_lr - low) * 0.5 * (1 + math.cos(math.pi * done))
    return base_lr
