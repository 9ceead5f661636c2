"""Small drawings (issue 13, part 7): are digits drawn small on the canvas read as well as large ones?

The canvas pen is 20 px wide whatever the digit's size, so a digit drawn 60 px tall and scaled
up to MNIST's 20 px box comes out with strokes 6-7 px wide: a blob. This script simulates canvas
drawings of real test digits and reads them with and without `prepare_digit`'s stroke thinning.

    python benchmarks/small_drawings.py              # 300 digits; about 30 s (training ~15 s, 1 core)
    python benchmarks/small_drawings.py --per-class 5 --epochs 10    # a quick look

How a drawing is simulated: each 28x28 test digit (30 per class from the sample's test part, fixed
seed) is enlarged 4x (bicubic), thresholded at half its peak and thinned to its skeleton, which is
smoothed along its own lines (the pixel staircase taken out): that is the pen's path. The path is
drawn on a 280x280 black canvas with a round-capped, round-joined white pen 20 px wide (4x
supersampled, so the edges are anti-aliased, as the canvas draws them), scaled so the ink's longer
side is 180-220 px (large) or 40-90 px (small), at a random position (for the small ones, each axis
has an even chance of being pushed against an edge: a quarter land in a corner). Each canvas goes through `prepare_digit` as the Predict page
calls it (min_extent 0.15), once with `thin=False` (the plain MNIST recipe, before the fix) and once
as shipped; a network trained here on the sample's 4,000 training digits (the "recommended"
preset) reads the result. A refused canvas (too small for the page) counts as misread.

Prints Markdown tables: accuracy on the raw 28x28 digits, the large and the small drawings, before
and after; the share of small drawings given the "small" warning and accuracy with and without
it; and accuracy by drawn size. Skips (exit 0, with a message) when the sample is absent.
The thinning's settings (engine/preprocess.py) were chosen on drawings of held-out *training*
digits, not on these test digits.
"""
import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SAMPLES = [ROOT / "data" / "mnist-sample.npz", ROOT.parent / "shared" / "data" / "mnist-sample.npz"]
CANVAS = 280
MIN_DRAWN_EXTENT = 0.15       # what pages/4_Predict.py passes for canvas drawings
ENLARGE = 4                   # the MNIST digit is skeletonised at 4x, for a smoother path
SUPERSAMPLE = 4


def pen_path(digit):
    """The pen's path for an MNIST digit: (points (n, 2) as (row, col) in 28-px units, edges)."""
    import numpy as np
    from PIL import Image
    from engine.preprocess import _skeleton
    big = np.asarray(Image.fromarray(digit).resize((28 * ENLARGE,) * 2, Image.Resampling.BICUBIC), np.float32)
    skeleton = _skeleton(big >= 0.5 * big.max())
    points = np.argwhere(skeleton)
    index = -np.ones(skeleton.shape, int)
    index[skeleton] = np.arange(len(points))
    padded = np.pad(index, 1, constant_values=-1)
    edges = []
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):  # each 8-neighbour pair once
        other = padded[1 + dy:1 + dy + skeleton.shape[0], 1 + dx:1 + dx + skeleton.shape[1]][skeleton]
        keep = other >= 0
        edges.append(np.stack([np.flatnonzero(keep), other[keep]], axis=1))
    edges = np.concatenate(edges)
    return smooth((points + 0.5) / ENLARGE, edges), edges


def smooth(points, edges, rounds=6):
    """Laplacian smoothing along the skeleton's own lines: each point moves to the mean of
    itself and its neighbours, a few times (a hand's path has no pixel staircase)."""
    import numpy as np
    if len(edges) == 0:
        return points
    degree = np.bincount(edges.ravel(), minlength=len(points)).astype(float)
    for _ in range(rounds):
        total = points.copy()
        np.add.at(total, edges[:, 0], points[edges[:, 1]])
        np.add.at(total, edges[:, 1], points[edges[:, 0]])
        points = total / (1 + degree)[:, None]
    return points


