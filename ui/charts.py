"""Plotly figures used by the pages (pure functions of data: easy to cache and test)."""
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

MAX_NODES_DRAWN = 12
INK = "#1f77b4"
WRONG = "#d62728"
# Runs overlaid on one chart: colours far apart (plotly's own qualitative palette), not shades of one.
RUN_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def architecture_figure(sizes, activation):
    """Layers as columns of nodes (at most 12 drawn per layer), with the sizes written below."""
    fig = go.Figure()
    xs = np.arange(len(sizes))
    positions = []
    for x, size in zip(xs, sizes):
        shown = min(size, MAX_NODES_DRAWN)
        ys = np.linspace(-1, 1, shown) if shown > 1 else np.array([0.0])
        positions.append(ys)
    for x, (a, b) in enumerate(zip(positions[:-1], positions[1:])):
        ex, ey = [], []
        for ya in a:
            for yb in b:
                ex += [x, x + 1, None]
                ey += [ya, yb, None]
        fig.add_trace(go.Scatter(x=ex, y=ey, mode="lines", line=dict(width=0.5, color="rgba(120,120,120,0.35)"),
                                 hoverinfo="skip", showlegend=False))
    names = ["input"] + [f"hidden {i} ({activation})" for i in range(1, len(sizes) - 1)] + ["output (softmax)"]
    # Labels stack their words (size, layer, activation) so neighbours do not overlap on narrow screens.
    labels = ["input"] + [f"hidden {i}<br>{activation}" for i in range(1, len(sizes) - 1)] + ["output<br>softmax"]
    for x, (ys, size, name, text) in enumerate(zip(positions, sizes, names, labels)):
        fig.add_trace(go.Scatter(x=[x] * len(ys), y=ys, mode="markers",
                                 marker=dict(size=14, color=INK if 0 < x < len(sizes) - 1 else "#555"),
                                 name=name, hovertext=f"{name}: {size} units", hoverinfo="text",
                                 showlegend=False))
        label = f"{size:,}" + (" …" if size > MAX_NODES_DRAWN else "")
        fig.add_annotation(x=x, y=-1.2, text=f"<b>{label}</b><br>{text}", showarrow=False, font=dict(size=11),
                           yanchor="top")
    fig.update_layout(height=340, margin=dict(l=10, r=10, t=10, b=10), plot_bgcolor="white",
                      xaxis=dict(visible=False), yaxis=dict(visible=False, range=[-1.9, 1.15]))
    return fig


def training_curves(steps, loss, accuracy, epochs_table):
    """Loss and accuracy side by side (see training_curves_spec), as a plotly figure."""
    return go.Figure(training_curves_spec(steps, loss, accuracy, epochs_table), _validate=False)


def training_curves_spec(steps, loss, accuracy, epochs_table):
    """Loss and accuracy side by side: smoothed per batch (lines) and per epoch, train vs
    validation (markers), as a plain {"data", "layout"} dict.

    Plain, and wrapped without plotly's validation: it is rebuilt several times a second while
    training, and validation (with make_subplots) costs ~50-100 ms of the server's CPU per
    redraw against ~5 ms this way. A test validates the spec.
    """
    def line(x, y, name, color, axis, dash=None, markers=False):
        x, y = list(x), list(y)
        markers = markers or len(x) == 1  # one point draws no line (a replay's first moment): a dot
        return {"type": "scatter", "x": x, "y": y, "name": name, "mode": "lines+markers" if markers else "lines",
                "line": {"color": color, "width": 1.5, "dash": dash or "solid"}, "xaxis": "x" if axis == 1 else f"x{axis}", "yaxis": "y" if axis == 1 else f"y{axis}"}

    traces = [line(steps, loss, "loss (per batch, smoothed)", INK, 1),
              line(steps, accuracy, "accuracy (per batch, smoothed)", "#2ca02c", 2)]
    if epochs_table:
        ends = [r["epoch"] for r in epochs_table]
        middles = [e - 0.5 for e in ends]  # a training mean covers the whole epoch; validation is at its end
        for key, axis, color, dash, xs in (("loss", 1, INK, None, middles), ("val_loss", 1, "#ff7f0e", "dot", ends),
                                           ("accuracy", 2, "#2ca02c", None, middles),
                                           ("val_accuracy", 2, "#9467bd", "dot", ends)):
            values = [r[key] for r in epochs_table]
            if all(v is None or (isinstance(v, float) and np.isnan(v)) for v in values):
                continue
            traces.append(line(xs, values, f"{key} (epoch)", color, axis, dash, markers=True))
    title = {"xref": "paper", "yref": "paper", "y": 1.0, "yanchor": "bottom", "showarrow": False, "font": {"size": 16}}
    layout = {
        # Fixed margins, no automargin: with it, every redraw measures the tick labels and lays
        # the chart out twice (about half of a live redraw's cost, measured in Chromium).
        "height": 360, "margin": {"l": 50, "r": 10, "t": 40, "b": 40}, "legend": {"orientation": "h", "y": -0.25},
        "xaxis": {"domain": [0, 0.44], "anchor": "y", "title": {"text": "epoch"}},
        "xaxis2": {"domain": [0.56, 1], "anchor": "y2", "title": {"text": "epoch"}},
        "yaxis": {"anchor": "x"}, "yaxis2": {"anchor": "x2"},
        "annotations": [{**title, "x": 0.225, "xanchor": "center", "text": "Loss"},
                        {**title, "x": 0.775, "xanchor": "center", "text": "Accuracy"}],
    }
    return {"data": traces, "layout": layout}


