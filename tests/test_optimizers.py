"""Adam (the notebook's, and Keras's), SGD with momentum, L2 weight decay and max-norm."""
import os

import numpy as np
import pytest

from engine import SGD, Adam, Network, make_optimizer
from engine.errors import ConfigError


def small_net(dtype="float64", use_bias=True, seed=0):
    return Network([5, 4, 3], "relu", use_bias, dtype, seed=seed)


def gradient_sequence(size, steps, seed=1, dtype=np.float64):
    rng = np.random.default_rng(seed)
    # a wide range of magnitudes, so epsilon and the bias correction both matter
    return [(rng.normal(size=size) * 10.0 ** rng.uniform(-6, 1, size)).astype(dtype) for _ in range(steps)]


def run_engine(optimizer, net, grads, lrs=None):
    history = []
    for i, g in enumerate(grads):
        net.grads[...] = g
        optimizer.step(net, None if lrs is None else lrs[i])
        history.append(net.params.copy())
    return history


# --- Adam -----------------------------------------------------------------------------------

def notebook_adam_steps(w, grads, alpha=0.001, beta1=0.9, beta2=0.999, eps=1e-8):
    """The notebook's AdamOptimizer.send, written out: bias-corrected step, eps added to sqrt(v)."""
    m = v = 0
    out = []
    for t, g in enumerate(grads, 1):
        alpha_t = alpha * np.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * (g * g)
        w = w + (-alpha_t * m / (np.sqrt(v) + eps))
        out.append(w)
    return out, m, v


def test_adam_first_step_is_the_notebook_formula():
    net = small_net()
    w0 = net.params.copy()
    g = gradient_sequence(net.params.size, 1)[0]
    run_engine(Adam(), net, [g])
    alpha_t = 0.001 * np.sqrt(1 - 0.999) / (1 - 0.9)
    m, v = 0.1 * g, 0.001 * g * g
    expected = w0 - alpha_t * m / (np.sqrt(v) + 1e-8)
    np.testing.assert_allclose(net.params, expected, rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("settings", [{}, {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6},
                                      {"beta1": 0.0, "beta2": 0.0}, {"beta1": 0.5, "beta2": 0.9999}])
def test_adam_many_steps_and_state_are_the_notebook_formula(settings):
    net = small_net()
    w0 = net.params.copy()
    grads = gradient_sequence(net.params.size, 150)        # long enough for the internal rescaling
    opt = Adam(**settings)
    got = run_engine(opt, net, grads)
    names = {"lr": "alpha", "eps": "eps", "beta1": "beta1", "beta2": "beta2"}
    expected, m, v = notebook_adam_steps(w0, grads, **{names[k]: val for k, val in settings.items()})
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    state = opt.state()
    assert int(state["t"]) == 150
    np.testing.assert_allclose(state["m"], m, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(state["v"], v, rtol=1e-12, atol=1e-300)


def test_adam_float32_stays_float32_and_tracks_float64():
    net32, net64 = small_net("float32"), small_net("float64")
    grads = gradient_sequence(net64.params.size, 150)
    opt32 = Adam()
    p32 = run_engine(opt32, net32, [g.astype(np.float32) for g in grads])
    p64 = run_engine(Adam(), net64, grads)
    assert net32.params.dtype == np.float32
    assert opt32.state()["m"].dtype == np.float32 and opt32.state()["v"].dtype == np.float32
    np.testing.assert_allclose(p32[-1], p64[-1], rtol=1e-5, atol=1e-6)


def test_adam_uses_the_scheduled_rate():
    grads = gradient_sequence(small_net().params.size, 5)
    lrs = [0.001, 0.0005, 0.002, 0.0, 0.001]
    net = small_net()
    w0 = net.params.copy()
    got = run_engine(Adam(), net, grads, lrs)
    m = v = 0
    w = w0
    for t, (g, lr) in enumerate(zip(grads, lrs), 1):
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        w = w - lr * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) * m / (np.sqrt(v) + 1e-8)
        np.testing.assert_allclose(got[t - 1], w, rtol=1e-12, atol=1e-15)


def keras_adam_trajectory(w0, grads, dtype, **kwargs):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    keras = pytest.importorskip("keras")
    var = keras.Variable(w0.astype(dtype), dtype=dtype)
    opt = keras.optimizers.Adam(**kwargs)
    out = []
    for g in grads:
        opt.apply_gradients([(keras.ops.convert_to_tensor(g.astype(dtype)), var)])
        out.append(np.array(var.numpy()))
    return out


# Keras's Adam (keras/src/optimizers/adam.py, update_step) is the same "epsilon hat" form as the
# notebook's: alpha = lr * sqrt(1 - beta2^t) / (1 - beta1^t);  m += (g - m)(1 - beta1);
# v += (g^2 - v)(1 - beta2);  w -= alpha * m / (sqrt(v) + epsilon). Only the default epsilon
# differs (Keras 1e-7, the notebook 1e-8), so with epsilon=1e-8 the two must agree.
# Keras keeps the learning rate in a float32 variable and casts beta1/beta2 through float32 for
# the bias correction (0.999 becomes 0.99900001287: a 6e-6 relative change of the first step),
# so the exact comparison uses a rate and betas that float32 represents exactly.
LR, B1, B2 = 2.0 ** -7, 0.875, 1 - 2.0 ** -10


@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-11), ("float32", 2e-5)])
@pytest.mark.parametrize("eps", [1e-8, 1e-7])
def test_adam_equals_keras_adam_given_the_same_epsilon(dtype, rtol, eps):
    net = small_net(dtype)
    w0 = net.params.copy()
    grads = gradient_sequence(net.params.size, 25, dtype=np.dtype(dtype).type)
    ours = run_engine(Adam(lr=LR, beta1=B1, beta2=B2, eps=eps), net, grads)
    theirs = keras_adam_trajectory(w0, grads, dtype, learning_rate=LR, beta_1=B1, beta_2=B2, epsilon=eps)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * 1e-2)


