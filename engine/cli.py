"""`python -m engine`: train, gradcheck, predict, bench and info from the command line.

The subcommand names, options and JSON keys are a public interface (issue 2, section 11).
Every failure ends with a non-zero exit and one line on stderr, never a traceback
(set DIGITLAB_DEBUG=1 to see one for an unexpected error).
"""
import argparse
import contextlib
import io
import json
import math
import os
import statistics
import sys
import time

import numpy as np

from .errors import ConfigError, EngineError
from .network import FAULTS, parse_layers
from .memory import check_memory
from .persistence import json_ready
from .presets import DEFAULT_AUGMENT, DEFAULTS, PRESETS, build, defaults, preset

PROG = "python -m engine"
MAX_SAMPLES = 1_000_000
MAX_GRADCHECK_SAMPLES = 512


# ----------------------------------------------------------------------------- plumbing
def one_line(message):
    """Collapse a (possibly multi-line) message into a single line."""
    return " ".join(str(message).split())


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one short line (exit 2) instead of the usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def emit(obj):
    """Print one JSON object on one line of stdout, flushed (for `--json` consumers)."""
    print(json.dumps(json_ready(obj), allow_nan=False), flush=True)


class ProgressBar:
    """The command line's progress bar on stderr (tqdm), redrawn in place at most ~10 times a
    second: `update(fraction, prefix, suffix)`, `clear()` before printing a normal line."""

    def __init__(self, enabled, stream=None, width=30):
        self.enabled, self.stream, self.width = enabled, stream or sys.stderr, width
        self._bar = None

    def update(self, fraction, prefix="", suffix="", force=False):
        """Show the bar at `fraction` (0..1); tqdm skips redraws closer than 0.1 s unless `force`."""
        if not self.enabled:
            return
        if self._bar is None:
            from tqdm import tqdm
            self._bar = tqdm(total=1.0, file=self.stream, leave=False, mininterval=0.1, ascii=".=", desc=prefix,
                             unit=suffix, bar_format=f"{{desc}} [{{bar:{self.width}}}] {{unit}}")
        self._bar.set_description_str(prefix, refresh=False)
        self._bar.unit = suffix  # shown after the bar as it is (tqdm's postfix would add ", ")
        self._bar.n = min(max(fraction, 0.0), 1.0)
        if force:
            self._bar.refresh()
        else:
            self._bar.update(0)  # redraws only when mininterval has passed

    def clear(self):
        """Erase the bar so a normal line can be printed in its place."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _progress_enabled(args):
    mode = getattr(args, "progress", "auto")
    return mode == "always" or (mode == "auto" and sys.stderr.isatty())


def _check_seed(seed):
    if seed < 0:
        raise ConfigError(f"Seed must be 0 or more, got {seed}.")
    return seed


def _check_samples(samples, limit, what="--samples"):
    if samples is not None and not 1 <= samples <= limit:
        raise ConfigError(f"{what} must be between 1 and {limit:,}, got {samples}.")
    return samples


def load_data(path, dataset):
    """The chosen dataset (engine.data.Dataset); DatasetError explains any failure.

    Keras prints its download messages on stdout, which would break `--json` output: they
    go to stderr on a terminal and are dropped otherwise (a failure has its own message).
    """
    from .data import load_dataset
    name = {"fashion": "fashion-mnist"}.get(dataset, dataset)
    target = sys.stderr if sys.stderr.isatty() else io.StringIO()
    with contextlib.redirect_stdout(target):
        data = load_dataset(path, name)
    if data.fallback:  # on stderr: --json output stays clean
        print("Using the 5,000-digit sample that ships with Digit Lab; full MNIST loads when online or "
              f"with --data / MNIST_PATH. ({data.fallback})", file=sys.stderr)
    return data


# ----------------------------------------------------------------------------- train
def train_settings(args):
    """The preset (or engine defaults) with every option given on the command line applied.
    The options' destinations are the settings' own keys (engine.presets.DEFAULTS)."""
    settings = preset(args.preset) if args.preset else defaults()
    given = {key: getattr(args, key) for key in DEFAULTS if key != "seed" and getattr(args, key, None) is not None}
    if args.layers is not None:
        given["hidden"] = parse_layers(args.layers)
    if "augment" in given:
        given["augment"] = (settings.get("augment") or dict(DEFAULT_AUGMENT)) if given["augment"] else None
    settings.update(given)
    settings["overrides"] = sorted(given)
    settings["seed"] = _check_seed(args.seed)
    settings["preset"] = args.preset
    return settings


def _epoch_line(event, show_lr):
    parts = [f"Epoch {event.run_epoch}/{event.epochs}", f"{event.seconds:.2f}s",
             f"loss: {event.loss:.4f}", f"accuracy: {event.accuracy:.4f}"]
    if not math.isnan(event.val_loss):
        parts += [f"val_loss: {event.val_loss:.4f}", f"val_accuracy: {event.val_accuracy:.4f}"]
    if show_lr:
        parts.append(f"lr: {event.lr:.3g}")
    return " - ".join(parts)


def cmd_train(args):
    """Train a network on a dataset and report per epoch; optionally save it."""
    from .trainer import EndEvent, EpochEvent, evaluate, trainer
    settings = train_settings(args)
    check_memory([784, *settings["hidden"], 10], settings["batch_size"], settings["dtype"], settings["use_bias"])
    network, optimizer, config = build(settings)  # validates before data loads
    data = load_data(args.data, args.dataset)
    n_inputs = int(np.prod(data.x_train.shape[1:]))
    if network.sizes[0] != n_inputs or network.sizes[-1] != data.num_classes:
        network, optimizer, config = build(settings, n_inputs, data.num_classes)
    config.validate(len(data.x_train))
    if not args.json:
        print(f"Training {network.describe()} ({network.parameter_count:,} parameters) on {data.name}: "
              f"{len(data.x_train):,} train / {len(data.x_test):,} test images from {data.source}", flush=True)
    bar = ProgressBar(not args.json and _progress_enabled(args))
    show_lr = settings["schedule"] != "constant" or settings["warmup_epochs"] > 0
    epochs, end = [], None
    from threadpoolctl import threadpool_limits
    # One BLAS thread by default: as fast for small layers, and 2-thread OpenBLAS collapses (5-30x)
    # when anything else runs on the cores. --threads 2 speeds up wide layers on an idle machine.
    blas_limit = threadpool_limits(limits=args.threads, user_api="blas")  # noqa: F841 (kept while training)
    for event in trainer(network, optimizer, data.x_train, data.y_train, config):
        if isinstance(event, EndEvent):
            end = event
        elif isinstance(event, EpochEvent):
            epochs.append(event)
            bar.clear()
            if args.json:
                emit({"event": "epoch", "epoch": event.run_epoch, "epochs": event.epochs,
                      "network_epoch": event.epoch, "loss": event.loss, "accuracy": event.accuracy,
                      "val_loss": event.val_loss, "val_accuracy": event.val_accuracy,
                      "seconds": event.seconds, "elapsed": event.elapsed, "lr": event.lr})
            else:
                print(_epoch_line(event, show_lr), flush=True)
        else:
            bar.update(event.batch / event.batches, f"Epoch {event.run_epoch}/{event.epochs}",
                       f"{event.batch}/{event.batches} - loss: {event.running_loss:.4f} - "
                       f"accuracy: {event.running_accuracy:.4f} - {event.samples_per_sec:,.0f} samples/s",
                       force=event.batch == event.batches)
    bar.clear()
    test_loss, test_accuracy = evaluate(network, data.x_test, data.y_test,
                                        scale=config.scale_inputs and data.x_test.dtype == np.uint8)
    saved = None
    if args.save and end.reason != "diverged":
        from .persistence import save_network
        saved = save_network(args.save, network, optimizer, metadata={
            "settings": json_ready(settings), "dataset": data.name, "data_source": data.source,
            "class_names": list(data.class_names), "test_accuracy": test_accuracy, "test_loss": test_loss})
    summary = {
        "event": "end", "reason": end.reason, "message": end.message,
        "test_accuracy": test_accuracy, "test_loss": test_loss,
        "epoch_seconds": [e.seconds for e in epochs], "train_loss": [e.loss for e in epochs],
        "train_accuracy": [e.accuracy for e in epochs], "val_loss": [e.val_loss for e in epochs],
        "val_accuracy": [e.val_accuracy for e in epochs], "lr": [e.lr for e in epochs],
        "epochs_done": end.epochs_done, "total_seconds": end.elapsed,
        "parameters": network.parameter_count, "architecture": "-".join(map(str, network.sizes)),
        "description": network.describe(), "dataset": data.name, "data_source": data.source,
        "train_samples": len(data.x_train), "test_samples": len(data.x_test),
        "settings": settings, "saved": saved,
    }
    if args.json:
        emit(summary)
    else:
        if end.reason != "completed" or "restored" in end.message:
            print(end.message)
        print(f"Test accuracy: {test_accuracy:.4f} - test loss: {test_loss:.4f} "
              f"({end.epochs_done} epochs in {end.elapsed:.1f}s)")
        if saved:
            print(f"Saved to {saved}")
    if end.reason == "diverged":
        print(f"error: {one_line(end.message)}", file=sys.stderr)
        return 1
    return 0


# ----------------------------------------------------------------------------- gradcheck
def cmd_gradcheck(args):
    """Backprop vs central differences; exit 1 when the check fails the tolerance."""
    from .gradcheck import gradient_check
    from .network import Network
    _check_samples(args.samples, MAX_GRADCHECK_SAMPLES)
    _check_seed(args.seed)
    if not 0 < args.keep_prob <= 1:
        raise ConfigError(f"--keep-prob must be in (0, 1], got {args.keep_prob}.")
    if args.entries is not None and args.entries < 1:
        raise ConfigError(f"--entries must be at least 1, got {args.entries}.")
    if not (args.eps > 0 and math.isfinite(args.eps)) or not (args.tolerance > 0 and math.isfinite(args.tolerance)):
        raise ConfigError("--eps and --tolerance must be finite numbers greater than zero.")
    if args.model:
        from .persistence import load_network
        network = load_network(args.model)[0]
    else:
        hidden = parse_layers(args.layers)
        check_memory([784, *hidden, 10], args.samples, "float64", args.use_bias)
        network = Network([784, *hidden, 10], args.activation, args.use_bias, args.dtype, seed=args.seed)
    if args.data or args.dataset not in (None, "synthetic"):
        data = load_data(args.data, args.dataset or "mnist")
        x, y = data.x_train[:args.samples], data.y_train[:args.samples]
    else:
        from .data import make_synthetic_dataset
        data = make_synthetic_dataset(n_train=max(args.samples, 10), n_test=10, seed=args.seed)
        x, y = data.x_train[:args.samples], data.y_train[:args.samples]
    if int(np.prod(x.shape[1:])) != network.sizes[0]:
        raise ConfigError(f"The network takes {network.sizes[0]} inputs but the images have "
                          f"{int(np.prod(x.shape[1:]))} pixels.")
    bar = ProgressBar(not args.json and _progress_enabled(args))
    start = time.perf_counter()
    result = gradient_check(network, x, y, eps=args.eps, entries_per_layer=args.entries,
                            keep_prob=args.keep_prob, seed=args.seed, fault=args.fault, tolerance=args.tolerance,
                            on_progress=lambda done, total: bar.update(done / total, "Checking",
                                                                       f"{done:,}/{total:,} entries"))
    seconds = time.perf_counter() - start
    bar.clear()
    summary = {**result.summary(), "architecture": "-".join(map(str, network.sizes)),
               "description": network.describe(), "parameters": network.parameter_count,
               "checked": sum(layer.checked for layer in result.layers), "fault": args.fault,
               "keep_prob": args.keep_prob, "seconds": seconds}
    if args.json:
        emit(summary)
    else:
        checked = "all" if args.entries is None else f"{summary['checked']:,} of"
        print(f"Gradient check of {network.describe()} on {result.samples} samples "
              f"({checked} {network.parameter_count:,} parameters), eps {args.eps:g}"
              + (f", deliberate fault: {FAULTS[args.fault]}" if args.fault else ""))
        print(f"{'layer':6} {'shape':>10} {'checked':>8} {'max rel. error':>15} {'mean rel. error':>16}  verdict")
        for layer in summary["layers"]:
            shape = "x".join(map(str, layer["shape"]))
            print(f"{layer['name']:6} {shape:>10} {layer['checked']:>8,} {layer['max_relative_error']:>15.2e} "
                  f"{layer['mean_relative_error']:>16.2e}  {layer['verdict']}")
        word = "PASSED" if result.passed else "FAILED"
        relation = "<" if result.passed else ">="
        print(f"{word}: max relative error {result.max_relative_error:.2e} ({result.verdict}) "
              f"{relation} tolerance {args.tolerance:.0e} ({seconds:.1f}s)")
    if not result.passed:
        print(f"error: gradient check failed: max relative error {result.max_relative_error:.2e} "
              f">= tolerance {args.tolerance:.0e}", file=sys.stderr)
        return 1
    return 0


# ----------------------------------------------------------------------------- predict
def cmd_predict(args):
    """Classify image files with a saved model; a blank image gives digit null."""
    from .persistence import load_network
    from .preprocess import prepare_digit
    network, _, metadata = load_network(args.model)
    if network.sizes[0] != 784:
        raise ConfigError(f"The model takes {network.sizes[0]} inputs, not 28x28 = 784 pixels; "
                          "it cannot read digit images.")
    class_names = metadata.get("class_names") if isinstance(metadata, dict) else None
    failures = 0
    for path in args.images:
        try:
            with open(path, "rb") as f:
                prepared = prepare_digit(f.read())
        except (OSError, EngineError) as exc:
            failures += 1
            message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            print(f"error: {path}: {one_line(message)}", file=sys.stderr)
            if args.json:
                emit({"path": path, "digit": None, "probabilities": None, "error": one_line(message)})
            continue
        if prepared.is_blank:
            if args.json:
                emit({"path": path, "digit": None, "probabilities": None, "reason": prepared.reason})
            else:
                print(f"{path}: blank ({prepared.reason})")
            continue
        p = network.predict_proba(prepared.digit.reshape(1, -1))[0].astype(float)
        digit = int(p.argmax())
        record = {"path": path, "digit": digit, "probabilities": [round(v, 6) for v in p.tolist()],
                  "confidence": float(p[digit]), "inverted": prepared.inverted}
        if isinstance(class_names, list) and len(class_names) == len(p):
            record["class_name"] = class_names[digit]
        if args.json:
            emit(record)
        else:
            name = f" ({record['class_name']})" if record.get("class_name", str(digit)) != str(digit) else ""
            print(f"{path}: {digit}{name} {p[digit]:.1%}" + (" (inverted: dark ink on light)" if prepared.inverted else ""))
    return 1 if failures else 0


# ----------------------------------------------------------------------------- bench
def synthetic_bench_data(samples, seed=0):
    """Random uint8 pixels and labels: speed does not depend on what the pixels show."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (samples, 784), dtype=np.uint8), rng.integers(0, 10, samples).astype(np.uint8)


