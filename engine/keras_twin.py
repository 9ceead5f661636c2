"""The engine's network rebuilt in Keras, with the same weights, trained on the same batches.

Used by the Compare page and `python -m engine bench`. TensorFlow is imported only inside
the functions that need it (it costs seconds). Nothing here prints: progress is reported
through the events `side_by_side` yields.

What is equal on both sides: architecture, activation, biases, dtype, initial weights,
inputs (uint8 pixels scaled by 1/255 on the fly), the batches and their order each epoch
(`batch_order`), Adam's hyper-parameters including epsilon (Keras's default is 1e-7, the
notebook's 1e-8: we pass the same value to both). What may differ slightly: float rounding
order inside matrix products, and how each library sums the batch loss. And one Keras
detail worth knowing: its Adam rounds the learning rate and beta1/beta2 to float32 even for
float64 weights (a float32 learning-rate variable; `ops.cast` of Python floats), so with the
usual 0.001/0.9/0.999 a float64 pair drifts apart by ~1e-6 in an epoch. With values exact in
float32 (e.g. lr 2**-10, beta2 1 - 2**-10) the two float64 runs agree to rounding.
"""
import os
import statistics
import time

import numpy as np

from .errors import ConfigError
from .optimizers import Adam
from .trainer import EndEvent, EpochEvent, TrainConfig, batch_inputs, epoch_rngs, evaluate, trainer


def import_keras():
    """(tensorflow, keras), imported quietly. Raises ConfigError if TensorFlow is missing."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import tensorflow as tf
        import keras
    except Exception as exc:  # ImportError or a broken installation
        raise ConfigError(f"TensorFlow/Keras is not available ({type(exc).__name__}: {exc}); "
                          "install tensorflow-cpu to compare with Keras.") from None
    return tf, keras


def set_keras_threads(threads):
    """Limit TensorFlow's CPU thread pools to `threads`; False if TensorFlow already started
    running operations in this process (then its pools are fixed)."""
    tf, _ = import_keras()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(int(threads))
    except RuntimeError:
        return False
    return True


def _keras_activation(name, keras):
    """The Keras activation equal to the engine's (leaky ReLU uses the engine's slope)."""
    if name == "leaky_relu":
        from .layers import LEAKY_SLOPE

        def leaky_relu(x):
            # Written out (not keras.activations.leaky_relu) so the slope keeps x's dtype.
            return keras.ops.where(x > 0, x, x * LEAKY_SLOPE)
        return leaky_relu
    return name  # relu, tanh and sigmoid have the same names in Keras


def build_keras_twin(network, copy_weights=True):
    """A keras.Sequential with the network's architecture, activation, biases and dtype,
    holding a copy of its weights (unless copy_weights is False)."""
    _, keras = import_keras()
    dtype = np.dtype(network.dtype).name
    layers = [keras.Input(shape=(network.sizes[0],), dtype=dtype)]
    for i, width in enumerate(network.sizes[1:]):
        last = i == network.num_layers - 1
        layers.append(keras.layers.Dense(
            width, activation="softmax" if last else _keras_activation(network.activation, keras),
            use_bias=network.use_bias, dtype=dtype, name=f"dense_{i + 1}"))
    model = keras.Sequential(layers, name="engine_twin")
    if copy_weights:
        copy_weights_to_keras(network, model)
    return model


def _dense_layers(model):
    return [layer for layer in model.layers if layer.weights]


def copy_weights_to_keras(network, model):
    """Copy the engine's weights (and biases) into the Keras twin."""
    dense = _dense_layers(model)
    if len(dense) != network.num_layers:
        raise ConfigError(f"The Keras model has {len(dense)} dense layers; the network has {network.num_layers}.")
    for layer, w, b in zip(dense, network.weights, network.biases):
        layer.set_weights([w] if b is None else [w, b])


def _as_inputs(x, dtype, scale=None):
    """x as (n, features) floats of `dtype`, uint8 pixels scaled like the engine does."""
    x = np.asarray(x)
    x = x.reshape(len(x), -1) if x.ndim > 1 else x.reshape(1, -1)
    if scale is None:
        scale = x.dtype == np.uint8
    return batch_inputs(x, np.arange(len(x)), dtype, scale)


def keras_probabilities(model, x, chunk=8192):
    """Class probabilities of the Keras model for images x (uint8 pixels are scaled by 1/255)."""
    dtype = np.dtype(model.inputs[0].dtype).type if model.inputs else np.float32
    x = np.asarray(x)
    n = len(x) if x.ndim > 1 else 1
    outputs = []
    for start in range(0, n, chunk):
        part = _as_inputs(x[start:start + chunk] if x.ndim > 1 else x, dtype)
        outputs.append(np.asarray(model(part, training=False)))
    return np.concatenate(outputs) if outputs else np.empty((0, model.outputs[0].shape[-1]))


