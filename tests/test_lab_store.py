"""Labs kept on disk (ui/lab_store.py): a server restart, or a crash, gives back the network,
its optimizer, runs and settings; a run cut off says so and resumes to exactly the network an
uninterrupted run gives; tokens from URLs never leave the labs folder; the disk stays bounded."""
import json
import os
import secrets
import shutil
import time

import numpy as np
import pytest

from engine.network import Network
from engine.optimizers import Adam
from ui import lab_store, reload, state
from ui.runs import resume_run, start_run
from ui.settings import settings
from ui.state import Lab


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITLAB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def new_lab(epochs=6, layers="16"):
    lab = Lab(token=secrets.token_urlsafe(16))
    settings(lab).update(hidden=[int(w) for w in layers.split(",")], seed=3, epochs=epochs, batch_size=50,
                         validation_split=0.0)
    lab.set_network(Network([784, 16, 10], seed=3))
    return lab


def restarted(token):
    """What a new server process finds on disk for `token`."""
    return lab_store.load(token, Lab)


def test_a_lab_comes_back_from_disk_as_it_was(home, synthetic):
    lab = new_lab(epochs=2)
    assert start_run(lab, synthetic) is None
    lab.job.join(60)
    assert lab.job.status == "completed" and len(lab.runs) == 1  # recorded by the run itself, no page open
    lab.settings["lr"] = 0.0042
    lab.save(weights=False)
    back = restarted(lab.token)
    np.testing.assert_array_equal(back.network.params, lab.network.params)
    np.testing.assert_array_equal(back.optimizer.state()["m"], lab.optimizer.state()["m"])
    assert back.optimizer.t == lab.optimizer.t and back.network.epochs_trained == 2
    assert json.dumps(back.network.history) == json.dumps(lab.network.history)  # (NaN val_loss: no validation split)
    assert back.settings["lr"] == 0.0042 and back.settings["hidden"] == [16]
    assert json.dumps(back.runs) == json.dumps(lab.runs) and back.runs[0]["status"] == "completed"
    assert back.job.status == "completed" and not back.job.active and not back.job.resumable
    assert len(back.job.progress().epochs_table) == 2


def test_an_interrupted_run_says_so_and_resumes_to_the_uninterrupted_network(home, synthetic, tmp_path, monkeypatch):
    monkeypatch.setattr(state, "EPOCH_SAVE_SECONDS", 0)  # each epoch saved: the copy is epoch 3's save
    lab = new_lab(epochs=6)
    crash_copy = tmp_path / "as-the-crash-left-it"
    heard = lab.on_run_event

    def copy_after_epoch_3(job, what):  # the lab's folder as a kill -9 right after epoch 3's save leaves it
        heard(job, what)
        if what == "epoch" and job.network.epochs_trained == 3 and not crash_copy.exists():
            shutil.copytree(home, crash_copy)

    lab.on_run_event = copy_after_epoch_3
    assert start_run(lab, synthetic) is None
    lab.job.join(60)
    assert lab.job.status == "completed"
    uninterrupted = lab.network.params.copy()

    shutil.rmtree(home)
    shutil.copytree(crash_copy, home)
    back = restarted(lab.token)
    job = back.job
    assert job.status == "interrupted" and job.resumable and back.network.epochs_trained == 3
    assert job.message.startswith("Interrupted by a server restart in epoch 4 of 6; the network has the "
                                  "weights of epoch 3.")
    assert [r["epoch"] for r in job.progress().epochs_table] == [1, 2, 3]
    assert back.runs == []  # not finished: recorded when it ends
    assert resume_run(back, synthetic) is None
    back.job.join(60)
    assert back.job.status == "completed" and back.network.epochs_trained == 6
    np.testing.assert_array_equal(back.network.params, uninterrupted)  # bit for bit
    assert [r["epoch"] for r in back.job.progress().epochs_table] == [1, 2, 3, 4, 5, 6]  # one run
    assert len(back.runs) == 1 and len(back.runs[0]["history"]) == 6


def test_epoch_saves_are_spaced_out_and_the_one_put_off_is_made_when_its_time_is_up(monkeypatch):
    monkeypatch.setattr(state, "EPOCH_SAVE_SECONDS", 1.0)
    saves = []
    monkeypatch.setattr(Lab, "save", lambda self, weights=True: saves.append(time.monotonic()))
    monkeypatch.setattr("ui.runs.record_finished_run", lambda lab: None)
    lab, job = Lab(token=secrets.token_urlsafe(16)), object()
    lab.job = job
    lab.on_run_event(job, "epoch")
    assert len(saves) == 1  # the first epoch at once
    for _ in range(5):  # five fast epochs: one save, put off
        lab.on_run_event(job, "epoch")
    assert len(saves) == 1
    deadline = time.monotonic() + 5
    while len(saves) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(saves) == 2 and saves[1] - saves[0] >= 0.99  # made when the second was up, once
    lab.on_run_event(job, "epoch")  # within a second of that save: put off again...
    lab.on_run_event(job, "end")    # ...and the end saves at once, the put-off save dropped
    assert len(saves) == 3
    time.sleep(1.2)
    assert len(saves) == 3
    lab.on_run_event(object(), "epoch")  # an older run's epoch: not this lab's business
    assert len(saves) == 3