def runs_overlay(runs, metric="val_accuracy"):
    """Per-epoch curves of several runs, one line each, named by what differs."""
    fig = go.Figure()
    for run in runs:
        rows = run["history"]
        fig.add_trace(go.Scatter(x=[r["epoch"] for r in rows], y=[r.get(metric) for r in rows],
                                 mode="lines+markers", name=run["name"]))
    last_epoch = max((r["epoch"] for run in runs for r in run["history"]), default=0)
    fig.update_layout(height=340, xaxis=dict(title="epoch", dtick=1 if last_epoch <= 20 else None),
                      yaxis_title=metric, colorway=RUN_COLOURS,
                      margin=dict(l=10, r=10, t=20, b=10), legend=dict(orientation="h", y=-0.3))
    return fig


def probability_bars(probabilities, class_names=None, true_label=None):
    """Bar chart of class probabilities; the predicted bar in blue, a wrong one's truth in red."""
    k = len(probabilities)
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    predicted = int(np.argmax(probabilities))
    colors = ["#c7c7c7"] * k
    if true_label is not None and true_label != predicted:
        colors[int(true_label)] = WRONG
    colors[predicted] = INK
    fig = go.Figure(go.Bar(x=names, y=probabilities, marker_color=colors,
                           text=[f"{p:.0%}" if p >= 0.01 else "" for p in probabilities], textposition="outside"))
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=10, b=10), yaxis=dict(range=[0, 1.15], title="probability"),
                      xaxis=dict(type="category"))
    return fig


def error_heatmap(errors, title):
    """log10 relative error of each checked entry of one parameter array."""
    errors = np.atleast_2d(errors)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.log10(np.where(errors > 0, errors, np.nan))
    fig = go.Figure(go.Heatmap(z=z, colorscale="Viridis", colorbar=dict(title="log10 rel. error"),
                               hovertemplate="row %{y}, col %{x}: 10^%{z:.1f}<extra></extra>"))
    fig.update_layout(title=title, height=380, margin=dict(l=10, r=10, t=40, b=10),
                      yaxis=dict(autorange="reversed"))
    return fig


def error_histogram(layers):
    """Distribution of log10 relative errors, one trace per parameter array."""
    fig = go.Figure()
    for layer in layers:
        e = layer.errors[np.isfinite(layer.errors)]
        e = e[e > 0]
        if len(e):
            fig.add_trace(go.Histogram(x=np.log10(e), name=layer.name, opacity=0.7, nbinsx=40))
    fig.update_layout(barmode="overlay", height=320, xaxis_title="log10 relative error",
                      yaxis_title="entries", margin=dict(l=10, r=10, t=20, b=10))
    return fig


