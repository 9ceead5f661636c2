"""Training in a background thread, watched by the pages.

The thread never calls Streamlit: it runs the engine's trainer and writes progress into a
lock-guarded `TrainingJob` that a polling fragment reads. So training keeps going while the
user clicks, navigates or reruns, and Pause/Stop reach it through events within ~0.1 s.
A server-wide semaphore caps simultaneous runs (one BLAS thread each) so a class sharing
one server keeps the CPU usable; extra runs wait in a queue and say so.
"""
import os
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from engine.trainer import evaluate, trainer

MAX_RUNS = max(1, int(os.environ.get("DIGITLAB_MAX_RUNS", os.cpu_count() or 1)))
_RUN_SLOTS = threading.BoundedSemaphore(MAX_RUNS)
MAX_CURVE_POINTS = 1500  # per-batch points kept for the live chart (older ones thinned)
POLL_SECONDS = 0.1


@dataclass
class Progress:
    """A consistent copy of a job's progress for drawing (taken under the lock)."""
    status: str
    message: str
    run_fraction: float
    epoch_fraction: float
    run_epoch: int
    epochs: int
    batch: int
    batches: int
    samples_per_sec: float
    elapsed: float
    eta: float
    lr: float
    batch_steps: list
    batch_loss: list
    batch_accuracy: list
    epochs_table: list
    test_accuracy: float


