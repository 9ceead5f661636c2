"""The screen never contradicts itself (issue 13, AppTest): each status, button and message
follows the state it describes; paused time is not training time; a stop inside an epoch is
told as such; a lab cut off by a server restart comes back with its run, which resumes."""
import shutil
import time

import numpy as np

from app_support import (APP, TIMEOUT, apps, assert_clean, build_network, data_path, env, finish, goto,  # noqa: F401
                         joined, lab, set_train, start_training, values, wait_for)
from ui.state import LAB_PARAM


def buttons(at):
    return {b.key for b in at.button}


def test_build_says_when_the_form_no_longer_describes_the_network(apps):
    at = apps.new()
    build_network(at, layers="16")
    assert "Created `784-16-10" in joined(at.success)
    at.text_input(key="b_hidden").set_value("128, 64, 32").run()
    assert "Created" not in joined(at.success), values(at.success)  # not about the form any more
    assert "the form above describes another one" in joined(at.info)
    assert "784-16-10" in joined(at.info)  # what the current network is
    at.text_input(key="b_hidden").set_value("16").run()
    assert "describes another one" not in joined(at.info)


def test_the_run_controls_follow_the_run(apps):
    at = apps.new()
    build_network(at, layers="16")
    goto(at, "2_Train.py")
    assert "start" in buttons(at) and not {"pause", "stop"} & buttons(at)
    start_training(at, epochs=20_000)
    assert {"pause", "stop"} <= buttons(at) and "start" not in buttons(at)
    at.button(key="pause").click().run()
    wait_for(lambda: lab(at).job.status == "paused", what="the pause")
    at.run()
    assert "resume" in buttons(at) and "pause" not in buttons(at)
    at.button(key="stop").click().run()
    finish(at)
    assert "start" in buttons(at) and not {"pause", "stop", "resume"} & buttons(at)
    assert "Training…" not in joined(at.info)
    start_training(at, epochs=1)  # a run that completes
    finish(at)
    assert "start" in buttons(at) and not {"pause", "stop"} & buttons(at)
    assert "Completed 1 epoch" in joined(at.success) and "ended at epoch 1/1" in " ".join(
        p.proto.text for p in at.get("progress"))


def test_a_refused_start_is_the_news_and_the_last_runs_end_is_told_as_past(apps, monkeypatch):
    at = apps.new()
    build_network(at, layers="16")
    start_training(at, epochs=2, lr=10.0)
    finish(at)
    assert "Diverged in epoch 1" in joined(at.error)
    import engine.memory
    monkeypatch.setattr(engine.memory, "DEFAULT_BUDGET_MB", 0.01)  # the next Start is refused
    set_train(at, lr=0.001)
    at.button(key="start").click().run()
    assert_clean(at, "Train after a refused Start")
    assert any("budget" in e for e in values(at.error)), values(at.error)
    assert not any("Diverged" in e for e in values(at.error)), values(at.error)  # not beside the new error
    assert "Previous run: ⚠️ Diverged in epoch 1" in joined(at.caption)


def test_the_models_question_does_not_outlive_a_load(apps, env):
    at = apps.new()
    build_network(at, layers="16")
    goto(at, "8_Models.py")
    at.text_input(key="save_name").set_value("mine").run()
    at.button(key="save_model").click().run()
    build_network(at, layers="8")
    goto(at, "8_Models.py")
    at.text_input(key="save_name").set_value("mine").run()
    at.button(key="save_model").click().run()
    assert "already exists" in joined(at.warning)
    at.button(key="load_model").click().run()  # loads mine.npz: another network, another question
    assert_clean(at, "Models after Load")
    assert "Loaded `mine.npz`" in joined(at.success)
    assert "already exists" not in joined(at.warning) and "confirm_overwrite_yes" not in buttons(at)
    at.text_input(key="save_name").set_value("mine").run()
    assert "already exists" not in joined(at.warning)  # asked again only when Save is pressed again


def test_paused_time_is_left_out_of_epochs_run_time_and_eta(apps):
    at = apps.new()
    build_network(at, layers="16")
    start_training(at, epochs=300, batch_size=50)
    job = lab(at).job
    wait_for(lambda: job.progress().run_epoch >= 3, timeout=30, what="three epochs")
    at.button(key="pause").click().run()
    wait_for(lambda: job.status == "paused", what="the pause")
    eta_paused = job.progress().eta
    time.sleep(2.0)
    assert abs(job.progress().eta - eta_paused) < 1e-9  # a pause moves nothing
    at.button(key="resume").click().run()
    wait_for(lambda: job.status == "running", what="the resume")
    epochs_before = len(job.progress().epochs_table)
    wait_for(lambda: len(job.progress().epochs_table) >= epochs_before + 2, timeout=30, what="two more epochs")
    at.button(key="stop").click().run()
    finish(at)
    table = job.progress().epochs_table
    assert max(r["seconds"] for r in table) < 1.0, [r["seconds"] for r in table]  # the 2 s pause is in none
    caption = next(c for c in values(at.caption) if c.startswith("Run time"))
    run_seconds = float(caption.split()[2])
    assert run_seconds < sum(r["seconds"] for r in table) + 1.0 < 2.0 + sum(r["seconds"] for r in table), caption