def bench_data(args):
    """(x, y, description) for the benchmark: --data/--dataset, else synthetic 60,000x784."""
    if args.data is None and args.dataset is None:
        samples = args.samples or 60_000
        x, y = synthetic_bench_data(samples, args.seed)
        return x, y, f"synthetic uint8 {samples:,}x784"
    data = load_data(args.data, args.dataset or "mnist")
    x, y = data.x_train, data.y_train
    if args.samples:
        x, y = x[:args.samples], y[:args.samples]
    return x, y, f"{data.name} from {data.source}, {len(x):,} samples"


def run_bench(network, x, y, epochs, batch_size, lr, seed, vs="keras", on_epoch=None, threads=None):
    """Engine and (unless vs='none') its Keras twin, alternated epoch by epoch on the same
    batches. Returns a JSON-ready dict with per-epoch seconds, medians and ratio.
    threads limits the BLAS threads of NumPy and TensorFlow's thread pools alike."""
    result = {"vs": vs, "epochs": epochs, "batch_size": batch_size, "samples": int(len(x)),
              "architecture": "-".join(map(str, network.sizes)), "description": network.describe(),
              "parameters": network.parameter_count, "threads": threads}
    limit = contextlib.nullcontext()
    if threads is not None:
        from threadpoolctl import threadpool_limits
        limit = threadpool_limits(threads, user_api="blas")
        if vs == "keras":
            from .keras_twin import set_keras_threads
            result["keras_threads_limited"] = set_keras_threads(threads)
    with limit:
        return _run_bench(result, network, x, y, epochs, batch_size, lr, seed, vs, on_epoch)


