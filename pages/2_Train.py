"""Train: optimizer and schedule, Start/Pause/Resume/Stop, live progress and curves."""
import math

import numpy as np
import pandas as pd
import streamlit as st

from ui import live_view
from ui.charts import confusion_figure, runs_overlay, training_curves, weights_mosaic
from ui.frame import page_setup, require_dataset, require_network
from ui.runs import describe_differences, finished_text, record_finished_run, resume_run, setting_problems, start_run
from ui.settings import TRAIN, bind, remember
from ui.training import STOP_GRACE
from ui.state import data_key

lab, dataset, error = page_setup("Train", "📈", badge=False)
require_dataset(dataset, error)
require_network(lab, dataset)

bind(lab, TRAIN, "t_")
remember(lab, TRAIN, "t_")  # the values just typed, so each field is checked as it is entered
problems = setting_problems(lab.settings, len(dataset.y_train))


def flagged(key):
    """Under a field: what is wrong with its value, if anything."""
    if key in problems:
        st.markdown(f":red[⚠️ {problems[key]}]")


with st.expander("Settings", expanded=not lab.training):
    c1, c2, c3 = st.columns(3)
    with c1:
        st.radio("Optimizer", ["adam", "sgd"], horizontal=True, key="t_optimizer")
        st.number_input("Learning rate", min_value=0.0, format="%.5f", step=0.0005, key="t_lr")
        flagged("lr")
        if st.session_state["t_optimizer"] == "adam":
            for key, label, fmt in (("beta1", "β1", "%.4f"), ("beta2", "β2", "%.5f"), ("eps", "ε", "%.1e")):
                st.number_input(label, min_value=0.0, max_value=None if key == "eps" else 0.99999, format=fmt,
                                key=f"t_{key}")
                flagged(key)
        else:
            st.number_input("Momentum", min_value=0.0, max_value=0.999, key="t_momentum")
            flagged("momentum")
        st.number_input("L2 weight decay", min_value=0.0, format="%.5f", step=0.0001, key="t_weight_decay")
        flagged("weight_decay")
    with c2:
        st.number_input("Batch size", min_value=0, step=10, key="t_batch_size")
        flagged("batch_size")
        st.number_input("Epochs", min_value=0, step=1, key="t_epochs")
        flagged("epochs")
        st.number_input("Validation split", min_value=0.0, max_value=1.0, step=0.05, format="%.3f",
                        key="t_validation_split")
        flagged("validation_split")
        st.number_input("Early stopping patience (epochs, 0 = off)", min_value=0, step=1, key="t_early_stopping")
        flagged("early_stopping")
    with c3:
        st.selectbox("Learning-rate schedule", ["constant", "step", "cosine"], key="t_schedule")
        st.number_input("Warm-up epochs", min_value=0.0, step=0.5, key="t_warmup_epochs")
        flagged("warmup_epochs")
        st.number_input("Max-norm on hidden weights (0 = off)", min_value=0.0, step=0.5, key="t_max_norm")
        flagged("max_norm")
        st.checkbox("Augment the images", key="t_augment",
                    help="Each batch is shown shifted by up to ±2 px, rotated by up to ±10° and scaled by up to ±10%.")
    flagged("keep_prob")  # set on Build, checked here too: it shapes the run

# Far above the usual range a run diverges (and ends, keeping the weights from before the failing epoch).
USUAL_LR = {"adam": (1e-4, 0.01, 0.05), "sgd": (1e-3, 0.5, 2.0)}  # low, high, warn above
low, high, warn_above = USUAL_LR[lab.settings["optimizer"]]
if not lab.training and 0 < lab.settings["epochs"] <= lab.settings["warmup_epochs"]:
    st.warning(f"The warm-up ({lab.settings['warmup_epochs']:g} epochs) lasts the whole run: the learning "
               "rate never reaches the value set. Shorten the warm-up or train for more epochs.")
if not lab.training and lab.settings["lr"] > warn_above:
    st.warning(f"A learning rate of {lab.settings['lr']:g} is far above the usual range for "
               f"{lab.settings['optimizer'].upper()} ({low:g} to {high:g}): the run will probably diverge. "
               "If it does, it stops and keeps the weights from before the failing epoch.")

