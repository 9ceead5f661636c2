"""What training through the dashboard costs compared with the engine alone.

Same data, architecture, settings and BLAS threads (the app runs one BLAS thread per run):
  1. the engine alone, in a fresh process: `engine.trainer.train`, then the test set's accuracy;
  2. the real app: `streamlit run app.py`, Debian's Chromium (Playwright) opens Build, creates
     the network, opens Train, presses Start and keeps the tab open on the live charts
     until the run completes.
Two times of each run:
  - the training clock: the trainer's own seconds (the run time the page shows). The time the
    app's training process holds each event (drawing pictures, sending) is left out of it, but
    whatever the server and the browser take from the training core is in it;
  - wall: from the server's log lines when the run started and ended (the fork of the training
    process, everything it does, the test, its exit), against the engine's train + test.
Two placements of the browser, both measured:
  - "same cores": Chromium shares the machine's cores with the server and the training run
    (the worst case: here 2 cores for everything);
  - "own core": Chromium and its driver are pinned to the last core, the server and its
    training process to the others (sched_setaffinity), as when the browser runs on the
    user's own machine. Needs at least 2 cores; skipped otherwise.

    python benchmarks/bench_ui.py [--epochs 5] [--layers 64,32] [--data PATH] [--repeats 2]
    python benchmarks/bench_ui.py --epochs 10 --series 20

`--series N` measures the one thing with many more runs: one server and one Chromium tab kept
open (as a user keeps the lab), N runs started from the Train page (browser on the same cores),
each between two engine-alone runs; it prints the median of the per-run ratios with a bootstrap
interval. A run then takes seconds instead of a fresh server's ~35 s, so the VM's drift between
runs can be averaged out.

Also: a fresh server's first page, from navigation to its title (the 2 s budget of issue 3).

Data: Fashion-MNIST from Debian's dataset-fashion-mnist (60,000 images) when installed,
else data/mnist-sample.npz. Prints a Markdown table, the ratios UI / engine, and each repeat's
wall ratio against the engine run just before it (the same stretch of the machine's drift).
"""
import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

ENGINE_ALONE = """
import json, sys, time, numpy as np
from threadpoolctl import threadpool_limits
from engine.data import load_mnist
from engine.network import Network
from engine.optimizers import Adam
from engine.trainer import TrainConfig, evaluate, train
data = load_mnist(sys.argv[1])
times = []
with threadpool_limits(limits=int(sys.argv[4]), user_api="blas"):
    net = Network([784, *map(int, sys.argv[2].split(",")), 10], seed=0)
    started = time.perf_counter()
    end = train(net, Adam(), data.x_train, data.y_train,
                TrainConfig(epochs=int(sys.argv[3]), batch_size=100, validation_split=0.1, seed=0),
                on_event=lambda e: e.kind == "epoch" and times.append(e.seconds))
    evaluate(net, data.x_test, data.y_test)  # the app's run ends with the test accuracy too
    wall = time.perf_counter() - started
print(json.dumps({"elapsed": end.elapsed, "wall": wall, "epoch_seconds": times}))
"""


RUN_ENDED_JS = "() => document.body.innerText.includes('Run time ')"


def default_data():
    debian = Path("/usr/share/datasets/fashion-mnist")
    if debian.is_dir():
        return str(debian)
    return str(ROOT / "data" / "mnist-sample.npz")


