"""The dataset, loaded once per server and shared read-only by every session."""
import hashlib
import os
import tempfile
from pathlib import Path

import streamlit as st

from engine.data import describe, load_dataset, load_npz_bytes
from engine.errors import DatasetError
from ui.models import safe_name

UPLOAD_DIR = Path(os.environ.get("DIGITLAB_UPLOAD_DIR", Path(tempfile.gettempdir()) / "digitlab-uploads"))

NO_DATA_HELP = (
    "**How to get data:** set `MNIST_PATH` to a Keras-format `.npz` (`x_train`, `y_train`, "
    "`x_test`, `y_test`) or to a folder of the four MNIST IDX files and restart; or upload such "
    "an `.npz` on the Home page; or run the app once with internet access so Keras can download "
    "MNIST into its cache."
)

SAMPLE_BANNER = ("Using the 5,000-digit sample that ships with Digit Lab; full MNIST loads when online "
                 "or with `MNIST_PATH` (or choose a file below, under *Use other data*).")


@st.cache_resource(show_spinner="Loading the dataset…", max_entries=4)
def _load(path, name, env_value):
    """(dataset, error message). Failures are cached too, so a missing dataset does not make
    every rerun retry a download; `retry()` clears the cache. env_value keys the cache on
    MNIST_PATH."""
    try:
        return load_dataset(path, name), None
    except DatasetError as error:
        return None, str(error)


def current_dataset(lab):
    """The lab's dataset, or (None, message saying what to do)."""
    env_value = os.environ.get("FASHION_MNIST_PATH" if "fashion" in lab.dataset_name else "MNIST_PATH")
    path, name = lab.dataset_path, lab.dataset_name
    if "fashion" not in name and "fashion" in str(path or env_value or "").lower():
        # e.g. MNIST_PATH=/usr/share/datasets/fashion-mnist: name its classes as what they are
        path, name = path or env_value, "fashion-mnist"
    return _load(path, name, env_value)


def retry():
    """Forget cached loads (after the user fixed the data)."""
    _load.clear()


def save_upload(data, name="mnist", filename=None):
    """Validate an uploaded .npz; store it under its content hash (so sessions share it) and
    the user's file name (so the app can say which file it is). Returns the stored path;
    raises DatasetError with the reason if the file is bad."""
    load_npz_bytes(data, name="Fashion-MNIST" if "fashion" in name else "MNIST")
    UPLOAD_DIR.mkdir(parents=True, exist_ok=True)
    stem = safe_name(Path(filename or "upload").stem)[:60] or "upload"
    path = UPLOAD_DIR / f"{stem}-{hashlib.sha256(data).hexdigest()[:16]}.npz"
    if not path.exists():
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(path)
    return str(path)


def dataset_summary(dataset):
    """Plain facts for the sidebar and Home."""
    return describe(dataset)
