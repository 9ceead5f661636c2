"""The Train page's live view (ui/live_view.py): the JSON feed the browser polls, the page's
fallback without it, and in a real browser: updated in place at least twice a second, the
chart never rebuilt, the page's status redrawn when the run pauses, the final state after Stop."""
import base64
import json
import os
import re
import time

import pytest

import ui.live_view as live_view
import ui.training as training
from app_support import (  # noqa: F401  (fixtures are used by name)
    apps, assert_clean, build_network, data_path, env, joined, lab, progress_values, start_training, wait_for,
)
from engine.network import Network
from engine.optimizers import Adam
from engine.trainer import TrainConfig


def make_progress(**changes):
    fields = dict(status="running", message="Training…", run_fraction=0.25, epoch_fraction=0.5, run_epoch=1,
                  epochs=4, batch=5, batches=10, samples_per_sec=1234.0, elapsed=2.0, eta=float("nan"),
                  lr=1e-3, batch_steps=[0.1, 0.2, 0.3], batch_loss=[2.0, float("nan"), 1.5],
                  batch_accuracy=[0.1, 0.2, 0.3],
                  epochs_table=[{"epoch": 1, "loss": 1.0, "accuracy": 0.5, "val_loss": float("nan"),
                                 "val_accuracy": float("nan"), "seconds": 0.4}],
                  test_accuracy=float("nan"))
    fields.update(changes)
    return training.Progress(**fields)


def test_feed_is_plain_json_with_what_the_page_shows():
    p = make_progress()
    payload = live_view.feed_payload(p, version=7)
    text = json.dumps(payload, allow_nan=False)  # raises on NaN/inf: browsers' JSON.parse rejects them
    assert json.loads(text)["version"] == 7 and payload["active"] and payload["status"] == "running"
    run_text, epoch_text = live_view.bar_texts(p)
    assert payload["run"] == {"fraction": 0.25, "text": run_text} and "ETA –" in run_text
    assert payload["epoch"] == {"fraction": 0.5, "text": epoch_text} and "batch 5/10" in epoch_text
    # No validation split: no empty columns, as in Streamlit's table.
    assert payload["columns"] == ["epoch", "loss", "accuracy", "seconds"]
    assert payload["table"][0]["val_loss"] is None
    figure = payload["figure"]
    assert figure["layout"]["uirevision"] == "live"
    assert figure["data"][0]["y"] == [2.0, None, 1.5]  # a NaN loss is a gap, not invalid JSON
    thirds = live_view.feed_payload(make_progress(batch_steps=[1 / 3, 2 / 3, 1.0], batch_loss=[2 / 3, 0.5, 1e-5 / 3]), 1)
    assert thirds["figure"]["data"][0]["x"] == [0.3333, 0.6667, 1.0]  # the charts' numbers: 4 digits
    assert thirds["figure"]["data"][0]["y"][2] == 3.333e-06
    finished = live_view.feed_payload(make_progress(status="completed", run_fraction=1.2), version=8)
    assert not finished["active"] and finished["run"]["fraction"] == 1.0


def test_feed_table_keeps_the_newest_epochs():
    rows = [{"epoch": e, "loss": 1 / e, "accuracy": 0.5, "val_loss": 0.3, "val_accuracy": 0.9, "seconds": 0.1}
            for e in range(1, 251)]
    payload = live_view.feed_payload(make_progress(epochs_table=rows), version=1)
    assert payload["epochs_done"] == 250 and len(payload["table"]) == live_view.TABLE_ROWS
    assert [r["epoch"] for r in payload["table"]] == list(range(251 - live_view.TABLE_ROWS, 251))
    assert len(payload["figure"]["data"][-1]["x"]) == 250, "the curves keep every epoch"


def test_feed_without_batches_has_no_figure():
    payload = live_view.feed_payload(make_progress(batch_steps=[], batch_loss=[], batch_accuracy=[],
                                                   epochs_table=[]), version=1)
    assert payload["figure"] is None and payload["table"] == [] and payload["columns"] == ["epoch"]


