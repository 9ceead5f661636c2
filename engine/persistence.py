"""Save and load a network as a plain `.npz` (no pickle): architecture, weights per layer,
optimizer state, training history and metadata. Loading trusts nothing: every array is
checked against the declared architecture and must be finite."""
import io
import json
import math
import os
import struct
import tempfile
import zipfile
import zlib

import numpy as np

from .errors import ConfigError, ModelFileError
from .memory import format_bytes
from .network import DTYPES, Network, validate_architecture
from .optimizers import make_optimizer

FORMAT = "digitlab-network-1"
MAX_MODEL_BYTES = 256 * 1024 * 1024


def json_ready(value):
    """`value` as strict JSON wants it: NaN and infinities become None, NumPy scalars and arrays
    plain Python values, keys strings (for --json output and the live view's feed)."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _text(value):
    return np.array(json.dumps(value))


def model_arrays(network, optimizer=None, metadata=None, extra=None):
    """Everything saved for a network, as a dict of plain arrays (`extra`: more named arrays
    the caller keeps with it, e.g. a run's replay; loaded back as metadata["extra"]).

    A network with NaN or infinite weights is refused: the file could never be loaded back.
    """
    if not np.isfinite(network.params).all():
        raise ModelFileError("The network holds NaN or infinite weights; it cannot be saved.")
    arrays = {
        "format": np.array(FORMAT),
        "sizes": np.array(network.sizes, dtype=np.int64),
        "activation": np.array(network.activation),
        "use_bias": np.array(network.use_bias),
        "dtype": np.array(np.dtype(network.dtype).name),
        "epochs_trained": np.array(network.epochs_trained, dtype=np.int64),
        "partial_epoch": np.array(float(network.partial_epoch)),
        "history": _text(network.history),
        "metadata": _text(metadata or {}),
    }
    arrays.update({name: np.ascontiguousarray(a) for name, a in network.parameter_arrays()})
    arrays.update({f"extra_{name}": np.asarray(value) for name, value in (extra or {}).items()})
    if optimizer is not None:
        arrays["optimizer"] = _text(optimizer.config())
        for key, value in optimizer.state().items():
            arrays[f"optimizer_{key}"] = np.asarray(value)
    return arrays


def save_network(path, network, optimizer=None, metadata=None, durable=True, extra=None):
    """Write atomically (temporary file, then rename): an interrupted save never leaves a
    half-written file under the final name. `durable`: flush it to the disk itself before the
    rename (survives a power cut, not only a crash of the process)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".npz.part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **model_arrays(network, optimizer, metadata, extra))
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def network_bytes(network, optimizer=None, metadata=None, extra=None):
    """The saved form in memory (for a download button)."""
    buffer = io.BytesIO()
    np.savez(buffer, **model_arrays(network, optimizer, metadata, extra))
    return buffer.getvalue()


def load_network(source, max_bytes=MAX_MODEL_BYTES):
    """Load (network, optimizer or None, metadata) from a path or bytes; ModelFileError if bad."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = bytes(source)
        if len(source) > max_bytes:
            raise ModelFileError(f"The file is {format_bytes(len(source))}; the limit is {format_bytes(max_bytes)}.")
        head, opened = source[:8], io.BytesIO(source)
    else:
        if not os.path.isfile(source):
            raise ModelFileError(f"No model file at {source}.")
        if os.path.getsize(source) > max_bytes:
            raise ModelFileError(f"{source} is larger than the {format_bytes(max_bytes)} limit.")
        try:
            with open(source, "rb") as f:
                head = f.read(8)
        except OSError as e:
            raise ModelFileError(f"Cannot read {source}: {e.strerror or e}.") from None
        opened = source
    _check_container(head, opened, max_bytes)
    try:
        with np.load(opened, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise ModelFileError("The file holds pickled Python objects, which are never loaded "
                                 "(they could run code). Save models with Digit Lab.") from None
        raise ModelFileError(f"Not a Digit Lab model (.npz): {str(e).rstrip('.')}.") from None
    except _READ_ERRORS as e:
        raise ModelFileError(f"Not a readable .npz model file (truncated or damaged: {e}).") from None
    return _network_from_arrays(arrays)


# What a damaged zip or .npy member can raise while it is read.
_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, KeyError, zlib.error,
                NotImplementedError, RuntimeError, struct.error, TypeError)


def _check_container(head, opened, max_bytes):
    """Refuse anything that is not a zip of .npy arrays, before numpy reads it: a bare .npy,
    a text file (which np.load would otherwise try to unpickle), a damaged archive, or one
    whose members would expand beyond `max_bytes` (a compression bomb)."""
    if head.startswith(b"\x93NUMPY"):
        raise ModelFileError("This is a single NumPy array (.npy), not a saved Digit Lab model (.npz).")
    if not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        raise ModelFileError("Not a Digit Lab model: a model file is an .npz (zip) archive, and this file is not one.")
    try:
        with zipfile.ZipFile(opened) as archive:
            members = archive.infolist()
    except _READ_ERRORS as e:
        raise ModelFileError(f"Not a readable .npz model file (truncated or damaged: {e}).") from None
    finally:
        if hasattr(opened, "seek"):
            opened.seek(0)
    if sum(m.file_size for m in members) > max_bytes:
        raise ModelFileError(f"The model file's arrays would take more than the {max_bytes / 1e6:.0f} MB limit "
                             "once unpacked.")
    odd = [m.filename for m in members if not m.filename.endswith(".npy")]
    if odd:
        raise ModelFileError(f"Not a Digit Lab model: the archive holds {odd[0]!r}, which is not a NumPy array.")


def _scalar(arrays, key, kind):
    if key not in arrays:
        raise ModelFileError(f"The model file lacks '{key}'; it was not saved by Digit Lab.")
    value = arrays[key]
    if value.shape != () or value.dtype.kind not in kind:
        raise ModelFileError(f"'{key}' in the model file has the wrong type ({value.dtype}, shape {value.shape}).")
    return value.item()


def _json(arrays, key, default):
    if key not in arrays:
        return default
    try:
        return json.loads(_scalar(arrays, key, "U"))
    except (ValueError, RecursionError):        # JSONDecodeError is a ValueError
        raise ModelFileError(f"'{key}' in the model file is not valid JSON.") from None


def _expected_shapes(sizes, use_bias):
    """name -> shape of every parameter array the declared architecture needs."""
    shapes = {}
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), 1):
        shapes[f"W{i}"] = (fan_in, fan_out)
        if use_bias:
            shapes[f"b{i}"] = (fan_out,)
    return shapes


def _network_from_arrays(arrays):
    if "format" not in arrays or arrays["format"].dtype.kind != "U" or _scalar(arrays, "format", "U") != FORMAT:
        raise ModelFileError("Not a Digit Lab model: the 'format' marker is missing or unknown.")
    sizes = arrays.get("sizes")
    if sizes is None or sizes.ndim != 1 or sizes.dtype.kind not in "iu":
        raise ModelFileError("The model file's 'sizes' must be a list of whole numbers.")
    sizes = [int(s) for s in sizes]
    activation = _scalar(arrays, "activation", "U")
    dtype = _scalar(arrays, "dtype", "U")
    use_bias = bool(_scalar(arrays, "use_bias", "b"))
    try:
        validate_architecture(sizes, activation, dtype)
    except ConfigError as e:
        raise ModelFileError(f"The model's architecture is impossible: {e}") from None
    # Every array is checked against the declared architecture before a network is built,
    # so a small file declaring a gigantic network fails here instead of allocating it.
    shapes = _expected_shapes(sizes, use_bias)
    for name, shape in shapes.items():
        value = arrays.get(name)
        if value is None:
            raise ModelFileError(f"The model file lacks {name} for the declared architecture.")
        if value.shape != shape or value.dtype != DTYPES[dtype]:
            raise ModelFileError(f"{name} has shape {value.shape} and type {value.dtype}; the architecture "
                                 f"{'-'.join(map(str, sizes))} ({dtype}) needs {shape} {dtype}.")
        if not np.isfinite(value).all():
            raise ModelFileError(f"{name} holds NaN or infinite weights.")
    known = {"format", "sizes", "activation", "use_bias", "dtype", "epochs_trained", "partial_epoch", "history",
             "metadata"}
    extra = sorted(k for k in arrays if k not in known and k not in shapes and not k.startswith(("optimizer", "extra_")))
    if extra:
        raise ModelFileError(f"Unexpected arrays in the model file: {', '.join(extra)}.")
    epochs_trained = int(_scalar(arrays, "epochs_trained", "iu"))
    if epochs_trained < 0:
        raise ModelFileError("The model's epoch count is negative.")
    history = _json(arrays, "history", [])
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        raise ModelFileError("The model's history must be a list of epochs.")
    metadata = _json(arrays, "metadata", {})
    if not isinstance(metadata, dict):
        raise ModelFileError("The model's metadata must be a JSON object.")
    network = Network(sizes, activation, use_bias, dtype, seed=0)
    for name, target in network.parameter_arrays():
        target[...] = arrays[name]
    network.epochs_trained = epochs_trained
    if "partial_epoch" in arrays:  # files saved before it existed have none
        partial = float(_scalar(arrays, "partial_epoch", "f"))
        if not 0 <= partial <= 1:
            raise ModelFileError("The model's share of a partial epoch must be in [0, 1].")
        network.partial_epoch = partial
    network.history = history
    extra = {k[len("extra_"):]: v for k, v in arrays.items() if k.startswith("extra_")}
    if extra:  # the caller's own arrays (e.g. a run's replay)
        metadata["extra"] = extra
    return network, _optimizer_from_arrays(arrays, network), metadata


def _optimizer_from_arrays(arrays, network):
    config = _json(arrays, "optimizer", None)
    if config is None:
        return None
    try:
        settings = {k: v for k, v in dict(config).items() if k != "name"}
        optimizer = make_optimizer(config.get("name", "adam"), **settings)
    except (ConfigError, TypeError, ValueError, AttributeError) as e:
        raise ModelFileError(f"The saved optimizer settings are invalid: {e}") from None
    state = {k[len("optimizer_"):]: v for k, v in arrays.items() if k.startswith("optimizer_")}
    for key, value in state.items():
        if key == "t":
            if value.shape != () or value.dtype.kind not in "iu" or value < 0:
                raise ModelFileError("The optimizer's step counter is invalid.")
        elif value.shape != network.params.shape or value.dtype != network.dtype or not np.isfinite(value).all():
            raise ModelFileError(f"The optimizer's '{key}' does not match the network's parameters.")
    optimizer.load_state(state, network.params.size, network.dtype)
    return optimizer
