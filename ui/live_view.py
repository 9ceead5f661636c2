"""The Train page's live view of an active run: progress bars, curves, the network's pictures and
the epoch table, which the browser updates itself, twice a second, from a small JSON feed the
server rewrites.

Why not let Streamlit redraw them: a fragment rerun twice a second costs the browser ~0.25 of
a core, and Streamlit remounts a plotly chart whenever its data changes (the chart's identity
hashes its spec), ~0.3 more; with the browser on the same two cores as the server and the
run, training slowed by 40-100% (epochs 0.55-0.8 s instead of 0.37 s, measured). Here the
view is one custom component (streamlit components v2, mounted once under a fixed key); its
script fetches `app/static/live/<random>.json` (Streamlit's static file serving) and draws the
charts on canvases (ui/live_charts.js: ~1 ms a redraw, where Plotly.react took 40-300 ms). The
page's own status line stays Streamlit's: the script asks for a redraw only when the run's
status changes.

Where static files cannot be served or written, `show` returns False and the page redraws
the same content with Streamlit elements (the fallback is also what tests without a browser see).
"""
import base64
import functools
import json
import math
import os
import secrets
import threading
import time
from pathlib import Path

import numpy as np
import streamlit as st

from engine.persistence import json_ready
from engine.diagnostics import Probe
from ui.charts import confusion_spec, diagnostics_spec, training_curves_spec

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"  # served as app/static/
FEED_DIR = STATIC_DIR / "live"
WRITE_SECONDS = 0.4      # the feed is rewritten at most this often (the browser polls every 0.45 s)
KEEP_SECONDS = 120       # a finished run's feed stays a while (a slow tab still reads the end)
STALE_SECONDS = 86400    # feeds left behind by a killed server are removed after a day
GRID_COLOR = "rgba(128, 128, 128, 0.3)"  # the chart's background is transparent (the page's)
TABLE_ROWS = 100  # the live table's newest epochs (a long run's feed stays small; the full table follows the run)
TABLE_COLUMNS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds"]
# Significant digits of the live charts' numbers: a chart a few hundred pixels high shows no more,
# and Python's 17 digits made the curves three times larger to encode, serve and parse.
CHART_DIGITS = 4
CSS = """
.digitlab-live .bar-label { font-size: 0.875rem; margin: 0.5rem 0 0.25rem; }
.digitlab-live .bar-track { height: 0.5rem; border-radius: 0.25rem; background: rgba(151, 166, 195, 0.25); overflow: hidden; }
.digitlab-live .bar-fill { height: 100%; width: 0; background: #1c83e1; }  /* Streamlit's progress blue */
.digitlab-live .live-note { font-size: 0.8rem; opacity: 0.7; min-height: 0.5rem; }
.digitlab-live .live-chart { width: 100%; min-height: 360px; }
.digitlab-live canvas.live-canvas { display: block; }
.digitlab-live .live-table { max-height: 22rem; overflow-y: auto; display: inline-block; }
.digitlab-live th { position: sticky; top: 0; background: var(--st-background-color, #fff); }
.digitlab-live table { border-collapse: collapse; font-size: 0.875rem; font-variant-numeric: tabular-nums; }
.digitlab-live caption { text-align: left; font-size: 0.8rem; opacity: 0.7; padding-bottom: 0.25rem; }
.digitlab-live th, .digitlab-live td { padding: 0.2rem 0.8rem; text-align: right; border-bottom: 1px solid rgba(151, 166, 195, 0.25); }
.digitlab-live .panel-row { display: flex; flex-wrap: wrap; gap: 1.5rem; margin: 0.75rem 0; }
.digitlab-live .panel-row > div { flex: 1 1 22rem; min-width: 0; }
.digitlab-live .panel-title { font-size: 0.875rem; font-weight: 600; margin-bottom: 0.3rem; }
.digitlab-live .panel-note { font-size: 0.8rem; opacity: 0.7; margin-top: 0.2rem; }
.digitlab-live .grid { display: flex; flex-wrap: wrap; gap: 4px; }
.digitlab-live .grid canvas { width: 48px; height: 48px; image-rendering: pixelated; border-radius: 3px; }
.digitlab-live .cell { display: flex; flex-direction: column; align-items: center; font-size: 0.75rem;
  font-variant-numeric: tabular-nums; }
.digitlab-live .cell.bad { color: #d62728; font-weight: 600; }
.digitlab-live .cell.bad canvas { outline: 2px solid #d62728; }
.digitlab-live .chart { width: 100%; min-height: 300px; }
"""