def engine_alone(data, layers, epochs, threads):
    out = subprocess.run([sys.executable, "-c", ENGINE_ALONE, data, layers, str(epochs), str(threads)],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def open_train_page(page, server, layers, epochs):
    """As a user: Build, create the network, open Train, set the epochs."""
    from browser_support import go_to, settle
    page.goto(f"{server.url}/Build")
    settle(page)
    box = page.get_by_label("Hidden layer widths (comma-separated)", exact=True)
    box.fill(layers)
    box.press("Enter")
    settle(page)
    page.get_by_role("button", name="Create network").click()
    page.get_by_text("Untrained test accuracy").wait_for(timeout=60_000)
    go_to(page, "Train")  # a link click keeps the session (page.goto would start a new one)
    settle(page)
    epochs_box = page.get_by_label("Epochs", exact=True)
    epochs_box.fill(str(epochs))
    epochs_box.press("Enter")
    settle(page)


def start_and_watch(page, server, ended_before=0):
    """Press Start, keep the tab on the live view until the run has ended (the server's log has
    more ended runs than `ended_before`) and the page shows it; returns the seconds from Start to
    the live view on the page."""
    page.get_by_role("button", name="Start training").click()
    clicked = time.monotonic()
    page.wait_for_selector(".digitlab-live", timeout=60_000)
    shown_after = time.monotonic() - clicked
    # Look for the end once a second: Playwright's own wait would run its selector engine
    # over the page at every animation frame, CPU a user's browser does not spend.
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        time.sleep(1.0)
        if len(ended_times(server)) > ended_before and page.evaluate(RUN_ENDED_JS):
            break
    page.get_by_text(re.compile(r"Run time [\d.]+ s")).wait_for(timeout=60_000)
    return shown_after


def through_ui(data, layers, epochs, browser_core=None):
    """Train through the app in Chromium; browser_core: pin the browser there, the server elsewhere."""
    from playwright.sync_api import sync_playwright

    from browser_support import StreamlitServer, launch_chromium
    server = StreamlitServer(data).start()
    own_cores = os.sched_getaffinity(0)
    try:
        if browser_core is not None:  # the training process forks from the server: it inherits this
            os.sched_setaffinity(server.process.pid, own_cores - {browser_core})
            os.sched_setaffinity(0, {browser_core})  # Playwright's driver and Chromium inherit it
        with sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            open_train_page(page, server, layers, epochs)
            loads = []  # full page loads during the run (a reload would reset the view's counters)
            page.on("load", lambda: loads.append(time.monotonic()))
            page.on("pageerror", lambda error: print(f"page error during the run: {error}", file=sys.stderr))
            shown_after = start_and_watch(page, server)
            text = page.get_by_text(re.compile(r"Run time [\d.]+ s")).inner_text()
            draws = page.evaluate("() => window.__digitlabDraws || {}")  # counted by ui/live_view.js
            feed = page.evaluate("() => window.__digitlabFeed || {}")
            browser.close()
        epoch_seconds = [row["seconds"] for row in saved_job(server.home)["epochs_table"]]
        start, end = ended_times(server)[-1]
    finally:
        os.sched_setaffinity(0, own_cores)
        server.stop()
    elapsed = float(re.search(r"Run time ([\d.]+) s", text).group(1))
    return {"elapsed": elapsed, "wall": end - start, "epoch_seconds": epoch_seconds,
            "draws": {name: (d["count"], d["ms"] / max(d["count"], 1)) for name, d in draws.items()},
            "feed": feed, "page_loads": len(loads), "shown_after": shown_after}


def ended_times(server):
    """[(start, end)] of the runs that ended, in order, from the server's log (a run's id is its
    job's address, which a later job may reuse, so the lines are read in order, not by id)."""
    from browser_support import RUN_LOG
    started, out = {}, []
    for run, event, when in RUN_LOG.findall(server.log_path.read_text(errors="replace")):
        if event == "started":
            started[run] = float(when)
        elif run in started:
            out.append((started.pop(run), float(when)))
    return out


def tree_cpu_seconds(pids):
    """CPU seconds used so far by these processes and all their children."""
    import psutil
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    times = proc.cpu_times()
                    total += times.user + times.system
    return total


def wait_quiet(pids, below=0.05, window=0.5, timeout=15.0):
    """Wait until these process trees take under `below` of a core over `window` seconds (the page
    drawn after a run's end takes Chromium 1-2 core-seconds): each run then starts on a quiet machine."""
    deadline = time.monotonic() + timeout
    before = tree_cpu_seconds(pids)
    while time.monotonic() < deadline:
        time.sleep(window)
        now = tree_cpu_seconds(pids)
        if now - before < below * window:
            return
        before = now


def series(data, layers, epochs, runs, threads):
    """One server and one Chromium tab kept open, as a user keeps the lab: the network is built
    once, then `runs` runs are started from the Train page, each between two runs of the engine
    alone (same epochs, same machine minutes). Each UI run is compared with the mean of the two
    engine runs around it, which cancels most of the VM's slow drift; the CPU the idle tab and
    server take during the engine runs is measured and reported (it is counted against the UI)."""
    from playwright.sync_api import sync_playwright

    from browser_support import StreamlitServer, launch_chromium, settle
    server = StreamlitServer(data).start()
    engine, ui, idle_cpu = [], [], []
    try:
        with sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            open_train_page(page, server, layers, epochs)
            watched = [server.process.pid, os.getpid()]  # the server and Playwright's driver + Chromium

            def engine_run():
                wait_quiet(watched)
                before = tree_cpu_seconds(watched)
                engine.append(engine_alone(data, layers, epochs, threads))
                idle_cpu.append(tree_cpu_seconds(watched) - before)

            engine_run()
            for i in range(runs):
                settle(page)
                wait_quiet(watched)
                ended_before = len(ended_times(server))
                start_and_watch(page, server, ended_before)
                start, end = ended_times(server)[-1]
                job = saved_job(server.home)
                ui.append({"elapsed": job["elapsed"], "wall": end - start,
                           "epoch_seconds": [row["seconds"] for row in job["epochs_table"]]})
                engine_run()
                print(f"run {i + 1}/{runs}: UI clock {ui[-1]['elapsed']:.3f} s, wall {ui[-1]['wall']:.3f} s; "
                      f"engine before/after clock {engine[-2]['elapsed']:.3f}/{engine[-1]['elapsed']:.3f} s",
                      file=sys.stderr, flush=True)
            browser.close()
    finally:
        server.stop()
    return engine, ui, idle_cpu


def median_interval(values, level=0.9, draws=10_000, seed=0):
    """The median and a bootstrap interval around it (percentile method)."""
    import numpy as np
    values = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(values, size=(draws, len(values))), axis=1)
    low, high = np.quantile(medians, [(1 - level) / 2, (1 + level) / 2])
    return float(np.median(values)), float(low), float(high)


