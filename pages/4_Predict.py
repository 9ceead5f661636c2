"""Predict: random test digits, a digit drawn with the mouse, or an uploaded photo."""
import numpy as np
import streamlit as st

from engine.data import scale_images
from engine.metrics import predict_proba
from engine.preprocess import ImageError, canvas_strokes, prepare_digit, prepare_drawing
from ui.charts import probability_bars, saliency_overlay
from ui.frame import page_setup, require_dataset, require_network
from ui.state import per_network

# Marks on the canvas spanning less than this share of it are a dot or a slip, not a digit
# (a dot drawn with the widest brush spans 14%; a digit drawn to be read spans far more).
MIN_DRAWN_EXTENT = 0.15

lab, dataset, error = page_setup("Predict", "✏️")
require_dataset(dataset, error)
require_network(lab, dataset)
net = lab.network
names = dataset.class_names
if lab.training:
    st.caption("Training is going on: predictions use the weights as they are right now.")


def square(image):
    """Pad a pipeline step to a square (black border) so tall digits keep a sane size on screen."""
    image = image.astype(np.float32) / (255.0 if image.dtype == np.uint8 else 1.0)
    h, w = image.shape
    side = max(h, w)
    out = np.zeros((side, side), dtype=np.float32)
    out[(side - h) // 2:(side - h) // 2 + h, (side - w) // 2:(side - w) // 2 + w] = np.clip(image, 0, 1)
    return out


def explain(digit, where):
    """What the network looks at (a saliency map of a chosen class) and the smallest nudge that
    makes it read another digit (fast gradient sign steps), from the engine's own backprop."""
    from engine.explain import nudge, saliency
    digit = np.asarray(digit, dtype=np.float64).reshape(28, 28)
    predicted = int(net.predict_proba(digit.reshape(1, -1)).argmax())
    with st.expander("What the network looks at, and the smallest change that fools it"):
        left, right = st.columns(2)
        with left:
            chosen = st.selectbox("Saliency of the class", range(len(names)), index=predicted,
                                  format_func=lambda c: names[c], key=f"saliency_class_{where}")
            st.plotly_chart(saliency_overlay(digit, saliency(net, digit, chosen), f"where ink moves the score of "
                            f"{names[chosen]}"), key=f"saliency_{where}", width="stretch")
            st.caption("The gradient of the class's score (before softmax) with respect to each pixel, by the "
                       "same backprop that trains, carried to the input: red, more ink there raises the score.")
        with right:
            if st.button("Nudge it: the smallest change that makes it read another digit", key=f"nudge_{where}"):
                st.session_state[f"nudged_{where}"] = (digit.tobytes(), nudge(net, digit))
            kept = st.session_state.get(f"nudged_{where}")
            if kept is not None and kept[0] == digit.tobytes():  # about this digit, not an earlier one
                result = kept[1]
                if not result.found:
                    st.info(f"No change of up to 30% of full ink per pixel makes the network read anything but "
                            f"{names[result.original_class]}: it is sure of this one.")
                else:
                    st.image(np.clip(result.image, 0, 1), width=112, clamp=True,
                             caption=f"read as {names[result.new_class]} ({result.probabilities[result.new_class]:.0%})")
                    st.caption(f"Every pixel moved by at most ε = {result.epsilon:.2f} of full ink ({result.steps} "
                               f"fast-gradient-sign steps): {names[result.original_class]} → {names[result.new_class]}.")
                    st.plotly_chart(probability_bars(result.probabilities, names), key=f"nudge_bars_{where}",
                                    width="stretch")


def show_prepared(prepared, where):
    """The pipeline's steps, the prediction and its probabilities, or a hint when blank."""
    if prepared.digit is None:
        empty = prepared.reason.startswith("The canvas is empty")  # all dark or transparent
        if where == "draw":
            st.info("The canvas is empty: draw a digit with the mouse." if empty
                    else f"{prepared.reason} Draw the digit larger to get a prediction.")
        else:
            reason = "The image is blank (all dark or transparent)." if empty else prepared.reason
            st.info(f"{reason} Upload a photo or scan of one handwritten digit to get a prediction.")
        return None
    steps = [step for step in prepared.steps if step[0] not in ("grey", "as drawn")][-4:]  # what changed it
    st.image([square(img) for _, img in steps], caption=[title for title, _ in steps], width=84)
    if prepared.warning:
        st.warning(prepared.warning)
    probabilities = predict_proba(net, prepared.digit.reshape(1, -1))[0]
    digit = int(probabilities.argmax())
    st.markdown(f"### Prediction: {names[digit]}")
    st.caption(f"confidence {probabilities[digit]:.1%}" + (" · inverted (dark ink on light)" if prepared.inverted else ""))
    st.plotly_chart(probability_bars(probabilities, names), key=f"bars_{where}", width="stretch")
    explain(prepared.digit, where)
    return prepared.digit


tab_random, tab_draw, tab_upload = st.tabs(["🎲 Random test digits", "✏️ Draw", "📷 Upload a photo"])

with tab_random:
    c1, c2, c3 = st.columns([1, 1, 2])
    if c1.button("New sample", key="new_sample"):
        st.session_state["sample_seed"] = st.session_state.get("sample_seed", 0) + 1
    only_mistakes = c2.toggle("Only mistakes", key="only_mistakes")
    count = c3.select_slider("How many", [8, 16, 24, 32], value=16, key="sample_count")
    rng = np.random.default_rng(st.session_state.get("sample_seed", 0))
    # The whole test set (mistakes need it), once per weights and data: the canvas reruns this page often.
    probabilities = per_network(lab, "test_probabilities", dataset, lambda: predict_proba(net, dataset.x_test))
    predicted = probabilities.argmax(axis=1)
    pool = np.flatnonzero(predicted != dataset.y_test) if only_mistakes else np.arange(len(dataset.y_test))
    if len(pool) == 0:
        st.success("No mistakes on the test set!")
    else:
        chosen = rng.choice(pool, size=min(count, len(pool)), replace=False)
        st.caption(f"Test accuracy {np.mean(predicted == dataset.y_test):.2%} · "
                   f"{np.sum(predicted != dataset.y_test):,} mistakes of {len(pool) if not only_mistakes else len(dataset.y_test):,}")
        cols = st.columns(8)
        for i, idx in enumerate(chosen):
            p, t = int(predicted[idx]), int(dataset.y_test[idx])
            with cols[i % 8]:
                st.image(dataset.x_test[idx], width=64)
                mark = "✅" if p == t else "❌"
                colour = "green" if p == t else "red"
                st.markdown(f":{colour}[{mark} **{names[p]}**] ({probabilities[idx, p]:.0%})  \ntrue {names[t]}")
        pick = st.selectbox("Probabilities of", [f"#{i + 1} (test image {idx})" for i, idx in enumerate(chosen)],
                            key="pick_digit")
        idx = chosen[int(pick.split()[0][1:]) - 1]
        left, right = st.columns([1, 3])
        left.image(dataset.x_test[idx], width=140, caption=f"true {names[int(dataset.y_test[idx])]}")
        with right:
            st.plotly_chart(probability_bars(probabilities[idx], names, int(dataset.y_test[idx])),
                            key="bars_random", width="stretch")
        explain(scale_images(dataset.x_test[idx])[0], "random")

with tab_draw:
    from streamlit_drawable_canvas import st_canvas  # only inside a running app (see STACK.md)
    left, right = st.columns([1, 1])
    with left:
        stroke = st.slider("Stroke width", 8, 40, 20, key="stroke_width")
        canvas = st_canvas(stroke_width=stroke, stroke_color="#FFFFFF", background_color="#000000",
                           height=280, width=280, drawing_mode="freedraw", update_streamlit=True,
                           return_image_data=True, key=f"canvas_{lab.canvas_generation}")
        if st.button("Clear", key="clear_canvas"):
            lab.canvas_generation += 1
            lab.last_drawn = None
            st.rerun()
    with right:
        image = canvas.image_data
        if image is None:
            st.info("Draw a digit on the black square (white ink) — the prediction appears here.")
        else:
            try:
                # The pen's paths too: a digit drawn small is drawn again with a pen scaled to it.
                drawn = show_prepared(prepare_drawing(image, canvas_strokes(canvas.json_data), stroke,
                                                      min_extent=MIN_DRAWN_EXTENT), "draw")
                if drawn is not None:
                    lab.last_drawn = drawn
            except ImageError as bad:
                st.error(str(bad))

with tab_upload:
    upload = st.file_uploader("A photo or scan of one digit (dark ink on light paper is fine)",
                              type=["png", "jpg", "jpeg", "bmp", "gif", "webp", "tif", "tiff"], key="digit_upload")
    if upload is not None:
        try:
            show_prepared(prepare_digit(upload.getvalue()), "upload")
        except ImageError as bad:
            st.error(f"That file cannot be used: {bad}")