def confusion_figure(confusion, class_names):
    """Confusion matrix heatmap (rows: true class, columns: predicted)."""
    names = [str(c) for c in class_names]
    fig = go.Figure(go.Heatmap(z=confusion, x=names, y=names, colorscale="Blues", text=confusion,
                               texttemplate="%{text}", hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>"))
    # dtick 1: every class labelled even when the chart is narrow (plotly would drop every other one)
    fig.update_layout(height=480, xaxis_title="predicted", yaxis_title="true",
                      xaxis=dict(type="category", dtick=1), yaxis=dict(type="category", autorange="reversed", dtick=1),
                      margin=dict(l=10, r=10, t=20, b=10))
    return fig


def image_grid(images, ncols, titles=None, height_per_row=110):
    """A grid of grey images (e.g. first-layer weights or mean digits) as one figure."""
    n = len(images)
    nrows = max(1, -(-n // ncols))
    fig = make_subplots(rows=nrows, cols=ncols, subplot_titles=titles, horizontal_spacing=0.01,
                        vertical_spacing=0.04 if nrows > 1 else 0.0)
    for i, img in enumerate(images):
        signed = img.min() < 0  # weights: red/blue around 0; images: white ink on black
        fig.add_trace(go.Heatmap(z=img, colorscale="RdBu" if signed else "gray", zmid=0 if signed else None,
                                 showscale=False, hoverinfo="skip"), row=i // ncols + 1, col=i % ncols + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x")
    fig.update_layout(height=nrows * height_per_row + 40, margin=dict(l=5, r=5, t=30, b=5))
    return fig


def per_class_accuracy_figure(shares, class_names):
    """Bars of each class's test accuracy; a class without test images is a labelled gap."""
    fig = go.Figure(go.Bar(x=[str(n) for n in class_names], y=np.nan_to_num(shares), marker_color=INK,
                           text=[f"{a:.0%}" if np.isfinite(a) else "no images" for a in shares],
                           textposition="outside"))
    fig.update_layout(height=300, yaxis=dict(range=[0, 1.1]), xaxis=dict(type="category", dtick=1),
                      margin=dict(l=10, r=10, t=10, b=10))
    return fig


def activation_strip(values, layer):
    """One hidden layer's activations for one image, as a strip of units."""
    fig = go.Figure(go.Heatmap(z=values.reshape(1, -1), colorscale="Viridis", showscale=False,
                               hovertemplate="unit %{x}: %{z:.3f}<extra></extra>"))
    fig.update_layout(height=90, margin=dict(l=10, r=10, t=25, b=5), yaxis=dict(visible=False), title=dict(
        text=f"hidden {layer}: {len(values)} units, {np.mean(values > 0):.0%} active", font=dict(size=12)))
    return fig


def comparison_curves(history):
    """The engine's and Keras's training loss and accuracy per epoch, side by side. The two
    usually lie on top of each other: the engine's line is wide and pale, Keras's thin and dashed
    over it, so both stay visible where they agree; a gap of 1e-6 never fills the whole chart."""
    epochs_axis = [h["epoch"] for h in history]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Training loss", "Training accuracy"))
    styles = {"engine": dict(line=dict(color=INK, width=7), opacity=0.45, marker=dict(size=11)),
              "keras": dict(line=dict(color=WRONG, width=2, dash="dash"), marker=dict(symbol="x", size=8))}
    for side, style in styles.items():
        for col, key in ((1, "loss"), (2, "accuracy")):
            fig.add_trace(go.Scatter(x=epochs_axis, y=[h[side][key] for h in history], name=f"{side} {key}",
                                     mode="lines+markers", legendgroup=side, **style), row=1, col=col)
    for col, key in ((1, "loss"), (2, "accuracy")):
        values = [h[side][key] for h in history for side in styles]
        mid, half = (max(values) + min(values)) / 2, (max(values) - min(values)) / 2
        half = max(half * 1.2, abs(mid) * 0.01, 1e-9)
        fig.update_yaxes(range=[mid - half, mid + half], row=1, col=col)
    fig.update_layout(height=340, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.25))
    return fig


def class_counts_figure(class_names, train_counts, test_counts):
    fig = go.Figure([go.Bar(x=class_names, y=train_counts, name="train"),
                     go.Bar(x=class_names, y=test_counts, name="test")])
    fig.update_layout(barmode="group", height=320, xaxis=dict(type="category"), margin=dict(l=10, r=10, t=10, b=10))
    return fig


def pixel_histogram(counts, n_images):
    """How often each pixel value 0-255 occurs (log scale), over the first `n_images` images."""
    fig = go.Figure(go.Bar(x=np.arange(256), y=counts, marker_color="#555"))
    fig.update_layout(height=320, yaxis_type="log", xaxis_title=f"pixel value (first {n_images:,} images)",
                      margin=dict(l=10, r=10, t=10, b=10))
    return fig


def array_heatmap(array, title):
    """A small heatmap of one array of the walkthrough: a 784-long row as the 28x28 image it is,
    another row as a strip, a matrix as it is (red negative, blue positive, white zero)."""
    values = np.asarray(array, dtype=np.float64)
    if values.ndim == 1:
        values = values[None]
    if values.shape[0] == 1 and values.shape[1] == 784:
        values = values.reshape(28, 28)
    limit = float(np.abs(values).max()) or 1.0
    fig = go.Figure(go.Heatmap(z=values, zmin=-limit, zmax=limit, colorscale="RdBu", showscale=False,
                               hovertemplate="[%{y}, %{x}]: %{z:.4g}<extra></extra>"))
    square = values.shape == (28, 28)
    fig.update_layout(height=180 if square or values.shape[0] > 1 else 90, margin=dict(l=5, r=5, t=28, b=5),
                      title=dict(text=title, font=dict(size=12)),
                      yaxis=dict(autorange="reversed", visible=values.shape[0] > 1 and not square,
                                 scaleanchor="x" if square else None),
                      xaxis=dict(visible=not square))
    return fig


def saliency_overlay(image, gradient, title):
    """The digit in grey with the saliency over it: red where more ink raises the class's score,
    blue where more ink lowers it (the gradient's colour scale centred on zero)."""
    image = np.asarray(image, dtype=np.float64).reshape(28, 28)
    gradient = np.asarray(gradient, dtype=np.float64).reshape(28, 28)
    limit = float(np.abs(gradient).max()) or 1.0
    fig = go.Figure([go.Heatmap(z=image, colorscale="Greys", reversescale=True, showscale=False, hoverinfo="skip"),
                     go.Heatmap(z=gradient, zmin=-limit, zmax=limit, colorscale="RdBu_r", opacity=0.65,
                                colorbar=dict(thickness=10, len=0.8, title=dict(text="d score / d pixel", side="right")),
                                hovertemplate="pixel (%{y}, %{x}): %{z:.3g}<extra></extra>")])
    fig.update_layout(height=260, margin=dict(l=5, r=5, t=30, b=5), title=dict(text=title, font=dict(size=13)),
                      yaxis=dict(autorange="reversed", visible=False, scaleanchor="x"), xaxis=dict(visible=False))
    return fig


def diagnostics_spec(series, histograms, rule=1e-3):
    """Per layer over the run: gradient norm, update/weight ratio (the ~1e-3 rule of thumb as a
    dashed line) and the share of dead ReLUs; and the latest weight histogram of each layer.
    A plain spec (no plotly validation: rebuilt while training, as training_curves_spec)."""
    x = series["position"]
    colours = RUN_COLOURS
    traces = []

    def per_layer(key, axis, log=False):
        values = series.get(key) or []
        layers = max((len(v) for v in values if v), default=0)
        for i in range(layers):
            ys = [None if not v or (isinstance(v[i], float) and not np.isfinite(v[i])) else v[i] for v in values]
            traces.append({"type": "scatter", "mode": "lines", "x": list(x), "y": ys, "name": f"layer {i + 1}",
                           "connectgaps": True,  # epoch-end points have no update ratio: the line goes on
                           "legendgroup": f"layer {i + 1}", "showlegend": axis == 1,
                           "line": {"color": colours[i % len(colours)], "width": 1.5},
                           "xaxis": "x" if axis == 1 else f"x{axis}", "yaxis": "y" if axis == 1 else f"y{axis}"})
        return layers

    per_layer("grad_norm", 1)
    per_layer("update_ratio", 2)
    if x:
        traces.append({"type": "scatter", "mode": "lines", "x": [x[0], x[-1]], "y": [rule, rule], "name": "1e-3",
                       "showlegend": False, "line": {"color": "#888", "dash": "dash", "width": 1},
                       "xaxis": "x2", "yaxis": "y2", "hoverinfo": "skip"})
    per_layer("dead_share", 3)
    for i, (counts, edges) in enumerate(histograms or []):
        centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
        traces.append({"type": "bar", "x": centres, "y": counts, "name": f"layer {i + 1} weights", "showlegend": False,
                       "marker": {"color": colours[i % len(colours)]}, "opacity": 0.6, "xaxis": "x4", "yaxis": "y4"})
    title = {"xref": "paper", "yref": "paper", "y": 1.0, "yanchor": "bottom", "showarrow": False, "font": {"size": 13}}
    layout = {
        # Fixed margins and gaps for the tick labels, no automargin (see training_curves_spec).
        "height": 300, "margin": {"l": 45, "r": 10, "t": 36, "b": 30}, "barmode": "overlay",
        "legend": {"orientation": "h", "y": -0.2},
        "xaxis": {"domain": [0, 0.19], "anchor": "y"}, "yaxis": {"anchor": "x", "type": "log", "exponentformat": "power"},
        "xaxis2": {"domain": [0.27, 0.46], "anchor": "y2"},
        "yaxis2": {"anchor": "x2", "type": "log", "exponentformat": "power"},
        "xaxis3": {"domain": [0.54, 0.73], "anchor": "y3"}, "yaxis3": {"anchor": "x3", "range": [0, 1], "tickformat": ".0%"},
        "xaxis4": {"domain": [0.81, 1], "anchor": "y4"}, "yaxis4": {"anchor": "x4", "tickformat": "~s"},
        "annotations": [{**title, "x": 0.095, "xanchor": "center", "text": "gradient norm"},
                        {**title, "x": 0.365, "xanchor": "center", "text": "update / weight"},
                        {**title, "x": 0.635, "xanchor": "center", "text": "dead ReLUs"},
                        {**title, "x": 0.905, "xanchor": "center", "text": "weights now"}],
    }
    return {"data": traces, "layout": layout}


def confusion_spec(confusion, class_names):
    """The live confusion matrix (counts[true, read]) as a plain heatmap spec."""
    names = [str(n) for n in class_names]
    return {"data": [{"type": "heatmap", "z": np.asarray(confusion).tolist(), "x": names, "y": names,
                      "colorscale": "Blues", "reversescale": True, "showscale": False,  # white 0, blue many
                      "hovertemplate": "true %{y}, read %{x}: %{z}<extra></extra>"}],
            "layout": {"height": 300, "margin": {"l": 70, "r": 10, "t": 36, "b": 50},  # fixed: see above
                       "title": {"text": "confusion (500 test digits)", "font": {"size": 13}},
                       "xaxis": {"title": {"text": "read as"}, "type": "category"},
                       "yaxis": {"title": {"text": "true"}, "autorange": "reversed", "type": "category"}}}


def weights_mosaic(weights, columns=8, gap=2):
    """First-layer weights (units, 784) as one RGB image of 28x28 tiles on one shared scale:
    blue for +, red for -, white for 0 (as the live view draws them)."""
    weights = np.asarray(weights, dtype=np.float32)
    limit = float(np.abs(weights).max()) or 1.0
    t = np.clip(weights / limit, -1, 1).reshape(-1, 28, 28)
    rgb = np.stack([np.where(t > 0, 1 - t, 1), 1 - np.abs(t), np.where(t < 0, 1 + t, 1)], axis=-1)
    rows = -(-len(t) // columns)
    out = np.ones((rows * (28 + gap) - gap, columns * (28 + gap) - gap, 3), np.float32)
    for k, tile in enumerate(rgb):
        r, c = divmod(k, columns)
        out[r * (28 + gap):r * (28 + gap) + 28, c * (28 + gap):c * (28 + gap) + 28] = tile
    return (out * 255).astype(np.uint8)