def test_feed_file_follows_a_run_then_goes(synthetic, tmp_path, monkeypatch):
    monkeypatch.setattr(live_view, "FEED_DIR", tmp_path)
    monkeypatch.setattr(live_view, "WRITE_SECONDS", 0.02)
    monkeypatch.setattr(live_view, "KEEP_SECONDS", 0.3)
    net = Network([784, 16, 10], seed=1)
    job = training.TrainingJob(net, Adam(0.003), synthetic.x_train, synthetic.y_train, synthetic.x_test,
                               synthetic.y_test, TrainConfig(epochs=30, batch_size=20, seed=2))
    feed = live_view._feed_for(job)
    assert live_view._feed_for(job) is feed, "one feed per run"
    assert re.fullmatch(r"[\w-]{22}\.json", feed.name), feed.name  # 128 random bits
    first = json.loads(feed.path.read_text())
    assert first["status"] == "queued" and first["active"]
    strip = json.loads(feed.strip_path.read_text())  # the strip's digits, written once for the run
    assert len(base64.b64decode(strip["data"])) == 24 * 784
    job.start()
    versions, statuses, strip_urls = [], set(), set()
    while job.active:
        payload = json.loads(feed.path.read_text())
        if payload["panels"]:
            strip_urls.add(payload["panels"]["strip"]["url"])
        versions.append(payload["version"])
        statuses.add(payload["status"])
        time.sleep(0.01)
    job.join(30)
    assert wait_for_file(feed.path, lambda p: p["status"] == "completed")
    last = json.loads(feed.path.read_text())
    assert not last["active"] and last["run"]["fraction"] == 1.0 and len(last["table"]) == 30
    assert versions == sorted(versions) and len(set(versions)) > 3, versions
    assert "running" in statuses
    assert strip_urls == {f"app/static/live/{feed.strip_path.name}"}  # the pictures point at the strip's file
    deadline = time.monotonic() + 10
    while feed.path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not feed.path.exists(), "the feed of a finished run was not removed"
    assert not list(tmp_path.iterdir()), list(tmp_path.iterdir())


