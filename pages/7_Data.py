"""Data: samples per class, class counts, average digits, pixel histogram, source and licence."""
import numpy as np
import streamlit as st

from ui.charts import class_counts_figure, image_grid, pixel_histogram
from ui.frame import page_setup, require_dataset
from ui.state import data_key

lab, dataset, error = page_setup("Data", "🗂️")
require_dataset(dataset, error)
names = [str(n) for n in dataset.class_names]


@st.cache_data(show_spinner=False, max_entries=4)
def statistics(key, _dataset):
    """Counts, mean images and pixel histogram, computed once per dataset (keyed by data_key)."""
    k = _dataset.num_classes
    means = [(_dataset.x_train[_dataset.y_train == c].mean(axis=0) if np.any(_dataset.y_train == c)
              else np.zeros((28, 28))) for c in range(k)]
    hist = np.bincount(_dataset.x_train[:10000].ravel(), minlength=256)
    return (np.bincount(_dataset.y_train, minlength=k), np.bincount(_dataset.y_test, minlength=k), means, hist)


train_counts, test_counts, means, hist = statistics(data_key(dataset), dataset)
st.markdown(f"**{dataset.name}** — {len(dataset.y_train):,} training and {len(dataset.y_test):,} test images, "
            f"28x28 grey pixels 0–255.  \n**Source:** `{dataset.source}`  \n**Licence:** {dataset.licence}")

st.subheader("Samples of each class")
rng = np.random.default_rng(st.session_state.get("data_seed", 0))
if st.button("Other samples", key="data_resample"):
    st.session_state["data_seed"] = st.session_state.get("data_seed", 0) + 1
    st.rerun()
for c, name in enumerate(names):
    members = np.flatnonzero(dataset.y_train == c)
    if len(members):
        cols = st.columns([1, 10])
        cols[0].markdown(f"**{name}**")
        cols[1].image([dataset.x_train[i] for i in rng.choice(members, min(12, len(members)), replace=False)], width=40)

left, right = st.columns(2)
with left:
    st.subheader("Class counts")
    st.plotly_chart(class_counts_figure(names, train_counts, test_counts), key="class_counts", width="stretch")
with right:
    st.subheader("Pixel intensities")
    st.plotly_chart(pixel_histogram(hist, min(len(dataset.x_train), 10_000)), key="pixel_hist", width="stretch")

st.subheader("The average digit of each class")
st.plotly_chart(image_grid([m for m in means], 10, titles=names, height_per_row=120), key="mean_digits",
                width="stretch")
