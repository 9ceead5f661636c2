"""The network: Glorot-uniform dense layers, a forward pass that keeps what backprop needs,
and backprop that reuses it.

All weights and biases live in one flat buffer (`params`) and the layers are views into
it, so the optimizer updates every parameter in one vectorised pass, in place.
"""
import contextlib
import re
from dataclasses import dataclass, field

import numpy as np

from .errors import ConfigError
from .layers import ACTIVATIONS, LEAKY_SLOPE, dropout, softmax

DTYPES = {"float32": np.float32, "float64": np.float64}
_NO_CONTEXT = contextlib.nullcontext()
MAX_LAYER_WIDTH = 16384
MAX_HIDDEN_LAYERS = 32
INIT_CHUNK = 1 << 20  # weights drawn at a time (8 MB of float64)

# Ways to break backprop on purpose, so a user can see what a failing gradient check looks like.
FAULTS = {
    "activation_derivative": "Activation derivative replaced by 1 (ReLU treated as linear)",
    "dropout_scale": "Dropout's 1/keep_prob scale left out of backprop",
    "bias_gradient": "Bias gradients forgotten (left at zero)",
    "batch_mean": "Loss gradient not divided by the batch size",
}


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


@dataclass
class ForwardPass:
    """What the forward pass keeps for backprop: each layer's input and each hidden output."""
    inputs: list            # inputs[i] is what layer i multiplies (after dropout)
    hidden: list            # hidden[i] is activation output of hidden layer i (before dropout)
    masks: list             # dropout masks (None where no dropout)
    probabilities: np.ndarray = field(default=None)


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
        """Forward pass keeping each layer's input; dropout (per sample) after hidden activations.

        Pass `masks` (one per hidden layer) to reuse fixed dropout masks, e.g. in a gradient check.
        """
        x = np.asarray(x, dtype=self.dtype)
        inputs, hidden, used_masks = [x], [], []
        a = x
        for i in range(self.num_layers - 1):
            z = self._affine(a, i)
            h = self._act(z)
            hidden.append(h)
            if masks is not None:
                mask = masks[i]
                a = h if mask is None else h * mask
            elif keep_prob < 1:
                a, mask = dropout(h, keep_prob, rng if rng is not None else np.random.default_rng())
            else:
                a, mask = h, None
            used_masks.append(mask)
            inputs.append(a)
        probabilities = softmax(self._affine(a, self.num_layers - 1))
        return ForwardPass(inputs, hidden, used_masks, probabilities)

    def _affine(self, a, i):
        z = a @ self.weights[i]
        if self.biases[i] is not None:
            z += self.biases[i]
        return z

    def backward(self, fp, targets, fault=None):
        """Backprop through a kept forward pass; fills `self.grads` (mean loss over the batch).

        Fused softmax + cross-entropy: the output delta is (p - y) / n. No delta is computed
        for the input layer. `fault` names a deliberate mistake (see FAULTS) for teaching.
        """
        n = fp.probabilities.shape[0]
        delta = fp.probabilities.copy()
        if targets.ndim == 1:
            delta[np.arange(n), targets] -= 1
        else:
            delta -= targets
        if fault != "batch_mean":
            delta *= self.dtype(1 / n)
        for i in range(self.num_layers - 1, -1, -1):
            np.matmul(fp.inputs[i].T, delta, out=self.weight_grads[i])
            if self.bias_grads[i] is not None:
                if fault == "bias_gradient":
                    self.bias_grads[i][...] = 0
                else:
                    delta.sum(axis=0, out=self.bias_grads[i])
            if i == 0:
                break  # no delta for the input layer
            delta = delta @ self.weights[i].T
            mask = fp.masks[i - 1]
            if mask is not None:
                delta *= (mask != 0) if fault == "dropout_scale" else mask
            if fault != "activation_derivative":
                delta *= self._act_derivative(fp.hidden[i - 1])
        return self.grads

    def gradients(self, x, targets, keep_prob=1.0, rng=None, masks=None, fault=None):
        """Forward + backward on one batch; returns (loss, accuracy, flat gradient buffer).

        The training step: it works in preallocated buffers (one set per batch size) and keeps
        nothing for the caller but the gradients in `self.grads`. `forward` and `backward` are
        the same computation, step by step, for callers that want the intermediate arrays.
        """
        if fault is not None:
            from .layers import accuracy, cross_entropy
            fp = self.forward(x, keep_prob, rng, masks)
            loss = cross_entropy(fp.probabilities, targets)
            acc = accuracy(fp.probabilities, targets)
            self.backward(fp, targets, fault)
            return loss, acc, self.grads
        ws = self._workspace(len(x))
        if x is not ws.x:                       # the trainer writes straight into ws.x
            x = np.asarray(x)
            np.copyto(ws.x, x.reshape(len(x), -1), casting="unsafe")
        return ws.step(np.asarray(targets), keep_prob, rng, masks)

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
            ws = self._workspaces[n] = _Workspace(self, n)
        return ws

    def predict_proba(self, x, chunk=8192):
        """Class probabilities with dropout off, in chunks so memory stays small."""
        x = np.asarray(x)
        if x.ndim == 1:
            x = x.reshape(1, -1)
        out = np.empty((x.shape[0], self.sizes[-1]), dtype=self.dtype)
        for start in range(0, x.shape[0], chunk):
            a = np.asarray(x[start:start + chunk], dtype=self.dtype)
            for i in range(self.num_layers - 1):
                a = self._act(self._affine(a, i))
            out[start:start + chunk] = softmax(self._affine(a, self.num_layers - 1))
        return out

    def hidden_activations(self, x):
        """Each hidden layer's activations for inputs x (dropout off), for the UI."""
        fp = self.forward(np.atleast_2d(x))
        return fp.hidden


