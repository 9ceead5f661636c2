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
from engine.trainer import TrainConfig, evaluate, train
from support.jobs import make_job, wait_until
from ui.charts import training_curves


@pytest.fixture(params=["process", "thread"])
def mode(request, monkeypatch):
    if request.param == "process":
        if training._FORK is None:
            pytest.skip("this platform cannot fork: runs train in a thread")
    else:
        monkeypatch.setattr(training, "_FORK", None)
    return request.param


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
    assert job.test_accuracy == evaluate(twin, synthetic.x_test, synthetic.y_test)[1] > 0.3  # 0.1 is chance


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


def test_a_run_tells_its_listener_after_every_epoch_and_at_the_end(synthetic, mode):
    heard = []
    job = make_job(synthetic, epochs=3)
    job.listener = lambda j, what: heard.append((what, j.network.epochs_trained, j.status))
    job.start().join(60)
    assert [w for w, _, _ in heard] == ["epoch"] * (3 if mode == "process" else 0) + ["end"]  # once each
    assert heard[-1] == ("end", 3, "completed")
    if mode == "process":  # the server's network has each epoch's weights as they arrive
        assert [e for w, e, _ in heard[:-1]] == [1, 2, 3]


def test_a_stop_ends_the_run_within_a_second_even_inside_a_long_step(synthetic, monkeypatch):
    """A child that does not get back to its stop check (a huge network's step, or its final
    test) is ended after STOP_GRACE, and the network keeps its last finished epoch."""
    if training._FORK is None:
        pytest.skip("this platform cannot fork: runs train in a thread")
    real, calls = Network.gradients, [0]

    def one_step_that_never_ends(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == 15:  # in epoch 2 (12 batches an epoch)
            time.sleep(3600)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Network, "gradients", one_step_that_never_ends)  # the forked child inherits it
    job = make_job(synthetic, epochs=50)
    job.start()
    assert wait_until(lambda: job.network.epochs_trained == 1)
    began = time.monotonic()
    job.stop()
    job.join(10)
    assert job.status == "stopped" and time.monotonic() - began < training.STOP_GRACE + 0.7
    assert "last finished epoch (1)" in job.message, job.message


def test_paused_time_is_not_training_time(synthetic, mode):
    job = make_job(synthetic, epochs=400).start()
    assert wait_until(lambda: job.progress().run_epoch >= 2)
    job.pause()
    assert wait_until(lambda: job.status == "paused")
    before = job.progress()
    time.sleep(1.5)
    job.resume()
    assert wait_until(lambda: len(job.progress().epochs_table) >= len(before.epochs_table) + 2)
    job.stop()
    job.join(30)
    p = job.progress()
    seconds = [r["seconds"] for r in p.epochs_table]
    assert max(seconds) < 1.0 < 1.5, seconds          # no epoch took the pause's 1.5 s
    assert p.elapsed < sum(seconds) + 1.0             # nor did the run's time
    assert "Stopped during epoch" in job.message


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
    assert checked.data[0].mode == "lines"
    # a replay's first moment may hold one point of the curves: drawn as a dot, not as nothing
    first = go.Figure(training_curves([0.01], [2.3], [0.1], []).to_dict())
    assert [t.mode for t in first.data] == ["lines+markers", "lines+markers"]


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


def test_a_run_sends_pictures_of_the_network_as_it_learns(synthetic, mode):
    job = make_job(synthetic, epochs=3).start()
    job.join(60)
    panels, confusion, series, _ = job.pictures()
    assert panels is not None and panels.weights.shape == (16, 784)
    np.testing.assert_allclose(panels.weights, job.network.weights[0][:, :16].T)  # the last ones: the end's
    assert len(panels.strip_read) == len(panels.strip_prob) == 24 and np.all(panels.strip_prob <= 1)
    assert confusion.shape == (10, 10) and confusion.sum() == len(synthetic.y_test)  # 200 < 500: all of them
    assert len(series["grad_norm"]) >= 3 and all(len(g) == 2 for g in series["grad_norm"])  # a value per layer
    ratios = series["update_ratio"]  # epochs here are shorter than PANEL_SECONDS: drawn at their ends,
    assert ratios and all(r is not None and all(0 < v < 1 for v in r) for r in ratios)  # each with its last update
    assert all(0 <= d <= 1 for share in series["dead_share"] if share for d in share)
    snapshots = job.snapshots()
    assert snapshots and snapshots[-1]["weights"].dtype == np.uint8 and snapshots[-1]["confusion"] is not None
    assert [s["position"] for s in snapshots] == sorted(s["position"] for s in snapshots)