if lab.settings["augment"] and not lab.training:
    with st.expander("What the network is shown with augmentation"):
        from engine.augment import augment_batch
        from engine.data import scale_images
        from engine.presets import make_augment
        originals = scale_images(dataset.x_train[:8])
        shown = augment_batch(originals, make_augment(lab.settings), np.random.default_rng(len(lab.runs)))
        st.caption("Top row: eight training digits. Bottom row: the same digits as one batch shows them.")
        st.image([img.reshape(28, 28) for img in originals], width=56)
        st.image([img.reshape(28, 28) for img in shown], width=56)


def on_start():
    lab.train_error = start_run(lab, dataset, keep_state=lab.continue_state)


def on_start_here():
    lab.train_error = start_run(lab, dataset, keep_state=lab.continue_state, here=True)


def on_step_start():
    lab.train_error = start_run(lab, dataset, keep_state=lab.continue_state, here=True, paused=True)


def on_resume_interrupted():
    lab.train_error = resume_run(lab, dataset)


def keep_continue_choice():
    lab.continue_state = st.session_state["continue_state_box"]
    lab.save(weights=False)


def stop_and_wait(job):
    """Stop, and draw the page once the run has ended (within a second, whatever its size),
    rather than a 'Training…' that the next redraw would contradict."""
    job.stop()
    job.wait_ended(STOP_GRACE + 0.3)


def run_controls(job):
    """The buttons for the run as it is now (drawn with its progress, so they never disagree)."""
    controls = st.container(horizontal=True, vertical_alignment="center")  # wraps on narrow screens
    if job is not None and job.active:
        if job.paused:
            controls.button("▶️ Resume", key="resume", on_click=job.resume, type="primary")
            if job.place is None:  # step mode: a paused run trains the batches asked for, then pauses again
                p = job.progress()
                rest = (p.batches - p.batch) or p.batches
                controls.button("👣 Step", key="step_1", on_click=job.step, args=(1,), help="Train exactly one batch.")
                controls.button("Step ×10", key="step_10", on_click=job.step, args=(10,))
                controls.button("Epoch", key="step_epoch", on_click=job.step, args=(rest,),
                                help=f"Train the {rest} batches left in this epoch.")
        else:
            controls.button("⏸️ Pause", key="pause", on_click=job.pause)
        controls.button("⏹️ Stop", key="stop", on_click=stop_and_wait, args=(job,))
        return
    if job is not None and job.resumable:
        left = job.config.epochs - job.run_epochs_done
        controls.button(f"▶️ Resume the interrupted run ({left} epoch{'s' * (left != 1)} left)", key="resume_run",
                        on_click=on_resume_interrupted, type="primary")
    if lab.offer_here:  # the cluster could not be reached on the last Start
        controls.button("▶️ Train on this server instead", key="start_here", on_click=on_start_here,
                        disabled=bool(problems))
    blocked = "; ".join(problems.values())
    controls.button("▶️ Start training" if job is None or not job.resumable else "Start a new run", key="start",
                    on_click=on_start, type="secondary" if job is not None and job.resumable else "primary",
                    disabled=bool(problems), help=f"Fix the settings first: {blocked}" if problems else None)
    controls.button("👣 Step", key="step_start", on_click=on_step_start, disabled=bool(problems),
                    help="Start a run that trains one batch and pauses; then step on, a batch or an epoch at a time.")
    if lab.optimizer is not None and lab.optimizer.name == lab.settings["optimizer"]:
        # The lab's setting is the truth (Streamlit forgets a widget's state while it is hidden,
        # as it is during a run): the box starts from it and writes back to it.
        controls.checkbox("Continue optimizer state", value=lab.continue_state,
                          key="continue_state_box", on_change=keep_continue_choice,
                          help="Keep the optimizer's state (Adam's moments and step count, SGD's momentum).")
    if problems:
        st.caption(f"Start is off until the settings are fixed: {blocked}")


if lab.network.activation == "sigmoid" and len(lab.network.sizes) - 2 >= 5:
    st.info("**What to look at:** the *gradient norm* chart under the curves while this runs. With sigmoid, each "
            "layer's gradient is a fraction of the next one's (a sigmoid's slope is at most 1/4), so layer 1's is "
            "thousands of times smaller than the output layer's and the first layers barely learn: vanishing "
            "gradients. Build the *Deep ReLU* preset and train it to see every layer's gradient keep its size.")