class _Workspace:
    """Buffers for training steps on batches of n samples, reused from step to step.

    With biases, each layer's input has a column of ones appended, so `input @ block` (block =
    weights with the bias as last row) is the affine map, and `input.T @ delta` gives weight and
    bias gradients in one product. Hidden activations and deltas live in such full-width
    (n, width + 1) buffers: the element-wise work runs over whole contiguous arrays (much
    faster in numpy than over the strided (n, width) views the products read and write), and
    the extra column stays a column of ones (activations) or of zeros (deltas). The output
    layer is computed transposed, (classes, n), so that softmax reduces over contiguous rows.
    """

    def __init__(self, net, n):
        self.net = net
        self.n = n
        dt = net.dtype
        self.extra = extra = 1 if net.use_bias else 0
        # inputs[i]: what layer i multiplies, (n, fan_in + extra)
        self.inputs = [self._activations_buffer(width) for width in net.sizes[:-1]]
        self.x = self.inputs[0][:, :net.sizes[0]]
        widths = net.sizes[1:-1]
        self.delta_full = [np.zeros((n, w + extra), dt) for w in widths]
        self.deltas = [buf[:, :w] for buf, w in zip(self.delta_full, widths)]
        self.active = [np.zeros((n, w + extra), bool) for w in widths]
        self.scratch = [np.zeros((n, w + extra), dt) for w in widths]
        self.pre_dropout = None                 # allocated on first use of dropout
        self.probabilities_t = np.empty((net.sizes[-1], n), dt)                 # (classes, n)
        self.column = np.empty(n, dt)
        self.rows = np.arange(n)
        self.inverse_n = dt(1 / n)
        self.tiny = np.finfo(dt).tiny

    def _activations_buffer(self, width):
        """(n, width + extra) zeros whose extra column (with biases) is all ones."""
        buf = np.zeros((self.n, width + self.extra), self.net.dtype)
        if self.extra:
            buf[:, width] = 1
        return buf

    def _dropout_buffers(self):
        if self.pre_dropout is None:
            dt, n, extra = self.net.dtype, self.n, self.extra
            widths = self.net.sizes[1:-1]
            self.pre_dropout = [self._activations_buffer(w) for w in widths]
            self.random = [np.empty((n, w), np.float32 if dt == np.float32 else np.float64) for w in widths]
            self.keep = [np.empty((n, w), bool) for w in widths]
            self.masks = [np.ones((n, w + extra), dt) for w in widths]      # extra column: 1

    def step(self, targets, keep_prob, rng, masks):
        net = self.net
        blocks, weights = net._blocks, net.weights
        kind = net.activation
        layers = net.num_layers
        dropout = masks is not None or keep_prob < 1
        if dropout:
            self._dropout_buffers()
            if masks is None and rng is None:
                rng = np.random.default_rng()
        used_masks = [None] * (layers - 1)
        # sigmoid's e^-z overflows to inf for very negative z, which is harmless (the unit gives 0)
        with np.errstate(over="ignore") if kind == "sigmoid" else _NO_CONTEXT:
            for i in range(layers - 1):
                mask = None
                if dropout:
                    mask = self.masks[i]
                    width = net.sizes[i + 1]
                    if masks is not None:
                        if masks[i] is None:
                            mask = None
                        else:
                            mask[:, :width] = masks[i]
                    else:
                        # the same draws as layers.dropout_mask: uniform < keep_prob, kept x 1/keep_prob
                        rng.random(dtype=self.random[i].dtype, out=self.random[i])
                        np.less(self.random[i], keep_prob, out=self.keep[i])
                        np.multiply(self.keep[i], net.dtype(1 / keep_prob), out=mask[:, :width])
                used_masks[i] = mask
                full = self.pre_dropout[i] if mask is not None else self.inputs[i + 1]
                np.matmul(self.inputs[i], blocks[i], out=full[:, :net.sizes[i + 1]])
                _activate(kind, full, self.active[i], net.sizes[i + 1] if self.extra else None)
                if mask is not None:
                    np.multiply(full, mask, out=self.inputs[i + 1])
            # Output layer, transposed: logits (classes, n) = block.T @ input.T
            p = self.probabilities_t
            np.matmul(blocks[-1].T, self.inputs[-1].T, out=p)
            column = self.column
            np.maximum.reduce(p, axis=0, out=column)
            p -= column
            np.exp(p, out=p)
            np.add.reduce(p, axis=0, out=column)
            p /= column
            # loss and accuracy, as layers.cross_entropy and layers.accuracy compute them
            n = self.n
            if targets.ndim == 1:
                labels = targets
                picked = p[targets, self.rows]
                np.maximum(picked, self.tiny, out=picked)
                np.log(picked, out=picked)
                loss = -float(np.add.reduce(picked)) / n
            else:
                labels = targets.argmax(axis=1)
                loss = -float((targets.T * np.log(np.maximum(p, self.tiny))).sum()) / n
            acc = np.count_nonzero(p.argmax(axis=0) == labels) / n
            # fused softmax + cross-entropy gradient of the mean loss: (p - y) / n
            if targets.ndim == 1:
                p[targets, self.rows] -= 1
            else:
                p -= targets.T
            p *= self.inverse_n
            grad_blocks = net._grad_blocks
            np.matmul(self.inputs[-1].T, p.T, out=grad_blocks[-1])
            if layers == 1:
                return loss, acc, net.grads
            np.matmul(p.T, weights[-1].T, out=self.deltas[-1])
            for i in range(layers - 2, -1, -1):
                # self.deltas[i]: gradient at hidden layer i's output; through its activation:
                delta = self.delta_full[i]
                mask = used_masks[i]
                if mask is not None:
                    delta *= mask
                    h = self.pre_dropout[i]
                else:
                    h = self.inputs[i + 1]
                _activation_slope(kind, delta, h, self.active[i], self.scratch[i])
                np.matmul(self.inputs[i].T, self.deltas[i], out=grad_blocks[i])
                if i > 0:               # no delta for the input layer
                    np.matmul(self.deltas[i], weights[i].T, out=self.deltas[i - 1])
        return loss, acc, net.grads


