"""Tests for engine.data: every format, every fallback, every broken file."""

import gzip
import io
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import data
from engine.data import (
    Dataset, describe, load_dataset, load_fashion_mnist, load_mnist,
    load_npz_bytes, make_synthetic_dataset, one_hot, scale_images, write_idx,
)
from engine.errors import DatasetError

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "mnist-sample.npz"  # the sample that ships with Digit Lab


@pytest.fixture(scope="module")
def small():
    return make_synthetic_dataset(n_train=30, n_test=10, seed=1)


def arrays_of(ds, **overrides):
    arrays = {k: np.array(getattr(ds, k)) for k in data.KEYS}
    arrays.update(overrides)
    return arrays


def save_npz(path, arrays, compressed=False):
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path


def npz_bytes(arrays, compressed=False):
    buf = io.BytesIO()
    save_npz(buf, arrays, compressed)
    return buf.getvalue()


@pytest.fixture
def no_defaults(monkeypatch, tmp_path):
    """No env vars, an empty Keras home, no Debian package, and a Keras that is offline."""
    monkeypatch.delenv("MNIST_PATH", raising=False)
    monkeypatch.delenv("FASHION_MNIST_PATH", raising=False)
    home = tmp_path / "keras_home"
    home.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.setattr(data, "DEBIAN_FASHION_DIR", tmp_path / "no-debian")
    monkeypatch.setattr(data, "BUNDLED_SAMPLE", tmp_path / "no-bundled-sample.npz")
    monkeypatch.setattr(data, "_download_host_resolves", lambda: True)  # the fake Keras answers
    install_fake_keras(monkeypatch, error=Exception("URL fetch failure on https://example: None -- [Errno -3]"))
    return home


def install_fake_keras(monkeypatch, error=None, result=None):
    """Replace `keras` by a stub, so tests never import TensorFlow or go online."""
    def load_data():
        if error is not None:
            raise error
        return result

    fake = types.ModuleType("keras")
    fake.datasets = types.SimpleNamespace(
        mnist=types.SimpleNamespace(load_data=load_data),
        fashion_mnist=types.SimpleNamespace(load_data=load_data),
    )
    monkeypatch.setitem(sys.modules, "keras", fake)


# ---------------------------------------------------------------- good files

def test_an_npz_saved_and_loaded_gives_back_the_same_arrays(tmp_path, small):
    path = save_npz(tmp_path / "mnist.npz", arrays_of(small))
    ds = load_mnist(path)
    for key in data.KEYS:
        assert np.array_equal(getattr(ds, key), getattr(small, key))
        assert getattr(ds, key).dtype == np.uint8
    assert ds.x_train.shape == (30, 28, 28)
    assert ds.name == "MNIST" and ds.class_names == tuple("0123456789")
    assert str(path) in ds.source and "npz" in ds.source
    assert "CC BY-SA" in ds.licence
    assert ds.num_classes == 10


def test_arrays_are_read_only(tmp_path, small):
    ds = load_mnist(save_npz(tmp_path / "m.npz", arrays_of(small), compressed=True))
    with pytest.raises(ValueError):
        ds.x_train[0, 0, 0] = 1
    with pytest.raises(ValueError):
        ds.y_test[0] = 1


def test_flat_images_and_wide_int_labels_are_accepted(tmp_path, small):
    arrays = arrays_of(small, x_train=small.x_train.reshape(30, 784),
                       y_train=small.y_train.astype(np.int64),
                       y_test=small.y_test.astype(np.int32))
    ds = load_mnist(save_npz(tmp_path / "m.npz", arrays))
    assert ds.x_train.shape == (30, 28, 28)
    assert ds.y_train.dtype == np.uint8 and ds.y_test.dtype == np.uint8
    assert np.array_equal(ds.y_train, small.y_train)


@pytest.mark.parametrize("gz", [True, False])
def test_a_folder_of_idx_files_gzipped_or_not_loads_the_same_arrays(tmp_path, small, gz):
    write_idx(tmp_path, small, gzip=gz)
    ds = load_mnist(tmp_path)
    assert np.array_equal(ds.x_test, small.x_test)
    assert np.array_equal(ds.y_train, small.y_train)
    assert "IDX" in ds.source


def test_idx_files_spelled_with_dots_are_found_and_loaded(tmp_path, small):
    for path in write_idx(tmp_path, small, gzip=True):
        path.rename(path.with_name(path.name.replace("-idx", ".idx")))
    assert sorted(p.name for p in tmp_path.iterdir())[0] == "t10k-images.idx3-ubyte.gz"
    assert np.array_equal(load_mnist(tmp_path).x_train, small.x_train)


