"""Training in the background, watched by the pages.

Each run trains in a child process forked from the server (on Linux; a thread elsewhere, or
with DIGITLAB_TRAINING=thread). Why a process: the server's own Python work (reruns, charts,
websockets) and the training loop would otherwise share one GIL, and every hand-over costs the
trainer up to a switch interval (5 ms) between its NumPy calls; a forked child has its own
interpreter and shares the read-only dataset pages with the server (copy-on-write), so memory stays flat.

The child streams events in small bundles (a few times a second) and the weights, optimizer
state and history after every epoch and at the end; a watcher thread in the server writes
them into a lock-guarded `TrainingJob` that the Train page reads (through its live view's
feed, ui/live_view.py, or a polling fragment). Pause/Stop travel as
process-shared events within ~0.1 s. A server-wide semaphore caps simultaneous runs (one BLAS
thread each) so a class sharing one server keeps the CPU usable; extra runs wait and say so.
"""
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from engine.trainer import epoch_phrase, evaluate, snapshot, trainer

CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
# One core is left for serving pages: a class's page loads stay quick while runs train.
MAX_RUNS = max(1, int(os.environ.get("DIGITLAB_MAX_RUNS", CORES - 1)))
# BLAS threads per run: the cores the runs may use, shared out (2-thread OpenBLAS collapses
# when anything else wants its cores, so on small machines this is 1).
BLAS_THREADS_PER_RUN = max(1, (CORES - 1) // MAX_RUNS)
_RUN_SLOTS = threading.BoundedSemaphore(MAX_RUNS)
MAX_CURVE_POINTS = 400  # per-batch points kept for the live chart (thinned: light to redraw)
POLL_SECONDS = 0.1
SEND_SECONDS = 0.1       # how often the child sends its batch events
# Runs train in forked processes on Linux unless DIGITLAB_TRAINING=thread (elsewhere: macOS's
# system libraries are not fork-safe once threads run, and Windows cannot fork): then None.
_FORK = (multiprocessing.get_context("fork") if os.environ.get("DIGITLAB_TRAINING", "process") == "process"
         and sys.platform.startswith("linux") else None)


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


@dataclass(eq=False)  # a job is itself: compared and hashed by identity
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
        events = _FORK or threading  # process-shared events when the run is in a child
        self._pause, self._stop = events.Event(), events.Event()
        self._tab_closed = False
        self._last = None
        self._steps, self._loss, self._acc = [], [], []
        self._smooth_loss = self._smooth_acc = None
        self._epochs = []
        self._batches_per_epoch = 0
        self._samples_per_sec = 0.0  # of the last batch (still shown once the epoch has ended)
        self._batches_seen, self._stride = 0, 1     # thinning of the live curves (see _record)
        self._thread = threading.Thread(target=self._run, name="digitlab-training-watch", daemon=True)

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

    # --- the watcher thread (in the server) ----------------------------------------------
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
        """Start the trainer (child process or thread) and relay what it sends until it ends."""
        with self._lock:
            self.status, self.message = "running", "Training…"
        in_process = _FORK is not None
        receiver, sender = (_FORK or multiprocessing).Pipe(duplex=False)
        args = (sender, self._pause, self._stop, self.network, self.optimizer, self.x_train, self.y_train,
                self.x_test, self.y_test, self.config)
        if in_process:  # forked: the child starts with this process's memory, nothing is copied
            worker = _FORK.Process(target=_child_main, args=(*args, os.getpid()), daemon=True,
                                   name="digitlab-training")
        else:
            worker = threading.Thread(target=run_trainer, args=args, daemon=True,
                                      name="digitlab-training")
        worker.start()
        if in_process:
            sender.close()  # the child holds the only sending end: its exit reads as EOF here
        try:
            self._relay(receiver, worker)
        finally:
            self._stop.set()  # whatever ended the relay, the trainer must not go on
            receiver.close()
            worker.join(timeout=10)
            if in_process and worker.is_alive():
                worker.kill()

    def _relay(self, receiver, worker):
        last_check = 0.0
        while True:
            if time.monotonic() - last_check > 0.2:  # a closed tab, 5x a second
                last_check = time.monotonic()
                self._notice_controls()
            try:
                if not receiver.poll(POLL_SECONDS):
                    if not worker.is_alive() and not receiver.poll():
                        raise EOFError
                    continue
                message = receiver.recv()
            except (EOFError, OSError):
                code = getattr(worker, "exitcode", None)
                self._finish("failed", f"The training process ended unexpectedly (exit code {code}; out of "
                                       "memory?). The network keeps the weights of its last finished epoch.")
                return
            kind = message[0]
            if kind == "events":
                for event in message[1]:
                    self._record(event)
            elif kind == "weights":
                self._apply(*message[1:])
            elif kind in ("paused", "resumed"):
                with self._lock:
                    self.status, self.message = (("paused", "Paused: press Resume to continue.") if kind == "paused"
                                                 else ("running", "Training…"))
            elif kind == "end":
                _, reason, text, self.test_accuracy = message
                self._finish(reason, self._stop_message() if reason == "stopped" else text)
                return
            elif kind == "failed":
                self._finish("failed", message[1])
                return

    def _notice_controls(self):
        if not self._alive():
            self._tab_closed = True
            self._stop.set()

    def _stop_message(self):
        why = "The browser tab closed; stopped" if self._tab_closed else "Stopped"
        last = self._last
        when = "before the first batch" if last is None else f"during {epoch_phrase(last.run_epoch, last.epoch)}"
        return f"{why} {when}; the network keeps its weights as they were at that moment."

    def _apply(self, params, optimizer_state, epochs_trained, history):
        """Weights, optimizer state and history sent by the child (after each epoch, at the end)."""
        self.network.params[...] = params  # in place: views held by the pages stay valid
        self.optimizer.load_state(optimizer_state, params.size, params.dtype)
        self.network.epochs_trained = epochs_trained
        self.network.history[:] = history

    def _record(self, event):
        with self._lock:
            self._last = event
            if event.kind == "batch":
                self._batches_per_epoch, self._samples_per_sec = event.batches, event.samples_per_sec
            if event.kind == "epoch":
                self._epochs.append(event)
                return
            # Smoothed per-batch curves (exponential moving average, like TensorBoard's).
            a = 0.9 if self._smooth_loss is not None else 0.0
            loss_ema = a * (self._smooth_loss or 0.0) + (1 - a) * event.loss
            acc_ema = a * (self._smooth_acc or 0.0) + (1 - a) * event.accuracy
            self._smooth_loss, self._smooth_acc = loss_ema, acc_ema
            # Every `_stride`-th batch becomes a point; when the points exceed the cap, every
            # other one goes and the stride doubles, so old and new parts stay equally dense.
            self._batches_seen += 1
            if (self._batches_seen - 1) % self._stride:
                return
            self._steps.append((event.epoch - 1) + event.batch / event.batches)
            self._loss.append(loss_ema)
            self._acc.append(acc_ema)
            if len(self._steps) > MAX_CURVE_POINTS:
                self._steps, self._loss, self._acc = self._steps[::2], self._loss[::2], self._acc[::2]
                self._stride *= 2

    def _finish(self, status, message):
        with self._lock:
            self.status, self.message = status, message

    # --- reading (called from the page) ---------------------------------------------------
    def revision(self):
        """Changes whenever `progress()` would show something new; cheap (no copies)."""
        with self._lock:
            return self.status, self.message, self._batches_seen, len(self._epochs)

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
                    sps = self._samples_per_sec
            if self.status == "completed":
                run_fraction = epoch_fraction = 1.0
            eta = elapsed * (1 - run_fraction) / run_fraction if run_fraction > 0 else float("nan")
            return Progress(self.status, self.message, run_fraction, epoch_fraction, run_epoch, epochs,
                            batch, batches, sps, elapsed, eta, lr, list(self._steps), list(self._loss),
                            list(self._acc), [ev.as_record() for ev in self._epochs], self.test_accuracy)




# --- the trainer's side (child process, or thread) -----------------------------------------
def _child_main(*args):
    """Entry of the forked child: default signal handling (the server's handlers would only
    ask its event loop, which does not run here, to stop), then train."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    run_trainer(*args)


def _state_of(network, optimizer):
    """The weights message: copies, since training goes on while it is being sent."""
    params, state, epochs_trained, _ = snapshot(network, optimizer)
    return ("weights", params, state, epochs_trained, [dict(h) for h in network.history])


class _Outbox:
    """Messages to the server, written by a thread of their own: a weights message is larger
    than the pipe's buffer, and training should not wait for the server to read it."""

    def __init__(self, sender):
        self._sender, self._queue = sender, queue.SimpleQueue()
        self.broken = False  # the server is gone
        self._thread = threading.Thread(target=self._pump, name="digitlab-outbox", daemon=True)
        self._thread.start()

    def post(self, message):
        self._queue.put(message)

    def _pump(self):
        while (message := self._queue.get()) is not None:
            try:
                self._sender.send(message)
            except OSError:  # BrokenPipeError: nobody to report to any more
                self.broken = True
                return

    def close(self):
        """Send what is queued, then close the pipe."""
        self._queue.put(None)
        self._thread.join()
        self._sender.close()


def run_trainer(sender, pause, stop, network, optimizer, x_train, y_train, x_test, y_test, config,
                parent_pid=None):
    """Run the engine's trainer, sending ("events", [...]) bundles, ("weights", ...) after each
    epoch and at the end (only from a child process, parent_pid given: in a thread the server's
    network is trained in place), then ("end", reason, message, test_accuracy) or
    ("failed", message). Honours pause/stop between batches; ends by itself if the parent
    process is gone."""
    send_weights = parent_pid is not None
    outbox = _Outbox(sender)
    pending, last_send = [], time.monotonic()

    def flush():
        nonlocal pending, last_send
        if pending:
            outbox.post(("events", pending))
            pending = []
        last_send = time.monotonic()

    def parent_alive():
        return not outbox.broken and (parent_pid is None or os.getppid() == parent_pid)

    try:
        steps = trainer(network, optimizer, x_train, y_train, config)
        reason = message = None
        for event in steps:
            if event.kind == "end":
                reason, message = event.reason, event.message
                break
            pending.append(event)
            if event.kind == "epoch":
                flush()
                if send_weights:
                    outbox.post(_state_of(network, optimizer))
            elif time.monotonic() - last_send > SEND_SECONDS:
                flush()
            if pause.is_set() or stop.is_set() or outbox.broken:
                flush()
                if pause.is_set() and not stop.is_set():
                    outbox.post(("paused",))  # after every event so far: the page's view is exact
                    while pause.is_set() and not stop.is_set() and parent_alive():
                        time.sleep(POLL_SECONDS)
                    outbox.post(("resumed",))
                if stop.is_set() or not parent_alive():
                    steps.close()  # the network keeps the weights of the last finished batch
                    reason = "stopped"
                    break
        flush()
        test_accuracy = float(evaluate(network, x_test, y_test)[1]) if len(y_test) else float("nan")
        if send_weights:
            outbox.post(_state_of(network, optimizer))
        outbox.post(("end", reason, message, test_accuracy))
    except Exception as error:  # reported on the page; the network keeps its last weights
        outbox.post(("failed", f"Training failed: {type(error).__name__}: {error}"))
    finally:
        outbox.close()


def session_checker():
    """A callable telling whether the current browser session is still open (False once the
    tab is closed), or None outside a running Streamlit server (e.g. AppTest)."""
    from ui.reload import current_session_id, session_open
    session_id = current_session_id()
    if not session_open(session_id):
        return None  # not a browser session the server tracks (e.g. AppTest): nothing to watch
    return lambda: session_open(session_id)
