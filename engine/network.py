"""The network: Glorot-uniform dense layers, a forward pass that keeps what backprop needs,
and backprop that reuses it.

All weights and biases live in one flat buffer (`params`) and the layers are views into
it, so the optimizer updates every parameter in one vectorised pass, in place.
"""
import re
from dataclasses import dataclass, field

import numpy as np

from .errors import ConfigError
from .kernels import Workspace
from .layers import ACTIVATIONS, softmax
from .reference import FAULTS, ForwardPass, backward, dense, forward  # noqa: F401 (FAULTS, ForwardPass: re-exported)

DTYPES = {"float32": np.float32, "float64": np.float64}
MAX_LAYER_WIDTH = 16384
MAX_HIDDEN_LAYERS = 32
INIT_CHUNK = 1 << 20  # weights drawn at a time (8 MB of float64)

def fully_connected(n_inputs, n_outputs, rng, dtype=np.float64):
    """Glorot-uniform weights, the notebook's dense layer: U(-l, l), l = sqrt(6/(fan_in+fan_out))."""
    limit = np.sqrt(6 / (n_inputs + n_outputs))
    return rng.uniform(-limit, limit, size=(n_inputs, n_outputs)).astype(dtype)


def validate_architecture(sizes, activation="relu", dtype="float32"):
    """Raise ConfigError with a readable message if the architecture cannot be built."""
    if len(sizes) < 2:
        raise ConfigError("A network needs at least an input and an output layer.")
    if len(sizes) - 2 > MAX_HIDDEN_LAYERS:
        raise ConfigError(f"At most {MAX_HIDDEN_LAYERS} hidden layers are supported; got {len(sizes) - 2}.")
    for i, width in enumerate(sizes):
        if isinstance(width, bool) or not isinstance(width, (int, np.integer)):
            raise ConfigError(f"Layer {i} width must be a whole number, got {width!r}.")
        if width < 1:
            raise ConfigError(f"Layer {i} width must be at least 1, got {width}.")
        if width > MAX_LAYER_WIDTH and 0 < i < len(sizes) - 1:
            raise ConfigError(f"Hidden layer width {width} is above the limit of {MAX_LAYER_WIDTH}.")
    if activation not in ACTIVATIONS:
        raise ConfigError(f"Unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}.")
    if str(dtype) not in DTYPES:
        raise ConfigError(f"dtype must be float32 or float64, got {dtype!r}.")


def parameter_count(sizes, use_bias=True):
    """Number of trainable numbers in a dense network of these layer sizes."""
    return sum(a * b + (b if use_bias else 0) for a, b in zip(sizes[:-1], sizes[1:]))


def parse_layers(text):
    """'64, 32' (or '64 32') -> [64, 32]; '' -> [] (no hidden layer). Raises ConfigError on anything
    that is not a list of positive whole numbers, including a missing width ('64,,32', '64,')."""
    text = str(text).strip()
    if not text:
        return []
    parts = [p.strip() for p in re.split(r"\s*,\s*|\s+", text)]
    if "" in parts:
        raise ConfigError(f"{text!r} has a comma with no layer width beside it: write the widths "
                          "separated by single commas, like 64, 32.")
    widths = []
    for p in parts:
        try:
            widths.append(int(p))
        except ValueError:
            raise ConfigError(f"Layer width {p!r} is not a whole number.") from None
    for w in widths:
        if w < 1:
            raise ConfigError(f"Layer width must be at least 1, got {w}.")
        if w > MAX_LAYER_WIDTH:
            raise ConfigError(f"Layer width {w} is above the limit of {MAX_LAYER_WIDTH}.")
    return widths


