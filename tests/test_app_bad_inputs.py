"""AppTest: bad values on every page give a clear message, never a traceback, and lose nothing.

The matrix follows issue 7. Number inputs whose bounds forbid a value (negative widths, a
learning rate below 0...) cannot be set through AppTest (it raises, as the browser refuses
them); those values are covered at the engine level. Everything a widget allows is tried here.
"""
import io

import numpy as np
import pytest

from app_support import (  # noqa: F401  (fixtures are used by name)
    apps, assert_clean, build_network, data_path, env, goto, joined, lab, png_bytes, set_train, values,
)


def snapshot(at):
    net = lab(at).network
    return net, net.params.copy(), net.epochs_trained


def assert_unchanged(at, before, where):
    net, params, epochs = before
    assert lab(at).network is net, f"{where}: the network was replaced"
    assert np.array_equal(net.params, params) and net.epochs_trained == epochs, f"{where}: weights changed"


# ------------------------------------------------------------------------------- Build

BAD_LAYERS = {
    "0": "at least 1",
    "-3": "at least 1",
    "abc": "not a whole number",
    "16, x": "not a whole number",
    "99999999": "above the limit",
    "1.5": "not a whole number",
    "16000, 16000, 16000": "budget",  # each width allowed, the whole too big: memory guard
}


def test_bad_layer_widths_or_keep_prob_on_build_are_refused_keeping_the_network(apps):
    at = apps.new()
    build_network(at, layers="16")
    before = snapshot(at)
    for text, message in BAD_LAYERS.items():
        at.text_input(key="b_hidden").set_value(text).run()
        assert_clean(at, f"Build, layers {text!r}")
        assert message in joined(at.error), f"layers {text!r}: {values(at.error)}"
        assert at.button(key="create_network").disabled, f"layers {text!r}: Create still enabled"
        assert_unchanged(at, before, f"layers {text!r}")

    # a missing width is refused, never silently read as 64, 32 (issue 13); spaces are fine
    for text in ("64,,32", "64,", ",64"):
        at.text_input(key="b_hidden").set_value(text).run()
        assert "comma with no layer width" in joined(at.error), f"{text!r}: {values(at.error)}"
        assert at.button(key="create_network").disabled
    at.text_input(key="b_hidden").set_value(" 64 ,32 ").run()
    assert not at.error, values(at.error)
    assert any("784-64-32-10" in m.value for m in at.markdown)
    # no hidden layer at all is allowed (softmax regression)
    at.text_input(key="b_hidden").set_value("").run()
    assert not at.error and any("`784-10`" in m.value for m in at.markdown)

    at.text_input(key="b_hidden").set_value("16").run()
    at.number_input(key="b_keep_prob").set_value(0.0).run()
    assert_clean(at, "Build, keep-prob 0")
    assert "keep-probability must be above 0" in joined(at.error)
    assert at.button(key="create_network").disabled
    assert_unchanged(at, before, "keep-prob 0")

    at.number_input(key="b_keep_prob").set_value(0.5).run()
    assert not at.error
    at.button(key="create_network").click().run()
    assert lab(at).network is not before[0], "a good value builds again"


# ------------------------------------------------------------------------------- Train

BAD_TRAIN = [
    ({"lr": 0.0}, "Learning rate must be a finite number greater than zero"),
    ({"lr": float("nan")}, "Learning rate must be a finite number"),
    ({"lr": float("inf")}, "Learning rate must be a finite number"),
    ({"batch_size": 0}, "Batch size must be a whole number of at least 1"),
    ({"batch_size": 100000}, "larger than the 540 training samples"),
    ({"epochs": 0}, "Epochs must be a whole number of at least 1"),
    ({"validation_split": 1.0}, "Validation split must be in [0, 1)"),
    ({"validation_split": 0.999}, "larger than the 1 training samples"),
    ({"validation_split": 0.9999}, "leaves no samples to train on"),
    ({"validation_split": 0.0, "early_stopping": 2}, "set a validation split above 0"),
]
GOOD_TRAIN = {"lr": 0.001, "batch_size": 100, "epochs": 1, "validation_split": 0.1, "early_stopping": 0}