def test_load_dataset_picks_the_loader_and_class_names_by_name(tmp_path, small):
    path = save_npz(tmp_path / "f.npz", arrays_of(small))
    ds = load_dataset(path, name="fashion-mnist")
    assert ds.name == "Fashion-MNIST"
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    assert "MIT" in ds.licence
    assert load_dataset(path, name="MNIST").name == "MNIST"
    assert load_dataset(name="synthetic").name == "Synthetic digits"
    with pytest.raises(DatasetError, match="Unknown dataset"):
        load_dataset(path, name="cifar")


def test_an_npz_given_as_bytes_loads_read_only_under_the_name_asked_for(small):
    ds = load_npz_bytes(npz_bytes(arrays_of(small), compressed=True), name="Fashion-MNIST")
    assert ds.name == "Fashion-MNIST"
    assert np.array_equal(ds.x_train, small.x_train)
    assert not ds.x_train.flags.writeable


def test_an_upload_over_the_size_limit_or_not_bytes_is_refused(small):
    blob = npz_bytes(arrays_of(small))
    with pytest.raises(DatasetError, match="limit"):
        load_npz_bytes(blob, max_bytes=len(blob) - 1)
    with pytest.raises(DatasetError, match="bytes"):
        load_npz_bytes("not bytes")


# ---------------------------------------------------------------- broken files

def broken_npz_cases(small):
    """(name, arrays to save, words the message must contain)."""
    x, y = small.x_train, small.y_train
    return [
        ("missing key", {k: v for k, v in arrays_of(small).items() if k != "y_test"}, ["y_test", "x_train, y_train, x_test"]),
        ("wrong shape", arrays_of(small, x_train=np.zeros((30, 28, 27), np.uint8)), ["shape", "(N, 28, 28)"]),
        ("1-D images", arrays_of(small, x_test=np.zeros(10, np.uint8)), ["shape"]),
        ("float images", arrays_of(small, x_train=x.astype(np.float32) / 255), ["float32", "uint8"]),
        ("float labels", arrays_of(small, y_train=y.astype(np.float64)), ["integers"]),
        ("label 10", arrays_of(small, y_test=np.full(10, 10, np.uint8)), ["outside 0-9"]),
        ("negative label", arrays_of(small, y_train=np.full(30, -1, np.int8)), ["outside 0-9"]),
        ("2-D labels", arrays_of(small, y_train=one_hot(y)), ["1-D"]),
        ("empty images", arrays_of(small, x_test=np.zeros((0, 28, 28), np.uint8)), ["empty"]),
        ("empty labels", arrays_of(small, x_test=np.zeros((0, 28, 28), np.uint8),
                                   y_test=np.zeros(0, np.uint8)), ["empty"]),
        ("length mismatch", arrays_of(small, y_train=y[:29]), ["30 images", "29 labels"]),
        ("pickled objects", arrays_of(small, y_train=np.array([1, "a"] * 15, dtype=object)), ["pickled", "np.savez"]),
    ]


@pytest.mark.parametrize("index", range(12))
def test_a_broken_npz_is_refused_with_words_naming_the_problem(tmp_path, small, index):
    name, arrays, words = broken_npz_cases(small)[index]
    path = save_npz(tmp_path / "bad.npz", arrays)
    for load in (lambda: load_mnist(path), lambda: load_npz_bytes(path.read_bytes())):
        with pytest.raises(DatasetError) as info:
            load()
        for word in words:
            assert word in str(info.value), (name, str(info.value))


def test_a_path_that_does_not_exist_is_refused_saying_so(tmp_path):
    with pytest.raises(DatasetError, match="does not exist.*npz"):
        load_mnist(tmp_path / "nope.npz")


def test_an_empty_file_is_refused_as_empty(tmp_path):
    (tmp_path / "e.npz").write_bytes(b"")
    with pytest.raises(DatasetError, match="empty"):
        load_mnist(tmp_path / "e.npz")


def test_a_text_file_is_refused_as_not_an_npz_with_how_to_save_one(tmp_path):
    (tmp_path / "t.npz").write_text("x_train,y_train\n1,2\n")
    with pytest.raises(DatasetError, match="not an .npz.*np.savez"):
        load_mnist(tmp_path / "t.npz")


def test_a_single_npy_array_is_refused_as_such(tmp_path, small):
    np.save(tmp_path / "x.npy", small.x_train)
    with pytest.raises(DatasetError, match="single .npy"):
        load_mnist(tmp_path / "x.npy")


