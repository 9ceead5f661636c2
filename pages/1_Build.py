"""Build: choose the architecture, see it, create the network."""
import streamlit as st

from engine.errors import ConfigError
from engine.memory import check_memory, format_bytes, training_memory_bytes
from engine.network import Network, parse_layers
from engine.trainer import evaluate
from ui.charts import architecture_figure
from ui.datasets import current_dataset
from ui.frame import page_setup, require_dataset
from ui.settings import apply_preset, bind, remember, settings
from ui.state import data_key

lab, dataset, error = page_setup("Build", "🏗️", heading="🏗️ Build a network")

presets = st.container(horizontal=True)  # wraps on narrow screens instead of cutting the labels
presets.button("Notebook preset", key="preset_notebook", on_click=apply_preset, args=(lab, "notebook"),
                  help="784-64-32-10, ReLU, no biases, Adam 0.001, batch 100, 10 epochs: the original notebook.")
presets.button("Recommended preset", key="preset_recommended", on_click=apply_preset, args=(lab, "recommended"),
                  help="The best settings found for a few thousand digits within a minute of training.")

bind(lab, "build", "b_")
left, right = st.columns([2, 3])
with left:
    st.text_input("Hidden layer widths (comma-separated)", key="b_layers",
                  help="For example `64, 32` gives 784-64-32-10. Leave empty for no hidden layer.")
    st.selectbox("Activation", ["relu", "leaky_relu", "tanh", "sigmoid"], key="b_activation")
    st.number_input("Dropout keep-probability", min_value=0.0, max_value=1.0, step=0.05, key="b_keep_prob",
                    help="1.0 means no dropout. 0.8 keeps 80% of hidden units on each sample.")
    st.checkbox("Biases", key="b_use_bias", help="Off reproduces the notebook, which had none.")
    st.number_input("Seed", min_value=0, step=1, key="b_seed", help="Same seed, same initial weights.")
    st.radio("Precision", ["float32", "float64"], horizontal=True, key="b_dtype")
remember(lab, "build", "b_")
s = settings(lab, "build")

inputs = dataset.x_train[0].size if dataset is not None else 784
classes = dataset.num_classes if dataset is not None else 10
problems = []
try:
    hidden = parse_layers(s["layers"])
    sizes = [inputs, *hidden, classes]
except ConfigError as bad:
    problems.append(str(bad))
    sizes = None
if not 0 < s["keep_prob"] <= 1:
    problems.append("Dropout keep-probability must be above 0 (1.0 = no dropout).")
if sizes is not None:
    try:
        check_memory(sizes, int(settings(lab, "train")["batch_size"]), s["dtype"], s["use_bias"])
    except ConfigError as bad:
        problems.append(str(bad))

with right:
    if sizes is not None:
        st.plotly_chart(architecture_figure(sizes, s["activation"]), key="architecture", width="stretch")
        n_params = sum(a * b + (b if s["use_bias"] else 0) for a, b in zip(sizes[:-1], sizes[1:]))
        memory = training_memory_bytes(sizes, int(settings(lab, "train")["batch_size"]), s["dtype"], s["use_bias"])
        st.markdown(f"**Architecture:** `{'-'.join(map(str, sizes))}`")
        c2, c3 = st.columns(2)
        c2.metric("Parameters", f"{n_params:,}")
        c3.metric("Memory to train", format_bytes(memory))
for problem in problems:
    st.error(problem)


def create_network():
    """A callback, so the sidebar (drawn before the page body) already shows the new network.
    It reads the widgets' values as the click sent them, not the previous run's."""
    remember(lab, "build", "b_")
    chosen, (data, _) = settings(lab, "build"), current_dataset(lab)
    if data is None or lab.training:
        return
    try:
        net = Network([data.x_train[0].size, *parse_layers(chosen["layers"]), data.num_classes],
                      chosen["activation"], chosen["use_bias"], chosen["dtype"], seed=int(chosen["seed"]))
    except (ConfigError, TypeError, ValueError):
        return  # the page lists what is wrong
    _, untrained = evaluate(net, data.x_test, data.y_test)
    lab.set_network(net, settings=dict(chosen))
    lab.remember_accuracy(untrained, data_key(data))
    lab.untrained_accuracy = untrained
    lab.optimizer = None
    lab.job = None
    lab.save()
    st.session_state["build_created"] = lab.version  # the message below is about this network only


require_dataset(dataset, error)
if lab.training:
    st.warning("A training run is going on. Stop it on **Train** before building a new network, "
               "so the trained one is not lost.")
else:
    st.button("Create network", type="primary", disabled=bool(problems), key="create_network",
              on_click=create_network)

if lab.network is not None and st.session_state.get("build_created") == lab.version and not lab.training:
    st.success(f"Created `{lab.network.describe()}`. Untrained test accuracy: **{lab.untrained_accuracy:.2%}** "
               "(about 10%: a guess among 10 classes, like the notebook's 0.1093).")
    st.page_link("pages/2_Train.py", label="Now train it", icon="📈")
