"""Training in the background, watched by the pages.

Each run trains in a child process forked from the server (on Linux; a thread elsewhere, or
with DIGITLAB_TRAINING=thread). Why a process: the server's own Python work (reruns, charts,
websockets) and the training loop would otherwise share one GIL, and every hand-over costs the
trainer up to a switch interval (5 ms) between its NumPy calls; a forked child has its own
interpreter and shares the read-only dataset pages with the server (copy-on-write), so memory stays flat.

The child streams events in small bundles (a few times a second) and the weights, optimizer
state and history after every epoch and at the end; a watcher thread in the server writes
them into a lock-guarded `TrainingJob` that the Train page reads (through its live view's
feed, ui/live_view.py, or a polling fragment), and tells the job's `listener` (the lab, which
saves itself to disk, ui/lab_store.py) after every epoch and at the end. Pause/Stop travel as
process-shared events within ~0.1 s; a Stop the child has not obeyed within STOP_GRACE seconds
(a step of a huge network, or its final test) ends it, keeping the last epoch's weights.
A run belongs to its lab, not to a browser tab: it goes on when the tab reloads or closes.
A server-wide semaphore caps simultaneous runs (one BLAS thread each) so a class sharing one
server keeps the CPU usable; extra runs wait and say so.
"""
import math
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from engine import diagnostics
from engine.trainer import BatchEvent, epoch_phrase, evaluate, snapshot, trainer

CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
# One core is left for serving pages: a class's page loads stay quick while runs train.
MAX_RUNS = max(1, int(os.environ.get("DIGITLAB_MAX_RUNS", CORES - 1)))
# BLAS threads per run: the cores the runs may use, shared out (2-thread OpenBLAS collapses
# when anything else wants its cores, so on small machines this is 1).
BLAS_THREADS_PER_RUN = max(1, (CORES - 1) // MAX_RUNS)
_RUN_SLOTS = threading.BoundedSemaphore(MAX_RUNS)
MAX_CURVE_POINTS = 400  # per-batch points kept for the live chart (thinned: light to redraw)
MAX_SNAPSHOTS = 400     # a run's replay pictures at most (~13 KB each)
POLL_SECONDS = 0.1
SEND_SECONDS = 0.1       # how often the child sends its batch events
PANEL_SECONDS = 0.5      # how often it takes the network's pictures (engine.diagnostics)
PANEL_BYTES_PER_SECOND = 20e6  # a huge network's weights are sent for pictures less often than that
STEP_IMAGES = 16         # a step's digits shown
STOP_GRACE = 0.8         # seconds a Stop waits for the child before ending it
ACTIVE = ("queued", "running", "paused")
# Runs train in forked processes on Linux unless DIGITLAB_TRAINING=thread (elsewhere: macOS's
# system libraries are not fork-safe once threads run, and Windows cannot fork): then None.
_FORK = (multiprocessing.get_context("fork") if os.environ.get("DIGITLAB_TRAINING", "process") == "process"
         and sys.platform.startswith("linux") else None)


# --- what the trainer sends the server (through a pipe, or a Dask queue) -------------------
@dataclass
class Started:
    """A run on a cluster has a worker (sent first; a second one means it was started again)."""
    worker: str


@dataclass
class Events:
    """Batch and epoch events of the last ~0.1 s (engine.trainer's EpochEvent; each BatchEvent as
    the plain tuple of `packed_batch`: pickling ~50 dataclasses holding NumPy scalars took the
    training process 0.3 ms each time, ~30 ms of a 10-epoch run, under the GIL its training
    thread needs; the tuples take 0.015 ms, and packing them 0.04 ms)."""
    events: list

    def unpacked(self):
        """The events as the trainer yielded them (without the batches' rows)."""
        return [BatchEvent(*e) if isinstance(e, tuple) else e for e in self.events]


def packed_batch(event):
    """A BatchEvent as a tuple of Python numbers, in the order of its fields (rows left out)."""
    return (int(event.epoch), int(event.run_epoch), int(event.epochs), int(event.batch), int(event.batches),
            float(event.loss), float(event.running_loss), float(event.running_accuracy), float(event.lr),
            float(event.elapsed), float(event.samples_per_sec), float(event.accuracy))


@dataclass
class Weights:
    """The network and optimizer as they are (after an epoch, and at the end)."""
    params: np.ndarray
    optimizer_state: dict
    epochs_trained: int
    history: list
    partial_epoch: float


@dataclass
class Paused:
    """The trainer has stopped between two batches, every event before sent."""


@dataclass
class Resumed:
    pass


@dataclass
class Ended:
    """The run's own end: completed, stopped, diverged or early_stopped."""
    reason: str
    message: str
    test_accuracy: float


@dataclass
class Failed:
    message: str


@dataclass
class Panels:
    """The live view's pictures of the network (engine.diagnostics), a few times a second."""
    run_epoch: int
    position: float           # epochs of the network's life at this moment (2.5: half-way through the 3rd)
    weights: np.ndarray       # the first layer's first units, (units, 784) float32
    strip_read: np.ndarray    # the digit read for each strip digit
    strip_prob: np.ndarray
    stats: dict               # per layer: grad_norm, update_ratio, dead_share, histograms
    confusion: np.ndarray = None  # at the end of an epoch


@dataclass
class PanelState:
    """A moment for the pictures, as the trainer sends it: the weights then, and what only the
    trainer can measure (engine.diagnostics.training_stats). The server draws the Panels from it
    (_Painter), so that they are made on the server's time, not on the training's."""
    run_epoch: int
    position: float
    params: np.ndarray
    stats: dict
    with_confusion: bool      # at the end of an epoch


@dataclass
class StepReport:
    """One batch trained in step mode: its digits, its loss before and after, the gradients."""
    images: np.ndarray        # up to STEP_IMAGES of the batch's digits (uint8, 28x28)
    labels: np.ndarray
    loss_before: float
    loss_after: float
    grad_norms: list
    epoch: int
    batch: int
    batches: int


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
    partial_epoch: float = 0.0   # share of the epoch in progress the weights hold (a stop inside it)


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
    listener: object = None   # callable(job, "epoch" | "end"), called from the watcher thread
    status: str = "queued"    # queued running paused completed stopped diverged early_stopped failed interrupted
    message: str = ""
    test_accuracy: float = float("nan")
    started_at: float = field(default_factory=time.time)
    data_key: tuple = None    # the data it trains and is tested on (ui.state.data_key)
    recorded: bool = False    # kept in the lab's list of runs
    place: object = None      # None: this server; else a cluster (ui.dask_training.DaskPlace)

    def __post_init__(self):
        self._lock = threading.Lock()
        events = _FORK or threading  # process-shared events when the run is in a child
        self._pause, self._stop = events.Event(), events.Event()
        self._stop_kind = "Stopped"  # or why the lab stopped it
        self._remote = None          # a run on a cluster: where Pause/Stop are passed on
        self._granted = (_FORK or multiprocessing).Value("i", 0)  # batches granted in step mode
        self._panels = self._confusion = self._step_report = self._painter = None
        self._series = {"position": [], "grad_norm": [], "update_ratio": [], "dead_share": []}
        self._snapshots = []       # light pictures of the run for its replay (see _keep_snapshot)
        self._logged_start = False
        self._last = None
        self._steps, self._loss, self._acc = [], [], []
        self._smooth_loss = self._smooth_acc = None
        self._epochs = []          # epoch records (dicts), this run's so far
        self._elapsed_before = 0.0  # training seconds of the run this one resumes
        self._run_epochs_done = self.config.resume_after
        self._batches_per_epoch = 0
        self._samples_per_sec = 0.0  # of the last batch (still shown once the epoch has ended)
        self._batches_seen, self._stride = 0, 1     # thinning of the live curves (see _record)
        self.start_epoch = self.network.epochs_trained - self.config.resume_after  # the network's epoch before the run
        self._thread = threading.Thread(target=self._run, name="digitlab-training-watch", daemon=True)

    # --- controls (called from the page) -----------------------------------------------
    def start(self):
        with self._lock:  # what the page says until the run's thread has told more
            self.message = self.message or "Starting…"
        self._thread.start()
        return self

    def pause(self):
        self._pause.set()
        self._pass_on()

    def resume(self):
        self._pause.clear()
        self._pass_on()

    def stop(self, why=None):
        """Stop the run; `why` replaces "Stopped" in its message (e.g. the lab expired)."""
        if why:
            self._stop_kind = why
        self._stop.set()
        self._pause.clear()
        self._pass_on()

    def _pass_on(self):
        remote = self._remote
        if remote is not None:
            remote.mirror(self._pause.is_set(), self._stop.is_set())

    def join(self, timeout=None):
        self._thread.join(timeout)

    def step(self, batches=1):
        """Step mode: train `batches` more batches of a paused run (each is reported), then pause."""
        if self.place is not None:
            raise ValueError("Step mode trains on this server only, not on a cluster.")
        with self._granted.get_lock():
            self._granted.value += int(batches)

    @property
    def can_step(self):
        return self.place is None and self.status in ("paused", "queued", "running") and self.paused

    def wait_ended(self, timeout):
        """Wait up to `timeout` seconds for the run to end (not for its last save); True if it has."""
        deadline = time.monotonic() + timeout
        while self.active and time.monotonic() < deadline:
            time.sleep(0.02)
        return not self.active

    @property
    def active(self):
        """True while queued, running or paused."""
        return self.status in ACTIVE

    @property
    def resumable(self):
        """A run cut off by a server restart, with epochs left: Resume trains them."""
        return self.status == "interrupted" and self._run_epochs_done < self.config.epochs

    @property
    def run_epochs_done(self):
        return self._run_epochs_done

    @property
    def paused(self):
        return self._pause.is_set()

    # --- the watcher thread (in the server) ----------------------------------------------
    def _run(self):
        try:
            if self.place is not None:  # the cluster's scheduler queues it
                self._train_remote()
                return
            if not self._wait_for_slot():
                self._finish("stopped", f"{self._stop_kind} before it started.")
                return
            try:
                self._train()
            finally:
                _RUN_SLOTS.release()
        except Exception as error:  # the page shows it; the network keeps its last weights
            self._finish("failed", f"Training failed: {type(error).__name__}: {error}")
        finally:
            self._tell("end")

    def _tell(self, what):
        """Let the listener (the lab) know; its trouble never ends the run."""
        if self.listener is None:
            return
        try:
            self.listener(self, what)
        except Exception as error:  # e.g. a full disk: the run goes on, the log says why
            print(f"digitlab: after {what} of a run: {type(error).__name__}: {error}", file=sys.stderr, flush=True)

    def _wait_for_slot(self):
        with self._lock:
            self.message = (f"Waiting for a free training slot ({MAX_RUNS} run(s) at once on this "
                            "server); it starts by itself.")
        while not _RUN_SLOTS.acquire(timeout=POLL_SECONDS):
            if self._stop.is_set():
                return False
        return True

    def _log(self, what):
        """One line in the server's log when a run starts and ends training (operators and the
        concurrency test read it): 'digitlab: run 3f2a9c started 1796280000.1234 (on this server)'."""
        self._logged_start = self._logged_start or what == "started"
        where = "on this server" if self.place is None else f"on {self.place.address}"
        print(f"digitlab: run {id(self):x} {what} {time.time():.4f} ({where})", file=sys.stderr, flush=True)

    def _train(self):
        """Start the trainer (child process or thread) and relay what it sends until it ends."""
        self._log("started")
        try:
            self._train_here()
        finally:
            self._log("ended")

    def _train_here(self):
        with self._lock:
            self.status, self.message = "running", "Training…"
        in_process = _FORK is not None
        receiver, sender = (_FORK or multiprocessing).Pipe(duplex=False)
        args = (sender, self._pause, self._stop, self.network, self.optimizer, self.x_train, self.y_train,
                self.x_test, self.y_test, self.config)
        options = {"granted": self._granted}
        if in_process:  # forked: the child starts with this process's memory, nothing is copied
            worker = _FORK.Process(target=_child_main, args=(receiver, *args, os.getpid()), kwargs=options,
                                   daemon=True, name="digitlab-training")
        else:
            worker = threading.Thread(target=run_trainer, args=args, kwargs=options, daemon=True,
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

    def _train_remote(self):
        """Submit the run to the cluster and relay what it sends until it ends."""
        with self._lock:
            self.message = self.place.waiting_message()
        remote = self._remote = self.place.launch(self)
        self._pass_on()  # a Pause or Stop pressed while it was being submitted
        try:
            self._relay(remote, remote)
        finally:
            self._stop.set()
            remote.close()
            if self._logged_start:  # it had started on a worker
                self._log("ended")

    def _relay(self, receiver, worker):
        stop_seen = None
        while True:
            if self._stop.is_set() and hasattr(worker, "kill"):
                stop_seen = stop_seen or time.monotonic()
                if time.monotonic() - stop_seen > STOP_GRACE:  # inside a long step, or its final test
                    worker.kill()
                    self._finish("stopped", self._stop_message(killed=True))
                    return
            try:
                if not receiver.poll(POLL_SECONDS):
                    if not worker.is_alive() and not receiver.poll():
                        raise EOFError
                    continue
                message = receiver.recv()
            except (EOFError, OSError):
                if hasattr(worker, "ended_message"):
                    self._finish("failed", worker.ended_message())
                    return
                code = getattr(worker, "exitcode", None)
                self._finish("failed", f"The training process ended unexpectedly (exit code {code}; out of "
                                       "memory?). The network keeps the weights of its last finished epoch.")
                return
            if isinstance(message, Started):  # on a cluster: the task has a worker
                if self.status != "queued":  # its worker died and the scheduler started it again
                    worker.lost = (f"The Dask worker running this run was lost during epoch "
                                   f"{(self._last.run_epoch if self._last else 1)}; the network keeps the weights "
                                   "of its last finished epoch. Start again to go on.")
                    self._stop.set()
                    self._pass_on()
                    self._finish("failed", worker.lost)
                    return
                with self._lock:
                    self.status, self.message = "running", f"Training… (on the Dask worker at {message.worker})"
                self._log("started")
            elif isinstance(message, PanelState):
                if self._painter is None:
                    self._painter = _Painter(self.network, self.x_test, self.y_test)
                self._record_panels(self._painter.paint(message))
            elif isinstance(message, Panels):  # drawn where it trained (a Dask worker)
                self._record_panels(message)
            elif isinstance(message, StepReport):
                with self._lock:
                    self._step_report = message
            elif isinstance(message, Events):
                for event in message.unpacked():
                    self._record(event)
            elif isinstance(message, Weights):
                epochs_before = self.network.epochs_trained
                self._apply(message)
                if self.network.epochs_trained != epochs_before:  # not the run's final copy of them
                    self._tell("epoch")
            elif isinstance(message, (Paused, Resumed)):
                with self._lock:
                    self.status, self.message = (("paused", "Paused: press Resume to continue.")
                                                 if isinstance(message, Paused) else ("running", "Training…"))
            elif isinstance(message, Ended):
                self.test_accuracy = message.test_accuracy
                self._finish(message.reason, self._stop_message() if message.reason == "stopped" else message.message)
                return
            elif isinstance(message, Failed):
                self._finish("failed", message.message)
                return

    def _stop_message(self, killed=False):
        last = self._last
        if last is None:
            return f"{self._stop_kind} before the first batch; the network is as it was."
        when = f"during {epoch_phrase(last.run_epoch, last.epoch)}"
        if killed:
            return (f"{self._stop_kind} {when}; the network keeps the weights of its last finished epoch "
                    f"({self.network.epochs_trained}).")
        return f"{self._stop_kind} {when}; the network keeps its weights as they were at that moment."

    def _apply(self, weights):
        """Weights, optimizer state and history sent by the trainer (after each epoch, at the end)."""
        self.network.params[...] = weights.params  # in place: views held by the pages stay valid
        if weights.optimizer_state is not None:
            self.optimizer.load_state(weights.optimizer_state, weights.params.size, weights.params.dtype)
        self.network.epochs_trained, self.network.partial_epoch = weights.epochs_trained, weights.partial_epoch
        self.network.history[:] = weights.history

    def _record_panels(self, panels):
        with self._lock:
            self._panels = panels
            if panels.confusion is not None:
                self._confusion = panels.confusion
            series = self._series
            series["position"].append(panels.position)
            for key in ("grad_norm", "update_ratio", "dead_share"):
                series[key].append(panels.stats.get(key))
            if len(series["position"]) > MAX_CURVE_POINTS:  # evenly thinned, as the curves are
                for key in series:
                    series[key] = series[key][::2]
            self._keep_snapshot(panels)

    def _keep_snapshot(self, panels):
        """A light picture for the replay: the first-layer weights as bytes (their shared scale
        kept), the strip's readings, the confusion matrix so far: ~13 KB; at most MAX_SNAPSHOTS,
        evenly thinned, so a run's replay stays under ~6 MB however long it trains."""
        finite = np.nan_to_num(panels.weights, nan=0.0, posinf=0.0, neginf=0.0)  # a diverging run has inf
        limit = float(np.abs(finite).max()) or 1.0
        quantized = np.round((finite / limit + 1) * 127.5).astype(np.uint8)
        self._snapshots.append({"position": panels.position, "run_epoch": panels.run_epoch, "weights": quantized,
                                "weights_limit": limit, "strip_read": panels.strip_read,
                                "strip_prob": panels.strip_prob, "confusion": self._confusion})
        if len(self._snapshots) > MAX_SNAPSHOTS:
            self._snapshots = self._snapshots[::2]

    def snapshots(self):
        """The replay's pictures so far (oldest first)."""
        with self._lock:
            return list(self._snapshots)

    def pictures(self):
        """(latest Panels, confusion matrix so far, series of the layer statistics, last step report)."""
        with self._lock:
            return self._panels, self._confusion, {k: list(v) for k, v in self._series.items()}, self._step_report

    def _record(self, event):
        with self._lock:
            self._last = event
            if event.kind == "batch":
                self._batches_per_epoch, self._samples_per_sec = event.batches, event.samples_per_sec
            if event.kind == "epoch":
                self._epochs.append(event.as_record())
                self._run_epochs_done = event.run_epoch
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
            return (self.status, self.message, self._batches_seen, len(self._epochs), len(self._snapshots),
                    id(self._step_report))

    def progress(self):
        """A snapshot of the progress, safe to draw while the thread goes on."""
        with self._lock:
            e = self._last
            batch = batches = 0
            epoch_fraction = sps = lr = partial = 0.0
            epochs, run_epoch = self.config.epochs, self._run_epochs_done
            run_fraction, elapsed = run_epoch / epochs, self._elapsed_before
            if e is not None:
                elapsed, lr = self._elapsed_before + e.elapsed, e.lr
                run_epoch = e.run_epoch
                if e.kind == "batch":
                    batch, batches, sps = e.batch, e.batches, e.samples_per_sec
                    run_fraction, epoch_fraction = e.run_fraction, e.batch / e.batches
                    partial = 0.0 if e.batch == e.batches else epoch_fraction
                else:
                    run_fraction, epoch_fraction = e.run_epoch / e.epochs, 1.0
                    batch = batches = self._batches_per_epoch
                    sps = self._samples_per_sec
            if self.status == "completed":
                run_fraction = epoch_fraction = 1.0
            # Elapsed counts training only (the trainer leaves pauses out), so the ETA does too.
            done_now = run_fraction - self.config.resume_after / epochs  # this job's share
            eta = ((elapsed - self._elapsed_before) * (1 - run_fraction) / done_now if done_now > 0
                   else float("nan"))
            return Progress(self.status, self.message, run_fraction, epoch_fraction, run_epoch, epochs,
                            batch, batches, sps, elapsed, eta, lr, list(self._steps), list(self._loss),
                            list(self._acc), [dict(r) for r in self._epochs], self.test_accuracy, partial)

    # --- keeping and resuming (ui/lab_store.py) ---------------------------------------------
    def record(self):
        """What the lab keeps of this run on disk (plain JSON-ready values)."""
        p = self.progress()
        config = {k: v for k, v in vars(self.config).items() if k not in ("schedule", "augment")}
        config["schedule"] = dict(vars(self.config.schedule))
        config["augment"] = None if self.config.augment is None else dict(vars(self.config.augment))
        return {"status": self.status, "message": self.message, "settings": self.settings, "config": config,
                "start_epoch": self.start_epoch, "run_epochs_done": self._run_epochs_done,
                "elapsed": p.elapsed, "epochs_table": p.epochs_table, "test_accuracy": self.test_accuracy,
                "curves": [p.batch_steps, p.batch_loss, p.batch_accuracy], "started_at": self.started_at,
                "data_key": list(self.data_key) if self.data_key else None, "recorded": self.recorded}

    def continue_from(self, earlier):
        """Carry the table, curves and time of the run this one resumes (so it reads as one run)."""
        with self._lock:
            self._epochs = [dict(r) for r in earlier._epochs]
            self._steps, self._loss, self._acc = list(earlier._steps), list(earlier._loss), list(earlier._acc)
            self._elapsed_before = earlier.progress().elapsed
            self._batches_seen, self._stride = earlier._batches_seen, earlier._stride
            self.start_epoch, self.started_at = earlier.start_epoch, earlier.started_at
        return self

    @classmethod
    def restored(cls, record, network, optimizer, config):
        """A run read back from disk: ended, or 'interrupted' if it was active when the server
        went (its network has the weights of its last saved epoch)."""
        job = cls(network, optimizer, None, None, None, None, config, settings=dict(record.get("settings") or {}))
        job.started_at = float(record.get("started_at") or time.time())
        job.data_key = tuple(record["data_key"]) if record.get("data_key") else None
        job.recorded = bool(record.get("recorded"))
        job.test_accuracy = float(record.get("test_accuracy", float("nan")))
        job.start_epoch = int(record.get("start_epoch", 0))
        job._run_epochs_done = network.epochs_trained - job.start_epoch  # the weights' truth
        job._epochs = [dict(r) for r in network.history[job.start_epoch:]]  # the weights' own epochs
        job._elapsed_before = float(record.get("elapsed", 0.0))
        steps, loss, acc = (record.get("curves") or [[], [], []])[:3]
        keep = [i for i, s in enumerate(steps) if s <= network.epochs_trained]  # not the lost epoch's batches
        job._steps, job._loss, job._acc = ([xs[i] for i in keep] for xs in (steps, loss, acc))
        job._batches_seen = len(job._steps)
        job.status, job.message = record.get("status", "interrupted"), record.get("message", "")
        if job.status in ACTIVE:
            done, start = job._run_epochs_done, job.start_epoch
            job.status = "interrupted"
            where = "" if start == 0 else f" (the network's epoch {start + done + 1})"
            kept = ("the weights it had before the run" if done == 0 else
                    f"the weights of epoch {done}" + ("" if start == 0 else f" (its epoch {start + done})"))
            job.message = (f"Interrupted by a server restart in epoch {done + 1} of {config.epochs}{where}; the "
                           f"network has {kept}. Resume trains the epochs that are left.")
        return job




# --- the trainer's side (child process, or thread) -----------------------------------------
def _child_main(servers_end, *args, **options):
    """Entry of the forked child: default signal handling (the server's handlers would only
    ask its event loop, which does not run here, to stop), the server's end of the pipe
    closed (held open here, a dead server's pipe would never break: the run would train on,
    an orphan), then train."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    servers_end.close()
    run_trainer(*args, **options)


def _take_step(granted):
    """Take one of the batches granted in step mode, if any (a process-shared counter)."""
    with granted.get_lock():
        if granted.value > 0:
            granted.value -= 1
            return True
    return False


def _state_of(network, optimizer, with_optimizer=True):
    """The weights message: copies, since training goes on while it is being sent. Without the
    optimizer (a step in step mode): reading Adam's state folds its scaled moments, which moves
    the later steps' rounding; it is read at epoch ends only, as training in place reads it."""
    if not with_optimizer:
        return Weights(network.params.copy(), None, network.epochs_trained, [dict(h) for h in network.history],
                       network.partial_epoch)
    params, state, epochs_trained, _, partial = snapshot(network, optimizer)
    return Weights(params, state, epochs_trained, [dict(h) for h in network.history], partial)


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


class _PanelTimer:
    """When the trainer takes the live view's pictures: at each epoch's end (with the confusion
    matrix) and, in epochs longer than PANEL_SECONDS, every PANEL_SECONDS between (less often for
    a network whose weights would otherwise pass PANEL_BYTES_PER_SECOND). The update's size needs
    the weights before a step: they are copied at one batch and compared at the next."""

    def __init__(self, network):
        self.network = network
        self.interval = max(PANEL_SECONDS, network.params.nbytes / PANEL_BYTES_PER_SECOND)
        self.due, self.before = 0.0, None

    def after(self, event):
        """A PanelState for this event, or None."""
        net = self.network
        if event.kind == "batch":
            if self.before is None:
                # Copied before the next step when pictures are due, and before each epoch's last
                # step, so that the epoch's end (all a short epoch shows) has an update's size too.
                if event.batch < event.batches and (time.monotonic() >= self.due or event.batch == event.batches - 1):
                    self.before = net.params.copy()
                return None
            if event.batch == event.batches:
                return None  # the epoch's end, next, is drawn with this step's update
            position = event.epoch - 1 + event.batch / event.batches
            stats = diagnostics.training_stats(net, self.before)
        else:
            position, stats = event.epoch, diagnostics.training_stats(net, self.before)
        # The next pictures come an interval after these: short epochs are drawn at their ends
        # only (fast runs had twice the pictures, each taken from the trainer's time).
        self.due, self.before = time.monotonic() + self.interval, None
        return PanelState(event.run_epoch, float(position), net.params.copy(), stats, event.kind == "epoch")


class _Painter:
    """Draws the Panels of a PanelState: its weights put into a twin of the network, whose strip
    readings, confusion matrix, first-layer images and histograms are taken (~1-6 ms, by the
    server: measured in the trainer, they were 1-2% of a fast run's time)."""

    def __init__(self, network, x_test, y_test):
        self.twin = network.copy()
        self.probe = diagnostics.Probe.from_test_set(x_test, y_test, network.sizes[-1])

    def paint(self, state):
        d, net = diagnostics, self.twin
        net.params[...] = state.params
        read, prob = d.strip_readings(net, self.probe)
        return Panels(state.run_epoch, state.position, d.first_layer_images(net), read, prob,
                      dict(state.stats, histograms=d.weight_histograms(net)),
                      d.subset_confusion(net, self.probe) if state.with_confusion else None)


def _step_report(network, x, y, event, scale):
    """What one batch trained in step mode did: its loss before (the batch's own) and after."""
    rows = event.rows
    loss_after = float(evaluate(network, x[rows], y[rows], scale=scale)[0])
    images = np.asarray(x[rows[:STEP_IMAGES]]).reshape(-1, 28, 28) if x[0].size == 784 else np.zeros((0, 28, 28))
    return StepReport(images, np.asarray(y[rows[:STEP_IMAGES]]), float(event.loss), loss_after,
                      [float(np.linalg.norm(g)) for g in network.weight_grads], event.epoch, event.batch, event.batches)


def run_trainer(sender, pause, stop, network, optimizer, x_train, y_train, x_test, y_test, config,
                parent_pid=None, send_weights=None, weights_every=0.0, granted=None, panels=True, paint_here=False):
    """Run the engine's trainer, sending Events bundles, Weights after each epoch and at the end
    (from a child process or a cluster, send_weights: in a thread the server's network is
    trained in place), PanelStates a few times a second (or the Panels themselves, paint_here:
    on a cluster's worker), then Ended or Failed. Honours pause/stop between batches; while
    paused, each batch `granted` (a shared counter: step mode) is trained and reported
    (StepReport). Ends by itself if the parent process is gone."""
    send_weights = parent_pid is not None if send_weights is None else send_weights
    weights_sent = -math.inf
    outbox = _Outbox(sender)
    pending, last_send = [], time.monotonic()
    timer = _PanelTimer(network) if panels and len(y_test) else None
    painter = _Painter(network, x_test, y_test) if timer is not None and paint_here else None
    stepping = pause.is_set()  # a run started paused trains its first batch as a step
    ending_epoch = False
    scale = config.scale_inputs and np.asarray(x_train).dtype == np.uint8

    def flush():
        nonlocal pending, last_send
        if parent_pid is not None and os.getppid() != parent_pid:
            outbox.broken = True  # the server has gone (killed): nobody to train for
        if pending:
            outbox.post(Events(pending))
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
            if event.kind == "batch" and stepping:
                outbox.post(_step_report(network, x_train, y_train, event, scale))
                if send_weights:  # the page shows the network one batch on
                    outbox.post(_state_of(network, optimizer, with_optimizer=False))
                stepping = False
                ending_epoch = event.batch == event.batches  # its epoch's end belongs to the step
            elif event.kind == "epoch":
                ending_epoch = False
            panel = timer.after(event) if timer is not None else None
            if panel is not None and painter is not None:
                panel = painter.paint(panel)
            pending.append(packed_batch(event) if event.kind == "batch" else event)
            if panel is not None:
                flush()
                outbox.post(panel)
            if event.kind == "epoch":
                flush()
                if send_weights and time.monotonic() - weights_sent >= weights_every:
                    outbox.post(_state_of(network, optimizer))
                    weights_sent = time.monotonic()
            elif time.monotonic() - last_send > SEND_SECONDS:
                flush()
            if (stepping or ending_epoch) and pause.is_set() and not stop.is_set():
                continue  # a granted batch, or its epoch's end, has not come yet: on to it
            if pause.is_set() or stop.is_set() or outbox.broken:
                flush()
                if pause.is_set() and not stop.is_set():
                    outbox.post(Paused())  # after every event so far: the page's view is exact
                    while pause.is_set() and not stop.is_set() and parent_alive():
                        if granted is not None and _take_step(granted):
                            stepping = True  # one batch, then back here
                            break
                        time.sleep(POLL_SECONDS / 4)
                    if not stepping:
                        outbox.post(Resumed())
                if stop.is_set() or not parent_alive():
                    steps.close()  # the network keeps the weights of the last finished batch
                    reason = "stopped"
                    break
        flush()
        if send_weights:  # before the test, which a Stop may cut short
            outbox.post(_state_of(network, optimizer))
        # A stopped run is not tested here: a Stop takes effect at once; the page measures later.
        test_accuracy = (float(evaluate(network, x_test, y_test)[1]) if len(y_test) and reason != "stopped"
                         else float("nan"))
        outbox.post(Ended(reason, message, test_accuracy))
    except Exception as error:  # reported on the page; the network keeps its last weights
        outbox.post(Failed(f"Training failed: {type(error).__name__}: {error}"))
    finally:
        outbox.close()

