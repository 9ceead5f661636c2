"""Save/load: exact round trip, refusal of every malformed file, atomic writes."""
import io
import json
import os
import zipfile

import numpy as np
import pytest

from engine import SGD, Adam, Network, TrainConfig, load_network, network_bytes, save_network, train
from engine import persistence
from engine.errors import ModelFileError


@pytest.fixture
def trained():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (60, 16), dtype=np.uint8)
    y = rng.integers(0, 3, 60)
    net = Network([16, 8, 5, 3], "tanh", True, "float32", seed=1)
    opt = Adam(lr=0.01, weight_decay=1e-4)
    train(net, opt, x, y, TrainConfig(epochs=2, batch_size=16))
    return net, opt, x


def arrays_of(net, opt=None):
    return persistence.model_arrays(net, opt, {"note": "test"})


def npz_bytes(arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@pytest.mark.parametrize("dtype,use_bias,optimizer", [("float32", True, "adam"), ("float64", False, "sgd"),
                                                      ("float32", False, None)])
def test_a_saved_network_loads_back_with_its_weights_optimizer_and_history(tmp_path, dtype, use_bias, optimizer):
    rng = np.random.default_rng(2)
    x = rng.random((40, 12))
    y = rng.integers(0, 4, 40)
    net = Network([12, 6, 4], "leaky_relu", use_bias, dtype, seed=3)
    opt = {"adam": Adam(lr=0.003), "sgd": SGD(lr=0.1, momentum=0.8, max_norm=3.0), None: None}[optimizer]
    if opt is not None:
        train(net, opt, x, y, TrainConfig(epochs=2, batch_size=8))
    path = save_network(tmp_path / "model.npz", net, opt, metadata={"dataset": "blobs", "n": 40})
    for source in (path, network_bytes(net, opt, metadata={"dataset": "blobs", "n": 40})):
        loaded, loaded_opt, metadata = load_network(source)
        assert metadata == {"dataset": "blobs", "n": 40}
        assert loaded.describe() == net.describe()
        assert loaded.params.dtype == net.params.dtype
        np.testing.assert_array_equal(loaded.params, net.params)
        np.testing.assert_array_equal(loaded.predict_proba(x), net.predict_proba(x))
        assert loaded.epochs_trained == net.epochs_trained
        assert json.dumps(loaded.history) == json.dumps(net.history)      # NaN-aware comparison
        if opt is None:
            assert loaded_opt is None
            continue
        assert type(loaded_opt) is type(opt) and loaded_opt.config() == opt.config()
        state, loaded_state = opt.state(), loaded_opt.state()
        assert state.keys() == loaded_state.keys()
        for key in state:
            np.testing.assert_array_equal(loaded_state[key], state[key])
            assert np.asarray(loaded_state[key]).dtype == np.asarray(state[key]).dtype or key == "t"


def test_loaded_layers_are_views_of_the_flat_buffer(trained, tmp_path):
    net, opt, _ = trained
    loaded, _, _ = load_network(save_network(tmp_path / "m.npz", net, opt))
    loaded.params[0] = 123.0
    assert loaded.weights[0].ravel()[0] == 123.0


def test_model_files_are_read_with_pickle_off_and_hold_no_objects(trained, tmp_path, monkeypatch):
    net, opt, _ = trained
    path = save_network(tmp_path / "m.npz", net, opt)
    real_load = np.load
    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs.get("allow_pickle"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(np, "load", spy)
    load_network(path)
    assert calls == [False]
    with zipfile.ZipFile(path) as z:          # and nothing in the file is an object array
        for name in z.namelist():
            with z.open(name) as member:
                assert np.lib.format.read_array(member, allow_pickle=False).dtype != object


# --- malformed files ----------------------------------------------------------------------

def refused(source, match=None, **kwargs):
    with pytest.raises(ModelFileError, match=match) as info:
        load_network(source, **kwargs)
    assert "Traceback" not in str(info.value) and str(info.value)
    return str(info.value)


def test_a_truncated_model_file_is_refused_as_damaged(trained, tmp_path):
    net, opt, _ = trained
    data = network_bytes(net, opt)
    for cut in (10, len(data) // 3, len(data) // 2, len(data) - 30):
        assert "truncated or damaged" in refused(data[:cut])
        (tmp_path / "t.npz").write_bytes(data[:cut])
        assert "truncated or damaged" in refused(tmp_path / "t.npz")


@pytest.mark.parametrize("content", [b"", b"hello, not a model", b"\x89PNG\r\n\x1a\n" + bytes(100),
                                     b"PK\x03\x04garbage"])
def test_a_file_that_is_no_zip_is_refused_without_talk_of_pickles(tmp_path, content):
    message = refused(content)
    assert "pickle" not in message.lower()         # a text file is not 'pickled objects'
    assert "not a zip" in message or "not one" in message           # it says what is wrong
    (tmp_path / "x.npz").write_bytes(content)
    assert refused(tmp_path / "x.npz") == message


def test_a_plain_npy_file_is_refused(tmp_path):
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(3))
    refused(buffer.getvalue(), match=r"single NumPy array \(\.npy\)")


def test_a_missing_file_or_a_folder_is_refused_as_no_model_file(tmp_path):
    assert refused(tmp_path / "nothing.npz", match="No model file") == f"No model file at {tmp_path / 'nothing.npz'}."
    refused(tmp_path, match=f"No model file at {tmp_path}")


def test_object_arrays_are_refused_as_pickled_objects(trained):
    net, opt, _ = trained
    arrays = arrays_of(net, opt)
    arrays["W1"] = np.array([{"evil": 1}, None], dtype=object)
    assert "pickle" in refused(npz_bytes(arrays)).lower()
    arrays = arrays_of(net, opt)
    arrays["history"] = np.array([object()], dtype=object)
    assert "pickle" in refused(npz_bytes(arrays)).lower()


@pytest.mark.parametrize("key", ["format", "sizes", "activation", "dtype", "use_bias", "epochs_trained", "W1", "b2", "W3"])
def test_a_file_lacking_an_array_is_refused_naming_it(trained, key):
    net, opt, _ = trained
    arrays = arrays_of(net, opt)
    del arrays[key]
    assert key in refused(npz_bytes(arrays))


@pytest.mark.parametrize("key,value,says", [
    ("W1", np.zeros((16, 9), np.float32), "W1 has shape (16, 9)"),
    ("b1", np.zeros(9, np.float32), "b1 has shape (9,)"),
    ("W2", np.zeros((8, 5, 1), np.float32), "W2 has shape (8, 5, 1)"),
    ("sizes", np.array([16, 8, 5], np.int64), "Unexpected arrays in the model file: W3, b3"),  # weights don't fit
    ("sizes", np.array([[16, 8, 5, 3]], np.int64), "'sizes' must be a list of whole numbers"),
    ("sizes", np.array([16.0, 8.0, 5.0, 3.0]), "'sizes' must be a list of whole numbers"),
    ("sizes", np.array([16, 0, 5, 3], np.int64), "Layer 1 width must be at least 1"),
    ("optimizer_m", np.zeros(7, np.float32), "optimizer's 'm' does not match"),
    ("optimizer_t", np.array([1, 2]), "step counter"),
    ("optimizer_t", np.array(-1), "step counter"),
])
def test_an_array_of_the_wrong_shape_is_refused_naming_it(trained, key, value, says):
    net, opt, _ = trained
    arrays = arrays_of(net, opt)
    arrays[key] = value
    assert says in refused(npz_bytes(arrays))


@pytest.mark.parametrize("key,value,says", [
    ("W1", lambda a: a.astype(np.float64), "W1 has shape (16, 8) and type float64"),
    ("b3", lambda a: a.astype(np.int32), "b3 has shape (3,) and type int32"),
    ("optimizer_v", lambda a: a.astype(np.float64), "optimizer's 'v' does not match"),
    ("activation", lambda a: np.array(3), "'activation' in the model file has the wrong type"),
    ("use_bias", lambda a: np.array("yes"), "'use_bias' in the model file has the wrong type"),
    ("dtype", lambda a: np.array("float16"), "float16"),
    ("activation", lambda a: np.array("swish"), "Unknown activation 'swish'"),
    ("epochs_trained", lambda a: np.array(1.5), "'epochs_trained' in the model file has the wrong type"),
    ("history", lambda a: np.array("{not json"), "'history' in the model file is not valid JSON"),
    ("history", lambda a: np.array('{"a": 1}'), "history must be a list of epochs"),
    ("optimizer", lambda a: np.array('{"name": "adam", "lr": -1}'), "Learning rate must be"),
    ("optimizer", lambda a: np.array('{"name": "lbfgs"}'), "Unknown optimizer 'lbfgs'"),
])
def test_an_array_of_the_wrong_type_or_value_is_refused_naming_it(trained, key, value, says):
    net, opt, _ = trained
    arrays = arrays_of(net, opt)
    arrays[key] = value(arrays[key])
    assert says in refused(npz_bytes(arrays))


@pytest.mark.parametrize("key", ["W1", "b2", "optimizer_m"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_infinite_numbers_are_refused_naming_the_array(trained, key, bad):
    net, opt, _ = trained
    arrays = arrays_of(net, opt)
    arrays[key] = arrays[key].copy()
    arrays[key].flat[3] = bad
    message = refused(npz_bytes(arrays))
    assert (f"{key} holds NaN or infinite weights" in message if key[0] in "Wb"
            else "optimizer's 'm' does not match" in message)


@pytest.mark.parametrize("marker", ["digitlab-network-0", "keras", ""])
def test_an_unknown_format_marker_is_refused(trained, marker):
    net, opt, _ = trained
    arrays = arrays_of(net, opt)
    arrays["format"] = np.array(marker)
    refused(npz_bytes(arrays), match="format")


def test_an_unexpected_extra_array_is_refused_naming_it(trained):
    net, opt, _ = trained
    arrays = arrays_of(net, opt)
    arrays["W9"] = np.zeros(3)
    assert refused(npz_bytes(arrays)) == "Unexpected arrays in the model file: W9."


def test_a_file_over_the_size_limit_is_refused_and_one_at_the_limit_loads(trained, tmp_path):
    net, opt, _ = trained
    data = network_bytes(net, opt)
    refused(data, max_bytes=len(data) - 1, match="limit")
    path = save_network(tmp_path / "m.npz", net, opt)
    refused(path, max_bytes=os.path.getsize(path) - 1, match="limit")
    np.testing.assert_array_equal(load_network(path, max_bytes=os.path.getsize(path))[0].params, net.params)
    np.testing.assert_array_equal(load_network(data, max_bytes=len(data))[0].params, net.params)


def test_huge_declared_architecture_is_refused_before_allocating(trained):
    """A tiny file may declare a gigantic network: that must fail fast, not allocate it."""
    net, opt, _ = trained
    arrays = arrays_of(net)
    arrays["sizes"] = np.array([10**9, 10**4, 10], np.int64)
    assert "needs (1000000000, 10000)" in refused(npz_bytes(arrays))   # checked against the file's W1 first


def test_compressed_bomb_is_refused(trained):
    """A compressed member that would expand far beyond the size limit is not inflated."""
    net, opt, _ = trained
    arrays = arrays_of(net, opt)
    arrays["metadata"] = np.array(json.dumps({"padding": "x" * 3_000_000}))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    data = buffer.getvalue()
    assert len(data) < 100_000
    refused(data, max_bytes=1_000_000, match="more than the 1 MB limit once unpacked")
    assert load_network(data)[2] == {"padding": "x" * 3_000_000}     # under the default limit it loads


# --- atomic save ----------------------------------------------------------------------------

def test_failed_save_leaves_nothing_behind(trained, tmp_path, monkeypatch):
    net, opt, _ = trained
    target = tmp_path / "model.npz"
    real_savez = np.savez

    def failing_savez(file, **arrays):
        file.write(b"PK\x03\x04 half of a file")       # something is written, then it breaks
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises((OSError, ModelFileError)):
        save_network(target, net, opt)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []

    # an existing good file survives a failed overwrite untouched
    monkeypatch.setattr(np, "savez", real_savez)
    save_network(target, net, opt)
    good = target.read_bytes()
    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises((OSError, ModelFileError)):
        save_network(target, net, opt)
    assert target.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]


def test_save_creates_folders_and_returns_the_path(trained, tmp_path):
    net, opt, _ = trained
    path = save_network(tmp_path / "a" / "b" / "m.npz", net, opt)
    assert path == str(tmp_path / "a" / "b" / "m.npz")
    assert [p.name for p in (tmp_path / "a" / "b").iterdir()] == ["m.npz"]   # no temporary file left
    loaded, loaded_opt, _ = load_network(path)
    assert loaded.describe() == net.describe()
    np.testing.assert_array_equal(loaded.params, net.params)
    assert loaded_opt.t == opt.t


def test_a_network_with_nan_weights_is_not_saved(trained, tmp_path):
    net, opt, _ = trained
    net.params[0] = np.nan
    with pytest.raises(ModelFileError, match="NaN or infinite weights"):
        save_network(tmp_path / "m.npz", net, opt)
    with pytest.raises(ModelFileError, match="NaN or infinite weights"):
        network_bytes(net, opt)
    assert list(tmp_path.iterdir()) == []
