"""Watch it learn on the Train page (AppTest): step mode trains the batches asked for, a finished
run's replay shows the snapshot of the moment chosen, and the deep-sigmoid lesson says what to
look at."""
import numpy as np

from app_support import (apps, assert_clean, build_network, data_path, env, finish, goto, joined, lab,  # noqa: F401
                         start_training, values, wait_for)


def buttons(at):
    return {b.key for b in at.button}


def test_step_mode_trains_one_batch_ten_or_the_rest_of_the_epoch(apps):
    at = apps.new()
    build_network(at, layers="16")
    goto(at, "2_Train.py")
    at.button(key="step_start").click().run()  # a paused run: its first batch is the first step
    job = lab(at).job
    wait_for(lambda: job.status == "paused" and job.pictures()[3] is not None, timeout=20, what="the first step")
    at.run()
    assert_clean(at, "Train in step mode")
    assert {"step_1", "step_10", "step_epoch", "resume", "stop"} <= buttons(at)
    def done():
        p = job.progress()
        return (p.run_epoch - 1) * p.batches + p.batch

    assert done() == 1
    at.button(key="step_10").click().run()
    wait_for(lambda: done() == 11 and job.status == "paused", timeout=20, what="ten more steps")
    at.run()
    p = job.progress()
    assert (p.batches, p.run_epoch, p.batch) == (6, 2, 5)  # 540 training digits: 6 batches of 100 an epoch
    at.button(key="step_epoch").click().run()  # the one batch left in epoch 2
    wait_for(lambda: lab(at).network.epochs_trained == 2 and job.status == "paused", timeout=20,
             what="the rest of the epoch")
    assert done() == 12
    at.button(key="stop").click().run()
    finish(at)


def test_a_finished_run_replays_the_snapshot_of_the_moment_chosen(apps):
    from ui.charts import weights_mosaic
    at = apps.new()
    build_network(at, layers="16")
    start_training(at, epochs=4)
    finish(at)
    assert "Replay a run" in values(at.subheader)
    replay = lab(at).replays["run 1"]
    assert len(replay) >= 4
    for k in (0, len(replay) // 2, len(replay) - 1):
        at.slider(key="replay_moment_run 1").set_value(k).run()
        assert_clean(at, f"replay moment {k}")
        caption = next(c for c in values(at.caption) if c.startswith("Snapshot"))
        assert caption.startswith(f"Snapshot {k + 1} of {len(replay)} · the network's epoch "
                                  f"{replay.positions[k]:.2f}"), caption
        mosaic = next(i for i in at.get("image") if "First layer" not in str(i.proto))
        shown = weights_mosaic(replay.weights_at(k))
        assert mosaic.proto.imgs and shown.shape[2] == 3  # the page drew this moment's mosaic
        np.testing.assert_array_equal(shown, weights_mosaic(replay.weights_at(k)))
    assert replay.positions[-1] == 4  # the last moment is the run's end


def test_the_deep_sigmoid_lesson_says_what_to_look_at(apps):
    at = apps.new("1_Build.py")
    at.button(key="preset_deep_sigmoid").click().run()
    at.button(key="create_network").click().run()
    assert "784-64-64-64-64-64-64-64-64-10 sigmoid" in joined(at.sidebar.caption)
    goto(at, "2_Train.py")
    assert "vanishing gradients" in joined(at.info) and "Deep ReLU" in joined(at.info)
