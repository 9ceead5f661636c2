"""AppTest: every page renders, the whole flow works, training controls, divergence, sessions.

Runs on a fresh clone: the data is a small synthetic dataset written by the test (MNIST_PATH),
nothing from ../shared and no network access.
"""
import time

import numpy as np
import pytest

from app_support import (  # noqa: F401  (fixtures are used by name)
    apps, assert_clean, build_network, data_path, draw_on_canvas, env, finish, goto, joined, lab,
    page_names, progress_values, set_train, start_training, values, wait_for,
)

PAGES = page_names()
NETWORK_HINT = "No network yet"
WORKS_WITHOUT_DATA = {"8_Models.py", "9_Environment.py"}  # save/load and machine facts need no dataset


def test_the_core_pages_come_in_workflow_order_and_are_titled_as_their_links():
    """Build, Train, Gradient check and Predict exist and the sidebar lists them in that order,
    Home first; every page sets up its own title and icon as the sidebar's link shows them (read
    from the page's page_setup call), so a link never opens a page that calls itself otherwise."""
    import ast

    from app_support import ROOT
    from ui.frame import PAGES as SIDEBAR
    assert {"1_Build.py", "2_Train.py", "3_Gradient_check.py", "4_Predict.py"} <= set(PAGES)
    labels = [label for _, label, _ in SIDEBAR]
    assert labels[:4] == ["Home", "Build", "Train", "Gradient check"]
    assert labels.index("Predict") > labels.index("Gradient check")
    for path, label, icon in SIDEBAR:
        calls = [node for node in ast.walk(ast.parse((ROOT / path).read_text(encoding="utf-8")))
                 if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "page_setup"]
        assert len(calls) == 1, f"{path}: {len(calls)} page_setup calls"
        title, page_icon = (ast.literal_eval(arg) for arg in calls[0].args[:2])
        assert (title, page_icon) == (label, icon), path


# ------------------------------------------------------------------------------- rendering

def test_every_page_renders_without_a_network(apps):
    at = apps.new()
    assert_clean(at, "Home")
    assert "600 training" in joined(at.success)  # the dataset the test wrote was loaded
    assert NETWORK_HINT in joined(at.info)
    for page in PAGES:
        goto(at, page)
        assert_clean(at, page)
        assert not at.error, f"{page}: unexpected error {values(at.error)}"
    # pages that need a network say where to make one
    for page in ("2_Train.py", "4_Predict.py"):
        goto(at, page)
        assert any(NETWORK_HINT in v and "Build" in v for v in values(at.info)), page
    assert lab(at).network is None


def test_every_page_renders_with_a_network(apps):
    at = apps.new()
    build_network(at, layers="16")
    for page in ["app.py", *PAGES]:
        goto(at, page)
        assert_clean(at, page)
        assert not at.error, f"{page}: unexpected error {values(at.error)}"
        assert NETWORK_HINT not in joined(at.info), page
        assert "784-16-10" in joined(at.sidebar.caption), f"{page}: sidebar does not show the network"


def test_every_page_without_any_dataset_says_what_is_missing(apps, monkeypatch, env):
    monkeypatch.setenv("MNIST_PATH", str(env / "missing.npz"))
    at = apps.new()
    assert_clean(at, "Home")
    assert "No dataset could be loaded" in joined(at.error)
    assert "MNIST_PATH" in joined(at.markdown)  # the remedy
    assert "none loaded" in joined(at.sidebar.caption)
    for page in PAGES:
        goto(at, page)
        assert_clean(at, page)
        # a page that needs data says so (error + remedy), or first asks for a network; pages
        # that work without data (Models, Environment) say what is missing in their main area
        shown = joined(at.main.error) + joined(at.main.info) + joined(at.main.markdown)
        assert "dataset" in shown.lower() or "none loaded" in shown or NETWORK_HINT in shown, \
            f"{page}: no message: {shown!r}"


def test_dataset_lost_after_building_keeps_the_network(apps, env):
    """The user points Home at a path that does not exist: every page says so, nothing is lost."""
    at = apps.new()
    net = build_network(at, layers="16")
    goto(at, "app.py")
    at.text_input(key="dataset_path_input").set_value(str(env / "nowhere.npz"))
    at.button(key="use_path").click().run()
    assert_clean(at, "Home with a missing path")
    assert "No dataset could be loaded" in joined(at.error)
    assert "nowhere.npz" in joined(at.error)
    for page in PAGES:
        goto(at, page)
        assert_clean(at, page)
        if page not in WORKS_WITHOUT_DATA:
            assert "No dataset could be loaded" in joined(at.error), f"{page}: no error while the data is missing"
        assert lab(at).network is net


# ------------------------------------------------------------------------------- the flow