def test_train_bad_settings_are_flagged_as_typed_and_start_is_off(apps):
    at = apps.new()
    build_network(at, layers="16")
    before = snapshot(at)
    goto(at, "2_Train.py")
    for bad, message in BAD_TRAIN:
        set_train(at, **{**GOOD_TRAIN, **bad})  # typed, not yet started: flagged already
        assert_clean(at, f"Train {bad}")
        assert message in joined(at.markdown), f"{bad}: {values(at.markdown)}"
        assert at.button(key="start").disabled, f"{bad}: Start is on"
        assert message in joined(at.caption), f"{bad}: Start gives no reason"  # "Start is off until ..."
        assert lab(at).job is None, f"{bad}: a run started"
        assert_unchanged(at, before, f"Train {bad}")
        set_train(at, **GOOD_TRAIN)  # put right: the flag goes, Start comes back
        assert message not in joined(at.markdown) and not at.button(key="start").disabled, bad

    set_train(at, optimizer="sgd", **{**GOOD_TRAIN, "lr": 0.0})
    assert "Learning rate must be a finite number greater than zero" in joined(at.markdown)
    assert at.button(key="start").disabled and lab(at).job is None

    # after all that, good settings train
    set_train(at, optimizer="adam", **GOOD_TRAIN)
    at.button(key="start").click().run()
    assert not at.error, values(at.error)
    lab(at).job.join(30)
    assert lab(at).job.status == "completed" and lab(at).network.epochs_trained == 1


# ------------------------------------------------------------------------------- Gradient check

def test_a_bad_small_network_on_gradient_check_is_refused_and_a_fault_fails(apps):
    at = apps.new("3_Gradient_check.py")  # no network yet: only the small network is offered
    assert at.radio(key="gc_source").options == ["Small network made here"]
    for text, message in (("abc", "'abc' is not a whole number"), ("0", "at least 1, got 0"),
                          ("-1", "at least 1, got -1"), ("99999999", "99999999 is above the limit"),
                          ("8, x", "'x' is not a whole number")):
        at.text_input(key="gc_layers").set_value(text).run()
        assert_clean(at, f"Gradient check, layers {text!r}")
        assert message in joined(at.error), f"layers {text!r}: {values(at.error)}"
        assert at.button(key="gc_run").disabled
    assert lab(at).network is None

    # a deliberately broken backprop is reported as wrong, in red
    at.text_input(key="gc_layers").set_value("8").run()
    at.selectbox(key="gc_fault").set_value(at.selectbox(key="gc_fault").options[1]).run()
    at.button(key="gc_run").click().run()
    assert_clean(at, "Gradient check with a fault")
    assert "Verdict:" in joined(at.error) + joined(at.warning), values(at.success)
    assert not any("Verdict: excellent" in v for v in values(at.success))


# ------------------------------------------------------------------------------- Predict

def _upload_digit(at, name, content, mime="image/png"):
    at.file_uploader(key="digit_upload").set_value((name, content, mime)).run()
    assert_clean(at, f"Predict upload {name}")
    return at


def _dark_digit_on_paper():
    from PIL import Image, ImageDraw
    image = Image.new("L", (120, 160), 235)
    ImageDraw.Draw(image).line([(60, 20), (60, 140)], fill=20, width=14)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return buffer.getvalue()


BAD_IMAGES = [  # (file name, bytes, what the page shows instead of a prediction)
    ("junk.png", b"this is not an image at all", "error"),
    ("empty.png", b"", "error"),
    ("truncated.png", png_bytes(64, 64)[:40], "error"),
    ("one-pixel.png", png_bytes(1, 1), "info"),
    ("white.png", png_bytes(50, 50, (255, 255, 255)), "info"),
    ("black.png", png_bytes(50, 50, (0, 0, 0)), "info"),
    ("huge.png", png_bytes(5000, 10), "error"),
]


def test_a_bad_upload_on_predict_says_why_and_shows_no_guess(apps):
    at = apps.new()
    build_network(at, layers="16")
    before = snapshot(at)
    goto(at, "4_Predict.py")
    for name, content, shown in BAD_IMAGES:
        _upload_digit(at, name, content)
        assert not any("Prediction:" in v for v in values(at.markdown)), f"{name}: a guess was shown"
        if shown == "error":
            assert "That file cannot be used" in joined(at.error), f"{name}: {values(at.error)}"
        else:
            assert any("to get a prediction" in v for v in values(at.info)), f"{name}: {values(at.info)}"
        assert_unchanged(at, before, f"upload {name}")


