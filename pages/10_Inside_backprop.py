"""Inside backprop: one training step of the current network on one digit, walked through with
the math, the numbers and the engine's own code."""
import numpy as np
import streamlit as st

from engine.data import scale_images
from engine.presets import build_optimizer
from engine.walkthrough import matches_training, walk_step
from ui.charts import array_heatmap
from ui.frame import page_setup, require_dataset, require_network
from ui.walkthrough import default_unit, formulas, source_of, unit_count

lab, dataset, error = page_setup("Inside backprop", "🔬")
require_dataset(dataset, error)
require_network(lab, dataset)
net = lab.network
st.markdown("One training step of your network on one digit, in the order the engine does it: the forward "
            "pass, the error passed back layer by layer, then the optimizer's update. Each step shows its "
            "formula, the same formula with the numbers of one unit put in, the arrays with their shapes, and "
            "the engine function that computes it. Nothing here changes your network.")
if lab.training:
    st.caption("A run is training this network now: the step is walked on its weights as they are at this moment.")

# --- the digit -------------------------------------------------------------------------------
sources = ["A test digit"] + (["The digit drawn on Predict"] if lab.last_drawn is not None else [])
left, right = st.columns([3, 1])
with left:
    source = st.radio("Walk the step on", sources, horizontal=True, key="wt_source")
    if source == "A test digit":
        index = st.number_input("Test digit number", 0, len(dataset.y_test) - 1, 0, key="wt_index")
        image, label = scale_images(dataset.x_test[int(index)])[0], int(dataset.y_test[int(index)])
    else:
        image = np.asarray(lab.last_drawn, dtype=np.float32).reshape(-1)
        guess = int(net.predict_proba(image[None]).argmax())
        label = st.selectbox("The digit you meant (the true class the loss is measured against)",
                             range(dataset.num_classes), index=guess, format_func=lambda c: dataset.class_names[c],
                             key="wt_label")
right.image(image.reshape(28, 28), width=112, caption=f"true class {dataset.class_names[label]}", clamp=True)

optimizer = lab.optimizer if lab.optimizer is not None else build_optimizer(lab.settings)
keep = float(lab.settings.get("keep_prob", 1.0))
masks = None
if keep < 1:  # one fixed dropout mask, drawn the way training draws them
    rng = np.random.default_rng(0)
    masks = [((rng.random((1, w)) < keep) / keep).astype(net.dtype) for w in net.sizes[1:-1]]
walk = walk_step(net, optimizer, image, label, masks)
steps = walk.steps

# --- which step --------------------------------------------------------------------------------
wanted = st.query_params.get("step")  # a link from the gradient check names the step
if wanted and st.session_state.get("wt_linked") != wanted:
    st.session_state["wt_linked"] = wanted
    try:
        st.session_state["wt_select"] = walk.index(wanted)
    except StopIteration:
        pass
st.session_state.setdefault("wt_select", 0)
st.session_state["wt_select"] = min(int(st.session_state["wt_select"]), len(steps) - 1)


def move(by):
    st.session_state["wt_select"] = min(max(st.session_state["wt_select"] + by, 0), len(steps) - 1)


def run_whole():
    st.session_state["wt_select"] = len(steps) - 1
    st.session_state["wt_whole"] = True


nav = st.container(horizontal=True, vertical_alignment="bottom")
nav.button("◀ Previous step", key="wt_previous", on_click=move, args=(-1,), disabled=st.session_state["wt_select"] == 0)
nav.selectbox("Step", range(len(steps)), key="wt_select",
              format_func=lambda i: f"{i + 1}. {steps[i].phase}: {steps[i].title}")
nav.button("Next step ▶", key="wt_next", on_click=move, args=(1,), type="primary",
           disabled=st.session_state["wt_select"] == len(steps) - 1)
nav.button("Run the whole step", key="wt_run_all", on_click=run_whole)

step = steps[st.session_state["wt_select"]]
st.subheader(f"{st.session_state['wt_select'] + 1} of {len(steps)} · {step.title}")
count = unit_count(step)
unit = st.number_input(f"Show the numbers of unit (0-{count - 1}; it starts at the one that says most)", 0,
                       count - 1, default_unit(step), key=f"wt_unit_{step.key}")
general, numbers = formulas(step, net.activation, int(unit))
st.latex(general)
st.latex(numbers)

shown = [(name, value) for name, value in step.arrays.items() if value is not None and np.ndim(value) >= 1
         and np.size(value) > 1]
columns = st.columns(min(len(shown), 4) or 1)
for k, (name, value) in enumerate(shown):
    with columns[k % len(columns)]:
        shape = "×".join(map(str, np.shape(value)))
        st.plotly_chart(array_heatmap(value, f"{name}  ({shape})"), key=f"wt_array_{step.key}_{name}",
                        width="stretch")
code = source_of(step)
if code:
    with st.expander(f"The engine's code: {step.function.__module__}.{step.function.__name__}", expanded=True):
        st.code(code, language="python")

# --- the whole step, and the check -----------------------------------------------------------------
if st.session_state.pop("wt_whole", False):
    st.subheader("The whole step at once")
    rows = [{"step": f"{i + 1}. {s.title}", "phase": s.phase,
             "largest |value| made": max((float(np.abs(v).max()) for n, v in s.arrays.items()
                                          if v is not None and n in ("z", "h", "a", "p", "delta", "carried", "dW",
                                                                     "new w", "x", "L")), default=float("nan"))}
            for i, s in enumerate(steps)]
    st.dataframe(rows, hide_index=True, width="stretch")
    st.caption(f"Loss before the step: {walk.loss:.4f}.")
grad_diff, weight_diff = matches_training(net, optimizer, image, label, walk, masks)
precision = np.dtype(net.dtype).name
tolerance = 1e-5 if precision == "float32" else 1e-12
(st.success if max(grad_diff, weight_diff) < tolerance else st.error)(
    f"**Check:** this walked step equals what training does (Network.gradients and the optimizer's step): "
    f"every gradient agrees to {grad_diff:.1e} and every new weight to {weight_diff:.1e} ({precision}).")
