"""Evaluate: confusion matrix, per-class accuracy, confident mistakes, weights, activations."""
import numpy as np
import streamlit as st

from engine.data import scale_images
from engine.metrics import evaluate_network, most_confident_mistakes
from ui.charts import activation_strip, confusion_figure, image_grid, per_class_accuracy_figure, probability_bars
from ui.frame import page_setup, require_dataset, require_network
from ui.state import per_network

lab, dataset, error = page_setup("Evaluate", "🔍")
require_dataset(dataset, error)
require_network(lab, dataset)
net, names = lab.network, dataset.class_names

ev = per_network(lab, "evaluation", dataset, lambda: evaluate_network(net, dataset.x_test, dataset.y_test))
st.metric("Test accuracy", f"{ev['accuracy']:.2%}", help=f"{len(dataset.y_test):,} test images")

left, right = st.columns([3, 2])
with left:
    st.subheader("Confusion matrix")
    st.plotly_chart(confusion_figure(ev["confusion"], names), key="confusion", width="stretch")
with right:
    st.subheader("Per-class accuracy")
    shares = ev["per_class_accuracy"]  # NaN for a class without test images: a labelled gap
    st.plotly_chart(per_class_accuracy_figure(shares, names), key="per_class", width="stretch")
    st.markdown("**Digits in one cell of the matrix**")
    off_diagonal = ev["confusion"] - np.diag(np.diag(ev["confusion"]))
    worst_true, worst_pred = np.unravel_index(off_diagonal.argmax(), off_diagonal.shape)  # most confused pair
    c1, c2 = st.columns(2)
    true_c = c1.selectbox("True class", range(len(names)), index=int(worst_true),
                          format_func=lambda i: str(names[i]), key="cell_true")
    pred_c = c2.selectbox("Predicted as", range(len(names)), index=int(worst_pred),
                          format_func=lambda i: str(names[i]), key="cell_pred")
    cell = np.flatnonzero((dataset.y_test == true_c) & (ev["predicted"] == pred_c))
    st.caption(f"{len(cell)} test images")
    if len(cell):
        st.image([dataset.x_test[i] for i in cell[:24]], width=48)

st.subheader("Most confident mistakes")
mistakes = most_confident_mistakes(ev["probabilities"], dataset.y_test, 8)
if len(mistakes) == 0:
    st.success("No mistakes on the test set.")
else:
    cols = st.columns(len(mistakes))
    for col, i in zip(cols, mistakes):
        p = int(ev["predicted"][i])
        col.image(dataset.x_test[i], width=64)
        col.markdown(f":red[**{names[p]}**] {ev['probabilities'][i, p]:.0%}  \ntrue {names[int(dataset.y_test[i])]}")
    which = st.selectbox("Probabilities of mistake", range(len(mistakes)), format_func=lambda k: f"#{k + 1}",
                         key="mistake_pick")
    i = mistakes[which]
    st.plotly_chart(probability_bars(ev["probabilities"][i], names, int(dataset.y_test[i])), key="mistake_bars",
                    width="stretch")

st.subheader("What the first layer looks for")
w1 = net.weights[0]
if w1.shape[0] == 784:
    shown = min(w1.shape[1], 32)
    st.caption(f"Incoming weights of the first {shown} of {w1.shape[1]} units, as 28x28 images (red +, blue −).")
    images = [w1[:, j].reshape(28, 28) for j in range(shown)]
    st.plotly_chart(image_grid(images, 8, height_per_row=100), key="weights_grid", width="stretch")

st.subheader("Hidden activations, layer by layer")
sources = ["A test digit"] + (["The digit last drawn on Predict"] if lab.last_drawn is not None else [])
source = st.radio("Input", sources, horizontal=True, key="activation_source")
if source == "A test digit":
    idx = st.number_input("Test image index", 0, len(dataset.y_test) - 1, 0, key="activation_index")
    x = scale_images(dataset.x_test[idx])
else:
    x = lab.last_drawn.reshape(1, -1).astype(np.float32)
c1, c2 = st.columns([1, 4])
c1.image(x.reshape(28, 28), width=112, clamp=True)
with c2:
    hidden = net.hidden_activations(x)
    if not hidden:
        st.info("This network has no hidden layer.")
    for k, h in enumerate(hidden, 1):
        st.plotly_chart(activation_strip(h[0], k), key=f"activation_{k}", width="stretch")
    probabilities = net.predict_proba(x)[0]
    st.plotly_chart(probability_bars(probabilities, names), key="activation_output", width="stretch")
