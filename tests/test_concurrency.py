"""Many users on one server (issue 7: Concurrency, Divergence/interruption): real Chromium tabs
(one browser context = one Streamlit session) against `streamlit run app.py` (the rest of its
environment is this process's, so STREAMLIT_* settings can be tried from the command line).

- test_sessions_train_concurrently: one session trains alone (the RSS baseline), then 8 more
  build networks of different widths and press Start within a second or two (each tab then
  visits Home while its run goes on, and comes back to Train to read the result), on a server with
  the default DIGITLAB_MAX_RUNS (cores - 1). Checked: never more than that many runs at once
  (logged in the server process by a sitecustomize hook that only observes), every slot used,
  the waiting ones say "Waiting for a free training slot", all 8 complete, each tab shows its
  own architecture, its own history and its own test accuracy (equal to the same run replayed
  alone through the app's code in this process), the server's RSS grows by much less than a
  copy of the dataset per session, and a fresh /Data page load during the runs shows its
  title in under 3 s (DIGITLAB_PAGE_LOAD_LIMIT_S) or, when this machine's browsers make even an
  idle load slow, in under 3.5x the same browser's idle load: most of a load is Chromium
  starting Streamlit's JavaScript on the cores that the test's own 9 tabs share, while a
  blocked server (say, one whose training shared its GIL) takes 10 s or more.
- test_closed_tabs_keep_their_runs_and_stop_frees_a_slot (DIGITLAB_MAX_RUNS=2): two long runs hold both
  slots and a third tab's run waits; closing the two tabs leaves their runs going (a run belongs
  to its lab), their reopened links show them live, Stop there lets the third run start within
  a second or so, and no training process of the stopped runs is left.

All tabs are driven from this one thread (Playwright's sync API is not thread-safe): each step
goes to every tab before the first tab is waited for, so the server works on all at once.

Run length: 2 epochs of 784-16-10 take ~0.05 s, over before the next tab's Start is even
clicked, so no queue could ever form. Runs here are 25 epochs of 784-(96..160)-10 (~2 s
alone; 8-20 s two at a time on the shared 2 cores): long enough to queue, small enough
(0.1 M parameters) that the RSS per session measures the session rather than its network.

The timed page loads use a second Chromium process (another user's browser): in the Chromium
that renders the 8 training tabs' live charts, a new tab waits for the same renderer and
network processes, which measures this test's browser rather than the server.

Prints the figures for the README (run with -s). `benchmarks/concurrency.py` runs the same
measurement standalone and prints a Markdown table.
"""
import contextlib
import math
import os
import statistics
import time

import pytest

from conftest import require_sample
from browser_support import assert_no_exception, launch_chromium, require_browser, settle
from support.concurrency import (BASE_WIDTH, BATCH_SECONDS, CONCURRENT_SESSIONS, EPOCHS, MAX_EPOCHS, MAX_RUNS, MB,
                                 PAGE_LOAD_IDLE_FACTOR, PAGE_LOAD_LIMIT_S, PAGE_LOADS, QUEUE_MESSAGE, LimitedServer,
                                 Session, dataset_bytes, evidence, first_page, idle_page_load, load_average, prepare,
                                 press_start, replay_accuracies, rss_bound_per_session, run_batch, training_processes,
                                 wait_status)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browsers():
    """(Chromium for the sessions, a second Chromium for the timed page loads)."""
    require_browser()
    pytest.importorskip("psutil")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        tabs, visitor = launch_chromium(pw), launch_chromium(pw)
        yield tabs, visitor
        visitor.close()
        tabs.close()


@contextlib.contextmanager
def running_server(max_runs):
    srv = LimitedServer(require_sample(), max_runs=max_runs).start()
    try:
        yield srv
    finally:
        srv.stop()
        import shutil
        shutil.rmtree(srv.tmp, ignore_errors=True)


@pytest.fixture
def server(browsers):
    """A server with the app's default number of training slots."""
    with running_server(MAX_RUNS) as srv:
        yield srv


@pytest.fixture
def server_two_slots(browsers):
    with running_server(2) as srv:
        yield srv


def mb(n):
    return n / MB


def run_seconds(batch):
    """Seconds the batch's single run held its slot (server log)."""
    (start, end), = batch.runs.values()
    return end - start


def batch_epochs(baseline):
    """Epochs for each of the 8 runs so that they last about BATCH_SECONDS on this machine:
    the page loads must be timed while runs are still going, and a fast machine finishes a
    fixed number of epochs before the tabs have even left the Train page."""
    per_epoch = run_seconds(baseline) / EPOCHS
    wanted = math.ceil(BATCH_SECONDS / (CONCURRENT_SESSIONS * max(per_epoch, 1e-3)))
    return min(MAX_EPOCHS, max(EPOCHS, wanted))


# --- the tests -----------------------------------------------------------------------------

