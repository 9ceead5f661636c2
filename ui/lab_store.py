"""Labs kept on disk, so that a server restart, or a crash with `kill -9`, loses at most the
epoch in progress.

    $DIGITLAB_HOME/labs/<token>/network.npz   the network and its optimizer state
                                             (engine.persistence: atomic, never unpickled)
    $DIGITLAB_HOME/labs/<token>/lab.json      settings, the data chosen, the finished runs
                                             and the latest run's record

network.npz is written first and is the truth about the weights (their epoch count and
history); lab.json says what the run was doing. Both are replaced atomically (a temporary
file, then a rename), so a crash leaves either the old or the new file, never half of one.
Old labs are removed after DIGITLAB_LAB_KEEP_DAYS days, and the oldest first whenever the
folder holds more than DIGITLAB_HOME_MAX_MB. No Streamlit here: the registry (ui/reload.py)
and the lab (ui/state.py) call it.
"""
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from engine.augment import AugmentConfig
from engine.errors import ModelFileError
from engine.persistence import load_network, save_network
from engine.schedules import Schedule
from engine.presets import migrate
from engine.trainer import TrainConfig

FORMAT = "digitlab-lab-1"
TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")  # what secrets.token_urlsafe(16) makes; safe as a folder name
NETWORK, LAB, REPLAYS = "network.npz", "lab.json", "replays.npz"
MAX_LAB_JSON_BYTES = 16 * 2**20


def home():
    """The data folder (re-read from the environment, so tests and deployments can move it)."""
    return Path(os.environ.get("DIGITLAB_HOME", ".digitlab"))


def keep_seconds():
    return float(os.environ.get("DIGITLAB_LAB_KEEP_DAYS", 14)) * 86400


def max_bytes():
    return float(os.environ.get("DIGITLAB_HOME_MAX_MB", 2048)) * 2**20


def lab_dir(token):
    """The lab's folder, or None for a token that is not one of ours (it comes from a URL)."""
    if not isinstance(token, str) or not TOKEN.match(token):
        return None
    return home() / "labs" / token


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not kept in a lab file")