def draw(points, edges, size, pen, rng, to_edge=0.0):
    """(an opaque RGBA canvas, white ink on black, with the path drawn so the ink's longer side is
    `size` px, at a random position, with probability to_edge per axis against an edge; the
    pen's path as the canvas would report it: strokes of (x, y) canvas points)."""
    import numpy as np
    from PIL import Image, ImageDraw
    low = points.min(axis=0)
    span = max(float((points.max(axis=0) - low).max()), 1e-6)
    xy = (points - low) * (size - pen) / span + pen / 2                 # (row, col), ink from 0
    extent = xy.max(axis=0) + pen / 2
    origin = []
    for room in CANVAS - extent:
        if rng.random() < to_edge:
            gap = rng.uniform(0, min(8, room))
            origin.append(gap if rng.random() < 0.5 else room - gap)
        else:
            origin.append(rng.uniform(0, room))
    canvas_xy = (xy + origin)[:, ::-1]                                   # (x, y), as the canvas reports
    strokes = [canvas_xy[[i, j]] for i, j in edges] + [canvas_xy[[k]] for k in range(len(canvas_xy))]
    xy = canvas_xy * SUPERSAMPLE                                         # for Pillow
    image = Image.new("L", (CANVAS * SUPERSAMPLE,) * 2, 0)
    pen_draw = ImageDraw.Draw(image)
    width = round(pen * SUPERSAMPLE)
    for i, j in edges:
        pen_draw.line([tuple(xy[i]), tuple(xy[j])], fill=255, width=width)
    r = pen * SUPERSAMPLE / 2
    for x, y in xy:                                                      # round caps and joins
        pen_draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    ink = np.asarray(image.reduce(SUPERSAMPLE))
    rgba = np.empty((CANVAS, CANVAS, 4), np.uint8)
    rgba[..., :3] = ink[..., None]
    rgba[..., 3] = 255
    return rgba, strokes


def train_network(data, epochs, seed):
    from engine.presets import build, preset
    from engine.trainer import train
    settings = preset("recommended")
    if epochs:
        settings["epochs"] = epochs
    net, opt, config = build(settings, seed=seed)
    train(net, opt, data["x_train"], data["y_train"], config)
    return net


METHODS = {  # how a canvas is read
    "plain": "the plain MNIST recipe (before issue 13)",
    "thinned": "strokes thinned from the pixels (prepare_digit)",
    "redrawn": "drawn again from the pen's paths with a pen scaled to the digit (prepare_drawing, the page)",
}


def read_all(net, canvases, method, pen):
    """(predicted labels, or -1 where refused; warned flags; stroke widths; the 28x28 digits)."""
    import numpy as np
    from engine.preprocess import prepare_digit, prepare_drawing
    digits, warned, strokes = [], [], []
    for canvas, paths in canvases:
        if method == "redrawn":
            result = prepare_drawing(canvas, paths, pen, min_extent=MIN_DRAWN_EXTENT)
        else:
            result = prepare_digit(canvas, min_extent=MIN_DRAWN_EXTENT, thin=method == "thinned")
        digits.append(result.digit)
        warned.append(bool(result.warning))
        strokes.append(result.stroke)
    ok = [d is not None for d in digits]
    predicted = np.full(len(digits), -1)
    if any(ok):
        batch = np.stack([d.reshape(784) for d in digits if d is not None])
        predicted[np.array(ok)] = net.predict_proba(batch).argmax(axis=1)
    return predicted, np.array(warned), np.array(strokes), digits