def test_sessions_train_concurrently(browsers, server):
    tabs, visitor = browsers
    t0 = time.monotonic()
    sample = require_sample()
    held = []
    try:
        held.append(first_page(tabs, server))
        rss_start = server.rss_bytes()
        idle_load = idle_page_load(visitor, server)
        load_before = load_average()

        baseline = run_batch(tabs, server, [Session("s0", str(BASE_WIDTH), EPOCHS)], page_loads=0)
        held += baseline.sessions
        rss_one = server.rss_bytes()

        widths = [str(BASE_WIDTH + 8 * i) for i in range(1, CONCURRENT_SESSIONS + 1)]
        epochs = batch_epochs(baseline)
        batch = run_batch(tabs, server, [Session(f"s{i}", w, epochs) for i, w in enumerate(widths, 1)],
                          visitor=visitor)
        held += batch.sessions
        rss_all = server.rss_bytes()
        load_after = load_average()

        everyone = baseline.sessions + batch.sessions
        final = {**baseline.final, **batch.final}
        expected = replay_accuracies(sample, everyone)
        per_session = (rss_all - rss_one) / CONCURRENT_SESSIONS
        bound = rss_bound_per_session(sample, widths[-1])
        waited = [s.name for s in batch.sessions if s.showed_queue_message()]
        loads = [x.seconds for x in batch.page_loads]
        median_load = statistics.median(loads) if loads else float("nan")

        print(f"\nconcurrency: {len(held)} sessions held, {CONCURRENT_SESSIONS} training at once with "
              f"DIGITLAB_MAX_RUNS={MAX_RUNS}; {epochs} epochs of 784-{widths[0]}..{widths[-1]}-10 each "
              f"(the first session's {EPOCHS} took {run_seconds(baseline):.1f} s)")
        print(f"  server RSS: {mb(rss_start):.1f} MB after the first page, {mb(rss_one):.1f} MB after one "
              f"session trained, {mb(rss_all):.1f} MB with {len(everyone)} trained -> "
              f"{mb(per_session):.2f} MB per added session (bound {mb(bound):.1f} MB; dataset "
              f"{mb(dataset_bytes(sample)):.1f} MB as uint8)")
        print(f"  runs: prepared {len(batch.sessions)} tabs in {batch.prepare_s:.1f} s; all completed "
              f"{batch.start_to_done_s:.1f} s after the Start clicks; most runs holding a slot at once "
              f"(server log): {batch.server_most}; {len(waited)} of {len(batch.sessions)} tabs showed the "
              f"queue message ({batch.max_running_shown} showed 'Training…' first)")
        print("  slots held (s after the Start clicks): " + ", ".join(
            f"{a:.1f}-{b:.1f}" for a, b in sorted(batch.runs.values())))
        print(f"  fresh /Data load (h1 visible), other browser: idle {idle_load:.2f} s; during the runs "
              + ", ".join(f"{x.seconds:.2f} s ({x.active_at_start}->{x.active_at_end} runs left)"
                          for x in batch.page_loads)
              + f"; plain HTTP GET during the runs {', '.join(f'{x:.2f}' for x in batch.http_seconds)} s; "
              f"load average {' '.join(f'{x:.1f}' for x in load_after)} on {os.cpu_count()} cores")
        for s in everyone:
            r = final[s.name]
            print(f"  {s.name}: {s.architecture}  test accuracy {r['test_accuracy']} (sidebar "
                  f"{r['sidebar_accuracy']}, replayed alone {expected[s.name]}), {r['history']} epochs shown")

        # The limit and the queue (the server's log is exact; a tab's view lags by up to
        # seconds on a loaded machine, so tabs are not used to count).
        assert batch.server_most == MAX_RUNS, (
            f"{batch.server_most} runs held a slot at once (want exactly {MAX_RUNS}): {batch.runs}")
        assert len(batch.runs) == CONCURRENT_SESSIONS and all(b is not None for _, b in batch.runs.values()), (
            f"runs logged: {batch.runs}")
        assert len(waited) >= CONCURRENT_SESSIONS - MAX_RUNS, (
            f"only {waited} showed '{QUEUE_MESSAGE}': { {s.name: s.statuses() for s in batch.sessions} }")
        # No cross-talk: each tab shows its own network, history and accuracy.
        for s in everyone:
            r = final[s.name]
            state = r["state"]
            assert Session.status(state) == "completed" and float(state["progress"] or 0) >= 100, (s.name, state)
            assert f"{s.architecture} relu" in state["side"], f"{s.name}: sidebar shows {state['side']!r}"
            assert not any(f"{o.architecture} relu" in state["side"] for o in everyone if o is not s), (
                f"{s.name}: sidebar shows another session's network: {state['side']!r}")
            assert r["history"] == s.epochs, f"{s.name}: {r['history']} epochs in its history, want {s.epochs}"
            assert r["test_accuracy"] == r["sidebar_accuracy"] == expected[s.name], (
                f"{s.name}: page {r['test_accuracy']}, sidebar {r['sidebar_accuracy']}, "
                f"the same run replayed alone {expected[s.name]}")
            assert_no_exception(s.page, s.name)
        # Memory: the dataset is shared, not copied per session.
        assert per_session < bound, (f"server RSS grew {mb(per_session):.1f} MB per session "
                                     f"(bound {mb(bound):.1f} MB): is the dataset copied per session?")
        # Responsiveness.
        assert len(loads) == PAGE_LOADS and all(x.active_at_start >= 1 for x in batch.page_loads), (
            f"the page loads were not timed during the runs: {[x.active_at_start for x in batch.page_loads]}")
        limit = max(PAGE_LOAD_LIMIT_S, PAGE_LOAD_IDLE_FACTOR * idle_load)
        assert median_load < limit, (
            f"/Data took {loads} s (median {median_load:.2f} s) during the runs, limit {limit:.2f} s "
            f"(idle {idle_load:.2f} s); plain HTTP {batch.http_seconds} s; load average "
            f"{load_before[0]:.1f} before the runs, {load_after[0]:.1f} after, on {os.cpu_count()} cores")
    finally:
        for s in held:
            s.close()
        print(f"  test time {time.monotonic() - t0:.1f} s")


