"""Many users on one server: memory per session, page loads during training, run times.

The measurement of tests/test_concurrency.py as a standalone script: one `streamlit run app.py`
(DIGITLAB_MAX_RUNS as the app's default, cores - 1, unless --max-runs), Debian's Chromium through Playwright, one browser context
per session. A first visitor opens Home and Data; one session builds and trains alone (the
baseline); then each batch adds --sessions sessions that build networks of different widths
(784-W-10) and press Start together, while fresh /Data page loads are timed in a second
Chromium (another user's browser). Sessions stay open, so "sessions held" grows batch by batch.

    python benchmarks/concurrency.py [--sessions 8] [--batches 1] [--epochs 25] [--max-runs 2]
                                     [--page-loads 3] [--data PATH] [--env KEY=VALUE ...]
                                     [--dask-workers 2]

--dask-workers N starts a Dask LocalCluster of N single-thread worker processes on this machine
and points the server at it (DIGITLAB_SCHEDULER): the runs train there instead of in the
server's own slots (issue 15).

--env passes settings to the server, e.g. --env STREAMLIT_RUNNER_POST_SCRIPT_GC=false
--env STREAMLIT_SERVER_FILE_WATCHER_TYPE=none --env MALLOC_ARENA_MAX=2 to compare with the
shipped .streamlit/config.toml. Prints a Markdown table. Needs Chromium (/usr/bin/chromium),
playwright and psutil; never run `playwright install`.
"""
import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from browser_support import launch_chromium  # noqa: E402  (after the path set-up)
from support.concurrency import (  # noqa: E402
    BASE_WIDTH, MAX_RUNS, MB, LimitedServer, Session, first_page, idle_page_load, load_average, run_batch,
)


def default_data():
    return str(ROOT / "data" / "mnist-sample.npz")


def fmt(x, digits=2):
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=8, help="sessions added (and started together) per batch")
    parser.add_argument("--batches", type=int, default=1, help="how many batches of --sessions")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--max-runs", type=int, default=MAX_RUNS, help="DIGITLAB_MAX_RUNS for the server")
    parser.add_argument("--page-loads", type=int, default=3, help="timed /Data loads per batch")
    parser.add_argument("--data", default=default_data(), help="MNIST_PATH for the server")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the server (repeatable)")
    parser.add_argument("--dask-workers", type=int, default=0,
                        help="train on a Dask LocalCluster of this many 1-thread workers (0: on the server)")
    args = parser.parse_args(argv)
    extra = dict(item.split("=", 1) for item in args.env)
    cluster = None
    if args.dask_workers:
        from distributed import LocalCluster
        cluster = LocalCluster(n_workers=args.dask_workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=40)
        extra["DIGITLAB_SCHEDULER"] = cluster.scheduler_address
    if not Path(args.data).exists():
        parser.error(f"no data at {args.data}")

    from playwright.sync_api import sync_playwright

    t_start = time.monotonic()
    load_start = load_average()
    server = LimitedServer(args.data, max_runs=args.max_runs, **extra).start()
    rows, held = [], []
    try:
        with sync_playwright() as pw:
            tabs, visitor = launch_chromium(pw), launch_chromium(pw)
            try:
                t0 = time.monotonic()
                held.append(first_page(tabs, server))
                idle = idle_page_load(visitor, server)
                rss = server.rss_bytes()
                rows.append(["first page (Home, Data)", len(held), rss, None, idle, [server.http_seconds()],
                             None, None, time.monotonic() - t0])

                t0 = time.monotonic()
                base = run_batch(tabs, server, [Session("s0", str(BASE_WIDTH), args.epochs)], page_loads=0)
                held += base.sessions
                previous, rss = rss, server.rss_bytes()
                rows.append(["1 session trained alone", len(held), rss, None, None, None, 1,
                             base.start_to_done_s, time.monotonic() - t0])

                index = 1
                for b in range(args.batches):
                    sessions = [Session(f"s{index + i}", str(BASE_WIDTH + 8 * (index + i)), args.epochs)
                                for i in range(args.sessions)]
                    index += args.sessions
                    t0 = time.monotonic()
                    try:
                        batch = run_batch(tabs, server, sessions, visitor=visitor, page_loads=args.page_loads)
                    except AssertionError as failed:  # e.g. the runs never finished: say so, keep the table
                        held += sessions
                        print(f"batch {b + 1} failed after {time.monotonic() - t0:.0f} s: "
                              f"{str(failed).splitlines()[0]}", file=sys.stderr)
                        rows.append([f"+{args.sessions} training at once: FAILED", len(held),
                                     server.rss_bytes(), None, None, None, None, None, time.monotonic() - t0])
                        break
                    held += batch.sessions
                    previous, rss = rss, server.rss_bytes()
                    loads = [x.seconds for x in batch.page_loads]
                    rows.append([f"+{args.sessions} training at once", len(held), rss,
                                 (rss - previous) / args.sessions, loads, batch.http_seconds, batch.server_most,
                                 batch.start_to_done_s, time.monotonic() - t0])
                    waited = sum(s.showed_queue_message() for s in batch.sessions)
                    print(f"batch {b + 1}: {waited}/{len(sessions)} showed the queue message; slots held "
                          "(s after the Start clicks, server log): "
                          + ", ".join(f"{a:.1f}-{z:.1f}" for a, z in sorted(batch.runs.values())), file=sys.stderr)
            finally:
                for s in held:
                    s.close()
                visitor.close()
                tabs.close()
    finally:
        server.stop()
        if cluster is not None:
            cluster.close()

    print(f"\nDigit Lab on one server: DIGITLAB_MAX_RUNS={args.max_runs}, {args.epochs} epochs of "
          f"784-W-10 per session (W = {BASE_WIDTH}, {BASE_WIDTH + 8}, ...), data {args.data}"
          + (f", server env {extra}" if extra else "") + "\n")
    print("| step | sessions held | server RSS MB | RSS per added session MB | fresh /Data load s "
          "(median; all) | plain HTTP GET s | most runs at once (server) | runs: Start to all done s "
          "| step total s |")
    print("|---|---:|---:|---:|---|---|---:|---:|---:|")
    for step, n, rss, per, loads, http, overlap, runs, total in rows:
        if isinstance(loads, list):
            load_text = f"{fmt(statistics.median(loads))}; " + ", ".join(fmt(x) for x in loads) if loads else "–"
        else:
            load_text = fmt(loads) + (" (idle)" if loads is not None else "")
        http_text = ", ".join(fmt(x) for x in http) if http else "–"
        print(f"| {step} | {n} | {rss / MB:.1f} | {fmt(per / MB if per is not None else None)} | {load_text} | "
              f"{http_text} | {overlap if overlap is not None else '–'} | {fmt(runs, 1)} | {fmt(total, 1)} |")
    load_end = load_average()
    print(f"\nTotal {time.monotonic() - t_start:.1f} s. Load average {load_start[0]:.1f} at the start, "
          f"{load_end[0]:.1f} at the end, on {os.cpu_count()} cores (other jobs on the machine count "
          "too). Page loads: a new browser context in a second Chromium, navigation start to the "
          "page's h1 visible; plain HTTP GET: the server alone answering GET /Data (no browser).")


if __name__ == "__main__":
    main()
