"""Shared test fixtures: paths, the real MNIST sample (skipped when absent), small data."""
import atexit
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SAMPLE = ROOT / "data" / "mnist-sample.npz"  # ships with Digit Lab: real digits on every clone
NOTEBOOK = SHARED / "seed" / "notebook.md"

# Keras writes into ~/.keras on import unless told otherwise, and labs are kept on disk
# (ui/lab_store.py): the tests' go to folders of their own, removed at the end.
_SCRATCH = tempfile.mkdtemp(prefix="digitlab-tests-")
atexit.register(shutil.rmtree, _SCRATCH, True)
os.environ.setdefault("KERAS_HOME", os.path.join(_SCRATCH, "keras"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("DIGITLAB_HOME", os.path.join(_SCRATCH, "home"))


def require_sample():
    """Path of the bundled data/mnist-sample.npz (skip with the reason if a clone lacks it)."""
    if not SAMPLE.exists():
        pytest.skip(f"real MNIST sample not found at {SAMPLE} (it ships in the repository: is the clone complete?)")
    return SAMPLE


@pytest.fixture
def sample_path():
    return require_sample()


@pytest.fixture(scope="session")
def sample_arrays():
    path = require_sample()
    with np.load(path, allow_pickle=False) as d:
        return {k: d[k] for k in d.files}


@pytest.fixture(scope="session")
def synthetic():
    from engine.data import make_synthetic_dataset
    return make_synthetic_dataset(n_train=600, n_test=200, seed=0)


def pytest_collection_modifyitems(config, items):
    """In CI (DIGITLAB_REQUIRE_BROWSER=1) a browser test that would skip must fail instead."""
    if os.environ.get("DIGITLAB_REQUIRE_BROWSER") != "1":
        return
    for item in items:
        if item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.browser_required)


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: real-browser test (Playwright + Debian Chromium)")
    config.addinivalue_line("markers", "browser_required: a skip of this test is a failure (CI)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and item.get_closest_marker("browser_required"):
        report.outcome = "failed"
        report.longrepr = f"browser test skipped in CI, which must run it: {report.longrepr}"
