"""Seconds per epoch: Digit Lab's engine against Keras and against the notebook's own code.

    /work/venv/bin/python benchmarks/bench_engine.py            # about 1-3 minutes
    /work/venv/bin/python benchmarks/bench_engine.py --quick    # 20,000 samples, 2 epochs

For 784-64-32-10 and 784-512-256-10 (batch 100, Adam, float32, biases) on 60,000 images
(Fashion-MNIST from Debian's dataset-fashion-mnist when installed, else synthetic uint8),
each epoch runs the engine, then its Keras twin on the same batches in the same order
(engine.keras_twin, the same code as `python -m engine bench` and the Compare page), then
one epoch of the notebook's code (exec'd from ../shared/seed/notebook.md: unscaled pixels,
float64, no biases) when that file exists. Alternating spreads machine noise over all three.
Prints the median seconds per epoch and writes benchmarks/results/latest.json.
Not part of the test suite.
"""
import argparse
import datetime
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.cli import synthetic_bench_data  # noqa: E402
from engine.persistence import json_ready  # noqa: E402
from engine.network import Network  # noqa: E402

NOTEBOOK = ROOT.parent / "shared" / "seed" / "notebook.md"
RESULTS = ROOT / "benchmarks" / "results" / "latest.json"
ARCHITECTURES = ([64, 32], [512, 256])
NOTEBOOK_NAMES = ("fully_connected", "feed_forward", "back_propagation", "AdamOptimizer", "trainer")


def load_notebook_code(path=NOTEBOOK):
    """The notebook's functions, exec'd from its python cells (None if the file is absent).

    Only cells that define functions or classes are run: the others import TensorFlow,
    load data or use IPython magics.
    """
    if not path.exists():
        return None
    namespace = {"np": np}
    for cell in re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S):
        magic = re.search(r"^\s*[%!]", cell, flags=re.M)  # IPython magics are not Python
        if re.search(r"^(def|class) ", cell, flags=re.M) and not magic and "keras." not in cell:
            exec(compile(cell, f"{path.name}", "exec"), namespace)  # noqa: S102 - the project's own seed notebook
    missing = [name for name in NOTEBOOK_NAMES if name not in namespace]
    if missing:
        raise RuntimeError(f"{path} lacks {', '.join(missing)}")
    return namespace


class NotebookRun:
    """The notebook's network and trainer generator, advanced one epoch at a time."""

    def __init__(self, nb, hidden, x, y, batch_size, seed=0):
        np.random.seed(seed)  # the notebook's fully_connected draws from the global generator
        sizes = [x.shape[1], *hidden, 10]
        self.ws = [nb["fully_connected"](a, b) for a, b in zip(sizes[:-1], sizes[1:])]
        y_onehot = np.eye(10, dtype=np.float32)[y]  # as keras.utils.to_categorical
        self.batches = len(x) // batch_size
        self.train = nb["trainer"](self.ws, x, y_onehot, nb["AdamOptimizer"](), batch_size=batch_size)

    def epoch(self):
        """Seconds for one epoch of the notebook's loop (raw uint8 pixels, float64 weights)."""
        start = time.perf_counter()
        for _ in range(self.batches):
            next(self.train)
        return time.perf_counter() - start


def load_data(kind, samples):
    """(x uint8 (n, 784), y, description)."""
    if kind in ("auto", "fashion"):
        from engine.data import DatasetError, load_fashion_mnist
        try:
            data = load_fashion_mnist()
            x, y = data.x_train.reshape(len(data.x_train), -1)[:samples], data.y_train[:samples]
            return np.ascontiguousarray(x), y, f"Fashion-MNIST from {data.source}, {len(x):,} samples"
        except DatasetError as exc:
            if kind == "fashion":
                raise SystemExit(f"error: {exc}")
    x, y = synthetic_bench_data(samples)
    return x, y, f"synthetic uint8 {samples:,}x784"


