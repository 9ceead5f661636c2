"""The batch trainer: a generator, like the notebook's `trainer`, that yields an event after
every batch and every epoch so a caller (a progress bar, a chart, a CLI) can watch it learn.

Fixed from the notebook: inputs scaled to [0, 1], a fresh shuffle every epoch, a short last
batch instead of an index overflow, a validation split, and a clean stop with the last good
weights restored when a run diverges: a non-finite loss, or an epoch whose mean loss is worse
than both the run's start and a uniform guess (a too-large learning rate often kills every ReLU
while the loss stays finite). Stop early by simply not asking for the next event.
"""
import math
import time
from dataclasses import dataclass, field

import numpy as np

from .data import scale_images
from .errors import ConfigError
from .layers import accuracy, cross_entropy
from .schedules import Schedule, learning_rate

# An epoch whose mean loss exceeds GUESSING_FACTOR x ln(classes) (a uniform guess scores ln(classes))
# and the loss the run started from has diverged, even if every number is finite.
GUESSING_FACTOR = 1.5


@dataclass
class TrainConfig:
    """How to train. `early_stopping` is a patience in epochs (0 = off)."""
    epochs: int = 10
    batch_size: int = 100
    keep_prob: float = 1.0
    validation_split: float = 0.0
    shuffle: bool = True
    scale_inputs: bool = True
    seed: int = 0
    schedule: Schedule = field(default_factory=Schedule)
    augment: object = None          # engine.augment.AugmentConfig or None
    early_stopping: int = 0
    resume_after: int = 0           # run epochs already done by an interrupted run this one resumes

    def validate(self, n_samples=None, has_validation_data=False):
        """Raise ConfigError naming the first impossible setting.

        has_validation_data: the caller passes its own validation set, so `validation_split`
        is not used (no samples are held out) and early stopping has something to watch.
        """
        def whole(name, v, low):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ConfigError(f"{name} must be a whole number of at least {low}, got {v!r}.")
        whole("Epochs", self.epochs, 1)
        whole("Batch size", self.batch_size, 1)
        whole("Early-stopping patience", self.early_stopping, 0)
        whole("Epochs already done", self.resume_after, 0)
        if self.resume_after >= self.epochs:
            raise ConfigError(f"Nothing to resume: {self.resume_after} of {self.epochs} epochs are done.")
        if not (isinstance(self.keep_prob, (int, float)) and 0 < self.keep_prob <= 1):
            raise ConfigError(f"Dropout keep-probability must be in (0, 1], got {self.keep_prob!r}.")
        if not (isinstance(self.validation_split, (int, float)) and 0 <= self.validation_split < 1):
            raise ConfigError(f"Validation split must be in [0, 1), got {self.validation_split!r}.")
        if self.early_stopping and not self.validation_split and not has_validation_data:
            raise ConfigError("Early stopping watches the validation loss: set a validation split above 0.")
        if n_samples is not None:
            held_out = 0 if has_validation_data else int(round(n_samples * self.validation_split))
            n_train = n_samples - held_out
            if n_train < 1:
                raise ConfigError("The validation split leaves no samples to train on.")
            if self.batch_size > n_train:
                raise ConfigError(f"Batch size {self.batch_size:,} is larger than the {n_train:,} training samples.")


@dataclass
class BatchEvent:
    epoch: int              # epoch number counted over the network's life (1-based)
    run_epoch: int          # epoch within this run (1-based)
    epochs: int             # epochs in this run
    batch: int              # batch within the epoch (1-based)
    batches: int            # batches per epoch
    loss: float             # this batch's loss
    running_loss: float     # mean over the epoch so far
    running_accuracy: float
    lr: float
    elapsed: float          # seconds of training since the run started (pauses left out)
    samples_per_sec: float
    accuracy: float = float("nan")  # this batch's accuracy
    kind: str = "batch"
    rows: object = None     # the batch's rows of the training images (indices into x)

    @property
    def run_fraction(self):
        """How much of the whole run is done, 0..1."""
        return ((self.run_epoch - 1) * self.batches + self.batch) / (self.epochs * self.batches)


@dataclass
class EpochEvent:
    epoch: int
    run_epoch: int
    epochs: int
    loss: float
    accuracy: float
    val_loss: float         # nan without a validation split
    val_accuracy: float
    seconds: float
    elapsed: float
    lr: float
    kind: str = "epoch"

    def as_record(self):
        """The Keras-like row kept in a network's history."""
        return {"epoch": self.epoch, "loss": self.loss, "accuracy": self.accuracy,
                "val_loss": self.val_loss, "val_accuracy": self.val_accuracy,
                "seconds": self.seconds, "lr": self.lr}