@pytest.mark.parametrize("compressed", [True, False])
def test_a_truncated_npz_is_refused_as_damaged_or_truncated(tmp_path, small, compressed):
    blob = npz_bytes(arrays_of(small), compressed)
    (tmp_path / "cut.npz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DatasetError, match="damaged or truncated"):
        load_mnist(tmp_path / "cut.npz")


def test_an_idx_file_with_the_wrong_magic_number_is_refused_with_the_reason(tmp_path, small):
    write_idx(tmp_path, small, gzip=False)
    path = tmp_path / "train-labels-idx1-ubyte"
    raw = bytearray(path.read_bytes())
    raw[2] = 0x0D  # float32 instead of unsigned byte
    path.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match="magic number 0x00000d01"):
        load_mnist(tmp_path)


def test_an_image_file_in_place_of_the_labels_is_refused_as_not_a_label_file(tmp_path, small):
    write_idx(tmp_path, small, gzip=False)
    (tmp_path / "train-images-idx3-ubyte").replace(tmp_path / "train-labels-idx1-ubyte")
    write_idx(tmp_path / "x", small, gzip=False)
    (tmp_path / "x/train-images-idx3-ubyte").replace(tmp_path / "train-images-idx3-ubyte")
    with pytest.raises(DatasetError, match="not an MNIST label file"):
        load_mnist(tmp_path)


@pytest.mark.parametrize("keep", [3, 100])
def test_a_truncated_idx_file_is_refused_as_truncated(tmp_path, small, keep):
    write_idx(tmp_path, small, gzip=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(DatasetError, match="truncated"):
        load_mnist(tmp_path)


def test_a_truncated_gzipped_idx_file_is_refused_as_damaged(tmp_path, small):
    write_idx(tmp_path, small, gzip=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DatasetError, match="damaged or truncated"):
        load_mnist(tmp_path)


def test_a_gz_idx_file_that_is_not_gzip_is_refused_as_damaged(tmp_path, small):
    write_idx(tmp_path, small, gzip=True)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"hello, not gzip")
    with pytest.raises(DatasetError, match="damaged"):
        load_mnist(tmp_path)


def test_a_folder_lacking_one_idx_file_is_refused_asking_for_all_four(tmp_path, small):
    write_idx(tmp_path, small)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match="four IDX files"):
        load_mnist(tmp_path)


def test_a_single_idx_file_is_refused_asking_for_its_folder(tmp_path, small):
    write_idx(tmp_path, small, gzip=False)
    with pytest.raises(DatasetError, match="single IDX file"):
        load_mnist(tmp_path / "train-images-idx3-ubyte")


# ---------------------------------------------------------------- defaults and Keras

def test_mnist_path_is_loaded_and_a_wrong_one_is_reported_by_name(monkeypatch, tmp_path, small, no_defaults):
    path = save_npz(tmp_path / "env.npz", arrays_of(small))
    monkeypatch.setenv("MNIST_PATH", str(path))
    ds = load_mnist()
    assert str(path) in ds.source and "MNIST_PATH" in ds.source
    for key in data.KEYS:
        assert np.array_equal(getattr(ds, key), getattr(small, key))
    monkeypatch.setenv("MNIST_PATH", str(tmp_path / "gone.npz"))
    with pytest.raises(DatasetError, match="MNIST_PATH"):
        load_mnist()


def test_keras_cache_is_read_without_keras(monkeypatch, small, no_defaults):
    (no_defaults / "datasets").mkdir()
    save_npz(no_defaults / "datasets/mnist.npz", arrays_of(small))
    monkeypatch.setitem(sys.modules, "keras", None)  # importing keras would fail
    ds = load_mnist()
    assert "Keras cache" in ds.source
    assert np.array_equal(ds.x_train, small.x_train)


def test_offline_without_a_cache_the_error_names_every_remedy(no_defaults):
    with pytest.raises(DatasetError) as info:
        load_mnist()
    message = str(info.value)
    for word in ("No MNIST data found", "URL fetch failure", "MNIST_PATH", "upload", "online"):
        assert word in message


def test_offline_falls_back_to_the_bundled_sample(monkeypatch, no_defaults):
    monkeypatch.setattr(data, "BUNDLED_SAMPLE", ROOT / "data" / "mnist-sample.npz")
    ds = load_mnist()
    assert ds.name == data.BUNDLED_NAME and "ships with Digit Lab" in ds.source
    assert (len(ds.y_train), len(ds.y_test)) == (4000, 1000)
    assert np.bincount(ds.y_test, minlength=10).tolist() == [100] * 10  # real, balanced digits
    assert "URL fetch failure" in ds.fallback  # it says why full MNIST is not used
    with pytest.raises(DatasetError, match="No MNIST data found"):
        load_mnist(fallback=False)


