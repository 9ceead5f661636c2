"""Models: save, load, delete, download and upload networks."""
import pandas as pd
import streamlit as st

from engine.errors import ModelFileError
from engine.persistence import load_network, network_bytes
from ui.datasets import current_dataset
from ui.frame import mismatch, page_setup
from ui.models import UPLOAD_LIMIT_BYTES, adopt, list_models, metadata_for, models_dir, safe_name, save_current

lab, dataset, error = page_setup("Models", "💾")
st.caption(f"Saved in `{models_dir().resolve()}` (set `DIGITLAB_MODELS_DIR` to change).")
busy = lab.training

st.subheader("Save the current network")


def show_flash(where):
    """A message a button's callback left for this run (callbacks run before the page is drawn)."""
    flash = st.session_state.pop(f"flash_{where}", None)
    if flash:
        getattr(st, flash[0])(flash[1])


QUESTIONS = ("confirm_overwrite", "confirm_delete")


def forget_questions():
    """Any other action answers a pending question with "no": a question is about the state it
    was asked in, and must not outlive it (a Load or an upload changes what would be saved)."""
    for key in QUESTIONS:
        st.session_state.pop(key, None)


@st.dialog("Replace a saved model?", on_dismiss=forget_questions)
def ask_to_replace(clean):
    """Confirmation (a closed dialog answers no): a saved model is never replaced silently."""
    st.warning(f"`{clean}.npz` already exists. Replace it with the current network (`{lab.network.describe()}`)?")
    yes, no = st.columns(2)
    if yes.button("Yes, replace it", key="confirm_overwrite_yes", type="primary"):
        forget_questions()
        path = save_current(lab, current_dataset(lab)[0], clean)
        st.session_state["flash_save"] = ("success", f"Saved `{path.name}` (replaced the old file).")
        st.rerun()
    if no.button("Cancel", key="confirm_overwrite_no"):
        forget_questions()
        st.rerun()


@st.dialog("Delete a saved model?", on_dismiss=forget_questions)
def ask_to_delete(chosen):
    st.warning(f"Delete `{chosen}` for good?")
    yes, no = st.columns(2)
    if yes.button("Yes, delete", key="confirm_delete_yes", type="primary"):
        (models_dir() / chosen).unlink(missing_ok=True)
        forget_questions()
        st.rerun()
    if no.button("Cancel", key="confirm_delete_no"):
        forget_questions()
        st.rerun()


if lab.network is None:
    st.info("No network yet: build and train one first.")
else:
    c1, c2 = st.columns([3, 1])
    default = f"net-{'-'.join(map(str, lab.network.sizes))}"
    # A name that fits a new architecture; and a name again when the widget's state was dropped
    # (Streamlit forgets a widget's value while its page is not shown).
    if st.session_state.get("save_name_for") != default or "save_name" not in st.session_state:
        st.session_state["save_name_for"] = st.session_state["save_name"] = default
    name = c1.text_input("Name", key="save_name")
    clean = safe_name(name)
    if c2.button("Save", type="primary", key="save_model", disabled=busy,
                 help="Stop training first" if busy else None):
        if not clean:
            st.error("Give the model a name (letters, digits, dots, dashes).")
        elif (models_dir() / f"{clean}.npz").exists():
            forget_questions()
            st.session_state["confirm_overwrite"] = (clean, lab.version)  # asked below: never replaced silently
        else:
            forget_questions()
            st.success(f"Saved `{save_current(lab, dataset, clean).name}`.")
    show_flash("save")
    if clean and st.session_state.get("confirm_overwrite") == (clean, lab.version) and not busy:
        ask_to_replace(clean)
    st.download_button("⬇️ Download the current network (.npz)", key="download_model",
                       data=network_bytes(lab.network, lab.optimizer, metadata_for(lab, dataset, "download")),
                       file_name=f"{clean or 'digitlab-model'}.npz", mime="application/octet-stream",
                       disabled=busy)

st.subheader("Saved models")


def adopt_checked(read, where, success, failure):
    """Button callback (so the sidebar already shows the new network): read a model, check it
    fits the data and that no run is going on, make it current; leave a message for `where`."""
    forget_questions()
    try:
        network, optimizer, metadata = read()
        problem = mismatch(network, current_dataset(lab)[0])
        if problem:
            raise ModelFileError(problem)
        if lab.training:
            raise ModelFileError("a training run is going on; load after it ends.")
        adopt(lab, network, optimizer, metadata)
        st.session_state[f"flash_{where}"] = ("success", success(network))
    except ModelFileError as bad:
        st.session_state[f"flash_{where}"] = ("error", failure(bad))


def load_saved(chosen):
    adopt_checked(lambda: load_network(models_dir() / chosen), "load",
                  lambda net: f"Loaded `{chosen}`: {net.describe()}, {net.epochs_trained} epochs trained.",
                  lambda bad: f"Cannot load `{chosen}`: {bad}")


rows = list_models()
if not rows:
    st.info("No saved models yet.")
else:
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                 column_config={"file": st.column_config.TextColumn(width="medium"),
                                "name": st.column_config.TextColumn(width="medium"),
                                "parameters": st.column_config.NumberColumn(format="localized"),
                                "test accuracy": st.column_config.NumberColumn(format="percent")})
    files = [r["file"] for r in rows]
    chosen = st.selectbox("Model", files, key="model_choice", on_change=forget_questions)
    c1, c2 = st.columns(2)
    c1.button("Load as current network", key="load_model", disabled=busy, on_click=load_saved, args=(chosen,))
    show_flash("load")
    if c2.button("Delete…", key="delete_model"):
        forget_questions()
        st.session_state["confirm_delete"] = chosen
    if st.session_state.get("confirm_delete") == chosen:
        ask_to_delete(chosen)

st.subheader("Upload a model")
upload = st.file_uploader("A Digit Lab .npz (never unpickled; every array is checked)", type=["npz"], key="model_upload",
                          on_change=forget_questions)


def use_upload():
    adopt_checked(lambda: load_network(st.session_state["model_upload"].getvalue(), max_bytes=UPLOAD_LIMIT_BYTES),
                  "upload", lambda net: f"Loaded the upload: {net.describe()}.",
                  lambda bad: f"That file cannot be used: {bad} The current network is unchanged.")


if upload is not None:
    st.button("Use the uploaded model", key="use_uploaded_model", disabled=busy, on_click=use_upload)
show_flash("upload")
if busy:
    st.caption("Training is going on: loading and saving wait until it stops (the trained network is never replaced mid-run).")
