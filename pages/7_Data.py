"""Data: samples per class, class counts, average digits, pixel histogram, source and licence."""
import numpy as np
import plotly.graph_objects as go
import streamlit as st

from ui.charts import image_grid
from ui.frame import page_setup, require_dataset

lab, dataset, error = page_setup("Data", "🗂️")
require_dataset(dataset, error)
names = [str(n) for n in dataset.class_names]


@st.cache_data(show_spinner=False, max_entries=4)
def statistics(source, _dataset):
    """Counts, mean images and pixel histogram, computed once per dataset (keyed by source)."""
    k = _dataset.num_classes
    means = [(_dataset.x_train[_dataset.y_train == c].mean(axis=0) if np.any(_dataset.y_train == c)
              else np.zeros((28, 28))) for c in range(k)]
    hist = np.bincount(_dataset.x_train[:10000].ravel(), minlength=256)
    return (np.bincount(_dataset.y_train, minlength=k), np.bincount(_dataset.y_test, minlength=k), means, hist)


train_counts, test_counts, means, hist = statistics(dataset.source, dataset)
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
    fig = go.Figure([go.Bar(x=names, y=train_counts, name="train"), go.Bar(x=names, y=test_counts, name="test")])
    fig.update_layout(barmode="group", height=320, xaxis=dict(type="category"), margin=dict(l=10, r=10, t=10, b=10))
    st.plotly_chart(fig, key="class_counts", width="stretch")
with right:
    st.subheader("Pixel intensities")
    fig = go.Figure(go.Bar(x=np.arange(256), y=hist, marker_color="#555"))
    fig.update_layout(height=320, yaxis_type="log", xaxis_title=f"pixel value (first {min(len(dataset.x_train), 10_000):,} images)",
                      margin=dict(l=10, r=10, t=10, b=10))
    st.plotly_chart(fig, key="pixel_hist", width="stretch")

st.subheader("The average digit of each class")
st.plotly_chart(image_grid([m for m in means], 10, titles=names, height_per_row=120), key="mean_digits",
                width="stretch")
