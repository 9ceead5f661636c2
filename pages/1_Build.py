"""Build: choose the architecture, see it, create the network."""
import numpy as np
import streamlit as st

from engine.errors import ConfigError
from engine.memory import check_memory, format_bytes, training_memory_bytes
from engine.estimate import create_seconds, epoch_seconds, test_seconds
from engine.network import parameter_count, parse_layers
from engine.presets import build_network
from engine.trainer import evaluate
from ui.charts import architecture_figure
from ui.frame import page_setup, require_dataset
from ui.settings import BUILD, apply_preset, bind, remember, settings
from ui.state import data_key

lab, dataset, error = page_setup("Build", "🏗️", heading="🏗️ Build a network")
SLOW_EPOCH_SECONDS, SLOW_RUN_SECONDS, SLOW_CREATE_SECONDS = 30.0, 120.0, 3.0  # above these, a warning before Create
UNTRAINED_TEST_SECONDS = 0.3  # the untrained accuracy is measured on as many test images as this allows


def seconds_text(seconds):
    """'0.02 s', '12 s', '3.5 min', '1.2 h'."""
    if seconds < 0.01:
        return "under 0.01 s"
    if seconds < 1:
        return f"{seconds:.2f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


@st.cache_data(show_spinner=False, max_entries=64)
def build_timing(sizes, build, train, n_train):
    """Estimated seconds to create the network and to train an epoch of it on this machine."""
    split = float(train["validation_split"]) if 0 <= float(train["validation_split"]) < 1 else 0.0
    n_val = int(round(n_train * split))
    batch = max(int(train["batch_size"]), 1)
    return {"create": create_seconds(sizes, build["use_bias"], build["dtype"]), "fit": n_train - n_val,
            "epoch": epoch_seconds(sizes, batch, n_train - n_val, n_val, build["use_bias"], build["dtype"])}

presets = st.container(horizontal=True)  # wraps on narrow screens instead of cutting the labels
presets.button("Notebook preset", key="preset_notebook", on_click=apply_preset, args=(lab, "notebook"),
                  help="784-64-32-10, ReLU, no biases, Adam 0.001, batch 100, 10 epochs: the original notebook.")
presets.button("Recommended preset", key="preset_recommended", on_click=apply_preset, args=(lab, "recommended"),
                  help="The best settings found for a few thousand digits within a minute of training.")
presets.button("Deep sigmoid (a lesson)", key="preset_deep_sigmoid", on_click=apply_preset, args=(lab, "deep_sigmoid"),
               help="Eight sigmoid layers of 64: watch the gradients vanish layer by layer on Train.")
presets.button("Deep ReLU", key="preset_deep_relu", on_click=apply_preset, args=(lab, "deep_relu"),
               help="The same eight layers with ReLU, to compare.")

bind(lab, BUILD, "b_")
left, right = st.columns([2, 3])
with left:
    st.text_input("Hidden layer widths (comma-separated)", key="b_hidden",
                  help="For example `64, 32` gives 784-64-32-10. Leave empty for no hidden layer.")
    st.selectbox("Activation", ["relu", "leaky_relu", "tanh", "sigmoid"], key="b_activation")
    st.number_input("Dropout keep-probability", min_value=0.0, max_value=1.0, step=0.05, key="b_keep_prob",
                    help="1.0 means no dropout. 0.8 keeps 80% of hidden units on each sample.")
    st.checkbox("Biases", key="b_use_bias", help="Off reproduces the notebook, which had none.")
    st.number_input("Seed", min_value=0, step=1, key="b_seed", help="Same seed, same initial weights.")
    st.radio("Precision", ["float32", "float64"], horizontal=True, key="b_dtype")
remember(lab, BUILD, "b_")
s = train = settings(lab)

inputs = dataset.x_train[0].size if dataset is not None else 784
classes = dataset.num_classes if dataset is not None else 10
problems = []
try:
    hidden = parse_layers(st.session_state["b_hidden"])  # the text as typed (the settings keep the last good one)
    sizes = [inputs, *hidden, classes]
except ConfigError as bad:
    problems.append(str(bad))
    sizes = None
if not 0 < s["keep_prob"] <= 1:
    problems.append("Dropout keep-probability must be above 0 (1.0 = no dropout).")
