"""Models page flows (AppTest): save, list, load (network and optimizer state come back),
delete with confirmation, and upload of a good model."""
import numpy as np

from app_support import apps, assert_clean, build_network, data_path, env, finish, goto, joined, lab, start_training  # noqa: F401


def test_a_saved_model_is_listed_loaded_deleted_and_uploaded_with_its_state(apps, env):
    from engine.persistence import load_network, network_bytes

    at = apps.new()
    build_network(at, layers="16")
    start_training(at, epochs=1)
    finish(at)
    trained = lab(at).network.params.copy()
    steps = lab(at).optimizer.t
    goto(at, "8_Models.py")
    at.text_input(key="save_name").set_value("first").run()
    at.button(key="save_model").click().run()
    assert "Saved `first.npz`" in joined(at.success)
    # the file holds the trained network and its optimizer, as they were
    saved, saved_optimizer, _ = load_network(env / "models" / "first.npz")
    assert np.array_equal(saved.params, trained) and saved.epochs_trained == 1
    assert saved.sizes == [784, 16, 10] and saved_optimizer.t == steps > 0

    # Replace the network, then load the saved one back: same weights, epochs and Adam state.
    build_network(at, layers="8")
    goto(at, "8_Models.py")
    assert "first.npz" in at.selectbox(key="model_choice").options
    at.selectbox(key="model_choice").set_value("first.npz").run()
    at.button(key="load_model").click().run()
    assert_clean(at, "Models load")
    current = lab(at)
    assert np.array_equal(current.network.params, trained)
    assert current.network.epochs_trained == 1 and current.optimizer is not None and current.optimizer.t > 0
    assert current.optimizer.t == steps
    np.testing.assert_array_equal(current.optimizer.state()["m"], saved_optimizer.state()["m"])

    # Delete asks first, then removes the file.
    at.button(key="delete_model").click().run()
    assert any("for good" in w.value for w in at.warning)
    at.button(key="confirm_delete_yes").click().run()
    assert not (env / "models" / "first.npz").exists()
    assert_clean(at, "Models delete")

    # Upload a good model: it becomes the current network.
    data = network_bytes(current.network, current.optimizer, {"name": "uploaded"})
    build_network(at, layers="8")
    goto(at, "8_Models.py")
    at.file_uploader(key="model_upload").set_value(("model.npz", data, "application/octet-stream")).run()
    at.button(key="use_uploaded_model").click().run()
    assert_clean(at, "Models upload")
    assert "Loaded the upload" in joined(at.success)
    assert np.array_equal(lab(at).network.params, trained)
    assert lab(at).network.epochs_trained == 1 and lab(at).optimizer.t == steps