@dataclass
class TrainingJob:
    """One training run of one session's network."""
    network: object
    optimizer: object
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    config: object
    settings: dict = field(default_factory=dict)   # what the user chose, kept with the run
    session_alive: object = None                   # callable -> bool; ends orphaned runs
    status: str = "queued"    # queued running paused completed stopped diverged early_stopped failed
    message: str = ""
    test_accuracy: float = float("nan")
    started_at: float = field(default_factory=time.time)

    def __post_init__(self):
        self._lock = threading.Lock()
        self._pause = threading.Event()
        self._stop = threading.Event()
        self._last = None
        self._steps, self._loss, self._acc = [], [], []
        self._smooth_loss = self._smooth_acc = None
        self._epochs = []
        self._batches_per_epoch = 0
        self._thread = threading.Thread(target=self._run, name="digitlab-training", daemon=True)

    # --- controls (called from the page) -----------------------------------------------
    def start(self):
        self._thread.start()
        return self

    def pause(self):
        self._pause.set()

    def resume(self):
        self._pause.clear()

    def stop(self):
        self._stop.set()
        self._pause.clear()

    def join(self, timeout=None):
        self._thread.join(timeout)

    @property
    def active(self):
        """True while queued, running or paused."""
        return self.status in ("queued", "running", "paused")

    @property
    def paused(self):
        return self._pause.is_set()

    # --- the thread ---------------------------------------------------------------------
    def _run(self):
        try:
            if not self._wait_for_slot():
                self._finish("stopped", "Stopped before it started.")
                return
            try:
                self._train()
            finally:
                _RUN_SLOTS.release()
        except Exception as error:  # the page shows it; the network keeps its last weights
            self._finish("failed", f"Training failed: {type(error).__name__}: {error}")

    def _wait_for_slot(self):
        with self._lock:
            self.message = (f"Waiting for a free training slot ({MAX_RUNS} run(s) at once on this "
                            "server); it starts by itself.")
        while not _RUN_SLOTS.acquire(timeout=POLL_SECONDS):
            if self._stop.is_set() or not self._alive():
                return False
        return True

    def _alive(self):
        return self.session_alive is None or self.session_alive()

    def _train(self):
        with self._lock:
            self.status, self.message = "running", "Training…"
        steps = trainer(self.network, self.optimizer, self.x_train, self.y_train, self.config)
        last_check = time.monotonic()
        for event in steps:
            if event.kind == "end":
                self._record_test_accuracy()
                self._finish(event.reason, event.message)
                return
            self._record(event)
            # Between batches: honour Pause/Stop and notice a closed tab (cheaply, 5x a second).
            if self._pause.is_set() or time.monotonic() - last_check > 0.2:
                last_check = time.monotonic()
                if not self._wait_while_paused():
                    steps.close()  # the network keeps the weights of the last finished batch
                    self._record_test_accuracy()
                    why = "Stopped" if self._stop.is_set() else "The browser tab closed; stopped"
                    self._finish("stopped", f"{why} during epoch {event.epoch}; the network keeps its "
                                            "weights as they were at that moment.")
                    return

    def _wait_while_paused(self):
        """Block while paused; False when the run should end (Stop, or the session is gone)."""
        if self._pause.is_set():
            with self._lock:
                self.status, self.message = "paused", "Paused: press Resume to continue."
        while self._pause.is_set() and not self._stop.is_set() and self._alive():
            time.sleep(POLL_SECONDS)
        if self._stop.is_set() or not self._alive():
            return False
        with self._lock:
            if self.status == "paused":
                self.status, self.message = "running", "Training…"
        return True

    def _record(self, event):
        with self._lock:
            self._last = event
            if event.kind == "batch":
                self._batches_per_epoch = event.batches
            if event.kind == "epoch":
                self._epochs.append(event)
                return
            # Smoothed per-batch curves (exponential moving average, like TensorBoard's).
            a = 0.9 if self._smooth_loss is not None else 0.0
            loss_ema = a * (self._smooth_loss or 0.0) + (1 - a) * event.loss
            acc_ema = a * (self._smooth_acc or 0.0) + (1 - a) * event.accuracy
            self._smooth_loss, self._smooth_acc = loss_ema, acc_ema
            step = (event.epoch - 1) + event.batch / event.batches
            self._steps.append(step)
            self._loss.append(loss_ema)
            self._acc.append(acc_ema)
            if len(self._steps) > MAX_CURVE_POINTS:  # keep every other point: bounded memory
                self._steps, self._loss, self._acc = self._steps[::2], self._loss[::2], self._acc[::2]

    def _record_test_accuracy(self):
        if len(self.y_test):
            _, acc = evaluate(self.network, self.x_test, self.y_test)
            self.test_accuracy = float(acc)

    def _finish(self, status, message):
        with self._lock:
            self.status, self.message = status, message

    # --- reading (called from the page) ---------------------------------------------------
    def progress(self):
        """A snapshot of the progress, safe to draw while the thread goes on."""
        with self._lock:
            e = self._last
            batch = batches = run_epoch = 0
            run_fraction = epoch_fraction = sps = elapsed = lr = 0.0
            epochs = self.config.epochs
            if e is not None:
                elapsed, lr = e.elapsed, e.lr
                run_epoch = e.run_epoch
                if e.kind == "batch":
                    batch, batches, sps = e.batch, e.batches, e.samples_per_sec
                    run_fraction, epoch_fraction = e.run_fraction, e.batch / e.batches
                else:
                    run_fraction, epoch_fraction = e.run_epoch / e.epochs, 1.0
                    batch = batches = self._batches_per_epoch
            if self.status == "completed":
                run_fraction = epoch_fraction = 1.0
            eta = elapsed * (1 - run_fraction) / run_fraction if run_fraction > 0 else float("nan")
            return Progress(self.status, self.message, run_fraction, epoch_fraction, run_epoch, epochs,
                            batch, batches, sps, elapsed, eta, lr, list(self._steps), list(self._loss),
                            list(self._acc), [ev.as_record() for ev in self._epochs], self.test_accuracy)


def session_checker():
    """A callable telling whether the current browser session is still open (False once the
    tab is closed), or None outside a running Streamlit server (e.g. AppTest)."""
    try:
        import streamlit.runtime as runtime
        from streamlit.runtime.scriptrunner import get_script_run_ctx
    except ImportError:
        return None
    ctx = get_script_run_ctx()
    if ctx is None or not runtime.exists():
        return None
    session_id = ctx.session_id
    # `is not True`: AppTest installs a MagicMock runtime whose answer is a truthy mock, and
    # which disappears between script runs (the run would be stopped as "tab closed").
    if runtime.get_instance().is_active_session(session_id) is not True:
        return None  # not a browser session the server tracks (e.g. AppTest): nothing to watch

    def alive():
        return runtime.exists() and runtime.get_instance().is_active_session(session_id)
    return alive
