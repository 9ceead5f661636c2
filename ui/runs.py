"""Starting a training run from the settings, and recording it when it ends."""
import dataclasses
import math

from engine.errors import EngineError
from engine.memory import check_memory
from engine.optimizers import make_optimizer
from engine.presets import build_config, build_optimizer
from engine.schedules import Schedule
from engine.trainer import TrainConfig
from ui.state import data_key
from ui.dask_training import Unreachable
from ui.replay import replay_of
from ui.training import TrainingJob

FINISHED = {"completed": ("✅", "Completed"), "stopped": ("⏹️", "Stopped"), "diverged": ("⚠️", "Diverged"),
            "early_stopped": ("✅", "Early stopping"), "failed": ("❌", "Failed"),
            "interrupted": ("⚡", "Interrupted")}


def finished_text(status, message):
    """'✅ Completed 3 epochs.' or '⚠️ Diverged in epoch 2: …': the status word once, never twice."""
    icon, label = FINISHED.get(status, ("", status.capitalize()))
    if message.startswith(label):
        return f"{icon} {message}"
    prefix = f"training {label.lower()}"                # the engine's "Training diverged in …"
    if message.lower().startswith(prefix):
        return f"{icon} {label}{message[len(prefix):]}"
    return f"{icon} {label}: {message}"


def setting_problems(settings, n_samples):
    """{setting: what is wrong with it} for the Train page, each setting checked on its own by
    the engine's own rules as soon as it is typed, so Start can be disabled with the reason
    instead of failing after it is pressed."""
    def check(make):
        try:
            make()
            return None
        except (EngineError, TypeError, ValueError) as bad:
            return str(bad)

    train = settings
    split = train["validation_split"]
    split_ok = check(lambda: TrainConfig(validation_split=split).validate(n_samples)) is None
    problems = {
        "lr": check(lambda: make_optimizer(train["optimizer"], lr=train["lr"])),
        "epochs": check(lambda: TrainConfig(epochs=train["epochs"]).validate()),
        "validation_split": check(lambda: TrainConfig(validation_split=split).validate(n_samples)),
        "batch_size": check(lambda: TrainConfig(batch_size=train["batch_size"],
                                                validation_split=split if split_ok else 0.0).validate(n_samples)),
        "early_stopping": check(lambda: TrainConfig(early_stopping=train["early_stopping"],
                                                    validation_split=split if split_ok else 0.1).validate()),
        "warmup_epochs": check(lambda: Schedule(kind=train["schedule"], warmup_epochs=train["warmup_epochs"])),
        "keep_prob": check(lambda: TrainConfig(keep_prob=train["keep_prob"]).validate()),
    }
    for key in ("beta1", "beta2", "eps", "momentum", "weight_decay", "max_norm"):
        value = (train[key] or None) if key == "max_norm" else train[key]  # max-norm 0 means off
        problems[key] = check(lambda: make_optimizer(train["optimizer"], **{key: value}))
    return {key: problem for key, problem in problems.items() if problem}


def run_optimizer(settings, network, previous=None, keep_state=True):
    """The optimizer for a run (engine.presets.build_optimizer). With keep_state and the same
    kind as before, the run continues the previous one's state (Adam's moments and step count)
    with the new hyper-parameters."""
    fresh = build_optimizer(settings)
    if keep_state and previous is not None and previous.name == fresh.name:
        fresh.load_state(previous.state(), network.params.size, network.dtype)
    return fresh


def start_run(lab, dataset, keep_state=True, here=False, paused=False):
    """Validate everything, then start a background run: on the Dask cluster when
    DIGITLAB_SCHEDULER names one (unless `here`), else on this server. Returns an error message
    or None; when the cluster cannot be reached, `lab.offer_here` is set (the page offers to
    train on this server instead). `paused`: step mode, the run trains one batch and pauses."""
    if lab.training:
        return "A run is already going on."
    settings = dict(lab.settings)
    try:
        config = build_config(settings, len(dataset.y_train))
        check_memory(lab.network.sizes, config.batch_size, lab.network.dtype, lab.network.use_bias)
        optimizer = run_optimizer(settings, lab.network, lab.optimizer, keep_state)
    except EngineError as bad:
        return str(bad)
    try:
        place = None if here else cluster()
    except Unreachable as why:
        lab.offer_here = True
        return f"{why} Train on this server instead, or ask whoever runs the cluster to start it."
    lab.offer_here = False
    _launch(lab, dataset, optimizer, config, settings, place=place, paused=paused)
    return None


def cluster():
    """Where runs train when DIGITLAB_SCHEDULER names a Dask scheduler (None: this server)."""
    from ui import dask_training
    return dask_training.place() if dask_training.scheduler_address() else None


def resume_run(lab, dataset):
    """Train the epochs an interrupted run has left, with its settings and optimizer state, so
    that it ends as the uninterrupted run would have. Returns an error message or None."""
    earlier = lab.job
    if earlier is None or not earlier.resumable:
        return "There is no interrupted run to resume."
    if earlier.data_key is not None and earlier.data_key != data_key(dataset):
        return (f"The interrupted run trained on {earlier.data_key[0]} ({earlier.data_key[1]}); switch back to "
                "that data on Home to resume it, or start a new run.")
    config = dataclasses.replace(earlier.config, resume_after=earlier.run_epochs_done)
    try:
        place = cluster()
    except Unreachable as why:
        return f"{why} Start a new run to train on this server instead."
    _launch(lab, dataset, earlier.optimizer, config, earlier.settings, earlier, place=place)
    return None


def _launch(lab, dataset, optimizer, config, settings, resumes=None, place=None, paused=False):
    lab.optimizer = optimizer
    job = TrainingJob(lab.network, optimizer, dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test,
                      config, settings=settings, listener=lab.on_run_event, place=place,
                      data_key=data_key(dataset))  # the accuracy it measures belongs to this data
    if resumes is not None:
        job.continue_from(resumes)
    lab.job = job
    lab.save()  # a restart finds the run (and says it was interrupted) with the optimizer it had
    if paused:
        job.pause()
    job.start()


def record_finished_run(lab):
    """Once a run has ended: keep it in the run list and update the lab's accuracy. Idempotent,
    and safe from the run's watcher thread and a page at the same time."""
    with lab.lock:
        job = lab.job
        if job is None or job.active or job.recorded or job.status == "interrupted":
            return False  # an interrupted run is recorded when it ends, resumed or not
        job.recorded = True
        run_epochs = len(job.progress().epochs_table)
        history = [dict(r) for r in job.network.history[-run_epochs:]] if run_epochs else []
        name = f"run {len(lab.runs) + 1}"
        lab.runs.append({"name": name, "settings": dict(job.settings), "history": history,
                         "status": job.status, "test_accuracy": job.test_accuracy})
        replay = replay_of(job)
        if replay is not None:
            lab.replays[name] = replay
        lab.version += 1
        if not math.isnan(job.test_accuracy):
            lab.remember_accuracy(job.test_accuracy, job.data_key)
        return True


def describe_differences(runs):
    """Name each run by the settings that differ between the runs (for the legend)."""
    keys = sorted({k for r in runs for k in r["settings"]} - {"description", "tuned"})  # words, not settings
    varying = [k for k in keys if len({repr(r["settings"].get(k)) for r in runs}) > 1]
    names = []
    for r in runs:
        parts = [f"{k}={r['settings'].get(k)}" for k in varying[:3]]
        names.append(f"{r['name']}: " + (", ".join(parts) if parts else "same settings"))
    return names
