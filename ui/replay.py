"""A run's replay: the light snapshots its job kept (the first layer's weights, the strip's
readings, the confusion matrix; ui/training.TrainingJob._keep_snapshot) with its curves, so a
finished run, however fast, can be played back. Kept with the lab (replays.npz beside lab.json,
ui/lab_store.py) and with a saved model. Plain arrays only: saved without pickle."""
from dataclasses import dataclass, fields

import numpy as np

from engine.diagnostics import Probe


@dataclass
class Replay:
    positions: np.ndarray      # (k,) epochs of the network's life at each snapshot
    run_epochs: np.ndarray     # (k,)
    weights: np.ndarray        # (k, units, 784) uint8, 127.5 = 0, on each snapshot's own scale
    limits: np.ndarray         # (k,) that scale: the largest |weight| of the snapshot
    strip_read: np.ndarray     # (k, 24)
    strip_prob: np.ndarray     # (k, 24)
    confusions: np.ndarray     # (k, classes, classes); -1 where none was made yet
    strip_images: np.ndarray   # (24, 784) uint8: the strip's digits
    strip_true: np.ndarray     # (24,)
    curve_steps: np.ndarray    # the run's smoothed per-batch curves
    curve_loss: np.ndarray
    curve_accuracy: np.ndarray

    def __len__(self):
        return len(self.positions)

    def weights_at(self, k):
        """Snapshot k's first-layer weights as floats."""
        return (self.weights[k].astype(np.float32) / 127.5 - 1) * self.limits[k]

    def to_arrays(self, prefix):
        return {f"{prefix}{f.name}": np.asarray(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_arrays(cls, arrays, prefix):
        """The replay stored under `prefix`, or None when one of its arrays is missing or odd."""
        try:
            values = {f.name: np.asarray(arrays[f"{prefix}{f.name}"]) for f in fields(cls)}
        except KeyError:
            return None
        k = len(values["positions"])
        if any(values[name].shape[:1] != (k,) for name in ("run_epochs", "weights", "limits", "strip_read",
                                                             "strip_prob", "confusions")):
            return None
        return cls(**values)


def replay_of(job):
    """The replay of a run that has ended (None without snapshots or test data)."""
    snapshots = job.snapshots()
    if not snapshots or job.x_test is None or not len(job.y_test):
        return None
    classes = job.network.sizes[-1]
    probe = Probe.from_test_set(job.x_test, job.y_test, classes)  # the trainer's strip, by the same seed
    empty = -np.ones((classes, classes), np.int64)
    p = job.progress()
    return Replay(np.array([s["position"] for s in snapshots]), np.array([s["run_epoch"] for s in snapshots]),
                  np.stack([s["weights"] for s in snapshots]), np.array([s["weights_limit"] for s in snapshots]),
                  np.stack([s["strip_read"] for s in snapshots]), np.stack([s["strip_prob"] for s in snapshots]),
                  np.stack([empty if s["confusion"] is None else s["confusion"] for s in snapshots]),
                  np.clip(np.round(probe.strip_x * 255), 0, 255).astype(np.uint8), np.asarray(probe.strip_y),
                  np.array(p.batch_steps), np.array(p.batch_loss), np.array(p.batch_accuracy))