LIVE_SECONDS, SLOW_SECONDS, CHECK_SECONDS = 0.5, 2.0, 10.0
# While a run is active the browser's live view (ui/live_view.py) updates itself and asks for a
# redraw when the run's status changes, again every 2 s until the redraw comes; on a page drawn
# mid-run (a reload) the fragment also checks every 10 s, in case a request was lost (each rerun
# costs the server ~70 ms and the browser ~150 ms, on the cores the run may share). A queued
# run without the live view is checked every 2 s; without the live view, the fragment redraws
# twice a second.
live = lab.training and live_view.available()
refresh = (None if not lab.training else CHECK_SECONDS if live
           else SLOW_SECONDS if lab.job.status == "queued" else LIVE_SECONDS)


def page_state():
    """What the rest of the page was drawn for: which run, and whether it was active."""
    return id(lab.job), lab.training


drawn_for = page_state()


@st.fragment(run_every=refresh)
def live_progress():
    """The run's buttons, status and progress: the live view while it is active, else bars,
    curves and table. All drawn from one look at the run, so they always agree."""
    # A run started here (Start, Step, Resume) is drawn by this fragment alone, the rest of the
    # page as it was until the run ends (the sidebar then says "Training now" by itself, see
    # ui/frame.py): redrawing all of it at Start took the browser 0.5-1.5 core-seconds, from the
    # run's first epochs where they share the cores.
    started_here = lab.training and not drawn_for[1] and live_view.available()
    if page_state() != drawn_for and not started_here:
        st.rerun()  # a run ended (or started without the live view) since the page was drawn: redraw it all
    job = lab.job
    if refresh == SLOW_SECONDS and not live and job.status != "queued":
        st.rerun()  # the run got its slot: redraw the page at the live rate
    run_controls(job)
    refused, lab.train_error = lab.train_error, None
    if refused:
        st.error(refused)
    if job is None:
        st.info("Press **Start training**. Training goes on if you visit other pages, reload, or close the tab.")
        return
    p = job.progress()
    if job.active:
        (st.warning if p.status in ("queued", "paused") else st.info)(p.message)
        if live_view.show(job, p.status):
            return
    run_text, epoch_text = live_view.bar_texts(p)
    st.progress(min(p.run_fraction, 1.0), text=run_text)
    st.progress(min(p.epoch_fraction, 1.0), text=epoch_text)
    if not job.active:
        if refused:  # the new error is the news; the last run's end is told as what it is
            st.caption(f"Previous run: {finished_text(p.status, p.message)}")
        else:
            show = {"diverged": st.error, "failed": st.error, "stopped": st.info,
                    "interrupted": st.warning}.get(p.status, st.success)
            show(finished_text(p.status, p.message))
        trained_on = job.data_key
        other_data = trained_on is not None and trained_on != data_key(dataset)
        if not math.isnan(p.test_accuracy):
            st.metric(f"Test accuracy on {trained_on[0]}" if other_data else "Test accuracy", f"{p.test_accuracy:.2%}")
        if other_data:
            st.caption(f"This run trained and was tested on {trained_on[0]} ({trained_on[1]}), not on the data "
                       "loaded now; the sidebar gives the network's accuracy on the current data.")
        if p.epochs_table:
            seconds = sorted(r["seconds"] for r in p.epochs_table)
            st.caption(f"Run time {p.elapsed:.2f} s of training (pauses left out) · {len(seconds)} "
                       f"epoch{'s' if len(seconds) != 1 else ''}, median {seconds[len(seconds) // 2]:.3f} s each "
                       f"(fastest {seconds[0]:.3f} s, slowest {seconds[-1]:.3f} s)",
                       help="Measured where the network trains (its own process).")
    if p.batch_steps:
        # Redrawn by Streamlit while training only without the live view: Streamlit then remounts
        # the chart at every redraw (its identity hashes the data), so hover and zoom could not
        # be used anyway and a static plot costs the browser less CPU, which the run shares.
        st.plotly_chart(training_curves(p.batch_steps, p.batch_loss, p.batch_accuracy, p.epochs_table),
                        key="live_curves", width="stretch",
                        config={"staticPlot": True} if job.active else None)
    if p.epochs_table:
        columns, rows = live_view.epoch_rows(p)
        # newest first, as the live view shows it; fixed decimals so the columns line up
        st.dataframe(pd.DataFrame(rows[::-1], columns=columns), hide_index=True, width="stretch",
                     column_config={c: st.column_config.NumberColumn(format="%.2f" if c == "seconds" else
                                                                      "%d" if c == "epoch" else "%.4f")
                                    for c in columns})
    if not job.active and record_finished_run(lab):
        st.rerun()  # the run ended: refresh the whole page (sidebar)


