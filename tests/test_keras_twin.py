"""The Keras twin: same forward pass, same batches in the same order, same training."""
import numpy as np
import pytest

from engine import Network, TrainConfig, trainer
from engine.optimizers import Adam

tf = pytest.importorskip("tensorflow")
kt = pytest.importorskip("engine.keras_twin")


def _perturbed(sizes, activation="relu", use_bias=True, dtype="float32", seed=0):
    """A network whose biases are non-zero, so copying them is really tested."""
    net = Network(sizes, activation, use_bias, dtype, seed=seed)
    net.params += np.random.default_rng(seed).normal(0, 0.05, net.params.size).astype(net.dtype)
    return net


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "leaky_relu"])
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("dtype,tolerance", [("float32", 1e-5), ("float64", 1e-10)])
def test_the_keras_twin_gives_the_engines_probabilities(synthetic, activation, use_bias, dtype, tolerance):
    net = _perturbed([784, 24, 12, 10], activation, use_bias, dtype)
    model = kt.build_keras_twin(net)
    assert len(model.layers) == net.num_layers
    assert all(layer.use_bias == use_bias for layer in model.layers)
    p_keras = kt.keras_probabilities(model, synthetic.x_test)
    assert p_keras.dtype == np.dtype(dtype)
    diff = np.abs(kt.engine_probabilities(net, synthetic.x_test) - p_keras).max()
    assert diff < tolerance
    assert kt.max_probability_difference(net, model, synthetic.x_test) == pytest.approx(diff)


def weights_from_keras(model, network):
    """Read the Keras twin's weights back into an engine network (in place)."""
    for layer, w, b in zip([la for la in model.layers if la.get_weights()], network.weights, network.biases):
        values = layer.get_weights()
        w[...] = values[0]
        if b is not None:
            b[...] = values[1]


def train_side_by_side(network, x, y, **options):
    """Run kt.side_by_side to the end; returns its "end" event (callbacks: on_epoch, on_batch, on_init)."""
    callbacks = {kind: options.pop(f"on_{kind}", None) for kind in ("epoch", "batch", "init")}
    result = None
    for event in kt.side_by_side(network, x, y, report_batches=callbacks["batch"] is not None, **options):
        if event["kind"] == "end":
            result = event
        elif callbacks.get(event["kind"]) is not None:
            callbacks[event["kind"]](event)
    return result


def test_weights_copied_to_keras_and_read_back_are_unchanged():
    net = _perturbed([784, 16, 10], dtype="float64", seed=3)
    model = kt.build_keras_twin(net)
    other = Network([784, 16, 10], dtype="float64", seed=99)
    weights_from_keras(model, other)
    np.testing.assert_array_equal(other.params, net.params)
    from engine.errors import ConfigError
    with pytest.raises(ConfigError, match="The Keras model has 2 dense layers; the network has 3"):
        kt.copy_weights_to_keras(Network([784, 8, 8, 10]), model)


