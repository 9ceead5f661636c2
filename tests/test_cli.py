"""`python -m engine` run as a user would: real subprocesses, tiny data written to tmp_path."""
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from engine.data import make_synthetic_dataset
from engine.network import FAULTS, parameter_count

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 120  # a hang fails the test instead of blocking the suite
# One BLAS thread per process: the bad-input cases run several processes at once.
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def run(*args, check=None):
    """Run `python -m engine ARGS` from the project root; returns CompletedProcess."""
    done = subprocess.run([sys.executable, "-m", "engine", *map(str, args)], cwd=ROOT, env=ENV,
                          capture_output=True, timeout=TIMEOUT)
    # decode by hand: text=True would turn the progress bar's \r into \n
    done.stdout, done.stderr = done.stdout.decode(), done.stderr.decode()
    if check is not None:
        assert done.returncode == check, done.stderr
    return done


def json_lines(stdout):
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def assert_one_line_error(done):
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "error" in lines[0].lower()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny dataset (.npz), broken variants of it, digit images and a trained model."""
    d = tmp_path_factory.mktemp("cli")
    ds = make_synthetic_dataset(n_train=300, n_test=100, seed=0)
    arrays = dict(x_train=ds.x_train, y_train=ds.y_train, x_test=ds.x_test, y_test=ds.y_test)
    np.savez(d / "tiny.npz", **arrays)
    raw = (d / "tiny.npz").read_bytes()
    (d / "truncated.npz").write_bytes(raw[:len(raw) // 2])
    (d / "notzip.npz").write_text("this is not a zip archive\n")
    np.savez(d / "pickled.npz", **{**arrays, "x_train": np.array([object()] * 3, dtype=object)})
    (d / "pickle.pkl").write_bytes(pickle.dumps(arrays))
    canvas = Image.new("L", (200, 200), 0)
    ImageDraw.Draw(canvas).line([(100, 30), (95, 170)], fill=255, width=14)
    canvas.save(d / "stroke.png")
    Image.new("L", (200, 200), 0).save(d / "blank.png")
    (d / "broken.png").write_bytes(b"\x89PNG not really")
    return d


@pytest.fixture(scope="module")
def model(files):
    path = files / "model.npz"
    run("train", "--data", files / "tiny.npz", "--layers", "16", "--epochs", "2", "--batch-size", "30",
        "--save", path, "--json", check=0)
    return path


def test_train_with_json_prints_one_line_per_epoch_then_a_summary(files, tmp_path):
    done = run("train", "--data", files / "tiny.npz", "--layers", "16,8", "--epochs", "3", "--batch-size", "50",
               "--lr", "0.003", "--save", tmp_path / "m.npz", "--json", check=0)
    lines = json_lines(done.stdout)
    assert [l["event"] for l in lines] == ["epoch"] * 3 + ["end"]
    assert [l["epoch"] for l in lines[:3]] == [1, 2, 3]
    end = lines[-1]
    for key in ("test_accuracy", "epoch_seconds", "train_loss", "parameters", "reason"):
        assert key in end
    assert len(end["epoch_seconds"]) == len(end["train_loss"]) == 3
    assert end["parameters"] == parameter_count([784, 16, 8, 10])
    assert 0 <= end["test_accuracy"] <= 1 and end["reason"] == "completed"
    assert end["train_loss"][-1] < end["train_loss"][0]
    assert lines[0]["val_loss"] is None  # no validation split: null, not NaN
    assert all(s > 0 for s in end["epoch_seconds"])
    assert [l["loss"] for l in lines[:3]] == pytest.approx(end["train_loss"])
    # the reported test accuracy is the saved network's, measured again here
    from engine import evaluate, load_network
    network = load_network(tmp_path / "m.npz")[0]
    with np.load(files / "tiny.npz") as d:
        assert evaluate(network, d["x_test"], d["y_test"])[1] == pytest.approx(end["test_accuracy"], abs=1e-6)


def test_train_text_has_progress_bar_and_keras_like_lines(files):
    done = run("train", "--data", files / "tiny.npz", "--layers", "8", "--epochs", "2", "--batch-size", "50",
               "--val-split", "0.2", "--progress", "always", check=0)
    epoch_lines = [l for l in done.stdout.splitlines() if l.startswith("Epoch ")]
    assert len(epoch_lines) == 2
    assert epoch_lines[1].startswith("Epoch 2/2 - ")
    for key in ("s - loss: ", " - accuracy: ", " - val_loss: ", " - val_accuracy: "):
        assert key in epoch_lines[0]
    assert "\rEpoch 1/2 [" in done.stderr and "] 5/5 - loss: " in done.stderr and "Traceback" not in done.stderr
    assert "Test accuracy:" in done.stdout


def test_train_applies_a_preset_and_the_options_given_on_top_of_it(files, tmp_path):
    done = run("train", "--preset", "notebook", "--data", files / "tiny.npz", "--epochs", "1",
               "--batch-size", "50", "--json", check=0)
    end = json_lines(done.stdout)[-1]
    assert end["parameters"] == parameter_count([784, 64, 32, 10], use_bias=False)
    assert end["settings"]["dtype"] == "float64" and end["description"].endswith("no biases, float64")
    done = run("train", "--preset", "recommended", "--data", files / "tiny.npz", "--layers", "16", "--epochs", "3",
               "--batch-size", "40", "--lr", "0.001", "--augment", "--schedule", "step", "--step-epochs", "1", "--warmup", "0",
               "--max-norm", "2", "--val-split", "0.2", "--early-stopping", "5", "--json", check=0)
    lines = json_lines(done.stdout)
    settings = lines[-1]["settings"]
    assert settings["augment"] and settings["schedule"] == "step" and settings["max_norm"] == 2.0
    assert [l["lr"] for l in lines[:3]] == pytest.approx([0.001, 0.0005, 0.00025])
    assert all(l["val_loss"] is not None for l in lines[:3])


def test_gradcheck_of_a_correct_network_passes_in_every_layer(files):
    done = run("gradcheck", "--layers", "8,6", "--samples", "4", "--dtype", "float64", "--json", check=0)
    result = json_lines(done.stdout)[-1]
    assert result["passed"] is True and result["max_relative_error"] < 1e-6
    assert [l["name"] for l in result["layers"]] == ["W1", "b1", "W2", "b2", "W3", "b3"]
    assert [l["shape"] for l in result["layers"]] == [[784, 8], [8], [8, 6], [6], [6, 10], [10]]
    for layer in result["layers"]:
        assert layer["checked"] > 0 and layer["max_relative_error"] < 1e-6, layer
        assert 0 <= layer["mean_relative_error"] <= layer["max_relative_error"]
    assert result["max_relative_error"] == max(l["max_relative_error"] for l in result["layers"])


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_gradcheck_fails_with_a_deliberate_fault(fault):
    done = run("gradcheck", "--layers", "8", "--samples", "4", "--keep-prob", "0.7", "--entries", "40",
               "--break", fault, "--json")
    assert done.returncode == 1, done.stderr
    result = json_lines(done.stdout)[-1]
    assert result["passed"] is False and result["fault"] == fault
    assert "Traceback" not in done.stderr


def test_predict_gives_the_models_digit_for_a_stroke_and_blank_for_a_blank(files, model):
    done = run("predict", "--model", model, "--json", files / "stroke.png", files / "blank.png", check=0)
    stroke, blank = json_lines(done.stdout)
    assert stroke["path"].endswith("stroke.png") and stroke["digit"] in range(10)
    assert len(stroke["probabilities"]) == 10 and sum(stroke["probabilities"]) == pytest.approx(1, abs=1e-4)
    assert stroke["digit"] == int(np.argmax(stroke["probabilities"]))
    assert blank["digit"] is None and blank["probabilities"] is None and blank["reason"]
    # the same model and image, in this process: the same digit and probabilities
    from engine.persistence import load_network
    from engine.preprocess import prepare_digit
    network = load_network(model)[0]
    expected = network.predict_proba(prepare_digit((files / "stroke.png").read_bytes()).digit.reshape(1, -1))[0]
    assert stroke["digit"] == int(expected.argmax())
    assert stroke["probabilities"] == pytest.approx(expected.tolist(), abs=1e-6)
    assert prepare_digit((files / "blank.png").read_bytes()).reason == blank["reason"]
    text = run("predict", "--model", model, files / "stroke.png", files / "blank.png", check=0).stdout
    assert f"stroke.png: {stroke['digit']}" in text and "blank.png: blank" in text


def test_predict_bad_image_exits_nonzero_but_reports_the_others(files, model):
    done = run("predict", "--model", model, "--json", files / "broken.png", files / "stroke.png")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    broken, stroke = json_lines(done.stdout)
    assert broken["digit"] is None and "PNG or JPEG" in broken["error"] and stroke["digit"] in range(10)
    assert "broken.png" in done.stderr and broken["error"] in done.stderr


def test_bench_without_keras_times_the_engine_alone():
    done = run("bench", "--layers", "16", "--samples", "400", "--epochs", "2", "--vs", "none", "--json", check=0)
    result = json_lines(done.stdout)[-1]
    assert len(result["engine_seconds"]) == 2 and result["engine_median_seconds"] > 0
    assert result["ratio"] is None and result["samples"] == 400 and result["architecture"] == "784-16-10"


def test_bench_against_keras_reports_the_speed_ratio_and_equal_starts():
    pytest.importorskip("tensorflow")
    done = run("bench", "--layers", "16", "--samples", "300", "--epochs", "2", "--json", check=0)
    result = json_lines(done.stdout)[-1]
    assert len(result["keras_seconds"]) == 2 and result["ratio"] > 0
    assert result["ratio"] == pytest.approx(result["engine_median_seconds"] / result["keras_median_seconds"])
    assert result["max_abs_diff_init"] < 1e-5


def test_info_with_json_prints_every_environment_fact():
    from engine.info import KEYS
    info = json_lines(run("info", "--json", check=0).stdout)[-1]
    assert set(info) == set(KEYS)
    assert info["numpy"] == np.__version__ and info["tensorflow"] is None
    import platform
    from engine.data import keras_cache_dir
    assert info["python"] == platform.python_version() and info["cpu_count"] == os.cpu_count()
    assert info["dataset"]["keras_cache_dir"] == str(keras_cache_dir())      # the same KERAS_HOME
    assert "Digit Lab environment" in run("info", check=0).stdout


BAD = {
    "layers 0": ["train", "--layers", "0"],
    "layers -3": ["train", "--layers", "-3"],
    "layers abc": ["train", "--layers", "abc"],
    "layers huge": ["train", "--layers", "99999999"],
    "layers too many": ["train", "--layers", ",".join(["4"] * 40)],
    "network beyond memory": ["train", "--layers", ",".join(["16384"] * 30)],
    "lr 0": ["train", "--lr", "0"],
    "lr -1": ["train", "--lr", "-1"],
    "lr nan": ["train", "--lr", "nan"],
    "lr inf": ["train", "--lr", "inf"],
    "lr text": ["train", "--lr", "fast"],
    "batch 0": ["train", "--batch-size", "0"],
    "batch > data": ["train", "--batch-size", "100000"],
    "keep 0": ["train", "--keep-prob", "0"],
    "keep 1.5": ["train", "--keep-prob", "1.5"],
    "epochs 0": ["train", "--epochs", "0"],
    "val split 1": ["train", "--val-split", "1"],
    "early stop without val": ["train", "--early-stopping", "3"],
    "seed -1": ["train", "--seed", "-1"],
    "unknown preset": ["train", "--preset", "fastest"],
    "missing data": ["train", "--data", "{d}/missing.npz"],
    "truncated data": ["train", "--data", "{d}/truncated.npz"],
    "not a zip": ["train", "--data", "{d}/notzip.npz"],
    "pickled arrays": ["train", "--data", "{d}/pickled.npz"],
    "a pickle file": ["train", "--data", "{d}/pickle.pkl"],
    "save into a file path": ["train", "--epochs", "1", "--save", "{d}/tiny.npz/model.npz"],
    "gradcheck samples 0": ["gradcheck", "--samples", "0"],
    "gradcheck keep 0": ["gradcheck", "--keep-prob", "0", "--layers", "4"],
    "gradcheck unknown fault": ["gradcheck", "--break", "everything"],
    "predict missing model": ["predict", "--model", "{d}/none.npz", "{d}/stroke.png"],
    "predict data file as model": ["predict", "--model", "{d}/tiny.npz", "{d}/stroke.png"],
    "predict no images": ["predict", "--model", "{d}/tiny.npz"],
    "bench batch 0": ["bench", "--batch-size", "0", "--vs", "none", "--samples", "100"],
    "bench samples 0": ["bench", "--samples", "0", "--vs", "none"],
    "unknown command": ["fly"],
    "no command": [],
}
# What each one-line error must say: the problem, in the user's terms.
BAD_SAYS = {
    "layers 0": "Layer width must be at least 1, got 0",
    "layers -3": "Layer width must be at least 1, got -3",
    "layers abc": "'abc' is not a whole number",
    "layers huge": "99999999 is above the limit",
    "layers too many": "At most 32 hidden layers",
    "network beyond memory": "budget",
    "lr 0": "Learning rate must be a finite number greater than zero, got 0.0",
    "lr -1": "Learning rate must be a finite number greater than zero, got -1.0",
    "lr nan": "Learning rate must be a finite number greater than zero, got nan",
    "lr inf": "Learning rate must be a finite number greater than zero, got inf",
    "lr text": "--lr: invalid float value: 'fast'",
    "batch 0": "Batch size must be a whole number of at least 1, got 0",
    "batch > data": "larger than the 300 training samples",
    "keep 0": "keep-probability must be in (0, 1], got 0.0",
    "keep 1.5": "keep-probability must be in (0, 1], got 1.5",
    "epochs 0": "Epochs must be a whole number of at least 1, got 0",
    "val split 1": "Validation split must be in [0, 1), got 1.0",
    "early stop without val": "set a validation split above 0",
    "seed -1": "Seed must be 0 or more, got -1",
    "unknown preset": "invalid choice: 'fastest'",
    "missing data": "missing.npz does not exist",
    "truncated data": "truncated.npz is damaged or truncated",
    "not a zip": "notzip.npz is not an .npz file",
    "pickled arrays": "pickled Python objects",
    "a pickle file": "pickle.pkl is not an .npz file",
    "save into a file path": "tiny.npz",
    "gradcheck samples 0": "--samples must be between 1 and 512, got 0",
    "gradcheck keep 0": "--keep-prob must be in (0, 1], got 0.0",
    "gradcheck unknown fault": "invalid choice: 'everything'",
    "predict missing model": "No model file at",
    "predict data file as model": "Not a Digit Lab model",
    "predict no images": "the following arguments are required: IMAGE",
    "bench batch 0": "Batch size must be a whole number of at least 1, got 0",
    "bench samples 0": "--samples must be between 1 and 1,000,000, got 0",
    "unknown command": "invalid choice: 'fly'",
    "no command": "the following arguments are required",
}


@pytest.fixture(scope="module")
def bad_results(files):
    """Run every bad invocation at once (each is a separate process) and collect the results."""
    procs = {}
    for name, args in BAD.items():
        args = [a.format(d=files) for a in args]
        if args and args[0] == "train" and "--data" not in args:
            args += ["--data", str(files / "tiny.npz")]
        procs[name] = subprocess.Popen([sys.executable, "-m", "engine", *args], cwd=ROOT, env=ENV,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = {}
    for name, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            err = "HANG " + err
        results[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return results


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_fails_with_one_line_naming_the_problem(bad_results, case):
    done = bad_results[case]
    assert not done.stderr.startswith("HANG")
    assert_one_line_error(done)
    if case.startswith(("unknown command", "no command", "lr text", "gradcheck unknown", "predict no images",
                        "unknown preset")):
        assert done.returncode == 2  # usage errors, from argparse
    assert len(done.stderr) < 500
    assert BAD_SAYS[case] in done.stderr, done.stderr
