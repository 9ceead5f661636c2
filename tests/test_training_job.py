"""The dashboard's background training (ui/training.py), without Streamlit: a forked child
process by default, a thread where fork is unavailable. Both must leave the server's network,
optimizer and history exactly as training in place would, and obey Pause/Stop."""
import os
import signal
import time

import numpy as np
import pytest

import ui.training as training
from engine.network import Network
from engine.optimizers import Adam
from engine.trainer import TrainConfig, train
from ui.charts import training_curves


@pytest.fixture(params=["process", "thread"])
def mode(request, monkeypatch):
    if request.param == "process":
        if training._FORK is None:
            pytest.skip("this platform cannot fork: runs train in a thread")
    else:
        monkeypatch.setattr(training, "_FORK", None)
    return request.param


def make_job(data, epochs=3, **config):
    net = Network([784, 16, 10], seed=1)
    job = training.TrainingJob(net, Adam(0.003), data.x_train, data.y_train, data.x_test, data.y_test,
                               TrainConfig(epochs=epochs, batch_size=50, seed=2, **config))
    return job


def wait_until(predicate, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_background_run_equals_training_in_place(synthetic, mode):
    job = make_job(synthetic, validation_split=0.2).start()
    job.join(60)
    assert job.status == "completed", job.message
    twin, optimizer = Network([784, 16, 10], seed=1), Adam(0.003)
    train(twin, optimizer, synthetic.x_train, synthetic.y_train,
          TrainConfig(epochs=3, batch_size=50, seed=2, validation_split=0.2))
    np.testing.assert_array_equal(job.network.params, twin.params)
    timeless = lambda history: [{k: v for k, v in row.items() if k != "seconds"} for row in history]  # noqa: E731
    assert job.network.epochs_trained == 3 and timeless(job.network.history) == timeless(twin.history)
    assert job.optimizer.t == optimizer.t
    np.testing.assert_array_equal(job.optimizer.state()["m"], optimizer.state()["m"])
    p = job.progress()
    assert len(p.epochs_table) == 3 and p.run_fraction == 1.0 and p.batch_steps
    assert 0.5 < job.test_accuracy <= 1.0


def test_pause_resume_stop(synthetic, mode):
    job = make_job(synthetic, epochs=500).start()
    assert wait_until(lambda: job.progress().batch > 0)
    job.pause()
    assert wait_until(lambda: job.status == "paused")
    held = job.progress().run_fraction
    time.sleep(0.5)
    assert job.progress().run_fraction == held  # nothing trains while paused
    job.resume()
    assert wait_until(lambda: job.progress().run_fraction > held)
    job.stop()
    job.join(30)
    assert job.status == "stopped" and "Stopped during epoch" in job.message
    assert np.isfinite(job.network.params).all() and job.network.epochs_trained < 500


def test_closed_session_ends_the_run(synthetic, mode):
    open_tab = [True]
    job = make_job(synthetic, epochs=500)
    job.session_alive = lambda: open_tab[0]
    job.start()
    assert wait_until(lambda: job.progress().batch > 0)
    open_tab[0] = False
    job.join(30)
    assert job.status == "stopped" and "tab closed" in job.message


def test_bad_settings_fail_with_a_message(synthetic, mode):
    job = make_job(synthetic, epochs=0).start()
    job.join(30)
    assert job.status == "failed" and "Epochs must be a whole number" in job.message


def test_a_killed_training_process_is_reported(synthetic, monkeypatch):
    if training._FORK is None:
        pytest.skip("this platform cannot fork: runs train in a thread")
    monkeypatch.setattr(training, "_child_main", lambda *args: os.kill(os.getpid(), signal.SIGKILL))
    before = Network([784, 16, 10], seed=1).params
    job = make_job(synthetic).start()
    job.join(30)
    assert job.status == "failed" and "ended unexpectedly" in job.message
    np.testing.assert_array_equal(job.network.params, before)  # the last good weights stay


def test_live_chart_spec_is_valid_plotly():
    import plotly.graph_objects as go
    table = [{"epoch": e, "loss": 1.0 / e, "accuracy": 0.8, "val_loss": 1.1 / e, "val_accuracy": 0.78,
              "seconds": 0.4, "lr": 1e-3} for e in (1, 2)]
    fig = training_curves([0.5, 1.0, 1.5, 2.0], [2.0, 1.0, 0.8, 0.6], [0.3, 0.6, 0.7, 0.8], table)
    checked = go.Figure(fig.to_dict())  # plotly's own validation raises on any bad property
    assert [t.name for t in checked.data] == ["loss (per batch, smoothed)", "accuracy (per batch, smoothed)",
                                              "loss (epoch)", "val_loss (epoch)", "accuracy (epoch)",
                                              "val_accuracy (epoch)"]
    assert {t.xaxis for t in checked.data} == {"x", "x2"}  # loss left, accuracy right


def test_finished_run_still_shows_its_speed(synthetic, mode):
    job = make_job(synthetic, epochs=1).start()
    job.join(60)
    p = job.progress()
    assert job.status == "completed" and p.batch == p.batches > 0 and p.samples_per_sec > 0


def test_live_curves_stay_evenly_spaced_and_bounded(synthetic):
    """However long the run, the per-batch curve keeps at most MAX_CURVE_POINTS points spread
    evenly over the whole run (old epochs are not thinned away)."""
    from engine.trainer import BatchEvent
    job = make_job(synthetic)
    batches = 540
    for epoch in range(1, 11):
        for b in range(1, batches + 1):
            job._record(BatchEvent(epoch, epoch, 10, b, batches, 1.0, 1.0, 0.5, 1e-3, 0.0, 1.0, 0.5))
    steps = np.array(job.progress().batch_steps)
    gaps = np.diff(steps)
    assert training.MAX_CURVE_POINTS / 2 <= len(steps) <= training.MAX_CURVE_POINTS
    assert gaps.max() <= 1.01 * gaps.min()      # one spacing from the first epoch to the last
    assert steps[0] < 0.05 and steps[-1] > 9.9
