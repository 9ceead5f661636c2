"""Training on a Dask cluster (ui/dask_training.py, issue 15): a `distributed.LocalCluster` of
2 workers with 1 thread each. A run there ends with exactly the network a local run gives;
Pause and Stop reach the worker; a lost worker is reported with the last epoch's weights kept;
the dataset is sent once; an unreachable scheduler says so and the page offers this server."""
import contextlib
import os
import time

import numpy as np
import pytest

from engine.network import Network
from engine.optimizers import Adam
from engine.trainer import TrainConfig, train
import ui.dask_training as dask_training
from app_support import apps, data_path, env  # noqa: F401 (fixtures)
from support.jobs import make_job, wait_until

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=40) as local:
        yield local


@pytest.fixture
def place(cluster):
    return dask_training.place(cluster.scheduler_address)


def test_a_run_on_the_cluster_ends_with_the_network_a_local_run_gives(synthetic, place):
    heard = []
    job = make_job(synthetic, place=place, validation_split=0.2)
    job.listener = lambda j, what: heard.append((what, j.network.epochs_trained))
    job.start().join(120)
    assert job.status == "completed", job.message
    twin, optimizer = Network([784, 16, 10], seed=1), Adam(0.003)
    train(twin, optimizer, synthetic.x_train, synthetic.y_train,
          TrainConfig(epochs=3, batch_size=50, seed=2, validation_split=0.2))
    np.testing.assert_array_equal(job.network.params, twin.params)  # bit for bit
    np.testing.assert_array_equal(job.optimizer.state()["v"], optimizer.state()["v"])
    assert job.optimizer.t == optimizer.t and job.network.epochs_trained == 3
    assert heard[0] == ("epoch", 1) and heard[-1] == ("end", 3)  # weights after an epoch, at most once a second
    p = job.progress()
    assert len(p.epochs_table) == 3 and p.batch_steps and 0.3 < job.test_accuracy <= 1


def test_pause_and_stop_reach_the_worker_within_a_second(synthetic, place):
    job = make_job(synthetic, place=place, epochs=100_000).start()
    assert wait_until(lambda: job.progress().batch > 0)
    assert "Dask worker at tcp://" in job.message
    job.pause()
    assert wait_until(lambda: job.status == "paused", timeout=1.5)
    held = job.progress().run_fraction
    time.sleep(0.6)
    assert job.progress().run_fraction == held  # nothing trains while paused
    job.resume()
    assert wait_until(lambda: job.progress().run_fraction > held, timeout=1.5)
    began = time.monotonic()
    job.stop()
    assert job.wait_ended(1.5), job.status
    assert time.monotonic() - began < 1.5 and job.status == "stopped" and "Stopped during epoch" in job.message
    assert np.isfinite(job.network.params).all()


def test_a_lost_worker_is_reported_and_the_last_epoch_is_kept(synthetic, place, cluster):
    job = make_job(synthetic, place=place, epochs=100_000)
    epochs = []
    job.listener = lambda j, what: epochs.append((what, j.network.epochs_trained, j.network.params.copy()))
    job.start()
    assert wait_until(lambda: len(epochs) >= 2)
    worker = job.message.split("Dask worker at ")[1].rstrip(")")
    with contextlib.suppress(Exception):  # the call itself fails: its worker dies answering it
        place.client.run(os._exit, 1, workers=[worker])  # the worker process dies mid-run
    job.join(60)
    assert job.status == "failed" and "Dask worker running this run was lost" in job.message, job.message
    assert "last finished epoch" in job.message
    last = [e for e in epochs if e[0] == "epoch"][-1]
    assert job.network.epochs_trained == last[1]
    np.testing.assert_array_equal(job.network.params, last[2])  # the last epoch's weights, as they came
    assert wait_until(lambda: len(place.client.scheduler_info()["workers"]) == 2, timeout=60)  # the nanny's new one


def test_the_dataset_is_sent_to_the_cluster_once(synthetic, place, monkeypatch):
    calls = []
    real = place.client.scatter
    monkeypatch.setattr(place.client, "scatter", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(dask_training, "_scatters", {})
    for _ in range(2):
        job = make_job(synthetic, place=place, epochs=1).start()
        job.join(60)
        assert job.status == "completed", job.message
    assert len(calls) == 1


def test_runs_beyond_the_workers_wait_and_say_where(synthetic, place):
    jobs = [make_job(synthetic, place=place, epochs=100_000).start() for _ in range(3)]
    try:
        assert wait_until(lambda: sum(j.status == "running" for j in jobs) == 2)
        time.sleep(0.5)
        waiting = [j for j in jobs if j.status == "queued"]
        assert len(waiting) == 1
        assert waiting[0].message.startswith("Waiting for a free Dask worker (2 workers at tcp://")
    finally:
        for j in jobs:
            j.stop()
        for j in jobs:
            j.join(30)
    assert all(j.status == "stopped" for j in jobs), [j.message for j in jobs]


def test_an_unreachable_scheduler_says_so():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens there
    began = time.monotonic()
    with pytest.raises(dask_training.Unreachable, match=f"scheduler at tcp://127.0.0.1:{port} cannot be reached"):
        dask_training.place(f"tcp://127.0.0.1:{port}")
    assert time.monotonic() - began < dask_training.CONNECT_SECONDS + 2


def test_the_train_page_offers_this_server_when_the_cluster_cannot_be_reached(apps, monkeypatch):
    import socket

    from app_support import build_network, finish, goto, joined, lab
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        monkeypatch.setenv("DIGITLAB_SCHEDULER", f"tcp://127.0.0.1:{s.getsockname()[1]}")
    monkeypatch.setattr(dask_training, "CONNECT_SECONDS", 1)
    at = apps.new()
    build_network(at, layers="16")
    goto(at, "2_Train.py")
    at.button(key="start").click().run()
    assert "cannot be reached" in joined(at.error) and "Train on this server instead" in joined(at.error)
    assert lab(at).job is None
    at.button(key="start_here").click().run()
    job = finish(at)
    assert job.status == "completed" and job.place is None  # trained here
    assert "start_here" not in [b.key for b in at.button]  # offered only after a refusal


def test_the_train_page_trains_on_the_cluster_when_told_to(apps, monkeypatch, cluster):
    from app_support import build_network, finish, goto, joined, set_train
    monkeypatch.setenv("DIGITLAB_SCHEDULER", cluster.scheduler_address)
    at = apps.new()
    build_network(at, layers="16")
    goto(at, "2_Train.py")
    set_train(at, epochs=2)
    at.button(key="start").click().run()
    job = finish(at)
    assert job.status == "completed" and job.place is not None, job.message
    assert "Completed 2 epochs" in joined(at.success)