def pct(mask):
    import numpy as np
    return 100 * float(np.mean(mask)) if len(mask) else float("nan")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", type=Path, default=None, help="the .npz sample (default data/mnist-sample.npz)")
    parser.add_argument("--per-class", type=int, default=30, help="test digits per class (default 30)")
    parser.add_argument("--pen", type=float, default=20, help="pen width in canvas px (default 20)")
    parser.add_argument("--small", default="40,90", help="small drawings' ink size range in px (default 40,90)")
    parser.add_argument("--large", default="180,220", help="large drawings' ink size range in px (default 180,220)")
    parser.add_argument("--epochs", type=int, default=0, help="training epochs (default: the preset's 60)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the digits, their drawing and training")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (0 = library default)")
    args = parser.parse_args(argv)
    sample = args.sample or next((p for p in SAMPLES if p.exists()), SAMPLES[0])
    if not sample.exists():
        print(f"Skipped: the MNIST sample is not at {sample}.")
        return 0
    import numpy as np
    from engine.preprocess import stroke_width
    with np.load(sample, allow_pickle=False) as d:
        data = {k: d[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    small_range = [float(v) for v in args.small.split(",")]
    large_range = [float(v) for v in args.large.split(",")]

    rng = np.random.default_rng(args.seed)
    chosen = np.concatenate([rng.choice(np.flatnonzero(data["y_test"] == c), args.per_class, replace=False)
                             for c in range(10)])
    digits, labels = data["x_test"][chosen], data["y_test"][chosen].astype(int)

    start = time.perf_counter()
    large, small, small_sizes = [], [], []
    for digit in digits:
        points, edges = pen_path(digit)
        large.append(draw(points, edges, rng.uniform(*large_range), args.pen, rng))
        small_sizes.append(rng.uniform(*small_range))
        small.append(draw(points, edges, small_sizes[-1], args.pen, rng, to_edge=0.5))
    small_sizes = np.array(small_sizes)
    print(f"{len(digits)} digits drawn twice in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)

    limiter = None
    if args.threads > 0:
        from threadpoolctl import threadpool_limits
        limiter = threadpool_limits(limits=args.threads, user_api="blas")
    try:
        start = time.perf_counter()
        net = train_network(data, args.epochs, args.seed)
        print(f"trained in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
        raw = net.predict_proba(digits.reshape(len(digits), 784).astype(np.float32) / 255).argmax(axis=1)
        start = time.perf_counter()
        reads = {(name, method): read_all(net, canvases, method, args.pen)
                 for name, canvases in (("large", large), ("small", small)) for method in METHODS}
        seconds = time.perf_counter() - start
        print(f"prepared {6 * len(digits)} canvases in {seconds:.1f} s "
              f"({1000 * seconds / (6 * len(digits)):.0f} ms each)", file=sys.stderr, flush=True)
    finally:
        if limiter is not None:
            limiter.restore_original_limits()

    def right(name, method):
        return reads[name, method][0] == labels

    lo, hi = small_range
    names = list(METHODS)
    print("\n".join(f"- **{m}**: {text}" for m, text in METHODS.items()) + "\n")
    lines = [f"| {len(digits)} test digits ({args.per_class} per class), pen {args.pen:g} px | "
             + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    raw_acc = pct(raw == labels)
    lines.append("| raw 28x28 test digits | " + " | ".join(f"{raw_acc:.1f}%" for _ in names) + " |")
    for name, (a, b) in (("large", large_range), ("small", small_range)):
        lines.append(f"| {name} drawings ({a:g}-{b:g} px) | "
                     + " | ".join(f"{pct(right(name, m)):.1f}%" for m in names) + " |")
    gap = " | ".join(f"{pct(right('large', m)) - pct(right('small', m)):+.1f}" for m in names)
    lines.append(f"| points lost drawing small | {gap} |")
    lines.append("| refused as too small (min_extent 0.15, as the page) | "
                 + " | ".join(f"small {(reads['small', m][0] < 0).sum()}, large {(reads['large', m][0] < 0).sum()}"
                              for m in names) + " |")
    lines.append("| given the \"draw it bigger\" warning | "
                 + " | ".join(f"small {reads['small', m][1].sum()}, large {reads['large', m][1].sum()}"
                              for m in names) + " |")
    mnist_stroke = np.median([stroke_width(d) for d in digits])
    medians = []
    for m in names:
        widths = [stroke_width(d) for d in reads["small", m][3] if d is not None]
        medians.append(f"{np.median(widths):.1f} px" if widths else "–")
    lines.append(f"| small drawings' stroke at 28x28, median (MNIST's: {mnist_stroke:.1f} px) | "
                 + " | ".join(medians) + " |")
    print("\n".join(lines))

    edges_px = np.linspace(lo, hi, 6)
    print("\n| small drawing's size (px) | digits | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 2) + "|")
    for a, b in zip(edges_px[:-1], edges_px[1:]):
        sel = (small_sizes >= a) & (small_sizes < b if b < hi else small_sizes <= b)
        print(f"| {a:.0f}-{b:.0f} | {sel.sum()} | " + " | ".join(f"{pct(right('small', m)[sel]):.1f}%" for m in names)
              + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