def test_adam_defaults_track_keras_and_epsilon_matters():
    """With the usual betas the only gap is Keras's float32 rounding of them (relative ~1e-5)."""
    net = small_net()
    w0 = net.params.copy()
    grads = gradient_sequence(net.params.size, 10, seed=4)
    ours = run_engine(Adam(eps=1e-7), net, grads)
    theirs = keras_adam_trajectory(w0, grads, "float64")          # Keras defaults: lr 1e-3, eps 1e-7
    moved = np.abs(theirs[-1] - w0)
    assert np.max(np.abs(ours[-1] - theirs[-1]) / np.maximum(moved, 1e-12)) < 1e-4
    # ... and the notebook's epsilon really is a different optimizer on tiny gradients
    other = run_engine(Adam(eps=1e-8), small_net(), grads)
    assert np.max(np.abs(other[-1] - theirs[-1]) / np.maximum(moved, 1e-12)) > 1e-2


# --- SGD ------------------------------------------------------------------------------------

@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_steps_follow_the_momentum_formula(momentum):
    net = small_net()
    w = net.params.copy()
    grads = gradient_sequence(net.params.size, 6)
    got = run_engine(SGD(lr=0.05, momentum=momentum), net, grads)
    velocity = np.zeros_like(w)
    for g, params in zip(grads, got):
        velocity = momentum * velocity - 0.05 * g
        w = w + velocity
        np.testing.assert_allclose(params, w, rtol=1e-13, atol=1e-15)


def test_an_sgd_rebuilt_from_its_state_takes_the_same_steps():
    net = small_net()
    grads = gradient_sequence(net.params.size, 4)
    opt = SGD(lr=0.1, momentum=0.5)
    run_engine(opt, net, grads[:2])
    state = opt.state()
    assert int(state["t"]) == 2
    np.testing.assert_allclose(state["velocity"], 0.5 * (-0.1 * grads[0]) - 0.1 * grads[1], rtol=1e-13)
    twin = SGD(lr=0.1, momentum=0.5)
    twin.load_state(state, net.params.size, net.dtype)
    other, fresh_net = net.copy(), net.copy()
    a = run_engine(opt, net, grads[2:])
    b = run_engine(twin, other, grads[2:])
    np.testing.assert_array_equal(a[-1], b[-1])
    assert twin.t == opt.t == 4
    # without the state (no velocity) the same steps go elsewhere: the state is what carried over
    fresh = run_engine(SGD(lr=0.1, momentum=0.5), fresh_net, grads[2:])
    assert not np.allclose(fresh[-1], a[-1])


# --- L2 and max-norm ------------------------------------------------------------------------

@pytest.mark.parametrize("make", [lambda: SGD(lr=0.1, momentum=0.0, weight_decay=0.01),
                                  lambda: Adam(lr=0.1, weight_decay=0.01)])
