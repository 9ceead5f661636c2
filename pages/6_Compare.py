"""Compare with Keras: the same network, the same weights, the same batches, side by side."""
import math

import pandas as pd
import streamlit as st

from engine.errors import EngineError
from ui.charts import comparison_curves
from ui.frame import page_setup, require_dataset, require_network

lab, dataset, error = page_setup("Compare with Keras", "⚖️")
st.markdown(
    "Your current architecture is rebuilt in **Keras** with a copy of the engine's weights. First a forward "
    "check (do both give the same probabilities?), then both train on **the same batches in the same order** "
    "with Adam and the same hyper-parameters (Keras's ε, 1e-7 by default, is set to the engine's)."
)
require_dataset(dataset, error)
require_network(lab, dataset)
net = lab.network

c1, c2, c3, c4 = st.columns(4)
epochs = c1.number_input("Epochs", 1, 50, 3, key="cmp_epochs")
batch_size = c2.number_input("Batch size", 1, 4096, 100, key="cmp_batch")
lr = c3.number_input("Learning rate", 0.0, 1.0, 0.001, format="%.5f", key="cmp_lr")
eps = c4.select_slider("Adam ε (both)", [1e-8, 1e-7], value=1e-8, key="cmp_eps", format_func=lambda v: f"{v:.0e}")
st.caption("Dropout, augmentation and schedules are off here: they would draw different random numbers on each side.")

if st.button("Run the comparison", type="primary", key="cmp_run", disabled=lab.training):
    with st.spinner("Loading TensorFlow and building the Keras twin (a few seconds the first time)…"):
        from engine.keras_twin import side_by_side
    engine_bar = st.progress(0.0, text="Engine")
    keras_bar = st.progress(0.0, text="Keras")
    result = None
    try:
        steps = side_by_side(net, dataset.x_train, dataset.y_train, epochs=int(epochs), batch_size=int(batch_size),
                             lr=lr, eps=eps, seed=int(lab.settings.get("seed", 0)),
                             x_test=dataset.x_test, y_test=dataset.y_test)
        for event in steps:
            if event["kind"] == "batch" and event["batch"] % 10 in (0, event["batches"] % 10):
                done = ((event["epoch"] - net.epochs_trained - 1) * event["batches"] + event["batch"]) / (
                    int(epochs) * event["batches"])
                bar = engine_bar if event["side"] == "engine" else keras_bar
                bar.progress(min(done, 1.0), text=f"{event['side'].title()}: epoch "
                             f"{event['epoch'] - net.epochs_trained}/{epochs}, batch {event['batch']}/{event['batches']}")
            elif event["kind"] == "end":
                result = event
        lab.comparison = result
    except EngineError as bad:
        st.error(str(bad))
    except ImportError as missing:
        st.error(f"TensorFlow is not available here ({missing}). Install it with "
                 "`pip install -r requirements.txt` to compare with Keras.")

result = lab.comparison
if result is not None:
    init = result["max_abs_diff_init"]
    tolerance = 1e-5 if result["network"].dtype.__name__ == "float32" else 1e-10
    (st.success if init < tolerance else st.error)(
        f"**Forward check on the shared starting weights:** max |p_engine − p_keras| on the test set = {init:.2e} "
        f"({'agree' if init < tolerance else 'DISAGREE'}: tolerance {tolerance:.0e} for "
        f"{result['network'].dtype.__name__}).")
    history = result["history"]
    if history:
        ratio = result["ratio"]
        m = st.columns(4)
        m[0].metric("Engine test accuracy", f"{result['engine_test_accuracy']:.2%}")
        m[1].metric("Keras test accuracy", f"{result['keras_test_accuracy']:.2%}")
        m[2].metric("Same predicted class", f"{result['agreement']:.2%}")
        m[3].metric("Time per epoch, engine / Keras", f"{ratio:.2f}×" if not math.isnan(ratio) else "–")
        st.plotly_chart(comparison_curves(history), key="cmp_curves", width="stretch")
        table = pd.DataFrame([{"epoch": h["epoch"], "engine loss": h["engine"]["loss"],
                               "keras loss": h["keras"]["loss"], "engine accuracy": h["engine"]["accuracy"],
                               "keras accuracy": h["keras"]["accuracy"], "engine s": h["engine"]["seconds"],
                               "keras s": h["keras"]["seconds"],
                               "ratio": h["engine"]["seconds"] / h["keras"]["seconds"]} for h in history])
        st.dataframe(table, hide_index=True, width="stretch", key="cmp_table")
    precision = result["network"].dtype.__name__
    st.info("**Why the curves are not identical to the last digit:** both sides do the same arithmetic in a "
            f"different order (BLAS kernels, fused ops), so {precision} rounding differs by "
            f"~{'1e-7' if precision == 'float32' else '1e-16'} per step and "
            "grows slowly over thousands of Adam steps; Keras computes the loss with its own clipping of "
            "probabilities. The share of test digits with the same predicted class shows how little this matters.")
