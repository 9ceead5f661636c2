"""The models folder: save, list, load, delete networks (each a Digit Lab .npz)."""
import datetime as dt
import math
import os
import re
from pathlib import Path

import numpy as np
import streamlit as st

from engine.errors import ModelFileError
from engine.persistence import load_network, save_network
from ui.lab_store import replay_arrays, replays_from, saved_runs, saved_settings

MODELS_DIR = Path(os.environ.get("DIGITLAB_MODELS_DIR", "models"))
UPLOAD_LIMIT_BYTES = 100 * 1024 * 1024


def models_dir():
    """The folder (re-read from the environment so tests can point it elsewhere)."""
    return Path(os.environ.get("DIGITLAB_MODELS_DIR", MODELS_DIR))


def safe_name(name):
    """A file-system-safe model name, or '' if nothing usable is left."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(name).strip()).strip(".-")[:80]


def metadata_for(lab, dataset, name):
    """Facts saved with a model: what it is, how it was trained, how well it does."""
    return {
        "name": name,
        "saved": dt.datetime.now().isoformat(timespec="seconds"),
        "dataset": dataset.name if dataset is not None else None,
        "dataset_source": dataset.source if dataset is not None else None,
        "settings": dict(lab.settings),
        "test_accuracy": None if math.isnan(lab.test_accuracy) else lab.test_accuracy,
        "runs": lab.runs,
    }


def save_current(lab, dataset, name):
    """Save the lab's network under `name`, its runs' replays with it; returns the path."""
    path = models_dir() / f"{name}.npz"
    save_network(path, lab.network, lab.optimizer, metadata_for(lab, dataset, name), extra=replay_arrays(lab.replays))
    return path


@st.cache_data(max_entries=256, show_spinner=False)
def _summary(path, mtime):
    """One table row per model file (cached until the file changes)."""
    try:
        net, opt, meta = load_network(path)
    except ModelFileError as bad:
        return {"file": Path(path).name, "architecture": "unreadable", "problem": str(bad)}
    acc = meta.get("test_accuracy")
    return {"file": Path(path).name, "name": meta.get("name", Path(path).stem),
            "architecture": net.describe(), "parameters": net.parameter_count,
            "epochs": net.epochs_trained, "test accuracy": acc, "optimizer": opt.name if opt else "–",
            "dataset": meta.get("dataset"), "saved": str(meta.get("saved") or "").replace("T", " ")}


def list_models():
    """Rows for every .npz in the models folder, newest first."""
    folder = models_dir()
    if not folder.is_dir():
        return []
    files = sorted(folder.glob("*.npz"), key=lambda p: p.stat().st_mtime, reverse=True)
    return [_summary(str(p), p.stat().st_mtime) for p in files]


def adopt(lab, network, optimizer, metadata):
    """Make a loaded network the current one, with its settings and runs."""
    acc = metadata.get("test_accuracy")
    lab.set_network(network, optimizer, test_accuracy=float("nan") if acc is None else float(acc))
    lab.settings.update(saved_settings(metadata))
    lab.settings.update(hidden=list(network.hidden_sizes), activation=network.activation,  # the form
                        use_bias=network.use_bias, dtype=np.dtype(network.dtype).name)  # describes the network
    lab.runs = saved_runs(metadata)
    lab.replays = replays_from(metadata.get("extra") or {})
    lab.job = None
    lab.save()
