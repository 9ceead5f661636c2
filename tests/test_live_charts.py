"""The live view's canvas charts (ui/live_charts.js) in Chromium, fed the specs the server sends
(ui/charts.py): each trace is drawn where its data says, in its colour, log axes and the
heatmap included; a chart says in words what it shows; an empty or unlaid-out chart waits.
No Streamlit server: the script runs on a blank page."""
import base64
from pathlib import Path

import numpy as np
import pytest

from browser_support import chromium_browser
from engine.persistence import json_ready
from ui.charts import confusion_spec, diagnostics_spec, training_curves_spec

pytestmark = pytest.mark.browser
SCRIPT = (Path(__file__).resolve().parents[1] / "ui" / "live_charts.js").read_text()
WIDTH = 900


@pytest.fixture(scope="module")
def page():
    with chromium_browser() as browser:
        page = browser.new_page(viewport={"width": 1000, "height": 800}, device_scale_factor=1)
        page.set_content(f'<div id="chart" style="width: {WIDTH}px"></div>'
                         f'<div id="hidden" style="display: none"></div>')
        page.add_script_tag(content=SCRIPT)
        yield page


def draw(page, spec, element="chart"):
    """Draw the spec; (drawn, aria-label, RGBA pixels as a (height, width, 4) array)."""
    out = page.evaluate("""([id, spec]) => {
        const element = document.getElementById(id);
        const drawn = drawPlotlySpec(element, spec, "rgb(49, 51, 63)");
        const canvas = element.querySelector("canvas");
        if (!drawn || !canvas.width) return {drawn, label: null};
        const bytes = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
        let binary = "";
        for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
        return {drawn, label: canvas.getAttribute("aria-label"), width: canvas.width, height: canvas.height,
                pixels: btoa(binary)};
    }""", [element, json_ready(spec)])
    if out["label"] is None:
        return out["drawn"], None, None
    pixels = np.frombuffer(base64.b64decode(out["pixels"]), dtype=np.uint8)
    return out["drawn"], out["label"], pixels.reshape(out["height"], out["width"], 4)


def painted(pixels, hex_colour, tolerance=40, opaque=200):
    """Where the pixels are close to `hex_colour` (at least `opaque` alpha)."""
    rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
    return (np.abs(pixels[..., :3].astype(int) - rgb).sum(axis=-1) < tolerance) & (pixels[..., 3] >= opaque)


def share_of(pixels, hex_colour, box=None, opaque=200):
    """Share of the (box of the) canvas painted close to `hex_colour`."""
    area = pixels if box is None else pixels[box[1]:box[3], box[0]:box[2]]
    return painted(area, hex_colour, opaque=opaque).mean()


def test_training_curves_are_drawn_from_the_spec(page):
    steps = np.linspace(0.01, 3, 300)
    loss = 2.3 * np.exp(-steps) + 0.2          # falls: drawn high on the left, low on the right
    accuracy = 1 - 0.8 * np.exp(-2 * steps)
    table = [{"epoch": e, "loss": float(2.3 * np.exp(-e + 0.5) + 0.2), "val_loss": None,
              "accuracy": 0.9, "val_accuracy": 0.88} for e in (1, 2, 3)]
    spec = training_curves_spec(steps, loss, accuracy, table)
    drawn, label, pixels = draw(page, spec)
    assert drawn
    assert label.startswith(f"Loss, Accuracy: loss (per batch, smoothed) {loss[-1]:.3g}; "
                            f"accuracy (per batch, smoothed) {accuracy[-1]:.3g}; loss (epoch) ")
    ink, green = spec["data"][0]["line"]["color"], spec["data"][1]["line"]["color"]
    height = pixels.shape[0]
    half = WIDTH // 2
    # loss on the left half only, accuracy on the right half only
    assert share_of(pixels, ink, (0, 0, half, height)) > 0.002
    assert share_of(pixels, green, (half, 0, WIDTH, height)) > 0.002
    assert share_of(pixels, green, (60, 40, half - 60, height - 80)) == 0
    # the loss falls: its ink is high in the plot's first columns, low in its last ones
    def rows(x0, x1):
        return np.nonzero(painted(pixels[40:300, x0:x1], ink, opaque=0).any(axis=1))[0]
    assert rows(55, 75).min() < rows(half - 80, half - 40).min()


def test_log_axes_and_histograms_of_the_diagnostics(page):
    series = {"position": [0.5, 1.0, 1.5, 2.0], "grad_norm": [[1.0, 1e-3]] * 4,
              "update_ratio": [[1e-3, 1e-4]] * 4, "dead_share": [[0.1, 0.0]] * 4}
    histograms = [(list(np.histogram(np.random.default_rng(0).normal(size=500), bins=24)[0]),
                   list(np.linspace(-3, 3, 25)))]
    spec = diagnostics_spec(series, histograms)
    drawn, label, pixels = draw(page, spec)
    assert drawn and label == ("gradient norm, update / weight, dead ReLUs, weights now: layer 1 1; layer 2 0.001")
    blue = spec["data"][0]["line"]["color"]
    # gradient norms 1 and 1e-3 on a log axis: two flat lines, three decades apart, both inside the plot
    rows = np.nonzero(painted(pixels[:, 100], blue, opaque=0))[0]
    assert len(rows) and 36 <= rows.min() < 300
    # the histogram's bars fill part of the last subplot
    assert share_of(pixels, blue, (int(0.81 * WIDTH), 40, WIDTH, 260), opaque=120) > 0.01  # drawn at 0.6 opacity


def test_the_confusion_heatmap_colours_its_cells_by_count(page):
    counts = np.diag([50] * 10)
    counts[3, 5] = 25
    drawn, label, pixels = draw(page, confusion_spec(counts, [str(i) for i in range(10)]))
    assert drawn and label == "confusion (500 test digits)"
    darkest = share_of(pixels, "#08306b")
    assert 0.01 < darkest < 0.2  # the diagonal's ten cells, not the whole matrix
    assert share_of(pixels, "#f7fbff") > darkest  # most cells are empty: near white


def test_a_chart_not_laid_out_waits_and_nan_is_skipped(page):
    spec = training_curves_spec([0.1, 0.2, 0.3], [1.0, float("nan"), 0.5], [0.5, 0.6, float("inf")], [])
    drawn, label, _ = draw(page, spec, element="hidden")
    assert drawn is False  # no width yet: the live view draws it once it is shown
    drawn, label, pixels = draw(page, spec)  # as the feed sends it: NaN and infinity become null
    assert drawn and "loss (per batch, smoothed) 0.5" in label and "accuracy (per batch, smoothed) 0.6" in label
