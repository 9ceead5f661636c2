"""The frame every page calls first: page config, BLAS threads, the lab, the sidebar.

Pages are discovered from `pages/` (classic multipage mode), which renders a page opened by
deep link on a fresh server; calling this at the top of every page gives each page the same
frame without relying on `app.py` having run.
"""

import streamlit as st

from ui.datasets import current_dataset
from ui.runs import record_finished_run
from ui.state import accuracy_text, current_accuracy, get_lab, mismatch  # noqa: F401 (pages import mismatch from here)
from ui.training import BLAS_THREADS_PER_RUN


@st.cache_resource
def _limit_blas_threads():
    """Few BLAS threads per training run (one on small machines): several runs at once then
    share the cores instead of oversubscribing them (measured: 2.7x faster with two concurrent
    tabs). Training processes fork from the server and inherit the limit."""
    from threadpoolctl import threadpool_limits
    return threadpool_limits(limits=BLAS_THREADS_PER_RUN, user_api="blas")


def page_setup(title, icon="🔢", heading=None, badge=True):
    """Configure the page, show its heading, draw the sidebar; returns (lab, dataset or None,
    data error). The heading goes first so that a first visit shows it before the dataset
    has loaded (~0.5 s for 70,000 images). `badge`: the sidebar's live training status (the
    Train page shows the run itself, and one more redraw every second would cost its browser CPU)."""
    st.set_page_config(page_title=f"{title} · Digit Lab", page_icon=icon, layout="wide")
    st.title(heading or f"{icon} {title}")
    _limit_blas_threads()
    lab = get_lab()
    record_finished_run(lab)  # a run that ended while the user was elsewhere is kept
    if lab.notice:  # said once (e.g. what a restore could not bring back)
        st.warning(lab.notice)
        lab.notice = None
    dataset, error = current_dataset(lab)
    with st.sidebar:
        sidebar_status(lab, dataset, error, badge)
    return lab, dataset, error


def epochs_text(network):
    """'5' or '5 and 40% of the 6th': what the weights hold after a stop inside an epoch."""
    done, partial = network.epochs_trained, network.partial_epoch
    if not partial:
        return f"{done}"
    nth = done + 1
    suffix = "th" if 10 <= nth % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(nth % 10, "th")
    return f"{done} and {partial:.0%} of the {nth}{suffix}"


PAGES = [("app.py", "Home", "🏠"), ("pages/1_Build.py", "Build", "🏗️"), ("pages/2_Train.py", "Train", "📈"),
         ("pages/3_Gradient_check.py", "Gradient check", "🧮"), ("pages/10_Inside_backprop.py", "Inside backprop", "🔬"),
         ("pages/4_Predict.py", "Predict", "✏️"),
         ("pages/5_Evaluate.py", "Evaluate", "🔍"), ("pages/6_Compare.py", "Compare with Keras", "⚖️"),
         ("pages/7_Data.py", "Data", "🗂️"), ("pages/8_Models.py", "Models", "💾"),
         ("pages/9_Environment.py", "Environment", "🖥️")]


TRAINING_NOW = "**Training now** — progress and accuracy on Train"
# The sidebar's "Training now" while a run's live view (ui/live_view.py) is on the page.
SWAP_WHILE_LIVE = """<style>
.st-key-sidebar_network_training { display: none; }
body:has(.digitlab-live) .st-key-sidebar_network_idle { display: none; }
body:has(.digitlab-live) .st-key-sidebar_network_training { display: flex; }
</style>"""


def sidebar_status(lab, dataset, error, badge=True):
    """Page links, then dataset and network status, on every page."""
    for path, label, icon in PAGES:
        st.page_link(path, label=label, icon=icon)
    st.divider()
    st.markdown("### Digit Lab")
    if dataset is not None:
        st.caption(f"**Data:** {dataset.name}, {len(dataset.y_train):,} train / {len(dataset.y_test):,} test"
                   + ("  \n(bundled with Digit Lab: see Home for full MNIST)" if dataset.fallback else ""))
    else:
        st.caption("**Data:** none loaded — see Home")
    net = lab.network
    if net is None:
        st.caption("**Network:** none yet — build one on Build")
    elif lab.training:  # its figures change with every batch: the Train page shows them
        st.caption(f"**Network:** {net.describe()}  \n{TRAINING_NOW}")
    else:
        # Start on Train redraws the run's part of the page only (see pages/2_Train.py), not this
        # sidebar: while the page holds a run's live view, CSS shows "Training now" instead of
        # the figures from before the run. The run's end redraws the whole page.
        with st.container(gap=None):  # three lines of one caption, as drawn mid-run
            st.caption(f"**Network:** {net.describe()}")
            with st.container(key="sidebar_network_idle"):
                st.caption(f"**Epochs trained:** {epochs_text(net)}  \n"
                           f"**Test accuracy:** {accuracy_text(current_accuracy(lab, dataset), lab.measuring)}")
                if lab.measuring:
                    measurement_watch(lab)
            with st.container(key="sidebar_network_training"):
                st.caption(TRAINING_NOW)
        st.html(SWAP_WHILE_LIVE)
    if lab.training and badge:
        training_badge(lab)


@st.fragment(run_every=1.0)
def measurement_watch(lab):
    """Redraw the page once a test running in the background (a large network) has its figure."""
    if not lab.measuring:
        st.rerun()


@st.fragment(run_every=1.0)
def training_badge(lab):
    """Live one-line training status in the sidebar while a run goes on (any page)."""
    job = lab.job
    if job is None:
        return
    p = job.progress()
    if job.active:
        st.progress(min(p.run_fraction, 1.0), text=f"Training: epoch {p.run_epoch or 1}/{p.epochs} ({p.status})")
    else:
        st.caption(f"Training {p.status}.")


def require_network(lab, dataset=None):
    """Stop the page with a hint when no network exists yet, or when it does not fit the data."""
    if lab.network is None:
        st.info("No network yet: create one on the **Build** page first.")
        st.page_link("pages/1_Build.py", label="Go to Build", icon="🏗️")
        st.stop()
    problem = mismatch(lab.network, dataset)
    if problem:
        st.error(f"{problem} Build a new network, load another model, or switch the dataset on Home.")
        st.stop()




def require_dataset(dataset, error):
    """Stop the page with the remedy when no dataset could be loaded."""
    if dataset is None:
        from ui.datasets import NO_DATA_HELP
        st.error(f"No dataset could be loaded. {error}")
        st.markdown(NO_DATA_HELP)
        st.page_link("app.py", label="Go to Home to choose or upload data", icon="🏠")
        st.stop()
