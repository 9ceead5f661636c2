"""The Inside backprop page (AppTest): every step of the walk shows its formula with numbers,
its arrays and its code; Previous/Next and Run the whole step move through it; the page's check
agrees with training; a gradient check's failing layer links to the step of its gradients."""
import numpy as np

from app_support import (apps, assert_clean, build_network, data_path, env, goto, joined, lab,  # noqa: F401
                         values)


def latex(at):
    return [e.value for e in at.get("latex")]


def test_every_step_of_the_walk_shows_its_math_numbers_arrays_and_code(apps):
    at = apps.new()
    build_network(at, layers="16, 12")
    goto(at, "10_Inside_backprop.py")
    assert_clean(at, "Inside backprop")
    titles = []
    while True:
        titles.append(at.subheader[0].value)
        general, numbers = latex(at)[:2]
        assert ("=" in general or r"\leftarrow" in general) and any(ch.isdigit() for ch in numbers), (titles[-1], numbers)
        assert at.get("plotly_chart"), f"{titles[-1]}: no arrays drawn"
        assert at.code and "def " in at.code[0].value, f"{titles[-1]}: no engine code"
        if at.button(key="wt_next").disabled:
            break
        at.button(key="wt_next").click().run()
        assert_clean(at, titles[-1])
    # 784-16-12-10: input, 3 dense + 2 activations, softmax, loss, output delta, 3 gradients, 2 deltas, update
    assert len(titles) == 15 and titles[0].startswith("1 of 15") and "ADAM" in titles[-1]
    assert "The check" not in joined(at.success) and "equals what training does" in joined(at.success)
    at.button(key="wt_previous").click().run()
    assert at.subheader[0].value.startswith("14 of 15")


def test_run_the_whole_step_lists_every_step_and_the_check_agrees(apps):
    at = apps.new("1_Build.py")
    at.radio(key="b_dtype").set_value("float64").run()
    build_network(at, layers="16")
    goto(at, "10_Inside_backprop.py")
    at.button(key="wt_run_all").click().run()
    assert_clean(at, "the whole step")
    assert "The whole step at once" in values(at.subheader)
    # 784-16-10: input; dense, activation; output dense, softmax, loss; output delta; 2 gradients, 1 delta; update
    assert len(at.dataframe[0].value) == 11
    check = joined(at.success)
    diff = float(check.split("every gradient agrees to ")[1].split(" ")[0])
    assert diff < 1e-12 and "(float64)" in check


def test_a_digit_drawn_on_predict_can_be_walked(apps):
    at = apps.new()
    build_network(at, layers="16")
    digit = np.zeros((28, 28), np.float32)
    digit[4:24, 13:15] = 1  # a "1"
    lab(at).last_drawn = digit
    goto(at, "10_Inside_backprop.py")
    at.radio(key="wt_source").set_value("The digit drawn on Predict").run()
    assert_clean(at, "walking the drawn digit")
    at.selectbox(key="wt_label").set_value(1).run()
    assert "true class 1" in str(at.get("image")[0].proto)
    assert "equals what training does" in joined(at.success)


def test_a_failing_layer_of_the_gradient_check_links_to_its_step_in_the_walkthrough(apps):
    at = apps.new()
    build_network(at, layers="8")
    goto(at, "3_Gradient_check.py")
    at.radio(key="gc_source").set_value(at.radio(key="gc_source").options[0]).run()
    at.selectbox(key="gc_fault").set_value(at.selectbox(key="gc_fault").options[1]).run()
    at.button(key="gc_run").click().run()
    assert_clean(at, "a failing check")
    links = [e for e in at.get("page_link") if "Inside backprop" in e.proto.label]
    assert links, [e.proto.label for e in at.get("page_link")]
    assert "step=backward-" in links[0].proto.page or links[0].proto.query_string.startswith("step=backward-")
    # the link's target: the walkthrough opens at that layer's gradient step
    at.query_params["step"] = "backward-1-gradients"
    goto(at, "10_Inside_backprop.py")
    assert "Layer 1: dW" in at.subheader[0].value


def test_predict_shows_what_the_network_looks_at_and_the_nudge_that_fools_it(apps):
    from app_support import draw_on_canvas, finish, start_training
    at = apps.new()
    build_network(at, layers="32")
    start_training(at, epochs=5)
    finish(at)
    goto(at, "4_Predict.py")
    charts = [c for c in at.get("plotly_chart") if "saliency_random" in str(c.proto.id)]
    assert charts and "where ink moves the score of" in charts[0].proto.spec  # the saliency over the test digit
    at.button(key="nudge_random").click().run()
    assert_clean(at, "Predict after a nudge")
    told = joined(at.caption)
    assert "Every pixel moved by at most ε = " in told or "it is sure of this one" in joined(at.info), told[-600:]
    if "Every pixel moved" in told:
        epsilon = float(told.split("ε = ")[1].split(" ")[0])
        assert 0 < epsilon <= 0.3
        assert "→" in told  # from the class read to another
    draw_on_canvas(at)
    assert_clean(at, "Predict after drawing")
    assert "nudge_draw" in [b.key for b in at.button] and [c for c in at.get("plotly_chart")
                                                            if "saliency_draw" in str(c.proto.id)]