def _run_bench(result, network, x, y, epochs, batch_size, lr, seed, vs, on_epoch):
    from .keras_twin import side_by_side
    from .optimizers import Adam
    from .trainer import EpochEvent, TrainConfig, trainer
    if vs == "none":
        config = TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed)
        config.validate(len(x))
        seconds = []
        for event in trainer(network, Adam(lr), x, y, config):
            if isinstance(event, EpochEvent):
                seconds.append(event.seconds)
                if on_epoch:
                    on_epoch(len(seconds), event.seconds, None)
        result.update(engine_seconds=seconds, keras_seconds=None,
                      engine_median_seconds=statistics.median(seconds), keras_median_seconds=None, ratio=None)
        return result
    end = None
    for event in side_by_side(network, x, y, epochs, batch_size, lr=lr, seed=seed, report_batches=False):
        if event["kind"] == "epoch" and on_epoch:
            on_epoch(event["run_epoch"], event["engine"]["seconds"], event["keras"]["seconds"])
        elif event["kind"] == "init":
            result["keras_setup_seconds"] = event["setup_seconds"]
            result["max_abs_diff_init"] = event["max_abs_diff"]
        elif event["kind"] == "end":
            end = event
    result.update(engine_seconds=end["engine_seconds"], keras_seconds=end["keras_seconds"],
                  engine_median_seconds=end["engine_median_seconds"],
                  keras_median_seconds=end["keras_median_seconds"], ratio=end["ratio"])
    return result