def test_closed_tabs_keep_their_runs_and_stop_frees_a_slot(browsers, server_two_slots):
    server = server_two_slots
    """Two tabs start long runs (30 epochs of 784-1024-1024-10: half a minute alone, more two at
    a time) and hold both slots; a third tab's run waits. Closing the two tabs does not end
    their runs (a run belongs to its lab, issue 13): the third still waits and their training
    processes go on. Reopening their links shows them live; Stop there frees the slots, the
    third run starts, and the stopped runs' training processes are gone afterwards."""
    tabs, _ = browsers
    t0 = time.monotonic()
    long_a, long_b = Session("long_a", "1024, 1024", 30), Session("long_b", "1024, 1024", 30)
    third = Session("third", "32", 2)
    sessions = [long_a, long_b, third]
    try:
        for s in sessions:
            s.open(tabs)
        prepare(sessions, server.url)
        before_wall = time.time()
        press_start([long_a, long_b])
        for s in (long_a, long_b):
            wait_status(s, {"running"}, 60)
        long_runs = training_processes(server)  # the two long runs' processes
        press_start([third])
        wait_status(third, {"waiting"}, 30)   # both slots are taken by the long runs
        links = [s.page.url for s in (long_a, long_b)]

        long_a.close()
        long_b.close()
        time.sleep(3)
        assert third.observe() == "waiting", "a closed tab's run let go of its slot"
        assert long_runs <= training_processes(server), "a closed tab's run ended"

        reopened = [Session(f"{s.name}_again", s.width, s.epochs).open(tabs) for s in (long_a, long_b)]
        sessions += reopened
        for s, link in zip(reopened, links):
            s.page.goto(link)
        for s in reopened:
            wait_status(s, {"running"}, 60)      # live again in the new tab
        stopped_at, stopped_walls = time.monotonic(), []
        for s in reopened:  # each run is timed from its own Stop (the second click waits for the first)
            stopped_walls.append(time.time())
            s.page.get_by_role("button", name="Stop").click()
        wait_status(third, {"running", "completed"}, 30)
        started_after = time.monotonic() - stopped_at
        wait_status(third, {"completed"}, 60)
        settle(third.page)
        deadline = time.monotonic() + 15
        while (remaining := long_runs & training_processes(server)) and time.monotonic() < deadline:
            time.sleep(0.1)
        runs = sorted(v for v in server.runs().values() if v[0] >= before_wall)
        # runs[:2] are long_a's and long_b's, in the order they were started (and stopped)
        ended = [end - stopped for (_, end), stopped in zip(runs[:2], stopped_walls) if end is not None]
        print(f"\nclosed tabs: both long runs went on without their tabs; after Stop in the reopened tabs they let "
              f"go of their slots {', '.join(f'{x:.2f}' for x in ended)} s later (server log); the queued run's tab "
              f"showed it training {started_after:.2f} s after; {len(long_runs)} training processes for the long "
              f"runs, {len(remaining)} still there; load average {' '.join(f'{x:.1f}' for x in load_average())}; "
              f"test time {time.monotonic() - t0:.1f} s")
        assert len(runs) == 3 and len(ended) == 2 and max(ended) < 5, (
            f"the stopped runs did not end promptly: {runs} (stopped at {', '.join(f'{t:.2f}' for t in stopped_walls)})")
        assert runs[2][0] >= min(end for _, end in runs[:2]), f"the queued run started before a slot was free: {runs}"
        assert started_after < 10, f"the queued run started only {started_after:.1f} s after the Stops"
        assert len(long_runs) == 2 and not remaining, (
            f"training processes of the stopped runs still there: {sorted(remaining)} of {sorted(long_runs)}")
    except Exception as error:  # noqa: BLE001 - keep the evidence
        evidence(sessions, server, error)
    finally:
        for s in sessions:
            s.close()