def _write_text(path, text):
    fd, tmp = tempfile.mkstemp(suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- saving ---------------------------------------------------------------------------------

def save(lab, weights=True):
    """Write the lab: its network (when `weights`, after anything that changed them) and its
    lab.json. Called after a run's epochs (at most once a second: ui/state.py), at its end, and
    after Create, Load and a settings change. Returns False (and logs why) when the disk refuses."""
    folder = lab_dir(lab.token)
    if folder is None:
        return False
    try:
        with lab.lock:
            folder.mkdir(parents=True, exist_ok=True)
            network = lab.network
            if weights and network is not None:
                # fsync is left out: a killed process loses nothing the kernel has; only a
                # power cut could, and an epoch's save must stay cheap.
                save_network(folder / NETWORK, network, lab.optimizer, {"lab": lab.token}, durable=False)
            elif network is None:
                (folder / NETWORK).unlink(missing_ok=True)
            _save_replays(folder, lab)
            _write_text(folder / LAB, json.dumps(lab_record(lab), default=_json_default))
        return True
    except (OSError, ModelFileError, TypeError, ValueError) as error:
        print(f"digitlab: could not save lab {lab.token[:6]}…: {error}", file=sys.stderr, flush=True)
        return False


def _save_replays(folder, lab):
    """replays.npz, rewritten only when the lab has a replay the file lacks (replays never change)."""
    names = sorted(lab.replays)
    if lab.replays_saved == names:
        return
    arrays = replay_arrays(lab.replays)
    fd, tmp = tempfile.mkstemp(suffix=".npz.part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, folder / REPLAYS)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    lab.replays_saved = names


def replay_arrays(replays):
    """{run name: Replay} as plain arrays (for replays.npz and a model file)."""
    names = sorted(replays)
    arrays = {"names": np.array(names)}
    for i, name in enumerate(names):
        arrays.update(replays[name].to_arrays(f"r{i}_"))
    return arrays


def replays_from(arrays):
    """The {run name: Replay} of replay_arrays' output (odd entries left out)."""
    from ui.replay import Replay
    names = [str(n) for n in arrays.get("names", [])]
    loaded = {name: Replay.from_arrays(arrays, f"r{i}_") for i, name in enumerate(names)}
    return {name: replay for name, replay in loaded.items() if replay is not None}


def _load_replays(folder):
    """{run name: Replay} from replays.npz (never unpickled); {} when absent or unreadable."""
    try:
        with np.load(folder / REPLAYS, allow_pickle=False) as npz:
            return replays_from({k: npz[k] for k in npz.files})
    except (OSError, ValueError, EOFError):
        return {}


def lab_record(lab):
    """lab.json's content: everything but the arrays."""
    job = lab.job
    return {"format": FORMAT, "saved": time.time(),
            "settings": lab.settings, "continue_state": lab.continue_state,
            "dataset_path": lab.dataset_path, "dataset_name": lab.dataset_name,
            "runs": lab.runs, "untrained_accuracy": lab.untrained_accuracy,
            "network": None if lab.network is None else lab.network.describe(),
            "job": None if job is None or not hasattr(job, "record") else job.record()}


# --- loading --------------------------------------------------------------------------------

def load(token, make_lab):
    """The lab saved under `token` as `make_lab()` filled in, or None when there is none.
    A damaged network file leaves the lab without a network and says so (`lab.notice`)."""
    folder = lab_dir(token)
    if folder is None or not (folder / LAB).is_file():
        return None
    try:
        if (folder / LAB).stat().st_size > MAX_LAB_JSON_BYTES:
            raise ValueError("lab.json is too large")
        record = json.loads((folder / LAB).read_text(encoding="utf-8"))
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            raise ValueError("not a Digit Lab lab file")
    except (OSError, ValueError, RecursionError) as error:
        print(f"digitlab: lab {token[:6]}… not restored: {error}", file=sys.stderr, flush=True)
        return None
    lab = make_lab()
    lab.token = token
    lab.settings = saved_settings(record)
    lab.continue_state = bool(record.get("continue_state", (record.get("train_settings") or {}).get(
        "continue_state", True)))
    lab.dataset_path = record.get("dataset_path") if isinstance(record.get("dataset_path"), str) else None
    lab.dataset_name = str(record.get("dataset_name") or "mnist")
    lab.runs = saved_runs(record)
    lab.replays = _load_replays(folder)
    lab.replays_saved = sorted(lab.replays)
    lab.untrained_accuracy = _number(record.get("untrained_accuracy"))
    if (folder / NETWORK).is_file():
        try:
            network, optimizer, _ = load_network(folder / NETWORK)  # the checks of a model upload
            lab.set_network(network, optimizer)
            lab.job = restore_job(record.get("job"), network, optimizer)
        except ModelFileError as bad:
            lab.notice = f"Your lab came back without its network, whose file could not be read: {bad}"
    return lab


def restore_job(record, network, optimizer):
    """The latest run, as the lab saw it last: ended, or interrupted (see TrainingJob.restored).
    None when there is none or it does not belong to this network."""
    from ui.training import TrainingJob
    if not isinstance(record, dict) or optimizer is None:
        return None
    try:
        config = _config(record["config"])
        done = network.epochs_trained - int(record.get("start_epoch", 0))
        if not 0 <= done <= config.epochs:
            return None  # the network was replaced after this run
        return TrainingJob.restored(record, network, optimizer, config)
    except (KeyError, TypeError, ValueError):
        return None


def _config(saved):
    saved = dict(saved)
    schedule = Schedule(**dict(saved.pop("schedule") or {}))
    augment = saved.pop("augment")
    return TrainConfig(**saved, schedule=schedule, augment=None if augment is None else AugmentConfig(**augment))


def saved_settings(record):
    """The settings a model or lab file holds, in today's schema: its "settings" (the command
    line's, and the app's since the schema was one), or the app's older build and train
    settings, migrated."""
    record = record if isinstance(record, dict) else {}
    old = {**(record.get("build_settings") or {}), **(record.get("train_settings") or {})}
    return migrate(record.get("settings") or old)


def saved_runs(record):
    """A file's finished runs, their settings migrated (so they compare with today's runs)."""
    runs = [dict(r) for r in (record.get("runs") or []) if isinstance(r, dict)]
    for run in runs:
        run["settings"] = migrate(run.get("settings"))
    return runs


def _number(value):
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


# --- housekeeping ---------------------------------------------------------------------------

def prune(in_use=(), now=None):
    """Remove labs unused for longer than keep_seconds(), then the oldest beyond max_bytes();
    never those in `in_use` (tokens of labs open or training). Returns the removed tokens."""
    root = home() / "labs"
    if not root.is_dir():
        return []
    now = time.time() if now is None else now
    labs = []
    for folder in root.iterdir():
        try:
            files = [f for f in folder.iterdir() if f.is_file()]
            used = max((f.stat().st_mtime for f in files), default=folder.stat().st_mtime)
            labs.append((used, sum(f.stat().st_size for f in files), folder))
        except OSError:
            continue
    removed, total = [], sum(size for _, size, _ in labs)
    for used, size, folder in sorted(labs):  # oldest first
        if folder.name in in_use:
            continue
        if now - used > keep_seconds() or total > max_bytes():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
            total -= size
    return removed
