"""Digit Lab — Home. Run with `streamlit run app.py`."""

import streamlit as st

from engine.errors import DatasetError
from ui.datasets import NO_DATA_HELP, SAMPLE_BANNER, dataset_summary, retry, save_upload
from ui.frame import epochs_text, page_setup
from ui.state import accuracy_text, current_accuracy

lab, dataset, error = page_setup("Home", "🏠", heading="🔢 Digit Lab")
st.markdown(
    "Build a feed-forward neural network, train it on handwritten digits while you watch it "
    "learn, **prove its backpropagation right** with gradient checks, then test it on random "
    "test digits or on a digit you draw. Everything runs on a small engine written from "
    "scratch in NumPy — no deep-learning framework in the loop."
)

cols = st.columns(4)
cols[0].page_link("pages/1_Build.py", label="**1 · Build** a network", icon="🏗️")
cols[1].page_link("pages/2_Train.py", label="**2 · Train** it live", icon="📈")
cols[2].page_link("pages/3_Gradient_check.py", label="**3 · Check** its gradients", icon="🧮")
cols[3].page_link("pages/4_Predict.py", label="**4 · Predict** and draw", icon="✏️")

st.subheader("Dataset")
if dataset is not None:
    facts = dataset_summary(dataset)
    st.success(f"**{facts['name']}** — {facts['n_train']:,} training and {facts['n_test']:,} test images.  \n"
               f"Source: `{facts['source']}`")
    if dataset.fallback:
        st.info(SAMPLE_BANNER)
        with st.expander("Why the sample, and how to use full MNIST"):
            st.caption(f"Full MNIST was not found: {dataset.fallback}")
            st.markdown(NO_DATA_HELP)
else:
    st.error(f"No dataset could be loaded. {error}")
    st.markdown(NO_DATA_HELP)

with st.expander("Use other data", expanded=dataset is None):
    path = st.text_input("Path to a Keras-format .npz or a folder of MNIST IDX files",
                         value=lab.dataset_path or "", key="dataset_path_input",
                         placeholder="/data/mnist.npz")
    kind = st.radio("Dataset kind", ["mnist", "fashion-mnist"], horizontal=True,
                    index=0 if "fashion" not in lab.dataset_name else 1, key="dataset_kind")
    switching_locked = lab.training  # the run trains on the data it started with
    if switching_locked:
        st.caption("A training run is going on: switch the data after it ends (or stop it on **Train**).")
    if st.button("Use this path", key="use_path", disabled=switching_locked):
        lab.dataset_path, lab.dataset_name = (path.strip() or None), kind
        lab.save(weights=False)
        retry()
        st.rerun()
    upload = st.file_uploader("…or upload a Keras-format .npz", type=["npz"], key="dataset_upload")
    if upload is not None and st.button("Use the uploaded file", key="use_upload", disabled=switching_locked):
        try:
            lab.dataset_path, lab.dataset_name = save_upload(upload.getvalue(), kind, upload.name), kind
            lab.save(weights=False)
            st.rerun()
        except DatasetError as bad:
            st.error(f"That file cannot be used: {bad}")

st.subheader("Your network")
if lab.network is None:
    st.info("No network yet. Start on **Build** — try the *Recommended* preset.")
else:
    accuracy = ("training now — see **Train**" if lab.training
                else f"test accuracy **{accuracy_text(current_accuracy(lab, dataset), lab.measuring)}**")
    st.markdown(f"`{lab.network.describe()}` · {lab.network.parameter_count:,} parameters · "
                f"{epochs_text(lab.network)} epochs trained · {accuracy}")

st.caption("More: **Evaluate** (confusion matrix, mistakes, weights), **Compare** (the same network "
           "in Keras), **Data**, **Models** (save/load), **Environment** — in the sidebar.")