def bar_texts(p):
    """The run and epoch progress-bar captions (Streamlit's bars and the live view say the same)."""
    eta = "–" if math.isnan(p.eta) else f"{p.eta:.0f} s"
    if p.status in ("queued", "running", "paused"):
        run = (f"Run: {p.run_fraction:.0%} · epoch {max(p.run_epoch, 1)}/{p.epochs} · "
               f"{p.elapsed:.1f} s elapsed · ETA {eta}")
    elif p.status == "interrupted":  # read back after a restart: what the weights hold
        run = f"Run: cut off after epoch {p.run_epoch}/{p.epochs} · {p.elapsed:.1f} s"
    else:  # ended, perhaps early: no estimate of a time that will not come
        run = f"Run: ended at epoch {max(p.run_epoch, 1)}/{p.epochs} · {p.elapsed:.1f} s"
    if p.batches:
        epoch = f"Epoch: batch {p.batch}/{p.batches} · {p.samples_per_sec:,.0f} samples/s · lr {p.lr:.2e}"
    else:  # no batch seen by this server (a run read back from disk, or one still queued)
        epoch = "Epoch: –"
    return run, epoch


def epoch_rows(p):
    """(columns, rows) of the Keras-like epoch table; columns that are empty throughout
    (no validation split) are left out, other missing values become None."""
    rows = [{c: json_ready(r.get(c)) for c in TABLE_COLUMNS} for r in p.epochs_table]
    columns = [c for c in TABLE_COLUMNS if any(r[c] is not None for r in rows)] or TABLE_COLUMNS[:1]
    return columns, rows


def _bytes(images):
    """uint8 images as one base64 string (the view decodes them into canvases)."""
    return base64.b64encode(np.ascontiguousarray(images, dtype=np.uint8).tobytes()).decode("ascii")


def _rounded(values):
    """A trace's numbers (lists, perhaps nested) with floats cut to CHART_DIGITS significant digits."""
    if isinstance(values, list):
        return [_rounded(v) for v in values]
    if isinstance(values, float) and math.isfinite(values):
        return float(f"{values:.{CHART_DIGITS}g}")
    return values


def chart_ready(spec):
    """A chart spec for the live view: plain JSON (json_ready), its traces' x, y and z rounded."""
    spec = json_ready(spec)
    for trace in spec["data"]:
        for key in ("x", "y", "z"):
            if key in trace:
                trace[key] = _rounded(trace[key])
    return spec


def strip_payload(strip_images):
    """The strip's digits (fixed for a run): a file of their own, read once by the view."""
    return {"data": _bytes(strip_images)}


def panels_payload(pictures, strip_url, strip_labels, class_names):
    """The network's pictures for the view: the first layer's weights (bytes on one shared scale),
    the strip (where its digits are, true classes, readings now), the confusion matrix, the layer
    statistics' chart, and the last step of step mode. None before the first pictures arrive."""
    panels, confusion, series, step = pictures
    if panels is None:
        return None
    finite = np.nan_to_num(panels.weights, nan=0.0, posinf=0.0, neginf=0.0)  # a diverging run has inf
    limit = float(np.abs(finite).max()) or 1.0
    weights = np.round((finite / limit + 1) * 127.5)
    out = {"seq": len(series["position"]), "weights": {"data": _bytes(weights), "units": len(panels.weights), "limit": limit},
           "strip": {"url": strip_url, "true": [int(v) for v in strip_labels],
                     "read": [int(v) for v in panels.strip_read], "prob": [round(float(v), 3) for v in panels.strip_prob],
                     "names": [str(n) for n in class_names]},
           "diagnostics": chart_ready(diagnostics_spec(series, panels.stats.get("histograms"))),
           "confusion": None if confusion is None else json_ready(confusion_spec(confusion, class_names))}
    if step is not None:
        out["step"] = {"data": _bytes(step.images), "count": len(step.images), "labels": [int(v) for v in step.labels],
                       "loss_before": step.loss_before, "loss_after": step.loss_after,
                       "grad_norms": step.grad_norms, "where": f"epoch {step.epoch}, batch {step.batch}/{step.batches}"}
    return json_ready(out)  # a diverging run's numbers may be NaN or infinite: JSON has no such thing


def feed_payload(p, version, panels=None):
    """What the browser reads: plain JSON (no NaN), `version` grows with every change."""
    run_text, epoch_text = bar_texts(p)
    figure = None
    if p.batch_steps:
        figure = chart_ready(training_curves_spec(p.batch_steps, p.batch_loss, p.batch_accuracy, p.epochs_table))
        layout = figure["layout"]
        layout.update(uirevision="live",  # keep the user's zoom while the data grows
                      font={"family": '"Source Sans", "Source Sans Pro", sans-serif'})
        for axis in [k for k in layout if k.startswith(("xaxis", "yaxis"))]:  # seen on light and dark
            layout[axis].update(gridcolor=GRID_COLOR, zerolinecolor=GRID_COLOR)
    columns, rows = epoch_rows(p)
    return {"version": version, "status": p.status, "active": p.status in ("queued", "running", "paused"),
            "run": {"fraction": min(p.run_fraction, 1.0), "text": run_text},
            "epoch": {"fraction": min(p.epoch_fraction, 1.0), "text": epoch_text},
            "figure": figure, "columns": columns, "table": rows[-TABLE_ROWS:], "epochs_done": len(rows),
            "panels": panels}