def test_the_twins_batch_order_is_the_engine_trainers_order():
    """Record the samples the engine's trainer really uses (each image's first pixel is its
    index), over two runs, the second continuing the network's epoch count."""
    n, bs, seed = 120, 32, 5
    x = np.zeros((n, 784), np.float64)
    x[:, 0] = np.arange(n)
    y = np.zeros(n, np.int64)
    net = Network([784, 4, 10], seed=0, dtype="float64")
    seen = []
    original = net.gradients

    def recording(xb, yb, *args, **kwargs):
        seen.append(xb[:, 0].astype(int))
        return original(xb, yb, *args, **kwargs)

    net.gradients = recording
    config = dict(batch_size=bs, seed=seed, scale_inputs=False)
    for _ in trainer(net, Adam(), x, y, TrainConfig(epochs=2, **config)):
        pass
    for _ in trainer(net, Adam(), x, y, TrainConfig(epochs=1, **config)):
        pass
    per_epoch = -(-n // bs)
    assert len(seen) == 3 * per_epoch
    for epoch in (1, 2, 3):
        got = np.concatenate(seen[(epoch - 1) * per_epoch:epoch * per_epoch])
        np.testing.assert_array_equal(got, kt.batch_order(n, seed, epoch))
    assert not np.array_equal(kt.batch_order(n, seed, 1), kt.batch_order(n, seed, 2))


def test_one_epoch_side_by_side_trains_both_alike_and_leaves_the_network_alone(synthetic):
    net = Network([784, 32, 16, 10], seed=0)
    before = net.params.copy()
    events = []
    result = train_side_by_side(net, synthetic.x_train, synthetic.y_train, epochs=1, batch_size=32, seed=1,
                                   x_test=synthetic.x_test, y_test=synthetic.y_test,
                                   on_epoch=events.append, on_batch=events.append, on_init=events.append)
    np.testing.assert_array_equal(net.params, before)  # the caller's network is untouched
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "init" and kinds[-1] == "epoch"
    assert events[0]["max_abs_diff"] < 1e-5
    sides = {e["side"] for e in events if e["kind"] == "batch"}
    assert sides == {"engine", "keras"}
    row = result["history"][0]
    for side in ("engine", "keras"):
        assert np.isfinite(row[side]["loss"]) and row[side]["seconds"] > 0
        assert 0 <= row[side]["accuracy"] <= 1
    assert abs(row["engine"]["loss"] - row["keras"]["loss"]) < 1e-4
    assert 0.1 <= result["engine_test_accuracy"] <= 1 and 0.1 <= result["keras_test_accuracy"] <= 1
    assert abs(result["engine_test_accuracy"] - result["keras_test_accuracy"]) <= 0.02
    assert result["agreement"] >= 0.97
    assert result["ratio"] > 0 and result["network"] is not net
    assert result["network"].epochs_trained == 1


def test_float64_runs_side_by_side_agree_to_rounding(synthetic):
    """With hyper-parameters exact in float32 (Keras rounds them to float32), float64 runs
    of the engine and Keras stay together to rounding error."""
    net = Network([784, 16, 10], dtype="float64", seed=2)
    result = train_side_by_side(net, synthetic.x_train, synthetic.y_train, epochs=2, batch_size=64,
                                   lr=2 ** -10, beta1=0.875, beta2=1 - 2 ** -10, eps=1e-8, seed=4,
                                   x_test=synthetic.x_test, y_test=synthetic.y_test)
    assert result["max_abs_diff_final"] < 1e-9
    for row in result["history"]:
        assert row["engine"]["loss"] == pytest.approx(row["keras"]["loss"], rel=1e-9)


def test_closing_the_side_by_side_generator_early_stops_it_cleanly(synthetic):
    net = Network([784, 8, 10], seed=0)
    before = net.params.copy()
    gen = kt.side_by_side(net, synthetic.x_train, synthetic.y_train, epochs=5, batch_size=100)
    first = [next(gen) for _ in range(4)]
    gen.close()
    assert first[0]["kind"] == "init" and first[1]["kind"] == "batch"
    assert [(e["side"], e["epoch"], e["batch"], e["batches"]) for e in first[1:]] == \
        [("engine", 1, b, 6) for b in (1, 2, 3)]                   # 600 samples in batches of 100
    with pytest.raises(StopIteration):                            # closed: nothing more comes
        next(gen)
    np.testing.assert_array_equal(net.params, before)             # it trained a copy


def test_side_by_side_refuses_a_zero_batch_or_a_nan_rate_by_name(synthetic):
    from engine.errors import ConfigError
    with pytest.raises(ConfigError, match="Batch size must be a whole number of at least 1, got 0"):
        next(kt.side_by_side(Network([784, 8, 10]), synthetic.x_train, synthetic.y_train, batch_size=0))
    with pytest.raises(ConfigError, match="Learning rate must be a finite number greater than zero, got nan"):
        next(kt.side_by_side(Network([784, 8, 10]), synthetic.x_train, synthetic.y_train, lr=float("nan")))