@dataclass
class EndEvent:
    reason: str             # completed | diverged | early_stopped
    message: str
    epochs_done: int
    elapsed: float
    kind: str = "end"


def split_validation(n_samples, validation_split, seed):
    """Seeded split of sample indices into (train, validation)."""
    order = np.random.default_rng([seed, 7919]).permutation(n_samples)
    n_val = int(round(n_samples * validation_split))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def batch_inputs(x, idx, dtype, scale):
    """Rows idx of x as a (n, features) float batch; uint8 pixels scaled to [0, 1] on the fly
    (so the shared dataset stays uint8, four times smaller than a float32 copy)."""
    rows = x[idx]
    return scale_images(rows, dtype) if scale else rows.reshape(len(idx), -1).astype(dtype)


def check_data(network, x, y, what="training"):
    """Raise ConfigError unless x, y fit the network: one row of the right width per label, labels
    whole numbers in [0, classes) (or one-hot rows), finite inputs. Checked once per run, so a
    mistake is reported up front rather than as a crash or a 'diverged' run half-way through."""
    x, y = np.asarray(x), np.asarray(y)
    inputs, classes = network.sizes[0], network.sizes[-1]
    if x.ndim < 2 or int(np.prod(x.shape[1:])) != inputs:
        raise ConfigError(f"The {what} images have shape {x.shape[1:]} per sample; the network takes {inputs} inputs.")
    if len(y) != len(x):
        raise ConfigError(f"{len(x)} {what} images but {len(y)} labels.")
    if y.ndim == 1:
        if y.dtype.kind not in "iu":
            raise ConfigError(f"The {what} labels must be whole numbers, got {y.dtype}.")
        if len(y) and (y.min() < 0 or y.max() >= classes):
            raise ConfigError(f"The {what} labels must be in 0..{classes - 1}; found {y.min()}..{y.max()}.")
    elif y.ndim != 2 or y.shape[1] != classes:
        raise ConfigError(f"One-hot {what} labels must have {classes} columns, got shape {y.shape}.")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise ConfigError(f"The {what} images contain NaN or infinite values.")
    if x.dtype.kind not in "fiub":
        raise ConfigError(f"The {what} images must be numbers, got {x.dtype}.")


def evaluate(network, x, y, scale=True, chunk=1024):
    """(loss, accuracy) of the network on x, y with dropout off.

    scale: divide uint8 pixels by 255 (as the trainer does). Float inputs are used as they are.
    chunk: rows at a time; 1024 keeps each chunk's buffers (6 MB in float64) under the size
    above which the allocator maps fresh pages for every chunk: 8192 made a fresh process's
    first test of 10,000 digits take 42 ms instead of 16.
    """
    scale = bool(scale) and np.asarray(x).dtype == np.uint8
    n = x.shape[0]
    total_loss = correct = 0.0
    for start in range(0, n, chunk):
        idx = np.arange(start, min(start + chunk, n))
        p = network.predict_proba(batch_inputs(x, idx, network.dtype, scale))
        yb = y[idx]
        total_loss += cross_entropy(p, yb) * len(idx)
        correct += accuracy(p, yb) * len(idx)
    return total_loss / n, correct / n


def epoch_rngs(seed, epoch):
    """Independent random streams for one epoch (shuffle, dropout, augmentation).

    They depend only on (seed, epoch), so training 2 epochs, saving, loading and training 2
    more gives exactly the same network as 4 epochs in one go.
    """
    return np.random.default_rng([seed, epoch]).spawn(3)


class _TrainingClock:
    """Seconds spent training. The time a caller holds an event (drawing it, sending it, or
    paused before asking for the next one) is not training time: it is left out of epoch
    seconds, elapsed time, speed and so of any ETA."""

    def __init__(self):
        self._start, self._held = time.perf_counter(), 0.0

    def now(self):
        return time.perf_counter() - self._start - self._held

    def give(self, event):
        """Yield `event` to the caller, not counting the time until it asks for the next."""
        handed = time.perf_counter()
        try:
            yield event
        finally:
            self._held += time.perf_counter() - handed


