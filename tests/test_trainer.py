"""The batch trainer: batches, shuffling, events, divergence, early stopping, validation, resume."""
import numpy as np
import pytest

from engine import Adam, EndEvent, EpochEvent, Network, SGD, TrainConfig, load_network, save_network, train, trainer
from engine.errors import ConfigError


def id_data(n, features=6, classes=3, seed=0):
    """Float inputs whose first feature is the sample's index (so a batch tells which rows it holds)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features))
    x[:, 0] = np.arange(n)
    return x, rng.integers(0, classes, n)


def record_batches(net):
    """Wrap net.gradients to record the sample ids of every batch."""
    seen = []
    original = net.gradients

    def spy(x, *args, **kwargs):
        seen.append(np.asarray(x)[:, 0].astype(int).copy())
        return original(x, *args, **kwargs)

    net.gradients = spy
    return seen


def small(seed=0, dtype="float64", sizes=(6, 5, 3)):
    return Network(list(sizes), "tanh", True, dtype, seed=seed)


@pytest.mark.parametrize("n,batch", [(103, 10), (100, 10), (7, 3), (5, 5), (11, 1)])
def test_every_sample_once_per_epoch_with_a_short_last_batch(n, batch):
    x, y = id_data(n)
    net = small()
    seen = record_batches(net)
    events = list(trainer(net, Adam(), x, y, TrainConfig(epochs=2, batch_size=batch)))
    batches = -(-n // batch)
    assert len(seen) == 2 * batches
    for epoch in range(2):
        ids = np.concatenate(seen[epoch * batches:(epoch + 1) * batches])
        np.testing.assert_array_equal(np.sort(ids), np.arange(n))   # each sample exactly once
        sizes = [len(s) for s in seen[epoch * batches:(epoch + 1) * batches]]
        assert sizes == [batch] * (n // batch) + ([n % batch] if n % batch else [])
    assert events[-1].reason == "completed"


def test_events_come_in_order_with_right_counters():
    x, y = id_data(45)
    net = small()
    events = list(trainer(net, Adam(), x, y, TrainConfig(epochs=3, batch_size=10)))
    kinds = [e.kind for e in events]
    assert kinds == (["batch"] * 5 + ["epoch"]) * 3 + ["end"]
    batch_events = [e for e in events if e.kind == "batch"]
    assert [(e.epoch, e.run_epoch, e.batch, e.batches, e.epochs) for e in batch_events] == \
        [(ep, ep, b, 5, 3) for ep in (1, 2, 3) for b in range(1, 6)]
    fractions = [e.run_fraction for e in batch_events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    elapsed = [e.elapsed for e in events if e.kind != "end"]
    assert elapsed == sorted(elapsed)
    for e in batch_events:
        assert np.isfinite(e.loss) and 0 <= e.running_accuracy <= 1 and e.samples_per_sec > 0
    # the epoch's loss is the sample-weighted mean of its batch losses (short last batch included)
    first = batch_events[:5]
    weighted = sum(e.loss * (5 if e.batch == 5 else 10) for e in first) / 45
    epochs = [e for e in events if isinstance(e, EpochEvent)]
    assert epochs[0].loss == pytest.approx(weighted, rel=1e-12)
    assert epochs[0].loss == pytest.approx(first[-1].running_loss, rel=1e-12)
    assert [e.epoch for e in epochs] == [1, 2, 3] and all(np.isnan(e.val_loss) for e in epochs)
    end = events[-1]
    assert isinstance(end, EndEvent) and end.epochs_done == 3
    assert net.epochs_trained == 3 and [h["epoch"] for h in net.history] == [1, 2, 3]
    # a second run continues the counts
    more = list(trainer(net, Adam(), x, y, TrainConfig(epochs=1, batch_size=10)))
    assert more[0].epoch == 4 and more[0].run_epoch == 1 and net.epochs_trained == 4


def test_each_epoch_is_shuffled_anew_and_a_seed_repeats_the_orders():
    x, y = id_data(50)

    def orders(seed, shuffle=True):
        net = small()
        seen = record_batches(net)
        train(net, Adam(), x, y, TrainConfig(epochs=3, batch_size=10, seed=seed, shuffle=shuffle))
        return [np.concatenate(seen[i * 5:(i + 1) * 5]) for i in range(3)]

    a, b, c = orders(1), orders(1), orders(2)
    for i in range(3):
        np.testing.assert_array_equal(a[i], b[i])                   # same seed, same order
    assert not np.array_equal(a[0], a[1]) and not np.array_equal(a[1], a[2])
    assert not np.array_equal(a[0], np.arange(50))
    assert not np.array_equal(a[0], c[0])                           # another seed, another order
    for order in orders(1, shuffle=False):
        np.testing.assert_array_equal(order, np.arange(50))        # no shuffle: the notebook's order


def test_two_runs_with_the_same_seeds_give_identical_networks():
    x, y = id_data(64)
    nets = [small(seed=4) for _ in range(2)]
    for net in nets:
        train(net, Adam(), x, y, TrainConfig(epochs=2, batch_size=16, keep_prob=0.8, seed=9))
    np.testing.assert_array_equal(nets[0].params, nets[1].params)
    assert not np.array_equal(nets[0].params, small(seed=4).params)           # it did train
    # another training seed (shuffle and dropout) or another initial seed: another network
    other_run, other_init = small(seed=4), small(seed=5)
    train(other_run, Adam(), x, y, TrainConfig(epochs=2, batch_size=16, keep_prob=0.8, seed=10))
    train(other_init, Adam(), x, y, TrainConfig(epochs=2, batch_size=16, keep_prob=0.8, seed=9))
    assert not np.allclose(other_run.params, nets[0].params)
    assert not np.allclose(other_init.params, nets[0].params)


@pytest.mark.parametrize("when", ["middle", "last_batch"])
def test_nan_in_an_epoch_stops_and_keeps_the_weights_from_before_it(when):
    x, y = id_data(50)
    net = small()
    opt = Adam()
    real_step = opt.step
    batches = {"count": 0}
    bad_batch = 5 + (3 if when == "middle" else 5)              # epoch 2

    def step(network, lr=None):
        real_step(network, lr)
        batches["count"] += 1
        if batches["count"] == bad_batch:
            network.params[7] = np.nan

    opt.step = step
    snapshot = None
    events = []
    for event in trainer(net, opt, x, y, TrainConfig(epochs=4, batch_size=10)):
        events.append(event)
        if event.kind == "epoch" and event.epoch == 1:
            snapshot = (net.params.copy(), {k: np.array(v) for k, v in opt.state().items()})
    end = events[-1]
    assert end.kind == "end" and end.reason == "diverged"
    assert "epoch 2" in end.message and end.epochs_done == 1
    assert [e.kind for e in events].count("epoch") == 1
    assert np.isfinite(net.params).all()
    np.testing.assert_array_equal(net.params, snapshot[0])
    state = opt.state()
    assert int(state["t"]) == int(snapshot[1]["t"]) == 5
    np.testing.assert_array_equal(state["m"], snapshot[1]["m"])
    np.testing.assert_array_equal(state["v"], snapshot[1]["v"])
    assert net.epochs_trained == 1 and len(net.history) == 1
    # the network is still usable: predictions are finite, and training can go on
    assert np.isfinite(net.predict_proba(x)).all()
    assert train(net, Adam(), x, y, TrainConfig(epochs=1, batch_size=10)).reason == "completed"


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_huge_learning_rate_diverges_cleanly():
    x, y = id_data(60, features=6)
    x *= 100
    net = Network([6, 32, 32, 3], "relu", True, "float32", seed=0)
    start = net.params.copy()
    end = train(net, SGD(lr=1e30, momentum=0.9), x, y, TrainConfig(epochs=3, batch_size=10))
    assert end.reason == "diverged" and end.epochs_done == 0
    assert np.isfinite(net.params).all()
    np.testing.assert_array_equal(net.params, start)
    assert net.epochs_trained == 0 and net.history == []


def blobs(n=300, features=20, classes=3, spread=3.0, seed=0):
    """Separable clusters: a network learns them to near 100% in a few epochs."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=spread, size=(classes, features))
    y = rng.integers(0, classes, n)
    return centres[y] + rng.normal(size=(n, features)), y