def test_l2_decay_adds_decay_times_weights_to_weight_gradients_only(make):
    net, ref = small_net(), small_net()
    for b in net.biases:
        b[...] = 1.0
    ref.params[...] = net.params
    g = gradient_sequence(net.params.size, 1)[0]
    opt, plain = make(), make()
    plain.weight_decay = 0.0
    expected_grads = g.copy()
    ref.grads[...] = g
    for w, gw in zip(ref.weights, ref.weight_grads):
        gw += 0.01 * w
    expected_grads[...] = ref.grads
    net.grads[...] = g
    opt.step(net)
    ref.grads[...] = expected_grads
    plain.step(ref)
    np.testing.assert_allclose(net.params, ref.params, rtol=1e-14)
    # the decay acted on the weights but not on the biases
    bias_positions = np.concatenate([np.zeros(w.size, bool) if b is None else np.r_[np.zeros(w.size, bool), np.ones(b.size, bool)]
                                     for w, b in zip(net.weights, net.biases)])
    np.testing.assert_array_equal(expected_grads[bias_positions], g[bias_positions])
    assert not np.allclose(expected_grads[~bias_positions], g[~bias_positions])


def test_l2_decay_alone_shrinks_weights_geometrically():
    net = small_net()
    w0 = net.params.copy()
    opt = SGD(lr=0.1, momentum=0.0, weight_decay=0.5)
    for _ in range(3):
        net.grads[...] = 0
        opt.step(net)
    for (name, w), (_, w_start) in zip(net.parameter_arrays(), small_net().parameter_arrays()):
        factor = 0.95 ** 3 if name.startswith("W") else 1.0
        np.testing.assert_allclose(w, w_start * factor, rtol=1e-14)
    assert not np.array_equal(net.params, w0)


def test_max_norm_caps_each_hidden_units_incoming_weights():
    net = Network([6, 5, 4, 3], "relu", True, "float64", seed=2)
    net.weights[0][:, 0] *= 100          # one unit far above the cap
    net.weights[0][:, 1] *= 1e-3         # one far below
    before = [w.copy() for w in net.weights]
    opt = SGD(lr=0.1, momentum=0.0, max_norm=1.5)
    net.grads[...] = 0
    opt.step(net)
    for w_before, w in zip(before[:-1], net.weights[:-1]):
        norms_before = np.linalg.norm(w_before, axis=0)
        norms = np.linalg.norm(w, axis=0)
        assert (norms <= 1.5 * (1 + 1e-12)).all()
        capped = norms_before > 1.5
        np.testing.assert_allclose(norms[capped], 1.5, rtol=1e-12)
        # direction kept, and untouched columns stay exactly as they were
        np.testing.assert_allclose(w[:, capped], w_before[:, capped] * (1.5 / norms_before[capped]), rtol=1e-12)
        np.testing.assert_array_equal(w[:, ~capped], w_before[:, ~capped])
    assert np.linalg.norm(before[0][:, 0]) > 1.5
    np.testing.assert_array_equal(net.weights[-1], before[-1])    # the softmax layer is not capped


# --- construction ---------------------------------------------------------------------------

def test_make_optimizer_builds_by_name_and_refuses_bad_settings_by_name():
    adam = make_optimizer("adam", lr=0.01, momentum=0.5, weight_decay=0.001)   # momentum is SGD's: ignored
    assert isinstance(adam, Adam)
    assert adam.config() == {"name": "adam", "lr": 0.01, "weight_decay": 0.001, "max_norm": 0.0,
                             "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
    sgd = make_optimizer("SGD", lr=0.01, beta1=0.5, max_norm=2)                 # beta1 is Adam's: ignored
    assert isinstance(sgd, SGD)
    assert sgd.config() == {"name": "sgd", "lr": 0.01, "weight_decay": 0.0, "max_norm": 2.0, "momentum": 0.9}
    assert make_optimizer(**{k: v for k, v in sgd.config().items()}).config() == sgd.config()  # as saved
    for bad, says in (({"lr": float("nan")}, "Learning rate must be a finite number"),
                      ({"lr": -1}, "Learning rate must be a finite number greater than zero, got -1.0"),
                      ({"lr": 0}, "Learning rate must be a finite number greater than zero, got 0.0"),
                      ({"lr": "fast"}, "Learning rate must be a number, got 'fast'"),
                      ({"beta1": 1.0}, r"beta1 must be in \[0, 1\), got 1.0"),
                      ({"weight_decay": -0.1}, "L2 weight decay must be a finite number zero or more")):
        with pytest.raises(ConfigError, match=says):
            make_optimizer("adam", **bad)
    with pytest.raises(ConfigError, match="Unknown optimizer 'rmsprop'; choose adam or sgd"):
        make_optimizer("rmsprop")