def _activate(kind, z, active, ones_column=None):
    """The activation in place over a full-width buffer; `active` (boolean, same shape) records
    z > 0 for the ReLUs. ReLU and leaky ReLU keep a column of ones as it is; for tanh and
    sigmoid the column at `ones_column` is put back to 1."""
    if kind == "relu":
        np.greater(z, 0, out=active)
        np.multiply(z, active, out=z)       # faster than np.maximum here; NaN stays NaN
        return
    if kind == "leaky_relu":
        np.less_equal(z, 0, out=active)     # here: where the slope is LEAKY_SLOPE
        np.multiply(z, z.dtype.type(LEAKY_SLOPE), out=z, where=active)
        return
    if kind == "tanh":
        np.tanh(z, out=z)
    else:  # sigmoid 1 / (1 + e^-z): exact everywhere; e^-z may overflow to inf, giving 0
        np.negative(z, out=z)
        np.exp(z, out=z)
        z += 1
        np.reciprocal(z, out=z)
    if ones_column is not None:
        z[:, ones_column] = 1


def _activation_slope(kind, delta, h, active, scratch):
    """delta *= the activation's derivative, read from its output h (or the ReLU's record)."""
    if kind == "relu":
        np.multiply(delta, active, out=delta)
    elif kind == "leaky_relu":
        np.multiply(delta, delta.dtype.type(LEAKY_SLOPE), out=delta, where=active)
    elif kind == "tanh":
        np.multiply(h, h, out=scratch)
        np.subtract(1, scratch, out=scratch)
        delta *= scratch
    else:
        np.subtract(1, h, out=scratch)
        scratch *= h
        delta *= scratch