@functools.lru_cache(maxsize=1)
def available():
    """True when this server serves ./static and the live view's feeds can be written there."""
    try:
        if not st.get_option("server.enableStaticServing"):
            return False
        FEED_DIR.mkdir(parents=True, exist_ok=True)
        for old in FEED_DIR.iterdir():
            if time.time() - old.stat().st_mtime > STALE_SECONDS:
                old.unlink(missing_ok=True)
        return True
    except (OSError, RuntimeError):
        return False


class _Feed:
    """Rewrites one run's feed file while the run is active, then removes it a little later."""

    def __init__(self, job):
        self.job = job
        token = secrets.token_urlsafe(16)  # unguessable: another user cannot read the run's files
        self.name, self.path = f"{token}.json", FEED_DIR / f"{token}.json"
        self.strip_path, self.strip_labels = FEED_DIR / f"{token}-strip.json", None
        if job.x_test is not None and len(job.y_test):  # the trainer's strip: the same digits, by the same seed
            probe = Probe.from_test_set(job.x_test, job.y_test, job.network.sizes[-1])
            digits = np.clip(np.round(probe.strip_x * 255), 0, 255).astype(np.uint8)
            _write_whole(self.strip_path, json.dumps(strip_payload(digits)))
            self.strip_labels = probe.strip_y
        self.version, self._seen = 0, None
        self.write()  # there before the browser first asks
        threading.Thread(target=self._run, name="digitlab-live-feed", daemon=True).start()

    def write(self):
        seen = self.job.revision()
        if seen == self._seen:
            return
        self._seen, self.version = seen, self.version + 1
        feed = json.dumps(feed_payload(self.job.progress(), self.version), allow_nan=False)
        # The pictures (~30 KB of JSON) change at most twice a second: spliced in as encoded then.
        _write_whole(self.path, f'{feed[:-len("null}")]}{self._panels()}}}')

    def _panels(self):
        """The pictures' part of the feed as JSON text, rebuilt only when new pictures came
        (twice a second at most), not at every rewrite of the bars."""
        if self.strip_labels is None:
            return "null"
        pictures = self.job.pictures()
        key = (len(pictures[2]["position"]), id(pictures[3]), pictures[1] is None)
        if key != getattr(self, "_panels_key", None):
            self._panels_key = key
            self._panels_json = json.dumps(panels_payload(pictures, _url(self.strip_path), self.strip_labels,
                                                          [str(c) for c in range(self.job.network.sizes[-1])]),
                                           allow_nan=False)
        return self._panels_json

    def _run(self):
        try:
            while self.job.active:
                time.sleep(WRITE_SECONDS)
                self.write()
            self.write()
            time.sleep(KEEP_SECONDS)
        except (OSError, ValueError):
            pass  # the view says so; the page's next redraw starts a new feed
        finally:
            self.path.unlink(missing_ok=True)
            self.strip_path.unlink(missing_ok=True)
            with _FEEDS_LOCK:
                if _FEEDS.get(self.job) is self:
                    del _FEEDS[self.job]


def _write_whole(path, text):
    """Write a feed file so that the browser never reads half of it."""
    partial = path.with_suffix(".part")
    partial.write_text(text)
    os.replace(partial, path)


def _url(path):
    """Where the page finds a file of FEED_DIR (Streamlit serves ./static at app/static/)."""
    return f"app/static/live/{path.name}"


_FEEDS, _FEEDS_LOCK = {}, threading.Lock()


def _feed_for(job):
    with _FEEDS_LOCK:
        feed = _FEEDS.get(job)
        if feed is None:
            feed = _FEEDS[job] = _Feed(job)
        return feed


@functools.lru_cache(maxsize=1)
def _component():
    here = Path(__file__).parent
    js = (here / "live_charts.js").read_text() + "\n" + (here / "live_view.js").read_text()
    return st.components.v2.component("digitlab_live_view", js=js, css=CSS, isolate_styles=False)


def preload():
    """Mount the (empty) view when the Train page opens, so that Streamlit's code for custom
    components is loaded before any run: loaded at Start, it was seen to wait 1-4 s for a
    connection in Chromium, and the run's first seconds went by without a live view. Draws nothing."""
    if available():
        _component()(data={}, key="live_view_preload")


def show(job, drawn_status):
    """Draw the live view of an active `job`, whose status the page drew as `drawn_status`
    (read with the rest of the page: the job's own may have moved on since, and the view would
    then not ask for the redraw that shows it); False when it cannot be used here."""
    if not available():
        return False
    try:
        feed = _feed_for(job)
    except (OSError, ValueError):  # no feed to write: the page draws the run itself
        return False
    _component()(data={"feed": _url(feed.path), "status": drawn_status},
                 key="live_view", on_status_change=lambda: None, width="stretch")
    return True