def test_a_finite_loss_explosion_ends_the_run_and_keeps_the_weights():
    # A far too large learning rate often kills the ReLUs while every number stays finite: the
    # loss jumps far above a uniform guess. That run must end as diverged, the good model kept.
    x, y = blobs()
    net = Network([20, 32, 3], "relu", True, "float32", seed=0)
    assert train(net, Adam(0.01), x, y, TrainConfig(epochs=3, batch_size=20)).reason == "completed"
    good, history = net.params.copy(), list(net.history)
    end = train(net, Adam(10.0), x, y, TrainConfig(epochs=3, batch_size=20))
    assert end.reason == "diverged" and end.epochs_done == 0
    assert "worse than guessing" in end.message and "epoch 1 of this run (the network's epoch 4)" in end.message
    np.testing.assert_array_equal(net.params, good)
    assert net.epochs_trained == 3 and net.history == history


def test_a_high_loss_that_falls_is_not_divergence():
    # Unscaled inputs (the notebook's raw 0-255 pixels) start with a huge loss that falls: the
    # first epochs' mean loss is above a uniform guess but below where the run started.
    x, y = blobs(spread=1.0)
    x *= 80
    net = Network([20, 32, 3], "relu", False, "float64", seed=0)
    events = list(trainer(net, Adam(0.001), x, y, TrainConfig(epochs=3, batch_size=20)))
    epochs = [e for e in events if isinstance(e, EpochEvent)]
    assert epochs[0].loss > 1.5 * np.log(3), "the test needs an epoch above the guessing bound"
    assert events[-1].reason == "completed" and len(epochs) == 3