def bench_architecture(hidden, x, y, epochs, batch_size, notebook, with_keras, log, threads=None):
    """Alternate engine / Keras / notebook epochs; returns the per-epoch seconds of each."""
    from engine.cli import run_bench
    net = Network([784, *hidden, 10], seed=0)
    nb_run = NotebookRun(notebook, hidden, x, y, batch_size) if notebook else None
    nb_seconds = []

    def on_epoch(epoch, engine_s, keras_s):
        # Runs between the engine's and Keras's epochs while the trainers are suspended.
        if nb_run is not None:
            nb_seconds.append(nb_run.epoch())
        shown = [f"engine {engine_s:.3f}s"]
        if keras_s is not None:
            shown.append(f"keras {keras_s:.3f}s")
        if nb_run is not None:
            shown.append(f"notebook {nb_seconds[-1]:.3f}s")
        log(f"  epoch {epoch}: " + ", ".join(shown))

    result = run_bench(net, x, y, epochs, batch_size, 0.001, 0, "keras" if with_keras else "none", on_epoch,
                       threads)
    if nb_run is not None:
        result["notebook_seconds"] = nb_seconds
        result["notebook_median_seconds"] = statistics.median(nb_seconds)
        result["notebook_over_engine"] = result["notebook_median_seconds"] / result["engine_median_seconds"]
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--data", choices=("auto", "fashion", "synthetic"), default="auto")
    parser.add_argument("--quick", action="store_true", help="20,000 samples and 2 epochs")
    parser.add_argument("--no-keras", action="store_true")
    parser.add_argument("--no-notebook", action="store_true")
    parser.add_argument("--threads", type=int, help="limit BLAS (engine, notebook) and TensorFlow to N threads")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.epochs = min(args.samples, 20_000), min(args.epochs, 2)

    def log(message):
        print(message, flush=True)

    from engine.info import environment_info
    notebook = None if args.no_notebook else load_notebook_code()
    x, y, described = load_data(args.data, args.samples)
    load_before = os.getloadavg()
    log(f"Data: {described}; batch {args.batch_size}; {args.epochs} epochs alternated; "
        f"threads: {args.threads or 'default'}; "
        f"load average before: {load_before[0]:.2f}")
    if notebook is None and not args.no_notebook:
        log(f"(notebook code not found at {NOTEBOOK}: skipped)")
    runs = []
    for hidden in ARCHITECTURES:
        log(f"784-{'-'.join(map(str, hidden))}-10:")
        runs.append(bench_architecture(hidden, x, y, args.epochs, args.batch_size, notebook,
                                       not args.no_keras, log, args.threads))
    load_after = os.getloadavg()

    log("\nmedian seconds per epoch")
    log(f"{'network':>16} {'engine':>8} {'keras':>8} {'ratio':>6} {'notebook':>9}")
    for r in runs:
        keras = f"{r['keras_median_seconds']:8.3f}" if r["keras_median_seconds"] else f"{'-':>8}"
        ratio = f"{r['ratio']:6.2f}" if r["ratio"] else f"{'-':>6}"
        nb = f"{r['notebook_median_seconds']:9.3f}" if "notebook_median_seconds" in r else f"{'-':>9}"
        log(f"{r['architecture']:>16} {r['engine_median_seconds']:8.3f} {keras} {ratio} {nb}")
    log(f"(ratio = engine / Keras; load average after: {load_after[0]:.2f})")

    report = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "data": described, "batch_size": args.batch_size, "epochs": args.epochs, "threads": args.threads,
        "load_average_before": load_before, "load_average_after": load_after,
        "method": "per epoch: engine, then its Keras twin (tf.function train step, Keras Adam, same batches), "
                  "then the notebook's code; median over epochs",
        "results": runs,
        "environment": environment_info(include_tensorflow=not args.no_keras),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(json_ready(report), indent=2) + "\n")
    log(f"Wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
