"""Environment: what this machine offers (the notebook's "Get the specs")."""
import streamlit as st

from engine.info import bug_report_text, environment_info
from ui.frame import page_setup

lab, dataset, error = page_setup("Environment", "🖥️")

info = environment_info(include_tensorflow=False)
if st.button("Check TensorFlow and GPUs (takes a few seconds)", key="env_tf"):
    with st.spinner("Importing TensorFlow…"):
        st.session_state["env_tf_info"] = environment_info(include_tensorflow=True)
if "env_tf_info" in st.session_state:
    tf_info = st.session_state["env_tf_info"]
    info.update({k: tf_info[k] for k in ("tensorflow", "keras", "gpus")})

blas = info.get("blas") or {}
c = st.columns(4)
c[0].metric("Python", info["python"])
c[1].metric("NumPy", info["numpy"])
c[2].metric("CPU cores", f"{info['cpu_usable']} usable of {info['cpu_count']}")
total = info.get("memory_total_bytes")
c[3].metric("Memory", f"{total / 2**30:.1f} GiB" if total else "unknown")
st.markdown(f"**BLAS:** {blas.get('library', 'unknown')} {blas.get('version', '')}, "
            f"{blas.get('threads', '?')} thread{'' if blas.get('threads') == 1 else 's'} ({blas.get('architecture', '')})")
st.markdown("**Packages:** " + " · ".join(f"{k} {v}" for k, v in info["packages"].items()))
data = info.get("dataset") or {}
st.markdown(f"**Dataset in use:** {dataset.source if dataset is not None else 'none loaded'}")
LOCATION_LABELS = {"mnist_source": "MNIST comes from", "keras_cache_dir": "Keras's cache",
                   "debian_fashion_mnist": "Debian's dataset-fashion-mnist",
                   "mnist_path": "MNIST_PATH", "fashion_mnist_path": "FASHION_MNIST_PATH",
                   "mnist_cached": "MNIST in Keras's cache", "fashion_mnist_cached": "Fashion-MNIST in Keras's cache"}
st.markdown("**Dataset locations:** " + " · ".join(
    f"{LOCATION_LABELS.get(k, k)}: " + ("yes" if v is True else "no" if v is False else "not set" if v is None else f"`{v}`")
    for k, v in data.items()))
if info.get("tensorflow") is None:
    st.caption("TensorFlow: not checked yet (importing it takes seconds; only the Compare page needs it).")
else:
    gpus = info.get("gpus")
    st.markdown(f"**TensorFlow:** {info['tensorflow']} · **Keras:** {info['keras']} · **GPUs:** "
                f"{', '.join(gpus) if isinstance(gpus, list) and gpus else ('none' if isinstance(gpus, list) else gpus)}")

st.subheader("Copy for a bug report")
st.code(bug_report_text(info), language="text")