def print_series(engine, ui, idle_cpu, args, threads):
    """Each UI run against the mean of the engine runs before and after it."""
    def ratios(key):
        return [u[key] / ((a[key] + b[key]) / 2) for u, a, b in zip(ui, engine, engine[1:])]

    print(f"data: {args.data}; 784-{args.layers.replace(',', '-')}-10, batch 100, {args.epochs} epochs, "
          f"validation split 0.1, {threads} BLAS thread(s); one server and one Chromium tab kept open, "
          f"{len(ui)} runs from Start, each between two engine-alone runs")
    print("| | median s | UI / engine, median of the runs | 90% interval (bootstrap) | single runs |\n|---|---|---|---|---|")
    print(f"| engine alone, training clock | {statistics.median(r['elapsed'] for r in engine):.3f} | | | |")
    print(f"| engine alone, wall (train + test) | {statistics.median(r['wall'] for r in engine):.3f} | | | |")
    for key, label in (("elapsed", "training clock"), ("wall", "wall")):
        values = ratios(key)
        mid, low, high = median_interval(values)
        print(f"| through the UI, {label} | {statistics.median(r[key] for r in ui):.3f} | **{mid:.3f} "
              f"({100 * (mid - 1):+.1f}%)** | {low:.3f}-{high:.3f} | {min(values):.3f}-{max(values):.3f} |")
    first = [u["epoch_seconds"][0] - statistics.median(u["epoch_seconds"]) for u in ui]
    first_engine = [e["epoch_seconds"][0] - statistics.median(e["epoch_seconds"]) for e in engine]
    steady = [statistics.median(u["epoch_seconds"]) / statistics.median(a["epoch_seconds"] + b["epoch_seconds"])
              for u, a, b in zip(ui, engine, engine[1:])]
    print(f"an epoch's median, UI / engine: {statistics.median(steady):.3f}; the first epoch over the run's "
          f"median: UI {statistics.median(first):+.3f} s, engine {statistics.median(first_engine):+.3f} s; "
          f"wall minus training clock: UI {statistics.median(u['wall'] - u['elapsed'] for u in ui):.3f} s, "
          f"engine {statistics.median(e['wall'] - e['elapsed'] for e in engine):.3f} s")
    print(f"CPU the open tab, its driver and the idle server took during each engine run: median "
          f"{statistics.median(idle_cpu):.3f} core-seconds (max {max(idle_cpu):.3f})")


def saved_job(home):
    """The lab's last run as the server saved it (ui/lab_store.py): elapsed, epochs_table..."""
    for path in Path(home).glob("labs/*/lab.json"):
        job = json.loads(path.read_text()).get("job") or {}
        if job.get("epochs_table"):
            return job
    raise RuntimeError(f"no saved run under {home}")


