"""Ablation of the "recommended" preset on the real MNIST sample (issue 6).

Starts from the notebook's network and adds one ingredient at a time until it reaches the
`recommended` preset exactly; each row is trained with 3 seeds and scored on the sample's
1,000 test digits. Prints a Markdown table (test accuracy mean ± sd, training seconds).

    python benchmarks/ablation.py                 # about 8 minutes on a 2-core machine
    python benchmarks/ablation.py --seeds 0       # one seed, a quick look

Training uses one BLAS thread by default, as the dashboard does (ui/frame.py): on a 2-core
machine shared with other work, OpenBLAS's default of 2 threads spin-waits and made the same
run 10-30x slower in our measurements. `--threads 0` leaves the BLAS default alone.
Skips (exit 0, with a message) when data/mnist-sample.npz is absent.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_SAMPLE = ROOT / "data" / "mnist-sample.npz"

# Keys that only describe a preset; everything else must match the preset in the last row.
LABEL_KEYS = ("description", "tuned")


def ablation_rows():
    """(step, what changes, settings) from the notebook's net to the recommended preset."""
    from engine.presets import preset
    nb, rec = preset("notebook"), preset("recommended")
    arch = "-".join(map(str, [784, *rec["hidden"], 10]))
    rows = []
    s = {**nb, "scale_inputs": False, "shuffle": False}
    rows.append(("Notebook net", "784-64-32-10, no biases, float64, Adam 0.001, batch 100, 10 epochs; "
                 "raw 0-255 pixels, data in file order", s))
    s = {**s, "scale_inputs": True, "shuffle": True}
    rows.append(("+ scaling, shuffling", "inputs scaled to [0, 1], reshuffled every epoch "
                 "(engine defaults; = `notebook` preset)", s))
    s = {**s, **{k: rec[k] for k in ("hidden", "use_bias", "dtype", "activation", "optimizer", "lr",
                                       "batch_size", "epochs")}}
    rows.append(("+ wider", f"{arch} {rec['activation']}, biases, {rec['dtype']}, Adam {rec['lr']}, "
                 f"batch {rec['batch_size']}, {rec['epochs']} epochs", s))
    s = {**s, "keep_prob": rec["keep_prob"]}
    rows.append(("+ dropout", f"keep_prob {rec['keep_prob']} after each hidden layer", s))
    s = {**s, "augment": rec["augment"]}
    aug = rec["augment"] or {}
    rows.append(("+ augmentation", ", ".join(f"{k} {v}" for k, v in aug.items() if v) or "off", s))
    s = {**s, **{k: rec[k] for k in ("schedule", "warmup_epochs", "step_epochs", "gamma", "min_lr_fraction")}}
    rows.append(("+ schedule", f"{rec['schedule']} decay, {rec['warmup_epochs']:g}-epoch warm-up", s))
    s = {**s, "max_norm": rec["max_norm"], "weight_decay": rec["weight_decay"]}
    extra = f", L2 {rec['weight_decay']:g}" if rec["weight_decay"] else ""
    rows.append(("+ max-norm = **recommended**", f"max-norm {rec['max_norm']:g} on hidden units{extra}", s))
    final = {k: v for k, v in s.items() if k not in LABEL_KEYS}
    wanted = {k: v for k, v in rec.items() if k not in LABEL_KEYS}
    assert final == wanted, f"the last ablation row is not the recommended preset: {final} != {wanted}"
    return rows


def run(settings, seed, data):
    """Train one network; (test accuracy, training seconds, median epoch seconds, end reason)."""
    from engine.presets import build
    from engine.trainer import evaluate, train
    net, opt, config = build(settings, seed=seed)
    start = time.perf_counter()
    end = train(net, opt, data["x_train"], data["y_train"], config)
    seconds = time.perf_counter() - start
    _, acc = evaluate(net, data["x_test"], data["y_test"], scale=settings["scale_inputs"])
    epoch_seconds = statistics.median(h["seconds"] for h in net.history) if net.history else float("nan")
    return acc, seconds, epoch_seconds, end.reason


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", type=Path, default=DEFAULT_SAMPLE, help="the .npz sample")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (0 = library default)")
    args = parser.parse_args(argv)
    if not args.sample.exists():
        print(f"Skipped: the real MNIST sample is not at {args.sample} (only present beside the project).")
        return 0
    import numpy as np
    with np.load(args.sample, allow_pickle=False) as d:
        data = {k: d[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    limiter = None
    if args.threads > 0:
        from threadpoolctl import threadpool_limits
        limiter = threadpool_limits(limits=args.threads, user_api="blas")
    print(f"{len(data['y_train']):,} train / {len(data['y_test']):,} test digits from {args.sample.name}; "
          f"seeds {seeds}; BLAS threads {args.threads or 'default'}\n", file=sys.stderr)
    lines = ["| Step | What changes | Test accuracy (%) | Training s | s/epoch |",
             "|---|---|---|---|---|"]
    try:
        for step, what, settings in ablation_rows():
            accs, secs, epoch_secs, notes = [], [], [], set()
            for seed in seeds:
                acc, seconds, per_epoch, reason = run(settings, seed, data)
                accs.append(100 * acc)
                secs.append(seconds)
                epoch_secs.append(per_epoch)
                if reason != "completed":
                    notes.add(reason)
                print(f"  {step}: seed {seed} {acc:.2%} in {seconds:.1f} s ({reason})", file=sys.stderr, flush=True)
            sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
            note = f" ({', '.join(sorted(notes))})" if notes else ""
            lines.append(f"| {step} | {what} | {statistics.mean(accs):.2f} ± {sd:.2f}{note} | "
                         f"{statistics.mean(secs):.1f} | {statistics.median(epoch_secs):.2f} |")
    finally:
        if limiter is not None:
            limiter.restore_original_limits()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
