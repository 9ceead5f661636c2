"""The pictures of a learning network (engine/diagnostics.py), the live feed that carries them
(ui/live_view.py), and a run's replay (ui/replay.py): in the lab on disk and in a saved model."""
import base64
import json

import numpy as np
import pytest

from engine import diagnostics
from engine.network import Network
from engine.optimizers import Adam
from engine.presets import build, preset
from engine.trainer import TrainConfig, trainer
from support.jobs import make_job
from ui import live_view
from ui.replay import Replay, replay_of


def test_layer_stats_measure_gradients_updates_dead_units_and_histograms(synthetic):
    net = Network([784, 16, 8, 10], seed=0)
    x, y = synthetic.x_train[:50].reshape(50, -1) / 255, synthetic.y_train[:50]
    net.biases[1][:] = -100  # the second hidden layer can never switch on: every unit dead
    net.gradients(x.astype(np.float32), y)
    before = net.params.copy()
    Adam(0.01).step(net)
    stats = diagnostics.layer_stats(net, before)
    np.testing.assert_allclose(stats["grad_norm"], [np.linalg.norm(g) for g in net.weight_grads])
    for w, w0, ratio in zip(net.weights, net.layer_weights(before), stats["update_ratio"]):
        assert ratio == pytest.approx(np.linalg.norm(w - w0) / np.linalg.norm(w))
    assert stats["dead_share"][1] == 1.0 and stats["dead_share"][0] < 1.0
    counts, edges = stats["histograms"][0]
    assert sum(counts) == net.weights[0].size and len(edges) == diagnostics.HISTOGRAM_BINS + 1
    assert diagnostics.layer_stats(net)["update_ratio"] is None  # no weights from before: no ratio


def test_a_large_layers_histogram_reads_a_fixed_sample_spread_over_all_its_weights():
    net = Network([784, 128, 10], seed=0)  # 100,352 first-layer weights: more than the sample
    w = net.weights[0]
    w[:, 64:] += 1.0  # the second half of the units' weights all lie above the first half's
    counts, edges = diagnostics.layer_stats(net)["histograms"][0]
    assert sum(counts) == diagnostics.HISTOGRAM_SAMPLE
    full, _ = np.histogram(w, bins=edges)
    np.testing.assert_allclose(np.array(counts) / sum(counts), full / full.sum(), atol=0.01)  # both halves, in proportion
    assert diagnostics.layer_stats(net)["histograms"][0][0] == counts  # the same sample each time


def test_the_deep_sigmoid_lesson_shows_gradients_vanishing_layer_by_layer(sample_arrays):
    norms = {}
    for name in ("deep_sigmoid", "deep_relu"):
        net, optimizer, config = build({**preset(name), "epochs": 1})
        steps = trainer(net, optimizer, sample_arrays["x_train"], sample_arrays["y_train"], config)
        for event in steps:
            if event.kind == "batch" and event.batch == 20:
                norms[name] = diagnostics.layer_stats(net)["grad_norm"]
                break
        steps.close()
    sigmoid, relu = norms["deep_sigmoid"], norms["deep_relu"]
    assert sigmoid[0] < 1e-3 * sigmoid[-1], sigmoid        # layer 1 starves
    assert all(a < b for a, b in zip(sigmoid[:-3], sigmoid[1:-2])), sigmoid  # shrinking going back
    assert relu[0] > 0.1 * relu[-1], relu                  # with ReLU it reaches the first layer


def decode(data):
    return np.frombuffer(base64.b64decode(data), np.uint8)


def test_the_feed_carries_the_weights_the_strip_the_statistics_and_the_confusion(synthetic):
    job = make_job(synthetic, epochs=3).start()
    job.join(60)
    feed = live_view._Feed.__new__(live_view._Feed)  # as the feed thread writes it, without the thread
    feed.job, feed.version, feed._seen, feed.strip = job, 0, None, None
    probe = diagnostics.Probe.from_test_set(job.x_test, job.y_test, 10)
    payload = live_view.feed_payload(job.progress(), 1, live_view.panels_payload(
        job.pictures(), "app/static/live/x-strip.json", probe.strip_y, [str(c) for c in range(10)]))
    panels = json.loads(json.dumps(payload, allow_nan=False))["panels"]  # strict JSON
    weights = decode(panels["weights"]["data"]).reshape(16, 784)
    expected = np.round((job.network.weights[0][:, :16].T / panels["weights"]["limit"] + 1) * 127.5)
    np.testing.assert_array_equal(weights, expected)  # the network's own first layer, as it ended
    assert panels["strip"]["url"] == "app/static/live/x-strip.json" and panels["strip"]["true"] == probe.strip_y.tolist()
    digits = np.clip(np.round(probe.strip_x * 255), 0, 255).astype(np.uint8)  # in a file of their own, read once
    np.testing.assert_array_equal(decode(live_view.strip_payload(digits)["data"]), digits.ravel())
    read = job.network.predict_proba(probe.strip_x).argmax(axis=1)
    assert panels["strip"]["read"] == read.tolist()
    layers = {t["name"] for t in panels["diagnostics"]["data"] if t["type"] == "scatter" and t["name"] != "1e-3"}
    assert layers == {"layer 1", "layer 2"}
    assert np.array(panels["confusion"]["data"][0]["z"]).sum() == len(synthetic.y_test)


def test_a_replay_keeps_each_moment_and_survives_the_lab_and_a_model_file(synthetic, tmp_path, monkeypatch):
    from engine.persistence import load_network, save_network
    from ui import lab_store
    from ui.lab_store import replay_arrays, replays_from
    job = make_job(synthetic, epochs=4).start()
    job.join(60)
    replay = replay_of(job)
    assert isinstance(replay, Replay) and len(replay) >= 4
    assert np.all(np.diff(replay.positions) > 0) and replay.positions[-1] == 4
    last = job.snapshots()[-1]
    np.testing.assert_allclose(replay.weights_at(len(replay) - 1), job.network.weights[0][:, :16].T,
                               atol=last["weights_limit"] / 127)  # within one step of the bytes' scale
    assert (replay.confusions[-1] >= 0).all() and replay.confusions[-1].sum() == len(synthetic.y_test)
    # a model file keeps it
    path = save_network(tmp_path / "m.npz", job.network, job.optimizer, {}, extra=replay_arrays({"run 1": replay}))
    back = replays_from(load_network(path)[2]["extra"])["run 1"]
    for name in ("positions", "weights", "strip_read", "confusions", "strip_images", "curve_loss"):
        np.testing.assert_array_equal(getattr(back, name), getattr(replay, name))
    # and the lab on disk
    monkeypatch.setenv("DIGITLAB_HOME", str(tmp_path / "home"))
    import secrets

    from ui.state import Lab
    lab = Lab(token=secrets.token_urlsafe(16), replays={"run 1": replay})
    lab.set_network(job.network, job.optimizer)
    lab.save()
    again = lab_store.load(lab.token, Lab)
    np.testing.assert_array_equal(again.replays["run 1"].weights, replay.weights)