def first_page(data):
    """(seconds from `streamlit run` to the server answering, seconds from navigating to Home on
    that fresh server to its title being visible) in a new Chromium."""
    from playwright.sync_api import sync_playwright

    from browser_support import StreamlitServer, launch_chromium
    from support.concurrency import H1_TIMER_JS
    started = time.monotonic()
    server = StreamlitServer(data).start()
    up = time.monotonic() - started
    try:
        with sync_playwright() as p:
            browser = launch_chromium(p)
            context = browser.new_context()
            context.add_init_script(H1_TIMER_JS)  # notes when the h1 is first visible
            page = context.new_page()
            page.goto(server.url, wait_until="commit")
            page.wait_for_function("() => window.__digitlabH1", timeout=60_000)
            shown = page.evaluate("() => window.__digitlabH1") / 1000
            browser.close()
    finally:
        server.stop()
    return up, shown


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--layers", default="64,32")
    parser.add_argument("--data", default=default_data())
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--series", type=int, default=0, metavar="N",
                        help="instead: one server and tab kept open, N runs from Start alternated with the engine alone")
    args = parser.parse_args()
    from ui.training import BLAS_THREADS_PER_RUN as threads  # what the app gives a run
    if args.series:
        print_series(*series(args.data, args.layers, args.epochs, args.series, threads), args, threads)
        return
    cores = sorted(os.sched_getaffinity(0))
    placements = {"same cores": None}
    if len(cores) >= 2:
        placements["own core"] = cores[-1]
    runs = {"engine alone": []} | {name: [] for name in placements}
    for _ in range(args.repeats):  # alternate, so drifts in machine load hit every side
        runs["engine alone"].append(engine_alone(args.data, args.layers, args.epochs, threads))
        for name, core in placements.items():
            runs[name].append(through_ui(args.data, args.layers, args.epochs, core))
    firsts = [first_page(args.data) for _ in range(args.repeats)]
    clock = {name: statistics.median(r["elapsed"] for r in rs) for name, rs in runs.items()}
    wall = {name: statistics.median(r["wall"] for r in rs) for name, rs in runs.items()}
    # Where the cost lies: the steady state (an epoch's median) and the run's start (epoch 1 against
    # the epochs' median), each the median over the repeats.
    steady = {name: statistics.median(statistics.median(r["epoch_seconds"]) for r in rs) for name, rs in runs.items()}
    start = {name: statistics.median(r["epoch_seconds"][0] - statistics.median(r["epoch_seconds"]) for r in rs)
             for name, rs in runs.items()}
    print(f"data: {args.data}; 784-{args.layers.replace(',', '-')}-10, batch 100, {args.epochs} epochs, "
          f"validation split 0.1, {threads} BLAS thread(s); median of {args.repeats} runs each")
    print("Training clock: the trainer's own seconds (what the page reports as run time; the time the app "
          "holds each event is left out). Wall: Start to end as the user waits (the server's log), against "
          "the engine's train + test.")
    print("| | training clock s | UI / engine | wall s | UI / engine | seconds per epoch (last run) |\n"
          "|---|---|---|---|---|---|")
    for name, rs in runs.items():
        label = name if name == "engine alone" else f"through the UI, browser on {name} (live charts, tab open)"
        print(f"| {label} | {clock[name]:.2f} | {clock[name] / clock['engine alone']:.3f} | {wall[name]:.2f} | "
              f"{wall[name] / wall['engine alone']:.3f} | {', '.join(f'{s:.3f}' for s in rs[-1]['epoch_seconds'])} |")
    for name in placements:
        # Each UI run against the engine run just before it: the same stretch of the machine's drift.
        pairs = [ui["wall"] / alone["wall"] for ui, alone in zip(runs[name], runs["engine alone"])]
        print(f"UI / engine, browser on {name}: wall {wall[name] / wall['engine alone']:.3f} "
              f"({100 * (wall[name] / wall['engine alone'] - 1):+.1f}%), training clock "
              f"{clock[name] / clock['engine alone']:.3f} ({100 * (clock[name] / clock['engine alone'] - 1):+.1f}%); "
              f"an epoch's median {100 * (steady[name] / steady['engine alone'] - 1):+.1f}%, the first epoch "
              f"{start[name] - start['engine alone']:+.2f} s more than the engine's")
        print(f"  wall, each run against the engine run before it: {', '.join(f'{p:.3f}' for p in pairs)} "
              f"(median {statistics.median(pairs):.3f}, {min(pairs):.3f}-{max(pairs):.3f})")
        draws = runs[name][-1]["draws"]
        print("  chart redraws in the last run (count, mean ms): "
              + ", ".join(f"{chart} {n} x {ms:.0f} ms" for chart, (n, ms) in sorted(draws.items()))
              + "; feed requests (timed out) per run: "
              + ", ".join(f"{r['feed'].get('requests', 0)} ({r['feed'].get('timeouts', 0)})" for r in runs[name])
              + "; page loads during the runs: " + ", ".join(str(r["page_loads"]) for r in runs[name])
              + "; live view shown after Start: " + ", ".join(f"{r['shown_after']:.2f} s" for r in runs[name]))
    print("first page on a fresh server: " + "; ".join(
        f"server up {up:.2f} s, Home's title visible {shown:.2f} s after navigating" for up, shown in firsts))


if __name__ == "__main__":
    main()