def test_tokens_that_are_not_ours_never_reach_the_disk(home):
    for token in ["../../etc", "a/b", "", None, "x" * 200, "short"]:
        assert lab_store.lab_dir(token) is None
        assert restarted(token) is None
    assert restarted(secrets.token_urlsafe(16)) is None  # ours, but unknown


def test_a_damaged_network_file_gives_back_the_rest_and_says_so(home):
    lab = new_lab()
    lab.save()
    (home / "labs" / lab.token / "network.npz").write_bytes(b"PK\x03\x04 not really")
    back = restarted(lab.token)
    assert back.network is None and back.settings["hidden"] == [16]
    assert "could not be read" in back.notice


def test_old_labs_are_removed_and_the_disk_stays_bounded(home, monkeypatch):
    labs = [new_lab() for _ in range(4)]
    for i, lab in enumerate(labs):
        lab.save()
        folder = home / "labs" / lab.token
        for f in folder.iterdir():
            os.utime(f, (time.time() - (4 - i) * 86400,) * 2)  # lab 0 unused for 4 days ... lab 3 for 1
    monkeypatch.setenv("DIGITLAB_LAB_KEEP_DAYS", "3.5")
    assert lab_store.prune() == [labs[0].token]
    size = sum(f.stat().st_size for f in (home / "labs" / labs[1].token).iterdir())
    monkeypatch.setenv("DIGITLAB_HOME_MAX_MB", str(2.5 * size / 2**20))  # room for two and a half
    assert lab_store.prune(in_use={labs[1].token}) == [labs[2].token]  # the oldest not in use
    assert sorted(p.name for p in (home / "labs").iterdir()) == sorted([labs[1].token, labs[3].token])


def test_a_lab_without_visitors_expires_and_its_run_stops(home, synthetic, monkeypatch):
    monkeypatch.setattr(reload, "_labs", {})
    monkeypatch.setattr(reload, "session_open", lambda session_id: False)
    lab = new_lab(epochs=100_000)
    reload.register(lab, "gone")
    assert start_run(lab, synthetic) is None
    reload._forget_old(time.monotonic())
    assert lab.job.active and lab.token in reload._labs  # a run keeps its lab, whoever looks
    reload._labs[lab.token][2] -= reload.IDLE_SECONDS + 1
    assert reload._forget_old(time.monotonic()) == [lab]
    lab.job.join(30)
    assert lab.job.status == "stopped" and "no visitor for 2 hours" in lab.job.message
    assert lab.token not in reload._labs
    assert restarted(lab.token).job.status == "stopped"  # and it is on disk as it ended


def test_models_and_labs_saved_under_the_old_setting_names_load_in_the_schema(home, tmp_path):
    """Before the one schema the app saved 'layers' as text, 'warmup', a True/False 'augment' and
    two dicts (build_settings, train_settings); they load as today's settings."""
    from engine.persistence import load_network, save_network
    from engine.presets import DEFAULT_AUGMENT
    from ui.models import adopt
    old_build = {"layers": "32, 16", "activation": "tanh", "keep_prob": 0.8, "use_bias": True, "seed": 7,
                 "dtype": "float32"}
    old_train = {"optimizer": "adam", "lr": 0.002, "warmup": 1.5, "augment": True, "epochs": 12,
                 "continue_state": False}
    old_run = {"name": "run 1", "settings": {**old_build, **old_train}, "history": [], "status": "completed"}
    net = Network([784, 32, 16, 10], "tanh", seed=7)
    path = save_network(tmp_path / "old.npz", net, Adam(), {"build_settings": old_build, "train_settings": old_train,
                                                              "runs": [old_run]})
    lab = Lab(token=secrets.token_urlsafe(16))
    adopt(lab, *load_network(path))
    s = lab.settings
    assert s["hidden"] == [32, 16] and s["warmup_epochs"] == 1.5 and s["augment"] == DEFAULT_AUGMENT
    assert s["keep_prob"] == 0.8 and s["seed"] == 7 and s["lr"] == 0.002 and s["epochs"] == 12
    assert not {"layers", "warmup", "continue_state"} & set(s)
    assert lab.runs[0]["settings"]["hidden"] == [32, 16]  # old runs compare with new ones
    # a lab folder written before the schema
    lab.save()
    folder = home / "labs" / lab.token
    record = json.loads((folder / "lab.json").read_text())
    del record["settings"], record["continue_state"]
    record.update(build_settings=old_build, train_settings=old_train)
    (folder / "lab.json").write_text(json.dumps(record))
    back = restarted(lab.token)
    assert back.settings["hidden"] == [32, 16] and back.settings["augment"] == DEFAULT_AUGMENT
    assert back.continue_state is False