def wait_for_file(path, predicate, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and predicate(json.loads(path.read_text())):
            return True
        time.sleep(0.02)
    return False


def test_train_page_uses_the_live_view_while_a_run_is_active(apps):
    at = apps.new()
    build_network(at, layers="16")
    job = start_training(at, epochs=5000, batch_size=10)  # far longer than the test
    wait_for(lambda: job.status == "running", what="the run to start")
    at.run()
    assert_clean(at, "Train while training")
    assert "Training…" in joined(at.info)
    assert progress_values(at) == [], "Streamlit's bars drawn beside the live view"
    files = sorted(live_view.FEED_DIR.glob("*.json"))  # not a .part the writer may be replacing right now
    feeds = [f for f in files if not f.name.endswith("-strip.json")]
    assert len(feeds) == 1 and json.loads(feeds[0].read_text())["active"]
    assert [f.name for f in files if f not in feeds] == [feeds[0].stem + "-strip.json"]  # its strip's digits
    at.button(key="stop").click().run()
    job.join(10)
    at.run()
    assert_clean(at, "Train after Stop")
    assert "Stopped" in joined(at.info) and len(progress_values(at)) == 2


def test_train_page_redraws_itself_without_the_live_view(apps, monkeypatch):
    monkeypatch.setattr(live_view, "available", lambda: False)  # e.g. no static file serving
    at = apps.new()
    build_network(at, layers="16")
    job = start_training(at, epochs=5000, batch_size=10)
    wait_for(lambda: job.status == "running" and job.progress().batch_steps, what="the first batches")
    at.run()
    assert_clean(at, "Train while training (fallback)")
    values = progress_values(at)
    assert len(values) == 2 and 0 <= values[0] < 100, values
    assert at.get("plotly_chart"), "no live curves"
    assert not list(live_view.FEED_DIR.iterdir()), "a feed was written without the live view"
    at.button(key="stop").click().run()
    job.join(10)


LIVE_STATE_JS = """() => {
  const root = document.querySelector('.digitlab-live');
  if (!root) return null;
  const chart = root.querySelector('.live-chart');
  return {run: root.querySelector('[role=progressbar]').getAttribute('aria-valuenow'),
          text: root.querySelector('.bar-label[data-bar=epoch]').innerText,
          points: chart.__drawn ? chart.__drawn.data[0].x.length : 0,
          same_chart: chart.__digitlabMark === 1};
}"""


@pytest.mark.browser
def test_live_view_in_a_browser():
    from browser_support import (VIEWPORT, assert_no_exception, go_to, launch_chromium, main_area,
                                 publish_screenshots, require_browser, running_server, screenshot, settle)
    from conftest import require_sample
    require_browser()
    sample = require_sample()
    import tempfile
    from playwright.sync_api import sync_playwright
    shots = tempfile.mkdtemp(prefix="digitlab-live-view-")
    print(f"\nscreenshots: {shots}")
    with running_server(sample) as server, sync_playwright() as pw:
        browser = launch_chromium(pw)
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(f"{server.url}/Build")
        settle(page)
        box = page.get_by_label("Hidden layer widths (comma-separated)", exact=True)
        box.fill("256,128")
        box.press("Enter")
        settle(page)
        page.get_by_role("button", name="Create network").click()
        page.get_by_text("Untrained test accuracy").wait_for()
        go_to(page, "Train")
        settle(page)
        epochs = page.get_by_label("Epochs", exact=True)
        epochs.fill("2000")  # far longer than the test: it stops the run
        epochs.press("Enter")
        settle(page)
        screenshot(page, shots, "train_ready")
        page.get_by_role("button", name="Start training").click()
        page.wait_for_selector(".digitlab-live .live-chart canvas.live-canvas", timeout=60_000)
        page.evaluate("() => { document.querySelector('.digitlab-live .live-chart').__digitlabMark = 1; }")

        # Updated in place, at least ~twice a second, without rebuilding the chart.
        states, started = [], time.monotonic()
        while time.monotonic() - started < 4:
            state = page.evaluate(LIVE_STATE_JS)
            assert state is not None and state["same_chart"], f"the live view was rebuilt: {state}"
            if not states or state != states[-1]:
                states.append(state)
            page.wait_for_timeout(50)
        rate = (len(states) - 1) / 4
        print(f"live view: {len(states) - 1} updates in 4 s; run {states[0]['run']}% -> {states[-1]['run']}%, "
              f"{states[0]['points']} -> {states[-1]['points']} curve points")
        assert rate >= 1.5, f"{rate:.2f} updates a second: {states}"
        assert states[-1]["points"] > states[0]["points"] or int(states[-1]["run"]) > int(states[0]["run"])
        assert_no_exception(page, "Train (live view)")
        screenshot(page, shots, "train_live_view")
        publish_screenshots(shots, ["train_live_view"])  # README's picture (DIGITLAB_UPDATE_SCREENSHOTS=1)

        # Pause: the page's own status line follows (the view asks Streamlit to redraw).
        page.get_by_role("button", name="Pause").click()
        main_area(page).get_by_text("Paused: press Resume to continue.").wait_for(timeout=10_000)
        page.wait_for_timeout(1000)  # the view's next poll (the status line may come first)
        frozen = page.evaluate(LIVE_STATE_JS)
        page.wait_for_timeout(1200)
        assert page.evaluate(LIVE_STATE_JS) == frozen, "the live view moved while paused"

        # Stop: Streamlit draws the final state; the live view is gone.
        page.get_by_role("button", name="Stop").click()
        main_area(page).get_by_text(re.compile("Stopped during epoch")).wait_for(timeout=20_000)
        settle(page)
        assert page.evaluate(LIVE_STATE_JS) is None, "the live view stayed after the run ended"
        assert main_area(page).get_by_test_id("stProgress").count() == 2
        assert main_area(page).locator(".js-plotly-plot").count() >= 1, "no curves after the run"
        assert_no_exception(page, "Train after Stop")
        screenshot(page, shots, "train_stopped")
        browser.close()


def test_static_files_are_made_on_a_fresh_clone(tmp_path, monkeypatch):
    static = tmp_path / "static"  # a fresh clone has no ./static
    monkeypatch.setattr(live_view, "STATIC_DIR", static)
    monkeypatch.setattr(live_view, "FEED_DIR", static / "live")
    live_view.available.cache_clear()
    try:
        assert live_view.available()
        assert (static / "live").is_dir()
        stale, recent = static / "live" / "old.json", static / "live" / "new.json"
        stale.write_text("{}")
        recent.write_text("{}")
        two_days_ago = time.time() - 2 * 86400
        os.utime(stale, (two_days_ago, two_days_ago))
        live_view.available.cache_clear()  # as a new server would
        assert live_view.available()
        assert not stale.exists() and recent.exists(), "feeds left by a killed server are cleaned up"
    finally:
        live_view.available.cache_clear()


def test_an_ended_run_promises_no_more_time():
    run_text, _ = live_view.bar_texts(make_progress(status="early_stopped", run_epoch=3, epochs=10, eta=12.0))
    assert "ended at epoch 3/10" in run_text and "ETA" not in run_text