class Network:
    """A multilayer feed-forward network: dense layers, one activation, softmax output."""

    def __init__(self, sizes, activation="relu", use_bias=True, dtype="float32", seed=None):
        sizes = [int(s) if isinstance(s, (int, np.integer)) and not isinstance(s, bool) else s for s in sizes]
        validate_architecture(sizes, activation, dtype)
        self.sizes = list(sizes)
        self.activation = activation
        self.use_bias = bool(use_bias)
        self.dtype = DTYPES[str(dtype)]
        self.seed = seed
        self._act, self._act_derivative = ACTIVATIONS[activation]
        self.params = np.zeros(parameter_count(self.sizes, self.use_bias), dtype=self.dtype)
        self.grads = np.zeros_like(self.params)
        self.weights, self.biases = self._layer_views(self.params)
        self.weight_grads, self.bias_grads = self._layer_views(self.grads)
        # Each layer's weights with its bias vector as one more row (fan_in + 1, fan_out): the flat
        # buffer stores W then b, so this is a view. A batch with a column of ones appended then
        # gets weights and bias in one matrix product, and their gradients in one product too.
        self._blocks = self._block_views(self.params)
        self._grad_blocks = self._block_views(self.grads)
        self._workspaces = {}
        self.epochs_trained = 0
        self.partial_epoch = 0.0  # share of the next epoch trained when a run stopped inside it
        self.history = []  # one Keras-like dict per epoch trained, across runs
        self.initialize(np.random.default_rng(seed))

    # --- structure -------------------------------------------------------------------
    def _layer_views(self, flat):
        """Cut a flat buffer into per-layer weight matrices and bias vectors (views, no copies)."""
        weights, biases, offset = [], [], 0
        for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:]):
            weights.append(flat[offset:offset + fan_in * fan_out].reshape(fan_in, fan_out))
            offset += fan_in * fan_out
            if self.use_bias:
                biases.append(flat[offset:offset + fan_out])
                offset += fan_out
            else:
                biases.append(None)
        return weights, biases

    def _block_views(self, flat):
        blocks, offset = [], 0
        extra = 1 if self.use_bias else 0
        for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:]):
            size = (fan_in + extra) * fan_out
            blocks.append(flat[offset:offset + size].reshape(fan_in + extra, fan_out))
            offset += size
        return blocks

    def initialize(self, rng):
        """Glorot-uniform weights, zero biases: the notebook's numbers for a seed, whatever the
        precision. Drawn in chunks straight into the weights, with no copy of the network in
        float64 to cast (a 35M-weight network is created in 0.6 s instead of 1.2 s here)."""
        for w in self.weights:
            limit = np.sqrt(6 / (w.shape[0] + w.shape[1]))
            flat = w.reshape(-1)  # a view: the weights are contiguous
            for start in range(0, flat.size, INIT_CHUNK):  # the same stream as one call
                part = flat[start:start + INIT_CHUNK]
                part[...] = rng.uniform(-limit, limit, size=part.size)
        for b in self.biases:
            if b is not None:
                b[...] = 0

    @property
    def num_layers(self):
        return len(self.weights)

    @property
    def parameter_count(self):
        return self.params.size

    @property
    def hidden_sizes(self):
        return self.sizes[1:-1]

    def describe(self):
        """'784-64-32-10 relu, biases, float32'."""
        bias = "biases" if self.use_bias else "no biases"
        return f"{'-'.join(map(str, self.sizes))} {self.activation}, {bias}, {np.dtype(self.dtype).name}"

    def layer_names(self):
        """Names of every parameter array, in order: W1, b1, W2, ..."""
        names = []
        for i, b in enumerate(self.biases, 1):
            names.append(f"W{i}")
            if b is not None:
                names.append(f"b{i}")
        return names

    def parameter_arrays(self, grads=False):
        """(name, array) for each weight matrix and bias vector (views into the flat buffer)."""
        ws, bs = (self.weight_grads, self.bias_grads) if grads else (self.weights, self.biases)
        out = []
        for i, (w, b) in enumerate(zip(ws, bs), 1):
            out.append((f"W{i}", w))
            if b is not None:
                out.append((f"b{i}", b))
        return out

    def copy(self):
        """An independent network with the same architecture and weights."""
        twin = Network(self.sizes, self.activation, self.use_bias, np.dtype(self.dtype).name, seed=0)
        twin.params[...] = self.params
        twin.seed = self.seed
        twin.epochs_trained, twin.partial_epoch = self.epochs_trained, self.partial_epoch
        twin.history = [dict(h) for h in self.history]
        return twin

    # --- forward / backward ----------------------------------------------------------
    def forward(self, x, keep_prob=1.0, rng=None, masks=None):
        """Forward pass keeping what backprop needs (engine.reference.forward on this network's
        weights); dropout (per sample) after hidden activations. Pass `masks` (one per hidden
        layer) to reuse fixed dropout masks, e.g. in a gradient check."""
        return forward(self.weights, self.biases, np.asarray(x, dtype=self.dtype), self.activation, keep_prob,
                       rng, masks)

    def backward(self, fp, targets, fault=None):
        """Backprop through a kept forward pass (engine.reference.backward); fills `self.grads`
        with the gradients of the mean loss over the batch and returns it. `fault` names a
        deliberate mistake (see FAULTS) for teaching."""
        weight_grads, bias_grads = backward(fp, targets, self.weights, self.activation, self.use_bias, fault)
        for target, grad in zip(self.weight_grads + self.bias_grads, weight_grads + bias_grads):
            if target is not None:
                target[...] = grad
        return self.grads

    def gradients(self, x, targets, keep_prob=1.0, rng=None, masks=None, fault=None):
        """Forward + backward on one batch; returns (loss, accuracy, flat gradient buffer).

        The training step: engine.kernels.Workspace, in preallocated buffers (one set per batch
        size), keeping nothing for the caller but the gradients in `self.grads`. `forward` and
        `backward` (engine.reference) are the same computation, step by step, for callers that
        want the intermediate arrays; with a `fault` they are what runs.
        """
        if fault is not None:
            from .layers import accuracy, cross_entropy
            fp = self.forward(x, keep_prob, rng, masks)
            loss = cross_entropy(fp.probabilities, targets)
            acc = accuracy(fp.probabilities, targets)
            self.backward(fp, targets, fault)
            return loss, acc, self.grads
        ws = self._last_workspace = self._workspace(len(x))
        if x is not ws.x:                       # the trainer writes straight into ws.x
            x = np.asarray(x)
            np.copyto(ws.x, x.reshape(len(x), -1), casting="unsafe")
        return ws.step(np.asarray(targets), keep_prob, rng, masks)

    def layer_weights(self, flat):
        """The weight matrices of a flat parameter vector laid out like `params` (views)."""
        return self._layer_views(flat)[0]

    def dead_share(self):
        """Per hidden layer, the share of units that were active for no sample of the last
        training step's batch (None before a step, or for tanh and sigmoid)."""
        ws = getattr(self, "_last_workspace", None)
        return None if ws is None or ws not in self._workspaces.values() else ws.dead_share()

    def batch_buffer(self, n):
        """The (n, inputs) array `gradients` reads a batch of n from: fill it in place and pass it
        back to skip one copy (valid until the next call with the same n)."""
        return self._workspace(n).x

    def release_buffers(self):
        """Free the training-step buffers (the trainer calls this when a run ends)."""
        self._workspaces.clear()

    def _workspace(self, n):
        ws = self._workspaces.get(n)
        if ws is None:
            if len(self._workspaces) >= 4:      # e.g. full batches, the short last batch, others
                self._workspaces.clear()
            ws = self._workspaces[n] = Workspace(self, n)
        return ws

    def predict_proba(self, x, chunk=1024):
        """Class probabilities with dropout off, in chunks so memory stays small (and reused:
        see engine.trainer.evaluate)."""
        x = np.asarray(x)
        if x.ndim == 1:
            x = x.reshape(1, -1)
        out = np.empty((x.shape[0], self.sizes[-1]), dtype=self.dtype)
        for start in range(0, x.shape[0], chunk):
            a = np.asarray(x[start:start + chunk], dtype=self.dtype)
            for i in range(self.num_layers - 1):
                a = self._act(dense(a, self.weights[i], self.biases[i]))
            out[start:start + chunk] = softmax(dense(a, self.weights[-1], self.biases[-1]))
        return out

    def hidden_activations(self, x):
        """Each hidden layer's activations for inputs x (dropout off), for the UI."""
        fp = self.forward(np.atleast_2d(x))
        return fp.hidden