def test_a_photo_of_dark_ink_on_paper_is_inverted_and_read_as_the_network_reads_it(apps):
    at = apps.new()
    build_network(at, layers="16")
    goto(at, "4_Predict.py")
    _upload_digit(at, "photo.jpg", _dark_digit_on_paper(), "image/jpeg")
    assert any("Prediction:" in v for v in values(at.markdown))
    assert any("inverted" in v for v in values(at.caption))
    # the digit shown is the network's reading of the prepared photo, worked out here
    from engine.preprocess import prepare_digit
    prepared = prepare_digit(_dark_digit_on_paper())
    p = lab(at).network.predict_proba(prepared.digit.reshape(1, -1))[0]
    assert prepared.inverted
    assert f"### Prediction: {int(p.argmax())}" in values(at.markdown), values(at.markdown)
    assert any(f"confidence {p.max():.1%}" in v for v in values(at.caption)), values(at.caption)


# ------------------------------------------------------------------------------- Home (dataset upload)

def _npz(**arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _good_arrays(n=50):
    rng = np.random.default_rng(0)
    return {"x_train": rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), "y_train": np.arange(n, dtype=np.uint8) % 10,
            "x_test": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), "y_test": np.arange(20, dtype=np.uint8) % 10}


BAD_DATASETS = {
    "not-a-zip.npz": b"hello, I am plain text",
    "empty.npz": b"",
    "truncated.npz": _npz(**_good_arrays())[:300],
    "missing-keys.npz": _npz(x_train=np.zeros((5, 28, 28), np.uint8)),
    "pickled.npz": _npz(**{**_good_arrays(), "y_train": np.array([object()] * 50, dtype=object)}),
    "wrong-shape.npz": _npz(**{**_good_arrays(), "x_train": np.zeros((50, 20, 20), np.uint8)}),
    "labels-out-of-range.npz": _npz(**{**_good_arrays(), "y_train": np.full(50, 12, np.uint8)}),
    "no-samples.npz": _npz(**{**_good_arrays(), "x_train": np.zeros((0, 28, 28), np.uint8),
                              "y_train": np.zeros(0, np.uint8)}),
}
# ...and what the refusal says about each
BAD_DATASETS_SAY = {
    "not-a-zip.npz": "is not an .npz file",
    "empty.npz": "is empty (0 bytes)",
    "truncated.npz": "damaged or truncated",
    "missing-keys.npz": "lacks the key(s) y_train, x_test, y_test",
    "pickled.npz": "pickled Python objects",
    "wrong-shape.npz": "x_train has shape (50, 20, 20)",
    "labels-out-of-range.npz": "labels from 12 to 12, outside 0-9",
    "no-samples.npz": "x_train is empty (0 images)",
}


def test_a_bad_dataset_upload_on_home_is_refused_keeping_the_data_in_use(apps):
    at = apps.new()
    source = lab(at).dataset_path
    for name, content in BAD_DATASETS.items():
        at.file_uploader(key="dataset_upload").set_value((name, content, "application/octet-stream")).run()
        at.button(key="use_upload").click().run()
        assert_clean(at, f"Home upload {name}")
        assert "That file cannot be used" in joined(at.error), f"{name}: {values(at.error)}"
        assert BAD_DATASETS_SAY[name] in joined(at.error), f"{name}: {values(at.error)}"
        assert lab(at).dataset_path == source, f"{name}: the dataset was switched"
        assert "600 training" in joined(at.success), f"{name}: the working dataset was lost"

    at.file_uploader(key="dataset_upload").set_value(("good.npz", _npz(**_good_arrays()), "application/octet-stream"))
    at.run()
    at.button(key="use_upload").click().run()
    assert_clean(at, "Home good upload")
    assert not at.error, values(at.error)
    assert "50 training and 20 test" in joined(at.success)


def test_a_bad_dataset_path_on_home_says_so_with_the_remedy(apps, env):
    at = apps.new()
    (env / "text.npz").write_text("not an npz")
    for path in (env / "missing.npz", env / "text.npz", env):
        at.text_input(key="dataset_path_input").set_value(str(path))
        at.button(key="use_path").click().run()
        assert_clean(at, f"Home path {path}")
        assert "No dataset could be loaded" in joined(at.error), f"{path}: {values(at.error)}"
        assert str(path) in joined(at.error), f"{path}: the message does not name it"
        assert "MNIST_PATH" in joined(at.markdown)
    at.text_input(key="dataset_path_input").set_value("")
    at.button(key="use_path").click().run()  # empty path: back to MNIST_PATH
    assert not at.error and "600 training" in joined(at.success)


