"""Shared helpers for the AppTest suites (tests/test_app_*.py).

Every test writes its own small synthetic dataset (no ../shared, no network access) and points
MNIST_PATH at it before the first AppTest is created. The dataset is cached per process by
`st.cache_resource`, keyed on the path, so the cache is cleared around each test.

Training runs in background threads that AppTest sessions never close (there is no browser
session to notice), so every AppTest made through `AppFactory` has its run stopped and joined
at teardown: a failing test does not leave a run holding one of the server's training slots.
"""
import base64
import io
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app.py"
PAGES_DIR = ROOT / "pages"
TIMEOUT = 30  # seconds per script run (a cold import of plotly/pandas takes a few)


def page_names():
    """File names of the pages in pages/ (the lead adds pages while the suite grows)."""
    return sorted(p.name for p in PAGES_DIR.glob("*.py") if not p.name.startswith("_"))


def write_dataset(path, n_train=600, n_test=200, seed=0):
    """A small learnable dataset in Keras's npz layout, at `path`."""
    from engine.data import make_synthetic_dataset
    d = make_synthetic_dataset(n_train=n_train, n_test=n_test, seed=seed)
    np.savez(path, x_train=d.x_train, y_train=d.y_train, x_test=d.x_test, y_test=d.y_test)
    return Path(path)


def clear_caches():
    """Forget datasets cached by earlier tests (the cache is process-wide)."""
    import streamlit as st

    from ui.datasets import retry
    retry()
    st.cache_data.clear()


class AppFactory:
    """Makes AppTest sessions on app.py and cleans their training runs up afterwards."""

    def __init__(self, data_path):
        self.data_path = data_path
        self.apps = []

    def new(self, page=None):
        """A fresh session (its own st.session_state, i.e. its own lab), run once on Home,
        then on `page` ("1_Build.py" ...) if given."""
        from streamlit.testing.v1 import AppTest
        at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
        self.apps.append(at)
        at.run()
        if page is not None:
            goto(at, page)
        return at

    def close(self):
        for at in self.apps:
            try:
                job = at.session_state["lab"].job
            except (KeyError, AttributeError):
                continue
            if job is not None:
                job.stop()
                job.join(10)


@pytest.fixture
def data_path(tmp_path):
    return write_dataset(tmp_path / "digits.npz")


@pytest.fixture
def env(tmp_path, monkeypatch, data_path):
    """Environment of a fresh clone: small dataset via MNIST_PATH, models in a temp folder."""
    monkeypatch.setenv("MNIST_PATH", str(data_path))
    monkeypatch.setenv("DIGITLAB_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("DIGITLAB_UPLOAD_DIR", str(tmp_path / "uploads"))
    monkeypatch.setattr("ui.datasets.UPLOAD_DIR", tmp_path / "uploads")  # read at import time
    (tmp_path / "live").mkdir()
    monkeypatch.setattr("ui.live_view.FEED_DIR", tmp_path / "live")  # the Train page's live feeds
    clear_caches()
    yield tmp_path
    clear_caches()


@pytest.fixture
def apps(env, data_path):
    """Factory of AppTest sessions: `at = apps.new("1_Build.py")`."""
    factory = AppFactory(data_path)
    yield factory
    factory.close()


# ------------------------------------------------------------------------- driving pages

def goto(at, page):
    """Switch to a page by file name ("2_Train.py") or "app.py", and run it."""
    at.switch_page(page if page == "app.py" else f"pages/{page}")
    return at.run()


def lab(at):
    return at.session_state["lab"]


def values(elements):
    """The text of a list of elements (markdown, success, error, info, caption...)."""
    return [str(getattr(e, "value", "")) for e in elements]


def joined(elements):
    return "\n".join(values(elements))


def assert_clean(at, where=""):
    """No exception element on the page (each would be a traceback shown to the user)."""
    assert not at.exception, f"{where}: page raised {[e.message for e in at.exception]}\n" + \
        "\n".join(str(e.stack_trace) for e in at.exception)


def build_network(at, layers=None, seed=None, **widgets):
    """On Build: set the layer text, seed and other b_* widgets, press Create network."""
    goto(at, "1_Build.py")
    if layers is not None:
        at.text_input(key="b_hidden").set_value(layers)
    if seed is not None:
        at.number_input(key="b_seed").set_value(seed)
    for key, value in widgets.items():
        at.number_input(key=f"b_{key}").set_value(value)
    at.run()
    assert_clean(at, "Build")
    at.button(key="create_network").click().run()
    assert_clean(at, "Build after Create network")
    assert lab(at).network is not None, joined(at.error)
    return lab(at).network


def set_train(at, optimizer=None, **numbers):
    """On Train: choose the optimizer, then set number inputs by their t_* key names."""
    if optimizer is not None:
        at.radio(key="t_optimizer").set_value(optimizer).run()
    for key, value in numbers.items():
        at.number_input(key=f"t_{key}").set_value(value)
    return at.run()


def start_training(at, optimizer=None, **numbers):
    """On Train: apply settings and press Start (the run goes on in a background thread)."""
    goto(at, "2_Train.py")
    set_train(at, optimizer, **numbers)
    at.button(key="start").click().run()
    assert_clean(at, "Train after Start")
    return lab(at).job


def finish(at, timeout=60):
    """Wait for the session's run to end, then rerun the page so it shows the result."""
    job = lab(at).job
    assert job is not None, "no training run was started: " + joined(at.error)
    job.join(timeout)
    assert not job.active, f"the run did not end within {timeout} s (status {job.status})"
    at.run()
    assert_clean(at, "after the run ended")
    return job


def wait_for(predicate, timeout=10, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def progress_values(at):
    return [p.proto.value for p in at.get("progress")]


# ------------------------------------------------------------------------- canvas

def stroke_png_data_url(size=280, x0=125, x1=155, y0=40, y1=240):
    """A PNG data URL like the canvas sends: black RGBA square with a thick white vertical stroke."""
    from PIL import Image, ImageDraw
    image = Image.new("RGBA", (size, size), (0, 0, 0, 255))
    ImageDraw.Draw(image).rectangle([x0, y0, x1, y1], fill=(255, 255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def draw_on_canvas(at, data_url=None):
    """Inject a drawing into the Predict page's canvas (what the browser component would send)."""
    key = f"canvas_{lab(at).canvas_generation}"
    at.session_state[key] = {
        "drawing": {"raw": {"version": "4.4.0", "objects": [{"type": "path", "stroke": "#FFFFFF"}]},
                    "data": data_url or stroke_png_data_url()},
        "backgroundFit": None,
    }
    return at.run()


def png_bytes(width, height, colour=(0, 0, 0)):
    from PIL import Image
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()