def test_an_explicit_path_that_fails_is_never_replaced_by_the_sample(monkeypatch, tmp_path, no_defaults):
    monkeypatch.setattr(data, "BUNDLED_SAMPLE", ROOT / "data" / "mnist-sample.npz")
    monkeypatch.setenv("MNIST_PATH", str(tmp_path / "gone.npz"))
    with pytest.raises(DatasetError, match="MNIST_PATH"):
        load_mnist()


def test_offline_machines_do_not_import_keras(monkeypatch, no_defaults):
    monkeypatch.setattr(data, "_download_host_resolves", lambda: False)
    monkeypatch.setitem(sys.modules, "keras", None)  # an import would raise ImportError
    with pytest.raises(DatasetError, match="offline.*MNIST_PATH"):
        load_mnist()


def test_without_keras_the_error_says_so_and_names_mnist_path(monkeypatch, no_defaults):
    monkeypatch.setitem(sys.modules, "keras", None)
    with pytest.raises(DatasetError, match="Keras is unavailable.*MNIST_PATH"):
        load_mnist()


def test_a_keras_download_is_loaded_with_its_labels_made_uint8(monkeypatch, small, no_defaults):
    result = ((small.x_train, small.y_train.astype(np.int64)), (small.x_test, small.y_test))
    install_fake_keras(monkeypatch, result=result)
    ds = load_mnist()
    assert "downloaded by Keras" in ds.source
    assert ds.y_train.dtype == np.uint8
    for key in data.KEYS:
        assert np.array_equal(getattr(ds, key), getattr(small, key))


def test_fashion_mnist_offline_is_refused_naming_fashion_mnist_path(no_defaults):
    with pytest.raises(DatasetError, match="No Fashion-MNIST data found.*FASHION_MNIST_PATH"):
        load_fashion_mnist()


def test_fashion_mnist_is_read_from_the_keras_cache_folder(small, no_defaults):
    write_idx(no_defaults / "datasets/fashion-mnist", small)
    ds = load_fashion_mnist()
    assert ds.name == "Fashion-MNIST" and "Keras cache" in ds.source
    assert ds.class_names == data.FASHION_CLASS_NAMES
    for key in data.KEYS:
        assert np.array_equal(getattr(ds, key), getattr(small, key))


def test_fashion_mnist_path_is_where_fashion_mnist_is_loaded_from(monkeypatch, tmp_path, small, no_defaults):
    write_idx(tmp_path / "fm", small)
    monkeypatch.setenv("FASHION_MNIST_PATH", str(tmp_path / "fm"))
    ds = load_fashion_mnist()
    assert ds.name == "Fashion-MNIST"
    assert str(tmp_path / "fm") in ds.source and "FASHION_MNIST_PATH" in ds.source
    for key in data.KEYS:
        assert np.array_equal(getattr(ds, key), getattr(small, key))