def test_a_network_is_built_trained_checked_and_asked_to_predict(apps):
    at = apps.new()
    net = build_network(at)
    assert "Untrained test accuracy" in joined(at.success)
    assert net.sizes == [784, 64, 32, 10] and net.epochs_trained == 0

    start_training(at, epochs=1)
    finish(at)
    assert any("Completed" in v for v in values(at.success)), values(at.success)
    assert "Test accuracy" in [m.label for m in at.metric]
    assert progress_values(at) == [100, 100]
    assert lab(at).network is net and net.epochs_trained == 1
    assert len(lab(at).runs) == 1 and not np.isnan(lab(at).test_accuracy)

    goto(at, "3_Gradient_check.py")
    at.button(key="gc_run").click().run()
    assert_clean(at, "Gradient check")
    verdict = joined(at.success)
    assert "Verdict: excellent" in verdict or "Verdict: fine" in verdict, verdict + joined(at.error)

    goto(at, "4_Predict.py")
    assert_clean(at, "Predict")
    assert not any("Prediction:" in v for v in values(at.markdown)), "a guess on an empty canvas"
    assert any("Draw a digit" in v for v in values(at.info))
    draw_on_canvas(at)
    assert_clean(at, "Predict with a drawing")
    assert any("Prediction:" in v for v in values(at.markdown))
    assert lab(at).last_drawn is not None and lab(at).last_drawn.shape == (28, 28)
    at.button(key="clear_canvas").click().run()  # a new canvas key: the drawing is gone
    assert_clean(at, "Predict after Clear")
    assert lab(at).canvas_generation == 1
    assert not any("Prediction:" in v for v in values(at.markdown)), "Clear kept the guess"
    assert any("Draw a digit" in v for v in values(at.info))


# ------------------------------------------------------------------------------- controls

def test_pause_resume_stop_keeps_the_network(apps):
    at = apps.new()
    net = build_network(at, layers="16")
    initial = net.params.copy()
    job = start_training(at, epochs=5000, batch_size=10)  # minutes: far longer than the test
    wait_for(lambda: job.status == "running", what="the run to start")
    at.run()
    at.button(key="pause").click().run()
    assert_clean(at, "after Pause")
    wait_for(lambda: job.status == "paused", what="status paused")
    at.run()
    assert "Paused" in joined(at.warning)
    assert at.button(key="resume")
    batch = job.progress().batch_steps[-1:]
    time.sleep(0.4)
    assert job.progress().batch_steps[-1:] == batch, "training went on while paused"

    at.button(key="resume").click().run()
    wait_for(lambda: job.status == "running", what="status running after Resume")
    wait_for(lambda: job.progress().batch_steps[-1:] != batch, what="a batch after Resume")
    at.run()
    at.button(key="stop").click().run()
    job.join(10)
    assert job.status == "stopped"
    at.run()
    assert_clean(at, "after Stop")
    assert any("Stopped" in v for v in values(at.info)), values(at.info)  # neither a success nor an error
    assert lab(at).network is net
    assert net.epochs_trained < 5000 and not np.array_equal(net.params, initial)
    assert np.isfinite(net.params).all()
    p = net.predict_proba(np.zeros((2, 784), np.float32))
    assert p.shape == (2, 10) and np.allclose(p.sum(axis=1), 1, atol=1e-4)
    assert "784-16-10" in joined(at.sidebar.caption)
    assert at.button(key="start"), "Start is offered again after Stop"


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow is the point
def test_a_diverging_run_keeps_finite_weights_and_says_so(apps):
    at = apps.new()
    net = build_network(at, layers="32")
    # the engine survives lr 1e6 (ReLU units die, the loss stays finite); 1e12 overflows
    job = start_training(at, optimizer="sgd", lr=1e12, epochs=3)
    finish(at)
    assert job.status == "diverged"
    assert "Diverged" in joined(at.error), values(at.error)
    assert lab(at).network is net
    assert np.isfinite(net.params).all()
    assert np.isfinite(net.predict_proba(np.full((1, 784), 0.5, np.float32))).all()


# ------------------------------------------------------------------------------- sessions

def test_two_sessions_train_their_own_networks(apps):
    one, two = apps.new(), apps.new()
    net_one = build_network(one, layers="16", seed=1)
    net_two = build_network(two, layers="24, 12", seed=2)
    assert lab(one) is not lab(two)
    job_one = start_training(one, epochs=1)
    job_two = start_training(two, epochs=2, batch_size=50)
    finish(one)
    finish(two)
    assert job_one.status == job_two.status == "completed"
    assert lab(one).network is net_one and lab(two).network is net_two
    assert net_one.sizes == [784, 16, 10] and net_two.sizes == [784, 24, 12, 10]
    assert (net_one.epochs_trained, net_two.epochs_trained) == (1, 2)
    assert len(net_one.history) == 1 and len(net_two.history) == 2
    assert len(lab(one).runs) == len(lab(two).runs) == 1
    assert "784-16-10" in joined(one.sidebar.caption) and "784-24-12-10" in joined(two.sidebar.caption)
    assert "784-24" not in joined(one.sidebar.caption)


def test_every_page_renders_while_a_run_goes_on(apps):
    """Visiting pages mid-run neither breaks them nor the run; Build refuses to replace the network."""
    at = apps.new()
    net = build_network(at, layers="16")
    job = start_training(at, epochs=5000, batch_size=10)  # minutes: stopped below
    wait_for(lambda: job.status == "running", what="the run to start")
    for page in ["app.py", *PAGES]:
        goto(at, page)
        assert_clean(at, f"{page} during training")
        assert job.status == "running", f"{page}: the run ended ({job.status}: {job.message})"
        assert lab(at).network is net
    goto(at, "1_Build.py")
    assert "training run is going on" in joined(at.warning)
    assert "create_network" not in [b.key for b in at.button]
    goto(at, "2_Train.py")
    at.button(key="stop").click().run()
    job.join(10)
    assert job.status == "stopped" and lab(at).network is net


def test_the_sidebar_lists_every_page_once_and_only_pages_that_exist():
    """The page list lives in one place (ui/frame.PAGES); it must name every file in pages/."""
    from ui.frame import PAGES
    listed = [path for path, _, _ in PAGES]
    assert listed[0] == "app.py" and len(set(listed)) == len(listed)
    assert sorted(listed[1:]) == [f"pages/{name}" for name in page_names()]