def cmd_bench(args):
    """Median seconds per epoch of the engine and Keras on the same data, and their ratio."""
    from .network import Network
    from .optimizers import Adam
    _check_seed(args.seed)
    _check_samples(args.samples, MAX_SAMPLES)
    if args.threads is not None and not 1 <= args.threads <= 256:
        raise ConfigError(f"--threads must be between 1 and 256, got {args.threads}.")
    Adam(args.lr)  # validate before any data is made
    hidden = parse_layers(args.layers)
    check_memory([784, *hidden, 10], args.batch_size, args.dtype, args.use_bias)
    network = Network([784, *hidden, 10], args.activation, args.use_bias, args.dtype, seed=args.seed)
    from .trainer import TrainConfig
    TrainConfig(epochs=args.epochs, batch_size=args.batch_size).validate(args.samples)
    x, y, described = bench_data(args)
    if not args.json:
        print(f"Benchmark: {network.describe()}, batch {args.batch_size}, {described}, {args.epochs} epochs"
              + (", engine and Keras alternated" if args.vs == "keras" else ", engine only"), flush=True)
        print(f"{'epoch':>5} {'engine s':>9}" + (f" {'keras s':>9}" if args.vs == "keras" else ""), flush=True)

    def on_epoch(epoch, engine_s, keras_s):
        if not args.json:
            print(f"{epoch:>5} {engine_s:>9.3f}" + (f" {keras_s:>9.3f}" if keras_s is not None else ""), flush=True)

    result = run_bench(network, x, y, args.epochs, args.batch_size, args.lr, args.seed, args.vs, on_epoch,
                       args.threads)
    result["data"] = described
    from .info import blas_info
    blas = blas_info() or {}
    result["environment"] = {"numpy": np.__version__, "blas": blas.get("library"),
                             "blas_threads": args.threads or blas.get("threads"), "cpu_count": os.cpu_count()}
    if args.json:
        emit(result)
    else:
        line = f"median {result['engine_median_seconds']:>9.3f}"
        if result["ratio"] is not None:
            line += f" {result['keras_median_seconds']:>9.3f}   ratio engine/Keras {result['ratio']:.2f}"
        print(line)
    return 0