def engine_probabilities(network, x):
    """The engine's probabilities for the same inputs (dropout off)."""
    return network.predict_proba(_as_inputs(x, network.dtype))


def max_probability_difference(network, model, x):
    """max |p_engine - p_keras| over the inputs x: the forward check."""
    return float(np.abs(engine_probabilities(network, x) - keras_probabilities(model, x)).max())


def batch_order(n, seed, epoch):
    """The sample order of one epoch, derived exactly as engine.trainer does (shuffle=True).

    `epoch` counts over the network's life (1-based), like EpochEvent.epoch.
    """
    return epoch_rngs(seed, epoch)[0].permutation(n)


class KerasTrainer:
    """Trains a Keras model with Keras's Adam on batches given by index, one tf.function step
    per batch (the same work Keras's fit does per step, without its per-epoch data copy)."""

    def __init__(self, model, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8):
        tf, keras = import_keras()
        self.tf, self.model = tf, model
        self.optimizer = keras.optimizers.Adam(learning_rate=lr, beta_1=beta1, beta_2=beta2, epsilon=eps)
        self.optimizer.build(model.trainable_variables)  # slots exist before tracing
        self.loss_fn = keras.losses.SparseCategoricalCrossentropy(dtype=model.inputs[0].dtype)
        self.dtype = model.inputs[0].dtype
        self._steps = {}

    def _step(self, x_dtype, features):
        """The compiled train step for inputs of this dtype (traced once, any batch size)."""
        key = (np.dtype(x_dtype).name, features)
        if key not in self._steps:
            tf, model, optimizer, loss_fn = self.tf, self.model, self.optimizer, self.loss_fn
            scale = np.dtype(x_dtype) == np.uint8
            dtype = self.dtype

            def step(xb, yb):
                xb = tf.cast(xb, dtype)
                if scale:  # the engine's on-the-fly 0-255 -> [0, 1] scaling
                    xb = xb * tf.constant(1 / 255, dtype)
                with tf.GradientTape() as tape:
                    p = model(xb, training=True)
                    loss = loss_fn(yb, p)
                grads = tape.gradient(loss, model.trainable_variables)
                optimizer.apply_gradients(zip(grads, model.trainable_variables))
                correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(p, axis=1, output_type=tf.int64),
                                                         tf.cast(yb, tf.int64)), tf.int64))
                return loss, correct

            spec = (tf.TensorSpec([None, features], tf.as_dtype(np.dtype(x_dtype))),
                    tf.TensorSpec([None], tf.int32))
            compiled = tf.function(step, input_signature=spec)
            compiled.get_concrete_function()  # trace now, so the first epoch's timing is fair
            self._steps[key] = compiled
        return self._steps[key]

    def prepare(self, x, y=None, batch_size=100):
        """Trace the train step for inputs like x and, given labels, run it once on a first
        batch and undo that step: TensorFlow's first call of a graph costs a lot more than
        the next ones, and that setup should not count as training time."""
        x = np.asarray(x)
        x = x.reshape(len(x), -1)
        step = self._step(x.dtype, x.shape[1])
        if y is None or len(x) == 0:
            return
        variables = list(self.model.variables) + list(self.optimizer.variables)
        saved = [v.numpy() for v in variables]
        step(x[:batch_size], np.asarray(y[:batch_size], dtype=np.int32))
        for v, value in zip(variables, saved):
            v.assign(value)

    def batches(self, x, y, order, batch_size):
        """Train one epoch over `order`, yielding (batch, batches, loss, running loss, running accuracy)."""
        x = np.asarray(x)
        x = x.reshape(len(x), -1)
        step = self._step(x.dtype, x.shape[1])
        n = len(order)
        count = -(-n // batch_size)
        loss_sum = correct = seen = 0
        for b in range(count):
            idx = order[b * batch_size:(b + 1) * batch_size]
            loss, right = step(x[idx], np.asarray(y[idx], dtype=np.int32))
            loss = float(loss)
            seen += len(idx)
            loss_sum += loss * len(idx)
            correct += int(right)
            yield b + 1, count, loss, loss_sum / seen, correct / seen

    def train_epoch(self, x, y, order, batch_size):
        """One epoch; returns (mean loss, accuracy, seconds)."""
        start = time.perf_counter()
        result = (np.nan, np.nan)
        for *_, running_loss, running_accuracy in self.batches(x, y, order, batch_size):
            result = (running_loss, running_accuracy)
        return result[0], result[1], time.perf_counter() - start


def _labels(y):
    y = np.asarray(y)
    return y.argmax(axis=1) if y.ndim == 2 else y


def side_by_side(network, x, y, epochs=1, batch_size=100, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8,
                 seed=0, x_test=None, y_test=None, report_batches=True, in_place=False):
    """Train the engine and its Keras twin alternately, epoch by epoch, on the same batches.

    Yields dicts with "kind":
      "init"  - max_abs_diff (max |p_engine - p_keras| on x_test, or 10,000 of x, before training),
                checked_on, setup_seconds (building and tracing Keras, not counted below);
      "batch" - side ("engine"|"keras"), epoch, batch, batches, loss, running_loss, running_accuracy;
      "epoch" - epoch, engine / keras: {loss, accuracy, seconds};
      "end"   - reason, message, history, per-side median seconds and ratio (engine/keras),
                test accuracies, agreement (share of test digits with the same predicted class),
                max_abs_diff_init, and the trained `network` and `keras_model`.
    The engine trains a copy of `network` unless in_place is True. Dropout, validation split,
    augmentation and schedules are off: they would draw different random numbers on each side.
    """
    x, y = np.asarray(x), _labels(y)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, keep_prob=1.0, validation_split=0.0,
                         shuffle=True, scale_inputs=True, seed=seed)
    config.validate(len(x))
    optimizer = Adam(lr, beta1, beta2, eps)  # validates the hyper-parameters before TF loads
    net = network if in_place else network.copy()
    setup_start = time.perf_counter()
    model = build_keras_twin(net)
    keras_trainer = KerasTrainer(model, lr, beta1, beta2, eps)
    keras_trainer.prepare(x, y, batch_size)
    setup_seconds = time.perf_counter() - setup_start
    check_x = x[:10_000] if x_test is None else x_test  # a forward check needs no more
    max_diff = max_probability_difference(net, model, check_x)
    yield {"kind": "init", "max_abs_diff": max_diff, "checked_on": "test" if x_test is not None else "train",
           "samples": int(len(check_x)), "setup_seconds": setup_seconds, "dtype": np.dtype(net.dtype).name}

    history = []
    end = None
    for event in trainer(net, optimizer, x, y, config):
        if isinstance(event, EndEvent):
            end = event
            break
        if not isinstance(event, EpochEvent):
            if report_batches:
                yield {"kind": "batch", "side": "engine", "epoch": event.epoch, "batch": event.batch,
                       "batches": event.batches, "loss": event.loss, "running_loss": event.running_loss,
                       "running_accuracy": event.running_accuracy}
            continue
        order = batch_order(len(x), seed, event.epoch)
        start = time.perf_counter()
        k_loss = k_acc = np.nan
        for b, count, loss, k_loss, k_acc in keras_trainer.batches(x, y, order, batch_size):
            if report_batches:
                yield {"kind": "batch", "side": "keras", "epoch": event.epoch, "batch": b, "batches": count,
                       "loss": loss, "running_loss": k_loss, "running_accuracy": k_acc}
        k_seconds = time.perf_counter() - start
        row = {"kind": "epoch", "epoch": event.epoch, "run_epoch": event.run_epoch, "epochs": epochs,
               "engine": {"loss": event.loss, "accuracy": event.accuracy, "seconds": event.seconds},
               "keras": {"loss": k_loss, "accuracy": k_acc, "seconds": k_seconds}}
        history.append(row)
        yield row

    engine_seconds = [h["engine"]["seconds"] for h in history]
    keras_seconds = [h["keras"]["seconds"] for h in history]
    result = {"kind": "end", "reason": end.reason if end else "stopped", "message": end.message if end else "",
              "history": history, "max_abs_diff_init": max_diff,
              "engine_seconds": engine_seconds, "keras_seconds": keras_seconds,
              "engine_median_seconds": statistics.median(engine_seconds) if history else np.nan,
              "keras_median_seconds": statistics.median(keras_seconds) if history else np.nan,
              "network": net, "keras_model": model, "setup_seconds": setup_seconds}
    result["ratio"] = (result["engine_median_seconds"] / result["keras_median_seconds"]
                       if history and result["keras_median_seconds"] > 0 else np.nan)
    if x_test is not None and y_test is not None:
        y_test = _labels(y_test)
        p_engine = engine_probabilities(net, x_test)
        p_keras = keras_probabilities(model, x_test)
        result.update(
            engine_test_accuracy=float((p_engine.argmax(axis=1) == y_test).mean()),
            keras_test_accuracy=float((p_keras.argmax(axis=1) == y_test).mean()),
            agreement=float((p_engine.argmax(axis=1) == p_keras.argmax(axis=1)).mean()),
            max_abs_diff_final=float(np.abs(p_engine - p_keras).max()),
            engine_test_loss=float(evaluate(net, x_test, y_test, scale=np.asarray(x_test).dtype == np.uint8)[0]),
        )
    yield result
