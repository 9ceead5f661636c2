"""Models: save, load, delete, download and upload networks."""
import pandas as pd
import streamlit as st

from engine.errors import ModelFileError
from engine.persistence import load_network, network_bytes
from ui.frame import mismatch, page_setup
from ui.models import UPLOAD_LIMIT_BYTES, adopt, list_models, metadata_for, models_dir, safe_name, save_current

lab, dataset, error = page_setup("Models", "💾")
st.caption(f"Saved in `{models_dir().resolve()}` (set `DIGITLAB_MODELS_DIR` to change).")
busy = lab.training

st.subheader("Save the current network")
if lab.network is None:
    st.info("No network yet: build and train one first.")
else:
    c1, c2 = st.columns([3, 1])
    name = c1.text_input("Name", value=f"net-{'-'.join(map(str, lab.network.sizes))}", key="save_name")
    if c2.button("Save", type="primary", key="save_model", disabled=busy,
                 help="Stop training first" if busy else None):
        clean = safe_name(name)
        if not clean:
            st.error("Give the model a name (letters, digits, dots, dashes).")
        else:
            path = save_current(lab, dataset, clean)
            st.success(f"Saved `{path.name}`.")
    st.download_button("⬇️ Download the current network (.npz)", key="download_model",
                       data=network_bytes(lab.network, lab.optimizer, metadata_for(lab, dataset, "download")),
                       file_name=f"{safe_name(name) or 'digitlab-model'}.npz", mime="application/octet-stream",
                       disabled=busy)

st.subheader("Saved models")
rows = list_models()
if not rows:
    st.info("No saved models yet.")
else:
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                 column_config={"test accuracy": st.column_config.NumberColumn(format="%.4f")})
    files = [r["file"] for r in rows]
    chosen = st.selectbox("Model", files, key="model_choice")
    c1, c2 = st.columns(2)
    if c1.button("Load as current network", key="load_model", disabled=busy):
        try:
            loaded = load_network(models_dir() / chosen)
            if mismatch(loaded[0], dataset):
                raise ModelFileError(mismatch(loaded[0], dataset))
            adopt(lab, *loaded)
            st.success(f"Loaded `{chosen}`: {lab.network.describe()}, {lab.network.epochs_trained} epochs trained.")
        except ModelFileError as bad:
            st.error(f"Cannot load `{chosen}`: {bad}")
    if c2.button("Delete…", key="delete_model"):
        st.session_state["confirm_delete"] = chosen
    if st.session_state.get("confirm_delete") == chosen:
        st.warning(f"Delete `{chosen}` for good?")
        y, n = st.columns(2)
        if y.button("Yes, delete", key="confirm_delete_yes", type="primary"):
            (models_dir() / chosen).unlink(missing_ok=True)
            st.session_state.pop("confirm_delete")
            st.rerun()
        if n.button("Cancel", key="confirm_delete_no"):
            st.session_state.pop("confirm_delete")
            st.rerun()

st.subheader("Upload a model")
upload = st.file_uploader("A Digit Lab .npz (never unpickled; every array is checked)", type=["npz"], key="model_upload")
if upload is not None and st.button("Use the uploaded model", key="use_uploaded_model", disabled=busy):
    try:
        network, optimizer, metadata = load_network(upload.getvalue(), max_bytes=UPLOAD_LIMIT_BYTES)
        if mismatch(network, dataset):
            raise ModelFileError(mismatch(network, dataset))
        adopt(lab, network, optimizer, metadata)
        st.success(f"Loaded the upload: {network.describe()}.")
    except ModelFileError as bad:
        st.error(f"That file cannot be used: {bad} The current network is unchanged.")
if busy:
    st.caption("Training is going on: loading and saving wait until it stops (the trained network is never replaced mid-run).")