# ----------------------------------------------------------------------------- info
def cmd_info(args):
    """The environment panel's facts, as text or JSON."""
    from .info import bug_report_text, environment_info
    info = environment_info(include_tensorflow=args.tensorflow)
    if args.json:
        emit(info)
    else:
        print(bug_report_text(info))
    return 0


# ----------------------------------------------------------------------------- parser
def _network_options(p, defaults_given=True):
    """--layers, --activation, --bias/--no-bias, --dtype, --seed."""
    from .layers import ACTIVATIONS
    d = defaults_given
    p.add_argument("--layers", default="64,32" if d else None,
                   help="hidden layer widths, comma-separated (e.g. 64,32; empty for none)")
    p.add_argument("--activation", choices=list(ACTIVATIONS), default="relu" if d else None)
    p.add_argument("--bias", "--no-bias", dest="use_bias", action=argparse.BooleanOptionalAction,
                   default=True if d else None, help="biases on (default) or off (the notebook)")
    p.add_argument("--seed", type=int, default=0, help="random seed (weights, shuffles, dropout)")


def _progress_option(p):
    p.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                   help="progress bar on stderr: auto = only on a terminal")


def build_parser():
    """The argparse parser for all subcommands."""
    parser = Parser(prog=PROG, description="Digit Lab's NumPy network engine from the command line.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,gradcheck,predict,bench,info}")

    t = sub.add_parser("train", help="train a network and report per epoch",
                       description="Train a network. Without --preset the engine defaults apply; "
                                   "options given explicitly override the preset.")
    t.add_argument("--preset", choices=list(PRESETS), help="start from named settings (notebook, recommended)")
    t.add_argument("--data", help="Keras-format .npz or a folder of the four IDX files")
    t.add_argument("--dataset", choices=("mnist", "fashion", "synthetic"), default="mnist",
                   help="which dataset (mnist without --data: MNIST_PATH, the Keras cache, a download, else the bundled 5,000-digit sample)")
    _network_options(t, defaults_given=False)
    t.add_argument("--dtype", choices=("float32", "float64"))
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--optimizer", choices=("adam", "sgd"))
    t.add_argument("--lr", type=float, help="learning rate")
    t.add_argument("--beta1", type=float)
    t.add_argument("--beta2", type=float)
    t.add_argument("--eps", type=float, help="Adam's epsilon (default 1e-8, as the notebook)")
    t.add_argument("--momentum", type=float, help="SGD momentum")
    t.add_argument("--weight-decay", type=float, help="L2 weight decay")
    t.add_argument("--max-norm", type=float, help="max-norm of each hidden unit's weights (0 = off)")
    t.add_argument("--keep-prob", type=float, help="dropout keep probability (1 = no dropout)")
    t.add_argument("--schedule", choices=("constant", "step", "cosine"), help="learning-rate schedule")
    t.add_argument("--warmup", dest="warmup_epochs", type=float, help="warm-up epochs (linear ramp of the learning rate)")
    t.add_argument("--step-epochs", type=float, help="step schedule: epochs between decays")
    t.add_argument("--gamma", type=float, help="step schedule: decay factor")
    t.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="random shifts, rotations and scaling of each batch")
    t.add_argument("--early-stopping", type=int, metavar="N",
                   help="stop after N epochs without a better validation loss (needs --val-split)")
    t.add_argument("--val-split", dest="validation_split", type=float,
                   help="share of the training data held out for validation")
    t.add_argument("--scale", dest="scale_inputs", action=argparse.BooleanOptionalAction, default=None,
                   help="scale pixels to [0, 1] (--no-scale feeds raw 0-255 like the notebook)")
    t.add_argument("--shuffle", action=argparse.BooleanOptionalAction, default=None,
                   help="shuffle every epoch (--no-shuffle keeps the file order like the notebook)")
    t.add_argument("--save", metavar="MODEL.npz", help="save the trained network here")
    t.add_argument("--json", action="store_true", help="one JSON object per epoch, then a summary")
    t.add_argument("--threads", type=int, default=1, choices=range(1, 257), metavar="N",
                   help="BLAS threads (default 1: robust on a busy machine; 2+ helps wide layers when idle)")
    _progress_option(t)
    t.set_defaults(func=cmd_train)

    g = sub.add_parser("gradcheck", help="check backprop against finite differences")
    _network_options(g)
    g.add_argument("--dtype", choices=("float32", "float64"), default="float64",
                   help="the network's dtype (the check itself always runs in float64)")
    g.add_argument("--model", help="check a saved network instead of a fresh one")
    g.add_argument("--samples", type=int, default=8)
    g.add_argument("--keep-prob", type=float, default=1.0, help="< 1 uses one fixed dropout mask")
    g.add_argument("--entries", type=int, help="check K random entries per array (default: all)")
    g.add_argument("--eps", type=float, default=1e-5, help="finite-difference step")
    g.add_argument("--tolerance", type=float, default=1e-4, help="fail at or above this relative error")
    g.add_argument("--break", dest="fault", choices=list(FAULTS),
                   help="a deliberate backprop bug, to see a failing check")
    g.add_argument("--data", help="use samples from this dataset file (default: synthetic digits)")
    g.add_argument("--dataset", choices=("mnist", "fashion", "synthetic"),
                   help="default: synthetic digits, or mnist when --data is given")
    g.add_argument("--json", action="store_true", help="print the result as one JSON line")
    _progress_option(g)
    g.set_defaults(func=cmd_gradcheck)

    p = sub.add_parser("predict", help="classify image files with a saved model")
    p.add_argument("--model", required=True, metavar="MODEL.npz")
    p.add_argument("--json", action="store_true", help="one JSON object per image")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.set_defaults(func=cmd_predict)

    b = sub.add_parser("bench", help="seconds per epoch: the engine against Keras")
    _network_options(b)
    b.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    b.add_argument("--batch-size", type=int, default=100)
    b.add_argument("--epochs", type=int, default=3)
    b.add_argument("--lr", type=float, default=0.001)
    b.add_argument("--data", help="dataset file (default: synthetic 60,000x784 uint8)")
    b.add_argument("--dataset", choices=("mnist", "fashion"), help="load this dataset instead of synthetic")
    b.add_argument("--samples", type=int, help="number of training samples (default 60,000 / all)")
    b.add_argument("--vs", choices=("keras", "none"), default="keras", help="compare with Keras, or time the engine only")
    b.add_argument("--threads", type=int, help="limit NumPy's BLAS and TensorFlow to N threads each")
    b.add_argument("--json", action="store_true", help="print the result as one JSON line")
    b.set_defaults(func=cmd_bench)

    i = sub.add_parser("info", help="Python, NumPy/BLAS, CPU, memory, packages, dataset, TensorFlow")
    i.add_argument("--json", action="store_true")
    i.add_argument("--tensorflow", action="store_true", help="also import TensorFlow (slow) for versions and GPUs")
    i.set_defaults(func=cmd_info)
    return parser


def _describe_os_error(exc):
    if exc.strerror and exc.filename:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc) or type(exc).__name__


def main(argv=None):
    """Entry point; returns the exit status (0 ok, 1 failure, 2 bad usage, 130 interrupted)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # in case a command ends up importing TensorFlow
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except EngineError as exc:
        message = str(exc)
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):  # e.g. `| head`: stop quietly
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 1
        message = _describe_os_error(exc)
    except MemoryError:
        message = "out of memory: try fewer or narrower layers, a smaller batch or fewer samples"
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: still one line, the traceback on request
        if os.environ.get("DIGITLAB_DEBUG"):
            raise
        message = f"unexpected error ({type(exc).__name__}: {exc}); set DIGITLAB_DEBUG=1 for the traceback"
    print(f"error: {one_line(message)}", file=sys.stderr)
    return 1