def trainer(network, optimizer, x, y, config=None, validation=None):
    """Train `network` in place, yielding BatchEvent/EpochEvent and finally an EndEvent.

    x: images (n, 28, 28) or (n, features), uint8 pixels (scaled on the fly) or floats.
    y: integer labels (n,) or one-hot (n, k). validation: optional (x_val, y_val); otherwise
    `config.validation_split` of x is held out. The network's history and epoch count grow,
    so a later call continues the curves. Bad settings or data raise ConfigError at the first
    next(). When the run ends, or the caller closes the generator, the network's training
    buffers are released; a run closed inside an epoch leaves `network.partial_epoch` (the
    share of that epoch trained). Times in events leave out the time the caller held them.
    """
    try:
        yield from _run(network, optimizer, x, y, config, validation)
    finally:
        network.release_buffers()


def _run(network, optimizer, x, y, config, validation):
    x, y = np.asarray(x), np.asarray(y)
    config = config or TrainConfig()
    config.validate(x.shape[0], has_validation_data=validation is not None)
    check_data(network, x, y, "training")
    if validation is not None:
        check_data(network, *validation, "validation")
    scale = config.scale_inputs and x.dtype == np.uint8
    rows = None  # training rows of x when a validation split is held out (indexed, not copied:
    if validation is None and config.validation_split > 0:  # the dataset is shared between sessions)
        rows, val_idx = split_validation(x.shape[0], config.validation_split, config.seed)
        validation = (x[val_idx], y[val_idx])
    if config.augment is not None:
        from .augment import augment_batch

    x = x.reshape(len(x), -1)  # (n, 28, 28) images -> (n, 784) rows, a view when contiguous
    n, bs = (x.shape[0] if rows is None else len(rows)), config.batch_size
    pixel_scale = network.dtype(1 / 255)
    gather_buffers = {}  # batch size -> uint8 rows, reused
    batches = -(-n // bs)  # ceil: the last batch may be short
    clock = _TrainingClock()
    best = None  # (val_loss, params copy, optimizer state) for early stopping
    good = None  # the epoch-start snapshot
    stale_epochs = 0
    epochs_done = config.resume_after
    start_loss = None  # the first batch's loss: the weights the run started from
    guess_loss = GUESSING_FACTOR * math.log(max(network.sizes[-1], 2))
    for run_epoch in range(config.resume_after + 1, config.epochs + 1):
        epoch = network.epochs_trained + 1
        shuffle_rng, dropout_rng, augment_rng = epoch_rngs(config.seed, epoch)
        order = shuffle_rng.permutation(n) if config.shuffle else np.arange(n)
        if rows is not None:
            order = rows[order]
        good = snapshot(network, optimizer, reuse=good)  # restored if this epoch diverges
        epoch_start = clock.now()
        loss_sum = correct_sum = 0.0
        seen = 0
        for b in range(batches):
            idx = order[b * bs:(b + 1) * bs]
            if config.augment is not None:
                xb = augment_batch(batch_inputs(x, idx, network.dtype, scale), config.augment, augment_rng)
            else:
                # Gather, convert and scale straight into the network's input buffer (one pass:
                # scale_images' arithmetic, fused into the gather).
                xb = network.batch_buffer(len(idx))
                if scale:
                    gathered = gather_buffers.get(len(idx))
                    if gathered is None:
                        gathered = gather_buffers[len(idx)] = np.empty((len(idx), x.shape[1]), np.uint8)
                    np.multiply(np.take(x, idx, axis=0, out=gathered), pixel_scale, out=xb)
                else:
                    np.copyto(xb, x[idx], casting="unsafe")
            yb = y[idx]
            lr = learning_rate(optimizer.lr, config.schedule, run_epoch - 1 + b / batches, config.epochs)
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                # a diverging run overflows on its way to NaN: reported below, not warned about
                loss, acc, _ = network.gradients(xb, yb, config.keep_prob, dropout_rng)
                if math.isfinite(loss):
                    optimizer.step(network, lr)
            if not math.isfinite(loss):  # inf/NaN weights show up here on the next batch
                restore(network, optimizer, good)
                yield EndEvent("diverged",
                               f"Training diverged: the loss became {loss} in {epoch_phrase(run_epoch, epoch)}, "
                               f"batch {b + 1}. {_KEPT}", epochs_done, clock.now())
                return
            if start_loss is None:
                start_loss = loss
            seen += len(idx)
            loss_sum += loss * len(idx)
            correct_sum += acc * len(idx)
            network.partial_epoch = (b + 1) / batches  # what the weights hold if the caller stops here
            now = clock.now()
            yield from clock.give(BatchEvent(epoch, run_epoch, config.epochs, b + 1, batches, loss, loss_sum / seen,
                                             correct_sum / seen, lr, now, seen / max(now - epoch_start, 1e-9), acc,
                                             rows=idx))
        if not np.isfinite(network.params).all():
            restore(network, optimizer, good)
            yield EndEvent("diverged", f"Training diverged in {epoch_phrase(run_epoch, epoch)}: weights became "
                           f"non-finite. {_KEPT}", epochs_done, clock.now())
            return
        mean_loss = loss_sum / n
        if mean_loss > max(start_loss, guess_loss):
            restore(network, optimizer, good)
            yield EndEvent("diverged", f"Training diverged in {epoch_phrase(run_epoch, epoch)}: its mean loss "
                           f"{mean_loss:.3g} is worse than at the start of the run ({start_loss:.3g}) and "
                           f"worse than guessing ({guess_loss / GUESSING_FACTOR:.3g}). {_KEPT}",
                           epochs_done, clock.now())
            return
        val_loss, val_acc = evaluate(network, *validation, scale=scale) if validation else (np.nan, np.nan)
        now = clock.now()
        event = EpochEvent(epoch, run_epoch, config.epochs, mean_loss, correct_sum / n,
                           float(val_loss), float(val_acc), now - epoch_start, now, lr)
        network.epochs_trained, network.partial_epoch = epoch, 0.0
        network.history.append(event.as_record())
        epochs_done = run_epoch
        yield from clock.give(event)
        if config.early_stopping:
            if best is None or val_loss < best[0]:
                best, stale_epochs = (val_loss, snapshot(network, optimizer), epoch), 0
            else:
                stale_epochs += 1
                if stale_epochs >= config.early_stopping:
                    restore(network, optimizer, best[1], keep_history=True)
                    yield EndEvent("early_stopped",
                                   f"Early stopping: no better validation loss for {stale_epochs} epochs; "
                                   f"restored the best weights (epoch {best[2]}).",
                                   epochs_done, clock.now())
                    return
    if best is not None and best[2] != network.epochs_trained:
        restore(network, optimizer, best[1], keep_history=True)
        message = f"Completed {epochs_done} epochs; restored the best weights (epoch {best[2]})."
    else:
        message = f"Completed {epochs_done} epoch{'s' if epochs_done != 1 else ''}."
    yield EndEvent("completed", message, epochs_done, clock.now())


_KEPT = "The weights from before this epoch were kept. Try a smaller learning rate."


def epoch_phrase(run_epoch, epoch):
    """'epoch 2', or 'epoch 2 of this run (the network's epoch 7)' when the network had trained before."""
    return f"epoch {run_epoch}" + (f" of this run (the network's epoch {epoch})" if epoch != run_epoch else "")


def snapshot(network, optimizer, reuse=None):
    """Copies of everything a restore needs: weights, optimizer arrays and counters. `reuse`: an
    earlier snapshot whose arrays are overwritten instead of allocating new ones (a 35M-weight
    network's three fresh copies cost ~2 s of page faults an epoch on this VM; a copy into
    arrays already there, 0.1 s)."""
    state = optimizer.state()
    if reuse is not None and reuse[0].shape == network.params.shape and reuse[1].keys() == state.keys() \
            and all(np.shape(reuse[1][k]) == np.shape(v) for k, v in state.items()):
        params, kept = reuse[0], reuse[1]
        np.copyto(params, network.params)
        for key, value in state.items():
            if np.ndim(value):
                np.copyto(kept[key], value)
            else:
                kept[key] = np.array(value, copy=True)
    else:
        params, kept = network.params.copy(), {k: np.array(v, copy=True) for k, v in state.items()}
    return params, kept, network.epochs_trained, len(network.history), network.partial_epoch


def restore(network, optimizer, saved, keep_history=False):
    """Put back a snapshot (in place, so views held elsewhere stay valid)."""
    params, state, epochs, history_len, partial = saved
    network.params[...] = params
    optimizer.load_state(state, params.size, params.dtype)
    if not keep_history:
        network.epochs_trained, network.partial_epoch = epochs, partial
        del network.history[history_len:]


def train(network, optimizer, x, y, config=None, validation=None, on_event=None):
    """Run the trainer to the end; returns the EndEvent. `on_event` sees every event."""
    end = None
    for event in trainer(network, optimizer, x, y, config, validation):
        if on_event is not None:
            on_event(event)
        end = event
    return end
