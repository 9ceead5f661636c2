"""Each browser session's lab, kept in `st.session_state` so reruns and navigation never lose it,
in the server's registry so a reload finds it (ui/reload.py), and on disk so a restart does
(ui/lab_store.py)."""
import math
import threading
import time
from dataclasses import dataclass, field

import streamlit as st

LAB_PARAM = "lab"  # the URL query parameter that brings a lab back after a reload
# A run's epochs are saved at most this often: a fast run (ten epochs a second on the bundled
# sample) would otherwise rewrite the lab's files ten times a second, on the core it trains on.
EPOCH_SAVE_SECONDS = 1.0


@dataclass(eq=False)  # a lab is itself
class Lab:
    """Everything one user has built: the current network, its optimizer, runs and drawings."""
    network: object = None
    optimizer: object = None
    settings: dict = field(default_factory=dict)   # Build's and Train's, in engine.presets' schema
    continue_state: bool = True          # a run continues the last one's optimizer state
    job: object = None                   # ui.training.TrainingJob of the latest run
    runs: list = field(default_factory=list)   # finished runs: {"name", "settings", "history"}
    replays: dict = field(default_factory=dict)  # run name -> ui.replay.Replay
    replays_saved: list = field(default=None, repr=False)  # the replays on disk (ui/lab_store.py)
    test_accuracy: float = float("nan")
    accuracy_key: tuple = None           # (version, data_key) that test_accuracy was measured for
    untrained_accuracy: float = float("nan")
    untrained_images: int = 0            # how many test images it was measured on
    version: int = 0                     # bumped whenever the weights change (cache key)
    last_drawn: object = None            # 28x28 float image last drawn on Predict
    canvas_generation: int = 0           # changing the canvas key clears it
    dataset_path: str = None             # None: MNIST_PATH, Keras cache or download
    dataset_name: str = "mnist"
    train_error: str = None              # message from the last Start that was refused
    offer_here: bool = False             # the cluster could not be reached: offer this server
    # Results kept so a rerun does not recompute them (keys include the network version).
    gradcheck: tuple = None              # (GradCheckResult, seconds, network description)
    comparison: dict = None              # last Keras comparison
    results: dict = field(default_factory=dict)  # name -> (key, value): see per_network
    measuring: tuple = None              # the accuracy_key a background test is measuring
    token: str = None                    # names the lab in the URL (ui/reload.py) and on disk
    notice: str = None                   # said once on the next page (e.g. what a restore could not bring back)
    lock: object = field(default_factory=threading.RLock, repr=False)  # saves and run records
    _saved_at: float = field(default=-math.inf, repr=False)  # monotonic time of a run's last epoch save
    _save_timer: object = field(default=None, repr=False)    # a deferred epoch save, if one is due

    @property
    def training(self):
        return self.job is not None and self.job.active

    def set_network(self, network, optimizer=None, test_accuracy=float("nan")):
        """Replace the current network (after Build, Load or Upload). Call save() after."""
        self.network, self.optimizer = network, optimizer
        self.test_accuracy = test_accuracy
        self.accuracy_key = None         # measured elsewhere (a saved model): re-measured here
        self.version += 1

    def save(self, weights=True):
        """Keep the lab on disk (its network too, unless only settings changed)."""
        from ui import lab_store
        return lab_store.save(self, weights)

    def on_run_event(self, job, what):
        """A run's listener (called from its watcher thread): after an epoch the lab is saved,
        at most every EPOCH_SAVE_SECONDS (a save put off is made when that time is up), so a
        crash loses at most the epoch in progress and the last second's epochs; at the end the
        run is recorded in the lab's list and saved, whoever is looking (or not)."""
        if job is not self.job:
            return  # an older run (the lab moved on)
        with self.lock:
            if what == "end":
                if self._save_timer is not None:
                    self._save_timer.cancel()  # this save writes what it would have
                    self._save_timer = None
                from ui.runs import record_finished_run
                record_finished_run(self)
                self.save()
                return
            if self._save_timer is not None:
                return  # a save is due within the second: it writes this epoch too
            wait = self._saved_at + EPOCH_SAVE_SECONDS - time.monotonic()
            if wait > 0:
                self._save_timer = threading.Timer(wait, self._deferred_save)
                self._save_timer.daemon = True
                self._save_timer.start()
                return
            self._saved_at = time.monotonic()
            self.save()

    def _deferred_save(self):
        with self.lock:
            if self._save_timer is None:
                return  # the run's end saved meanwhile
            self._save_timer, self._saved_at = None, time.monotonic()
            self.save()  # the lab as it is now, whichever run it has

    def remember_accuracy(self, accuracy, key):
        """Record the current weights' test accuracy on the data with this data_key."""
        self.test_accuracy, self.accuracy_key = accuracy, (self.version, key)