# ------------------------------------------------------------------------------- Models

def test_bad_model_names_files_and_uploads_are_refused_keeping_the_network(apps, env):
    from engine.network import Network
    from engine.persistence import network_bytes, save_network

    at = apps.new()
    build_network(at, layers="16")
    before = snapshot(at)
    goto(at, "8_Models.py")
    at.text_input(key="save_name").set_value("///").run()
    at.button(key="save_model").click().run()
    assert_clean(at, "Models, bad name")
    assert "Give the model a name" in joined(at.error)

    at.text_input(key="save_name").set_value("good one").run()
    at.button(key="save_model").click().run()
    assert "Saved `good-one.npz`" in joined(at.success)

    models = env / "models"
    (models / "broken.npz").write_bytes(b"garbage")
    save_network(models / "other-inputs.npz", Network([100, 10], seed=0))
    at.run()
    assert_clean(at, "Models with a broken file listed")
    for name, message in (("broken.npz", "Cannot load `broken.npz`: Not a Digit Lab model"),
                          ("other-inputs.npz", "Cannot load `other-inputs.npz`: The network takes 100 inputs")):
        at.selectbox(key="model_choice").set_value(name).run()
        at.button(key="load_model").click().run()
        assert_clean(at, f"Models, load {name}")
        assert message in joined(at.error), values(at.error)
        assert_unchanged(at, before, f"load {name}")

    # reload the good one to continue
    at.selectbox(key="model_choice").set_value("good-one.npz").run()
    at.button(key="load_model").click().run()
    before = snapshot(at)

    uploads = {"junk.npz": (b"not a model", "is an .npz (zip) archive, and this file is not one"),
               "empty.npz": (b"", "is an .npz (zip) archive, and this file is not one"),
               "other-inputs.npz": (network_bytes(Network([100, 10], seed=0)), "takes 100 inputs"),
               "dataset.npz": (_npz(**_good_arrays()), "'format' marker is missing")}
    for name, (content, says) in uploads.items():
        at.file_uploader(key="model_upload").set_value((name, content, "application/octet-stream")).run()
        at.button(key="use_uploaded_model").click().run()
        assert_clean(at, f"Models upload {name}")
        assert "That file cannot be used" in joined(at.error), f"{name}: {values(at.error)}"
        assert says in joined(at.error), f"{name}: {values(at.error)}"
        assert "unchanged" in joined(at.error)
        assert_unchanged(at, before, f"upload {name}")


# ------------------------------------------------------------------------------- Compare

@pytest.mark.parametrize("settings, message", [
    ({"cmp_lr": 0.0}, "Learning rate must be a finite number greater than zero"),
    ({"cmp_batch": 4096}, "larger than the 600 training samples"),
])
def test_bad_compare_settings_are_refused_before_tensorflow_loads(apps, settings, message):
    """Refused before TensorFlow is loaded (so these cost no import time)."""
    at = apps.new()
    build_network(at, layers="16")
    before = snapshot(at)
    goto(at, "6_Compare.py")
    for key, value in settings.items():
        at.number_input(key=key).set_value(value)
    at.run()
    at.button(key="cmp_run").click().run()
    assert_clean(at, f"Compare {settings}")
    assert message in joined(at.error), values(at.error)
    assert_unchanged(at, before, f"Compare {settings}")


def test_models_load_of_a_model_for_other_inputs_is_refused(apps, env):
    from engine.network import Network
    from engine.persistence import save_network

    at = apps.new()
    build_network(at, layers="16")
    before = snapshot(at)
    (env / "models").mkdir(exist_ok=True)
    save_network(env / "models" / "other-inputs.npz", Network([100, 10], seed=0))
    goto(at, "8_Models.py")
    at.selectbox(key="model_choice").set_value("other-inputs.npz").run()
    at.button(key="load_model").click().run()
    assert_clean(at, "Models, load a 100-input model")
    assert "100 inputs" in joined(at.error), values(at.error)
    assert_unchanged(at, before, "load a 100-input model")
    for page in ("2_Train.py", "4_Predict.py", "5_Evaluate.py"):
        goto(at, page)
        assert_clean(at, page)
