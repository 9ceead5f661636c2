"""Gradient check: backprop against finite differences, layer by layer."""
import time

import pandas as pd
import streamlit as st

from engine.errors import ConfigError
from engine.gradcheck import gradient_check
from engine.network import FAULTS, Network, parse_layers
from engine.walkthrough import gradient_step_key
from ui.charts import error_heatmap, error_histogram
from ui.frame import mismatch, page_setup, require_dataset

lab, dataset, error = page_setup("Gradient check", "🧮")
st.markdown(
    "Backpropagation computes every gradient in one backward pass. Here each one is compared with a "
    "**central finite difference** — nudge one weight by ±ε, recompute the loss, take the slope — in "
    "float64 with dropout fixed. Relative error |a−n| / (|a|+|n|): **< 1e-7 excellent**, "
    "**< 1e-4 fine** (ReLU kinks), **> 1e-2 wrong**."
)
require_dataset(dataset, error)

c1, c2 = st.columns(2)
with c1:
    sources = (["Current network"] if lab.network is not None else []) + ["Small network made here"]
    source = st.radio("Network", sources, key="gc_source", horizontal=True)
    if source == "Small network made here":
        layers_text = st.text_input("Hidden layers of the small network", value="16", key="gc_layers")
    samples = st.number_input("Samples", min_value=1, max_value=256, value=8, key="gc_samples")
    eps = st.select_slider("ε (finite-difference step)", options=[1e-7, 1e-6, 1e-5, 1e-4, 1e-3], value=1e-5,
                           key="gc_eps", format_func=lambda v: f"{v:.0e}")
with c2:
    big = lab.network is not None and lab.network.parameter_count > 100_000  # a full check takes a while
    mode = st.radio("Entries", ["All parameters", "Sample per layer"], index=1 if big else 0, key="gc_mode",
                    horizontal=True)
    per_layer = st.number_input("Entries per layer", min_value=1, max_value=100000, value=200,
                                key="gc_per_layer", disabled=mode == "All parameters")
    keep_prob = st.number_input("Dropout keep-probability (one fixed mask)", min_value=0.05, max_value=1.0,
                                value=1.0, step=0.05, key="gc_keep")
    fault_names = ["none (correct backprop)"] + list(FAULTS)
    fault = st.selectbox("Break backprop on purpose", fault_names, key="gc_fault",
                         format_func=lambda k: FAULTS.get(k, k))

network, problem = lab.network, None
if source == "Current network":
    problem = mismatch(network, dataset) or None
else:
    try:
        network = Network([dataset.x_train[0].size, *parse_layers(layers_text), dataset.num_classes], seed=0)
    except ConfigError as bad:
        problem = str(bad)
if problem:
    st.error(problem)
elif fault == "dropout_scale" and keep_prob >= 1:
    st.info("The dropout-scale bug only shows with dropout: set the keep-probability below 1.")
elif fault == "bias_gradient" and not network.use_bias:
    st.info("This network has no biases, so the bias bug cannot show.")

# What a result was computed for: shown with it, and compared with the settings now on screen.
chosen = dict(source=source, network=None if problem else network.describe(), samples=samples, eps=eps,
              mode=mode, per_layer=per_layer, keep_prob=keep_prob, fault=fault,
              version=lab.version if source == "Current network" else None)
if st.button("Run gradient check", type="primary", key="gc_run", disabled=problem is not None):
    bar = st.progress(0.0, text="Checking…")
    last = [0.0]

    def report(done, total):
        if time.monotonic() - last[0] > 0.1 or done == total:  # a few redraws a second is plenty
            last[0] = time.monotonic()
            bar.progress(done / total, text=f"Checked {done:,} of {total:,} entries")

    start = time.perf_counter()
    result = gradient_check(network, dataset.x_test[:samples], dataset.y_test[:samples], eps=eps,
                            entries_per_layer=None if mode == "All parameters" else int(per_layer),
                            keep_prob=keep_prob, fault=None if fault.startswith("none") else fault,
                            on_progress=report)
    lab.gradcheck = (result, time.perf_counter() - start, network.describe(), chosen)

result = lab.gradcheck
if result is not None:
    result, seconds, described, settings_then = result
    if settings_then != chosen:
        st.caption("These results are for the settings of the last run of the check "
                   f"({FAULTS.get(settings_then['fault'], 'correct backprop')}); press **Run gradient check** "
                   "for the settings above.")
    broken = FAULTS.get(settings_then["fault"])
    verdict_text = (f"**Verdict: {result.verdict}** — max relative error {result.max_relative_error:.2e} "
                    f"over {sum(l.checked for l in result.layers):,} entries of `{described}` (checked in "
                    f"float64, ε = {settings_then['eps']:.0e}), {result.samples} samples, {seconds:.1f} s."
                    + (f" Backprop broken on purpose: {broken}." if broken else ""))
    if not broken and settings_then["eps"] >= 1e-4 and result.verdict not in ("excellent", "fine (kinks)"):
        verdict_text += (" A large ε makes the finite difference itself inexact (its error grows with ε²): "
                         "check again with ε = 1e-5 before suspecting backprop.")
    kinks = sum(l.kinks for l in result.layers)
    if kinks:
        verdict_text += (f" {kinks} entr{'y' if kinks == 1 else 'ies'} whose ±ε nudge crossed a ReLU kink "
                         "(where a finite difference is no derivative) are shown but left out of the verdict.")
    {"excellent": st.success, "fine (kinks)": st.success, "suspicious": st.warning}.get(
        result.verdict, st.error)(verdict_text)
    table = pd.DataFrame([{"array": l.name, "shape": "x".join(map(str, l.shape)), "checked": l.checked,
                           "max rel. error": l.max_error, "mean rel. error": l.mean_error,
                           "kinks left out": l.kinks, "verdict": l.verdict}
                          for l in result.layers])
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={"max rel. error": st.column_config.NumberColumn(format="%.2e"),
                                "mean rel. error": st.column_config.NumberColumn(format="%.2e")})
    failing = sorted({int(l.name[1:]) for l in result.layers if l.verdict in ("suspicious", "wrong")})
    if failing:
        st.markdown("**Where those gradients are computed**, step by step with the numbers:")
        links = st.container(horizontal=True)
        for layer in failing:  # the walkthrough's step where this layer's dW and db are made
            links.page_link("pages/10_Inside_backprop.py", label=f"Layer {layer}'s gradients in Inside backprop",
                            icon="🔬", query_params={"step": gradient_step_key(layer)})
    left, right = st.columns(2)
    with left:
        name = st.selectbox("Heatmap of", [l.name for l in result.layers], key="gc_heatmap_layer")
        layer = next(l for l in result.layers if l.name == name)
        st.plotly_chart(error_heatmap(layer.errors, f"{name}: relative error per entry"), key="gc_heatmap",
                        width="stretch")
    with right:
        st.plotly_chart(error_histogram(result.layers), key="gc_histogram", width="stretch")