def data_key(dataset):
    """What identifies a dataset for a cached accuracy."""
    return None if dataset is None else (dataset.name, dataset.source, len(dataset.y_test))


def per_network(lab, name, dataset, compute):
    """`compute()` once per weights and data (the lab's version and the data's data_key), kept
    in the lab under `name`; computed afresh while the weights are being trained."""
    key = (lab.version, data_key(dataset))
    kept = lab.results.get(name)
    if kept is None or kept[0] != key or lab.training:
        kept = lab.results[name] = (key, compute())
    return kept[1]


def mismatch(network, dataset):
    """Why `network` cannot run on `dataset` (inputs or classes differ), or '' when it can."""
    if dataset is None:
        return ""
    inputs, classes = dataset.x_train[0].size, dataset.num_classes
    if network.sizes[0] != inputs or network.sizes[-1] != classes:
        return (f"The network takes {network.sizes[0]} inputs and gives {network.sizes[-1]} classes; "
                f"the dataset has {inputs} pixels and {classes} classes.")
    return ""


def accuracy_text(accuracy, measuring=False):
    """'91.20%', 'being measured…' or 'not measured' (NaN)."""
    if math.isnan(accuracy):
        return "being measured…" if measuring else "not measured"
    return f"{accuracy:.2%}"


INLINE_TEST_SECONDS = 0.3  # a longer test (a huge network) runs in the background: the page stays live


def current_accuracy(lab, dataset):
    """The current network's test accuracy on `dataset`: measured once per weights and data
    (so switching the data never shows a figure from other data); NaN when it cannot run on it,
    or while a test that would take long runs in the background (`lab.measuring`)."""
    if lab.network is None or dataset is None:
        return math.nan
    key = data_key(dataset)
    if lab.accuracy_key != (lab.version, key):
        if mismatch(lab.network, dataset) or lab.training:
            return math.nan  # shapes differ, or the weights are being trained right now
        from engine.estimate import test_seconds
        if test_seconds(lab.network.sizes, len(dataset.y_test), lab.network.dtype) < INLINE_TEST_SECONDS:
            lab.remember_accuracy(_test_accuracy(lab.network, dataset), key)
        else:
            _measure_in_background(lab, dataset, (lab.version, key))
            return math.nan
    return lab.test_accuracy


def _test_accuracy(network, dataset):
    from engine.trainer import evaluate
    return float(evaluate(network, dataset.x_test, dataset.y_test)[1])


def _measure_in_background(lab, dataset, wanted):
    with lab.lock:
        if lab.measuring == wanted:
            return
        lab.measuring = wanted

    def measure():
        try:
            accuracy = _test_accuracy(lab.network, dataset)
            if (lab.version, wanted[1]) == wanted and not lab.training:  # still the same weights
                lab.remember_accuracy(accuracy, wanted[1])
        finally:
            lab.measuring = None

    threading.Thread(target=measure, name="digitlab-test-accuracy", daemon=True).start()


def get_lab():
    """This session's Lab: created on first use, or taken back after a browser reload or a
    server restart (the page's URL carries the lab's token, see ui/reload.py)."""
    from ui import reload
    session_id = reload.current_session_id()
    if "lab" not in st.session_state:
        st.session_state["lab"] = reload.claim(st.query_params.get(LAB_PARAM), session_id, make_lab=Lab) or Lab()
    lab = st.session_state["lab"]
    token = reload.register(lab, session_id)
    if st.query_params.get(LAB_PARAM) != token:
        st.query_params[LAB_PARAM] = token
    return lab