def test_closing_the_generator_leaves_a_usable_network():
    x, y = id_data(100)
    net = small()
    gen = trainer(net, Adam(), x, y, TrainConfig(epochs=5, batch_size=10))
    for event in gen:
        if event.kind == "batch" and event.epoch == 2 and event.batch == 4:
            break
    assert net._workspaces                       # training buffers exist while the run is alive
    gen.close()
    assert not net._workspaces                   # ... and are released when it is closed
    assert net.epochs_trained == 1 and len(net.history) == 1
    assert np.isfinite(net.params).all()
    p = net.predict_proba(x)
    np.testing.assert_allclose(p.sum(axis=1), 1)
    assert train(net, Adam(), x, y, TrainConfig(epochs=1, batch_size=10)).reason == "completed"
    assert net.epochs_trained == 2


@pytest.mark.parametrize("n,split", [(100, 0.2), (101, 0.25), (10, 0.5)])
def test_the_validation_split_holds_out_its_share_of_the_samples(n, split):
    x, y = id_data(n)
    net = small()
    seen = record_batches(net)
    calls = []
    import sys
    trainer_module = sys.modules["engine.trainer"]      # `engine.trainer` is also the function's name
    real_evaluate = trainer_module.evaluate

    def spy_evaluate(network, xv, yv, **kwargs):
        calls.append(np.asarray(xv)[:, 0].astype(int))
        return real_evaluate(network, xv, yv, **kwargs)

    trainer_module.evaluate = spy_evaluate
    try:
        events = list(trainer(net, Adam(), x, y, TrainConfig(epochs=2, batch_size=5, validation_split=split)))
    finally:
        trainer_module.evaluate = real_evaluate
    n_val = int(round(n * split))
    train_ids = np.unique(np.concatenate(seen))
    assert len(train_ids) == n - n_val
    assert len(calls) == 2 and all(len(c) == n_val for c in calls)
    assert set(calls[0]).isdisjoint(train_ids) and set(calls[0]) | set(train_ids) == set(range(n))
    epochs = [e for e in events if e.kind == "epoch"]
    assert all(np.isfinite(e.val_loss) and 0 <= e.val_accuracy <= 1 for e in epochs)


def test_explicit_validation_data_is_scored_with_the_trained_network():
    x, y = id_data(40)
    xv, yv = id_data(15, seed=3)
    net = small()
    events = list(trainer(net, Adam(), x, y, TrainConfig(epochs=1, batch_size=8), validation=(xv, yv)))
    epoch = next(e for e in events if e.kind == "epoch")
    from engine.layers import accuracy, cross_entropy
    p = net.predict_proba(xv)
    assert epoch.val_loss == pytest.approx(cross_entropy(p, yv), rel=1e-12)
    assert epoch.val_accuracy == pytest.approx(accuracy(p, yv))


def test_early_stopping_restores_the_best_weights():
    rng = np.random.default_rng(0)
    x, y = id_data(200)
    x[:, 0] = rng.normal(size=200)
    # Validation labels unrelated to the inputs: the validation loss soon rises as training goes on.
    xv, _ = id_data(60, seed=8)
    xv[:, 0] = rng.normal(size=60)
    yv = rng.integers(0, 3, 60)
    net = Network([6, 32, 3], "relu", True, "float64", seed=1)
    params, val_losses = {}, {}
    config = TrainConfig(epochs=30, batch_size=20, early_stopping=2)
    for event in trainer(net, Adam(lr=0.05), x, y, config, validation=(xv, yv)):
        if event.kind == "epoch":
            params[event.epoch] = net.params.copy()
            val_losses[event.epoch] = event.val_loss
        end = event
    assert end.reason == "early_stopped"
    best = min(val_losses, key=val_losses.get)
    assert max(val_losses) == best + 2                          # patience 2 after the best
    assert f"epoch {best}" in end.message
    np.testing.assert_array_equal(net.params, params[best])
    assert len(net.history) == max(val_losses)                  # the history keeps every epoch


def test_early_stopping_needs_validation_data():
    x, y = id_data(20)
    with pytest.raises(ConfigError, match="Early stopping watches the validation loss: set a validation split"):
        list(trainer(small(), Adam(), x, y, TrainConfig(epochs=2, batch_size=5, early_stopping=1)))