if sizes is not None:
    try:
        check_memory(sizes, int(train["batch_size"]), s["dtype"], s["use_bias"])
    except ConfigError as bad:
        problems.append(str(bad))
n_train = len(dataset.y_train) if dataset is not None else 60_000
timing = None if sizes is None or problems else build_timing(sizes, s, train, n_train)

with right:
    if sizes is not None:
        st.plotly_chart(architecture_figure(sizes, s["activation"]), key="architecture", width="stretch")
        memory = training_memory_bytes(sizes, int(train["batch_size"]), s["dtype"], s["use_bias"])
        st.markdown(f"**Architecture:** `{'-'.join(map(str, sizes))}`")
        c2, c3 = st.columns(2)
        c2.metric("Parameters", f"{parameter_count(sizes, s['use_bias']):,}")
        c3.metric("Memory to train", format_bytes(memory))
        if timing is not None:
            st.caption(f"On this machine: **{seconds_text(timing['create'])}** to create, "
                       f"**{seconds_text(timing['epoch'])} per epoch** on {timing['fit']:,} images (batch "
                       f"{int(train['batch_size'])}, as set on Train). Estimates from a quick measurement of this "
                       "machine's speed.")
with left:
    for problem in problems:
        st.error(problem)
if timing is not None and (timing["epoch"] > SLOW_EPOCH_SECONDS or timing["create"] > SLOW_CREATE_SECONDS
                           or timing["epoch"] * int(train["epochs"]) > SLOW_RUN_SECONDS):
    st.warning(f"This network is large for this machine: about {seconds_text(timing['epoch'])} per epoch, "
               f"{seconds_text(timing['epoch'] * int(train['epochs']))} for the {int(train['epochs'])} epochs set on "
               "Train. Narrower or fewer layers train much faster; Stop ends a run within a second whatever its size.")


def form_network():
    """The architecture the form describes now: (sizes, activation, biases, dtype)."""
    return None if sizes is None else (sizes, s["activation"], bool(s["use_bias"]), s["dtype"])


def network_built():
    """The current network's architecture (its seed is no part of it once it has trained)."""
    net = lab.network
    return None if net is None else (net.sizes, net.activation, net.use_bias, np.dtype(net.dtype).name)


def create_network(data):
    """Build the form's network (its weights only: nothing slower), measure its untrained
    accuracy on as many test images as take a moment, and keep it."""
    layers, activation, use_bias, dtype = form_network()
    with st.spinner(f"Creating {'-'.join(map(str, layers))} ({parameter_count(layers, use_bias):,} parameters, "
                    f"about {seconds_text(timing['create'])})…"):
        net = build_network(s, layers[0], layers[-1])
        n_test = min(len(data.y_test), max(200, int(len(data.y_test) * UNTRAINED_TEST_SECONDS
                                                   / max(test_seconds(layers, len(data.y_test), dtype), 1e-9))))
        _, untrained = evaluate(net, data.x_test[:n_test], data.y_test[:n_test])
    lab.set_network(net)
    if n_test == len(data.y_test):
        lab.remember_accuracy(untrained, data_key(data))
    lab.untrained_accuracy, lab.untrained_images = untrained, n_test
    lab.optimizer = None
    lab.job = None
    lab.save()
    st.session_state["build_created"] = lab.version  # the message below is about this network only


require_dataset(dataset, error)
if lab.training:
    st.warning("A training run is going on. Stop it on **Train** before building a new network, "
               "so the trained one is not lost.")
elif st.button("Create network", type="primary", disabled=bool(problems), key="create_network"):
    create_network(dataset)
    st.rerun()  # the sidebar (drawn before this) shows the new network

built, wanted = network_built(), form_network()
if lab.network is not None and not lab.training:
    if wanted is not None and built != wanted:
        st.info(f"The current network is `{lab.network.describe()}`; the form above describes another one. "
                "Press **Create network** to build it (the current one's weights are then replaced).")
    elif st.session_state.get("build_created") == lab.version:
        measured_on = ("" if lab.untrained_images >= len(dataset.y_test)
                       else f" on {lab.untrained_images:,} of the test images")
        st.success(f"Created `{lab.network.describe()}`. Untrained test accuracy{measured_on}: "
                   f"**{lab.untrained_accuracy:.2%}** (about 10%: a guess among 10 classes, like the notebook's 0.1093).")
        st.page_link("pages/2_Train.py", label="Now train it", icon="📈")
