"""What the pages say about the current network stays true (AppTest): the sidebar right after
an action, the test accuracy after the data changes, the data locked during a run, a model
file never replaced without asking, and a run's end told without repeating itself."""
import numpy as np

from app_support import (apps, assert_clean, build_network, data_path, env, finish, goto, joined, lab,  # noqa: F401
                         start_training, write_dataset)
from ui.runs import finished_text


def sidebar(at):
    return joined(at.sidebar.caption)


def test_the_sidebar_shows_a_network_as_soon_as_it_is_created(apps):
    at = apps.new()
    build_network(at, layers="16")
    assert "784-16-10" in sidebar(at), sidebar(at)
    assert "none yet" not in sidebar(at)


def test_accuracy_follows_the_data_it_is_shown_for(apps, env):
    at = apps.new()
    build_network(at, layers="16")
    start_training(at, epochs=3)
    finish(at)
    trained = lab(at).test_accuracy
    assert f"{trained:.2%}" in sidebar(at)
    # Other data (same shapes, other images and labels): the figure is measured again on it.
    other = write_dataset(env / "other.npz", n_train=300, n_test=150, seed=7)
    goto(at, "app.py")
    at.text_input(key="dataset_path_input").set_value(str(other))
    at.button(key="use_path").click().run()
    assert_clean(at, "Home after switching data")
    from engine.data import load_mnist
    from engine.trainer import evaluate
    d = load_mnist(str(other))
    expected = evaluate(lab(at).network, d.x_test, d.y_test)[1]
    assert f"{expected:.2%}" != f"{trained:.2%}", "the test needs data on which the network scores differently"
    assert f"{expected:.2%}" in sidebar(at), sidebar(at)
    assert f"{expected:.2%}" in joined(at.markdown)


def test_the_data_cannot_be_switched_during_a_run(apps):
    at = apps.new()
    build_network(at, layers="16")
    start_training(at, epochs=20_000)  # far longer than the checks below; stopped after them
    goto(at, "app.py")
    assert at.button(key="use_path").disabled
    assert "training run is going on" in joined(at.caption)
    # Drawn mid-run, the sidebar has no figures from before the run (not even hidden ones).
    assert "Training now" in sidebar(at) and "Epochs trained" not in sidebar(at), sidebar(at)
    lab(at).job.stop()
    finish(at)
    assert not at.button(key="use_path").disabled


def test_saving_over_a_model_asks_first(apps, env):
    at = apps.new()
    build_network(at, layers="16")
    goto(at, "8_Models.py")
    at.text_input(key="save_name").set_value("mine").run()
    at.button(key="save_model").click().run()
    first = (env / "models" / "mine.npz").read_bytes()
    build_network(at, layers="8", seed=3)
    goto(at, "8_Models.py")
    assert at.text_input(key="save_name").value == "net-784-8-10"  # the name follows the network
    at.text_input(key="save_name").set_value("mine").run()
    at.button(key="save_model").click().run()
    assert "already exists" in joined(at.warning)
    assert (env / "models" / "mine.npz").read_bytes() == first
    at.button(key="confirm_overwrite_no").click().run()
    assert not at.warning and (env / "models" / "mine.npz").read_bytes() == first
    at.button(key="save_model").click().run()
    at.button(key="confirm_overwrite_yes").click().run()
    assert_clean(at, "Models after replacing")
    assert "replaced" in joined(at.success) and not at.warning
    from engine.persistence import load_network
    assert np.array_equal(load_network(env / "models" / "mine.npz")[0].params, lab(at).network.params)


def test_a_finished_run_names_its_status_once():
    assert finished_text("completed", "Completed 3 epochs.") == "✅ Completed 3 epochs."
    assert finished_text("diverged", "Training diverged in epoch 2: the loss …") == "⚠️ Diverged in epoch 2: the loss …"
    assert finished_text("failed", "Training failed: MemoryError: x") == "❌ Failed: MemoryError: x"
    assert finished_text("stopped", "The browser tab closed; stopped.") == "⏹️ Stopped: The browser tab closed; stopped."


def test_fashion_mnist_given_as_mnist_path_is_named_as_such(apps, env, monkeypatch):
    from app_support import clear_caches
    monkeypatch.setenv("MNIST_PATH", str(write_dataset(env / "fashion-mnist-small.npz")))
    clear_caches()
    at = apps.new()
    assert_clean(at, "Home")
    assert "Fashion-MNIST" in joined(at.success), joined(at.success)
    assert "Fashion-MNIST" in sidebar(at)


def test_a_far_too_large_learning_rate_is_flagged_and_keeps_the_trained_network(apps):
    at = apps.new()
    build_network(at, layers="32")
    start_training(at, epochs=3)
    finish(at)
    trained, accuracy = lab(at).network.params.copy(), lab(at).test_accuracy
    from app_support import set_train
    set_train(at, lr=10.0)
    assert "far above the usual range" in joined(at.warning)
    at.button(key="start").click().run()
    finish(at)
    assert lab(at).job.status == "diverged", lab(at).job.message
    assert "Diverged in epoch 1 of this run" in joined(at.error), joined(at.error)
    np.testing.assert_array_equal(lab(at).network.params, trained)
    assert f"{accuracy:.2%}" in sidebar(at)


def test_compare_runs_keeps_working_as_runs_come_to_differ(apps):
    at = apps.new()
    build_network(at, layers="16")
    start_training(at, epochs=1)
    finish(at)
    start_training(at, epochs=2)
    finish(at)
    from app_support import set_train
    set_train(at, batch_size=50)  # a third setting starts to differ: every run's name changes
    at.button(key="start").click().run()
    finish(at)
    runs = at.multiselect(key="overlay_runs_3")
    assert list(runs.value) == [1, 2], runs.value  # the last two, the new one included
    figure = [c for c in at.get("plotly_chart") if "runs_overlay" in str(c.proto.id)]
    assert figure and '"run 3: batch_size=50' in figure[0].proto.spec


def test_continue_optimizer_state_stays_as_set(apps):
    at = apps.new()
    build_network(at, layers="16")
    start_training(at, epochs=1)
    finish(at)
    at.checkbox(key="continue_state_box").uncheck().run()
    at.button(key="start").click().run()
    finish(at)
    assert at.checkbox(key="continue_state_box").value is False
    assert lab(at).optimizer.t == 6  # 540 training images / 100 a batch: only this run's steps


def test_the_model_name_is_there_on_every_visit(apps):
    at = apps.new()
    build_network(at, layers="16")
    for _ in range(2):
        goto(at, "8_Models.py")
        assert at.text_input(key="save_name").value == "net-784-16-10"
        goto(at, "2_Train.py")


def test_a_fresh_offline_clone_trains_on_the_bundled_sample(apps, env, monkeypatch):
    """No MNIST_PATH, an empty Keras cache, no internet: the app says it uses the sample that
    ships with Digit Lab (and how to get full MNIST), and a run learns real digits on it."""
    import engine.data
    monkeypatch.delenv("MNIST_PATH")
    monkeypatch.setenv("KERAS_HOME", str(env / "empty-keras-home"))
    monkeypatch.setattr(engine.data, "_download_host_resolves", lambda: False)  # offline, whatever the machine
    at = apps.new()
    assert_clean(at, "Home")
    assert "5,000-digit sample that ships with Digit Lab" in joined(at.info)
    assert "4,000 training and 1,000 test images" in joined(at.success)
    assert "bundled" in sidebar(at)
    build_network(at, layers="32")
    start_training(at, epochs=3)
    job = finish(at)
    assert job.status == "completed" and job.test_accuracy > 0.8, (job.status, job.test_accuracy)