@pytest.mark.skipif(not data.DEBIAN_FASHION_DIR.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_the_debian_fashion_mnist_package_is_found_and_complete(monkeypatch):
    monkeypatch.delenv("FASHION_MNIST_PATH", raising=False)
    ds = load_fashion_mnist()
    info = describe(ds)
    assert (info["n_train"], info["n_test"]) == (60000, 10000)
    assert info["train_class_counts"] == [6000] * 10
    assert "dataset-fashion-mnist" in ds.source


# ---------------------------------------------------------------- the real sample

def test_the_bundled_sample_holds_4000_train_and_1000_test_balanced_digits():
    if not SAMPLE.is_file():
        pytest.skip(f"{SAMPLE} not present")
    ds = load_mnist(SAMPLE)
    info = describe(ds)
    assert (info["n_train"], info["n_test"]) == (4000, 1000)
    assert info["train_class_counts"] == [400] * 10
    assert info["test_class_counts"] == [100] * 10
    assert ds.x_train.max() == 255 and ds.x_train.min() == 0


# ---------------------------------------------------------------- helpers

def test_one_hot_puts_a_single_one_in_each_rows_label_column():
    out = one_hot(np.array([0, 3, 9], np.uint8))
    assert out.dtype == np.float32 and out.shape == (3, 10)
    assert np.array_equal(out.argmax(1), [0, 3, 9]) and out.sum() == 3
    assert np.array_equal(out, np.eye(10)[[0, 3, 9]])
    assert one_hot(np.array([2, 0]), num_classes=3, dtype=np.float64).tolist() == [[0, 0, 1], [1, 0, 0]]
    assert one_hot(np.zeros(0, np.uint8)).shape == (0, 10)
    for bad in ([10], [-1]):
        with pytest.raises(ValueError, match="0..9"):
            one_hot(bad)


def test_scale_images_gives_one_float_row_per_image_in_the_unit_range(small):
    batch = scale_images(small.x_train)
    assert batch.shape == (30, 784) and batch.dtype == np.float32
    assert 0 <= batch.min() and batch.max() == pytest.approx(1.0)
    assert scale_images(small.x_train[0]).shape == (1, 784)
    assert scale_images(small.x_train, dtype=np.float64).dtype == np.float64
    assert np.allclose(batch, small.x_train.reshape(30, 784) / 255, atol=1e-7)


def test_describe_counts_the_samples_of_each_class_as_plain_ints(small):
    info = describe(small)
    assert info["name"] == "Synthetic digits"
    assert info["train_class_counts"] == [3] * 10 and info["test_class_counts"] == [1] * 10
    assert all(type(c) is int for c in info["train_class_counts"])
    assert (info["n_train"], info["n_test"]) == (30, 10) and type(info["n_train"]) is int
    assert info["class_names"] == list("0123456789") and info["source"] == small.source
    # counted independently of np.bincount, on a dataset whose classes are not balanced
    ds = Dataset(small.x_train[:7], small.y_train[:7].copy(), small.x_test, small.y_test, source="seven",
                 name="Fashion-MNIST", class_names=data.FASHION_CLASS_NAMES)
    labels = small.y_train[:7].tolist()
    assert describe(ds)["train_class_counts"] == [labels.count(c) for c in range(10)]
    assert describe(ds)["class_names"][9] == "Ankle boot" and describe(ds)["n_train"] == 7


def test_synthetic_is_deterministic_balanced_and_learnable():
    a, b = make_synthetic_dataset(seed=3), make_synthetic_dataset(seed=3)
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.x_train, make_synthetic_dataset(seed=4).x_train)
    assert isinstance(a, Dataset) and a.x_train.dtype == np.uint8 and a.x_train.shape == (600, 28, 28)
    assert np.bincount(a.y_train).tolist() == [60] * 10
    # Even a nearest-class-mean classifier does far better than chance (10%).
    x, xt = scale_images(a.x_train), scale_images(a.x_test)
    means = np.stack([x[a.y_train == c].mean(0) for c in range(10)])
    guess = ((xt[:, None] - means[None]) ** 2).sum(-1).argmin(1)
    assert (guess == a.y_test).mean() > 0.6


# ---------------------------------------------------------------- fuzzing

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TINY = make_synthetic_dataset(n_train=3, n_test=2, seed=2)
VALID = [npz_bytes(arrays_of(TINY)), npz_bytes(arrays_of(TINY), compressed=True)]


def load_or_refuse(blob):
    try:
        ds = load_npz_bytes(blob)
    except DatasetError:
        return
    assert ds.x_train.dtype == np.uint8 and ds.x_train.shape[1:] == (28, 28)
    assert len(ds.x_train) == len(ds.y_train) and ds.y_train.max() <= 9


@FUZZ
@given(st.binary(max_size=3000))
def test_random_bytes_load_as_a_valid_dataset_or_are_refused(blob):
    load_or_refuse(blob)


@FUZZ
@given(st.sampled_from(VALID), st.data())
def test_a_damaged_npz_loads_as_a_valid_dataset_or_is_refused(blob, draw):
    blob = bytearray(blob)
    for _ in range(draw.draw(st.integers(1, 8))):
        blob[draw.draw(st.integers(0, len(blob) - 1))] = draw.draw(st.integers(0, 255))
    cut = draw.draw(st.integers(1, len(blob)))
    load_or_refuse(bytes(blob[:cut]))


def test_write_idx_with_gzip_writes_real_gzip_files(tmp_path, small):
    # write_idx has a `gzip` parameter; the files must still really be gzip.
    write_idx(tmp_path, small, gzip=True)
    with gzip.open(tmp_path / "train-labels-idx1-ubyte.gz") as f:
        assert f.read(4) == b"\x00\x00\x08\x01"
        assert int.from_bytes(f.read(4), "big") == 30          # the label count, then the labels
        assert f.read() == small.y_train.tobytes()
    assert (tmp_path / "train-labels-idx1-ubyte.gz").read_bytes()[:2] == b"\x1f\x8b"   # gzip's own magic