live_progress()
live_view.preload()


@st.fragment(run_every=0.5 if st.session_state.get("replay_playing") else None)
def replay_view(name, replay):
    """A finished run played back: the moment chosen (or played), its weights, strip, confusion and curves."""
    last = len(replay) - 1
    key = f"replay_moment_{name}"
    if st.session_state.get("replay_playing"):
        moment = st.session_state.get(key, 0) + int(st.session_state.get("replay_speed", 1))
        st.session_state[key] = min(moment, last)
        if moment >= last:
            st.session_state["replay_playing"] = False
    controls = st.container(horizontal=True, vertical_alignment="bottom")
    playing = st.session_state.get("replay_playing", False)
    if controls.button("⏸️ Pause the replay" if playing else "▶️ Play", key="replay_play"):
        st.session_state["replay_playing"] = not playing
        if not playing and st.session_state.get(key, 0) >= last:
            st.session_state[key] = 0
        st.rerun()
    controls.selectbox("Speed", [1, 2, 4, 8], key="replay_speed", format_func=lambda v: f"{v}x")
    if last == 0:  # a run too short for more than one snapshot
        k = 0
    else:
        k = st.slider("Moment of the run", 0, last, key=key,
                      help="Each moment is a snapshot the run kept (twice a second while training, and at each "
                           "epoch's end).")
    position = float(replay.positions[k])
    st.caption(f"Snapshot {k + 1} of {len(replay)} · the network's epoch {position:.2f} (this run's epoch "
               f"{int(replay.run_epochs[k])})")
    left, middle, right = st.columns([3, 3, 2])
    with left:
        st.markdown("**First layer's weights**")
        st.image(weights_mosaic(replay.weights_at(k)), width="stretch")
    with middle:
        st.markdown("**The strip, read as then**")
        names = dataset.class_names
        st.image([img.reshape(28, 28) for img in replay.strip_images], width=44,
                 caption=[f"{'✅' if r == t else '❌'}{names[int(r)]} {p:.0%}" for r, t, p in
                          zip(replay.strip_read[k], replay.strip_true, replay.strip_prob[k])])
    with right:
        confusion = replay.confusions[k]
        if confusion.min() >= 0:
            st.plotly_chart(confusion_figure(confusion, names), key=f"replay_confusion_{name}", width="stretch")
        else:
            st.caption("The confusion matrix comes at the end of the first epoch.")
    shown = replay.curve_steps <= position
    if shown.any():
        table = [r for r in next((run["history"] for run in lab.runs if run["name"] == name), [])
                 if r["epoch"] <= position]
        st.plotly_chart(training_curves(replay.curve_steps[shown], replay.curve_loss[shown],
                                        replay.curve_accuracy[shown], table),
                        key=f"replay_curves_{name}", width="stretch")


if lab.replays and not lab.training:
    st.subheader("Replay a run")
    names = [run["name"] for run in lab.runs if run["name"] in lab.replays]
    chosen = st.selectbox("Run", names[::-1], key="replay_run")  # the newest first
    replay_view(chosen, lab.replays[chosen])

if len(lab.runs) >= 2:
    st.subheader("Compare runs")
    names = describe_differences(lab.runs)
    # Options are run numbers (names change as runs come to differ in more settings); a new run
    # gives a new key, so the choice starts again from the last two runs, the new one included.
    chosen = st.multiselect("Runs", range(len(names)), default=range(len(names))[-2:],
                            format_func=names.__getitem__, key=f"overlay_runs_{len(names)}")
    metric = st.selectbox("Metric", ["val_accuracy", "accuracy", "val_loss", "loss"], key="overlay_metric")
    picked = [dict(lab.runs[i], name=names[i]) for i in sorted(chosen)]
    if picked:
        st.plotly_chart(runs_overlay(picked, metric), key="runs_overlay", width="stretch")