def test_step_mode_trains_exactly_one_batch_at_a_time(synthetic, mode):
    from engine.trainer import trainer
    job = make_job(synthetic, epochs=5)
    job.pause()  # started paused: its first batch is the first step
    job.start()
    assert wait_until(lambda: job.pictures()[3] is not None and job.status == "paused")
    first = job.pictures()[3]
    assert (first.epoch, first.batch) == (1, 1) and first.images.shape == (16, 28, 28)
    assert first.loss_after < first.loss_before  # the step lowered that batch's loss
    job.step(1)
    assert wait_until(lambda: job.pictures()[3] is not first and job.status == "paused")
    second = job.pictures()[3]
    assert (second.epoch, second.batch) == (1, 2) and len(second.grad_norms) == 2
    time.sleep(0.5)
    assert job.progress().batch == 2  # and no further
    # the same two batches trained in place give the same network
    twin, optimizer = Network([784, 16, 10], seed=1), Adam(0.003)
    steps = trainer(twin, optimizer, synthetic.x_train, synthetic.y_train, TrainConfig(epochs=5, batch_size=50, seed=2))
    for _ in range(2):
        next(steps)
    steps.close()
    assert wait_until(lambda: np.array_equal(job.network.params, twin.params), timeout=5)
    job.stop()
    job.join(30)


def test_the_trainer_sends_weights_for_the_pictures_and_the_server_draws_them(synthetic):
    """The trainer's share of a picture is a copy of the weights and its gradients' numbers; the
    pictures drawn from them (by the server) are those of the network at that moment."""
    import threading

    from engine import diagnostics

    class Collect:
        def __init__(self):
            self.messages = []

        def send(self, message):
            self.messages.append(message)

        def close(self):
            pass

    def run(paint_here):
        sender, net = Collect(), Network([784, 16, 10], seed=1)
        training.run_trainer(sender, threading.Event(), threading.Event(), net, Adam(0.003), synthetic.x_train,
                             synthetic.y_train, synthetic.x_test, synthetic.y_test,
                             TrainConfig(epochs=2, batch_size=50, seed=2), paint_here=paint_here)
        return net, sender.messages

    net, messages = run(paint_here=False)
    states = [m for m in messages if isinstance(m, training.PanelState)]
    assert states and not any(isinstance(m, training.Panels) for m in messages)
    last = states[-1]
    assert last.with_confusion and last.position == 2 and set(last.stats) == {"grad_norm", "update_ratio", "dead_share"}
    np.testing.assert_array_equal(last.params, net.params)  # the network as the run ended
    panels = training._Painter(net, synthetic.x_test, synthetic.y_test).paint(last)
    probe = diagnostics.Probe.from_test_set(synthetic.x_test, synthetic.y_test, 10)
    np.testing.assert_array_equal(panels.strip_read, net.predict_proba(probe.strip_x).argmax(axis=1))
    np.testing.assert_array_equal(panels.confusion, diagnostics.subset_confusion(net, probe))
    np.testing.assert_array_equal(panels.weights, diagnostics.first_layer_images(net))
    assert panels.stats["histograms"] == diagnostics.weight_histograms(net)
    assert panels.stats["grad_norm"] == [float(np.linalg.norm(g)) for g in net.weight_grads]
    # on a cluster's worker the trainer draws them itself: the same pictures cross the wire
    net_there, there = run(paint_here=True)
    drawn = [m for m in there if isinstance(m, training.Panels)]
    assert drawn and not any(isinstance(m, training.PanelState) for m in there)  # (mid-epoch ones come by the clock)
    np.testing.assert_array_equal(net_there.params, net.params)  # the same run
    np.testing.assert_array_equal(drawn[-1].strip_read, panels.strip_read)
    np.testing.assert_array_equal(drawn[-1].confusion, panels.confusion)


def test_batch_events_travel_as_plain_numbers_and_come_back_as_the_trainer_yielded_them():
    """The trainer sends its batch events packed (pickling dataclasses with NumPy scalars held the
    training process's GIL ~0.3 ms each tenth of a second); the server gets the same events."""
    import dataclasses
    import pickle

    from engine.trainer import BatchEvent, EpochEvent
    batch = BatchEvent(2, 1, 3, 7, 40, np.float32(0.25), 0.5, 0.75, 0.001, 1.5, 1234.0, np.float64(0.875),
                       rows=np.arange(5))
    epoch = EpochEvent(2, 1, 3, 0.4, 0.9, 0.5, 0.85, 1.2, 1.5, 0.001)
    message = pickle.loads(pickle.dumps(training.Events([training.packed_batch(batch), epoch])))
    assert all(type(value) in (int, float) for value in message.events[0])
    back, epoch_back = message.unpacked()
    assert back == dataclasses.replace(batch, rows=None) and back.kind == "batch"
    assert epoch_back == epoch