def test_a_stop_inside_an_epoch_says_how_much_of_it_the_weights_hold(apps):
    at = apps.new()
    build_network(at, layers="16")
    start_training(at, epochs=20_000, batch_size=10)  # 54 batches an epoch
    job = lab(at).job
    wait_for(lambda: job.progress().run_epoch >= 2, timeout=30, what="a second epoch")
    at.button(key="pause").click().run()
    wait_for(lambda: job.status == "paused", what="the pause")
    at.button(key="stop").click().run()
    finish(at)
    net = lab(at).network
    sidebar = joined(at.sidebar.caption)
    if 0 < net.partial_epoch < 1:
        nth = net.epochs_trained + 1
        assert f"Epochs trained:** {net.epochs_trained} and {net.partial_epoch:.0%} of the {nth}" in sidebar, sidebar
    else:  # the pause fell between two epochs (1 in 54)
        assert f"Epochs trained:** {net.epochs_trained}  " in sidebar, sidebar


def test_a_lab_cut_off_by_a_restart_comes_back_and_its_run_resumes(apps, env, monkeypatch, tmp_path):
    """The lab's files as a kill -9 after epoch 3 of 6 leaves them, read by a new server."""
    from streamlit.testing.v1 import AppTest

    from ui import lab_store, reload, state
    monkeypatch.setattr(state, "EPOCH_SAVE_SECONDS", 0)  # each epoch saved: the copy is epoch 3's save
    at = apps.new()
    build_network(at, layers="16")
    the_lab = lab(at)
    crash_copy = tmp_path / "after-epoch-3"
    heard = the_lab.on_run_event

    def copy_after_epoch_3(job, what):
        heard(job, what)
        if what == "epoch" and job.network.epochs_trained == 3 and not crash_copy.exists():
            shutil.copytree(lab_store.lab_dir(the_lab.token), crash_copy)

    the_lab.on_run_event = copy_after_epoch_3
    start_training(at, epochs=6, batch_size=50)
    finish(at)
    uninterrupted = the_lab.network.params.copy()

    folder = lab_store.lab_dir(the_lab.token)
    shutil.rmtree(folder)
    shutil.copytree(crash_copy, folder)
    monkeypatch.setattr(reload, "_labs", {})  # a new server: nothing in memory
    again = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    apps.apps.append(again)
    again.query_params[LAB_PARAM] = the_lab.token
    again.run()
    assert_clean(again, "Home after the restart")
    back = lab(again)
    assert back is not the_lab and back.network.epochs_trained == 3
    assert "784-16-10" in joined(again.sidebar.caption)
    goto(again, "2_Train.py")
    assert "Interrupted by a server restart in epoch 4 of 6" in joined(again.warning)
    assert "resume_run" in buttons(again)
    again.button(key="resume_run").click().run()
    finish(again)
    assert back.job.status == "completed" and back.network.epochs_trained == 6
    np.testing.assert_array_equal(back.network.params, uninterrupted)
    assert "Completed" in joined(again.success)


def test_build_warns_before_creating_a_network_this_machine_trains_slowly(apps, monkeypatch):
    import streamlit as st

    from engine import estimate
    at = apps.new("1_Build.py")
    at.text_input(key="b_hidden").set_value("64").run()
    caption = next(c for c in values(at.caption) if c.startswith("On this machine"))
    assert "to create" in caption and "per epoch** on 540 images" in caption, caption  # 10% held out
    assert "large for this machine" not in joined(at.warning)
    slow = estimate.MachineSpeed(per_flop=1e-8, per_parameter=1e-6, per_parameter_large=1e-6, per_init=1e-7)
    monkeypatch.setattr(estimate, "measure", lambda dtype="float32": slow)  # a machine 1,000 times slower
    st.cache_data.clear()
    at.text_input(key="b_hidden").set_value("4000, 4000, 4000").run()
    assert "large for this machine" in joined(at.warning), values(at.warning)
    assert not at.button(key="create_network").disabled  # a warning, not a refusal


def test_a_reload_after_the_run_ended_shows_it_ended_and_no_run_buttons(apps):
    from streamlit.testing.v1 import AppTest
    at = apps.new()
    build_network(at, layers="16")
    start_training(at, epochs=20_000)
    token = at.query_params[LAB_PARAM]
    lab(at).job.stop()
    lab(at).job.join(30)  # it ends while no page looks (the tab is reloading)
    again = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    apps.apps.append(again)
    again.query_params[LAB_PARAM] = token
    again.run()
    goto(again, "2_Train.py")
    assert lab(again) is lab(at)
    assert not {"pause", "stop", "resume"} & buttons(again) and "start" in buttons(again)
    assert "Training…" not in joined(again.info) and "Stopped during epoch" in joined(again.info)
    assert len(lab(again).runs) == 1  # recorded once, by the run itself