@pytest.mark.parametrize("bad, says", [
    (dict(epochs=0), "Epochs must be a whole number of at least 1, got 0"),
    (dict(batch_size=0), "Batch size must be a whole number of at least 1, got 0"),
    (dict(batch_size=1000), "Batch size 1,000 is larger than the 20 training samples"),
    (dict(keep_prob=0), r"keep-probability must be in \(0, 1\], got 0"),
    (dict(keep_prob=1.5), r"keep-probability must be in \(0, 1\], got 1.5"),
    (dict(validation_split=1.0), r"Validation split must be in \[0, 1\), got 1.0"),
    (dict(epochs=2.5), "Epochs must be a whole number of at least 1, got 2.5"),
])
def test_impossible_configs_are_refused(bad, says):
    x, y = id_data(20)
    with pytest.raises(ConfigError, match=says):
        list(trainer(small(), Adam(), x, y, TrainConfig(**bad)))


def test_uint8_images_are_scaled_to_unit_range():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (30, 4, 4), dtype=np.uint8)
    y = rng.integers(0, 3, 30)
    net = Network([16, 5, 3], "relu", True, "float64", seed=0)
    seen = []
    original = net.gradients
    net.gradients = lambda xb, *a, **k: (seen.append(xb.copy()), original(xb, *a, **k))[1]
    train(net, Adam(), images, y, TrainConfig(epochs=1, batch_size=30, shuffle=False))
    np.testing.assert_allclose(seen[0], images.reshape(30, 16) / 255.0, rtol=1e-15)
    assert seen[0].dtype == np.float64


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_resume_after_save_and_load_is_identical_to_one_run(tmp_path, optimizer):
    x, y = id_data(70)
    make = (lambda: Adam(lr=0.01)) if optimizer == "adam" else (lambda: SGD(lr=0.05, momentum=0.9))
    config = dict(batch_size=16, keep_prob=0.8, seed=3)

    one_go = small(seed=2, sizes=(6, 8, 5, 3))
    train(one_go, make(), x, y, TrainConfig(epochs=4, **config))

    first = small(seed=2, sizes=(6, 8, 5, 3))
    opt = make()
    train(first, opt, x, y, TrainConfig(epochs=2, **config))
    save_network(tmp_path / "half.npz", first, opt)
    resumed, resumed_opt, _ = load_network(tmp_path / "half.npz")
    assert resumed_opt is not None and resumed_opt.t == opt.t
    train(resumed, resumed_opt, x, y, TrainConfig(epochs=2, **config))

    np.testing.assert_array_equal(resumed.params, one_go.params)
    assert resumed.epochs_trained == 4
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in one_go.history]


def test_evaluate_scales_uint8_pixels_and_leaves_floats_alone():
    from engine import evaluate
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (50, 16), dtype=np.uint8)
    y = rng.integers(0, 3, 50)
    net = Network([16, 6, 3], "relu", True, "float64", seed=2)
    as_uint8 = evaluate(net, images, y)
    as_float = evaluate(net, images / 255.0, y)
    assert as_uint8 == pytest.approx(as_float, rel=1e-12)
    assert evaluate(net, images, y, chunk=7) == pytest.approx(as_uint8, rel=1e-12)
    assert evaluate(net, images, y, scale=False) != pytest.approx(as_uint8)


BAD_DATA_SAYS = {
    "labels_too_big": r"labels must be in 0..2; found 3..5",
    "negative_labels": r"labels must be in 0..2; found -1..1",
    "float_labels": "labels must be whole numbers, got float64",
    "length": "30 training images but 29 labels",
    "width": r"shape \(5,\) per sample; the network takes 6 inputs",
    "one_hot_width": r"must have 3 columns, got shape \(30, 4\)",
    "nan_inputs": "contain NaN or infinite values",
}


@pytest.mark.parametrize("case", list(BAD_DATA_SAYS))
def test_bad_data_is_refused_before_training(case):
    x, y = id_data(30)
    if case == "labels_too_big":
        y = y + 3
    elif case == "negative_labels":
        y = y - 1
    elif case == "float_labels":
        y = y.astype(float)
    elif case == "length":
        y = y[:-1]
    elif case == "width":
        x = x[:, :5]
    elif case == "one_hot_width":
        y = np.eye(4)[y % 4]
    elif case == "nan_inputs":
        x[3, 2] = np.nan
    net = small()
    before = net.params.copy()
    with pytest.raises(ConfigError, match=BAD_DATA_SAYS[case]):
        next(trainer(net, Adam(), x, y, TrainConfig(epochs=1, batch_size=10)))
    np.testing.assert_array_equal(net.params, before)


def test_one_hot_targets_train_like_labels():
    x, y = id_data(40)
    a, b = small(), small()
    train(a, Adam(), x, y, TrainConfig(epochs=2, batch_size=8))
    train(b, Adam(), x, np.eye(3)[y], TrainConfig(epochs=2, batch_size=8))
    np.testing.assert_allclose(a.params, b.params, rtol=1e-10, atol=1e-12)
