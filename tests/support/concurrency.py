"""The harness of the many-users measurements (tests/test_concurrency.py and
benchmarks/concurrency.py): a Streamlit server with a given number of training slots, real
Chromium sessions that build and train, timed page loads from another browser, and the runs'
start and end read from the app's own log.

Recipe and gotchas: ../shared/notes/STACK.md and tests/browser_support.py.
"""
import contextlib
import math
import os
import re
import time
import urllib.request
from dataclasses import dataclass, field

from browser_support import (
    PAGE_TIMEOUT_MS, VIEWPORT, StreamlitServer, app_pages, assert_no_exception, go_to, main_area, settle,
    wait_title,
)

CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
MAX_RUNS = max(1, CORES - 1)   # the app's default (ui/training.py): one core keeps serving pages
CONCURRENT_SESSIONS = 8
EPOCHS = 25                # the first session's run; the 8 runs get as many epochs as it takes
BATCH_SECONDS = 40         # ... for them to last about this long on this machine (timed loads fit in)
MAX_EPOCHS = 200
BASE_WIDTH = 96            # session i gets one hidden layer of BASE_WIDTH + 8 * i units
PAGE_LOADS = 3
PAGE_LOAD_LIMIT_S = float(os.environ.get("DIGITLAB_PAGE_LOAD_LIMIT_S", 3.0))
PAGE_LOAD_TIMEOUT_S = 30
PAGE_LOAD_IDLE_FACTOR = 3.5  # ... or this many times the idle load in the same browser (seen:
                             # 2.0-2.9x on 2 cores with the 9 tabs' own browsers on them)
TRAIN_TIMEOUT_S = 240      # all queued runs, on a shared 2-core machine
QUEUE_MESSAGE = "Waiting for a free "  # a training slot here, or a Dask worker
RUNNING_MESSAGE = "Training…"
MB = 2 ** 20

STATE_JS = """() => {
  const main = document.querySelector('[data-testid=stMain]');
  const side = document.querySelector('[data-testid=stSidebarUserContent]');
  const bar = main && main.querySelector('[data-testid=stProgress] [role=progressbar]');
  const metric = main && main.querySelector('[data-testid=stMetricValue]');
  return {main: main ? main.innerText : '', side: side ? side.innerText : '',
          progress: bar ? bar.getAttribute('aria-valuenow') : null,
          metric: metric ? metric.innerText.trim() : null};
}"""

# Installed in the timed page before any of its scripts: notes performance.now() (ms since the
# navigation started) when the main area's h1 is first visible, so the load is timed exactly
# while this thread keeps watching the training tabs.
H1_TIMER_JS = """(() => {
  const seen = () => {
    if (window.__digitlabH1) return true;
    const h = document.querySelector('[data-testid=stMain] h1');
    if (h && h.innerText.trim() && h.getBoundingClientRect().height > 0) {
      window.__digitlabH1 = performance.now();
      return true;
    }
    return false;
  };
  const mo = new MutationObserver(() => { if (seen()) mo.disconnect(); });
  mo.observe(document, {subtree: true, childList: true, characterData: true, attributes: true});
})();"""


# Installed in every session tab: notes whether the queue message was ever drawn, also between
# two reads of the tab by this thread (a tab's status is redrawn every 0.5 s).
QUEUE_FLAG_JS = """(() => {
  window.__digitlabQueued = false;
  const look = () => {
    const main = document.querySelector('[data-testid=stMain]');
    if (main && main.textContent.includes('QUEUE_MESSAGE')) { window.__digitlabQueued = true; mo.disconnect(); }
  };
  const mo = new MutationObserver(look);
  mo.observe(document, {subtree: true, childList: true, characterData: true});
})();"""


# --- the server ----------------------------------------------------------------------------

class LimitedServer(StreamlitServer):
    """StreamlitServer with DIGITLAB_MAX_RUNS (and any extra variables) in its environment; the
    runs' starts and ends are read from the app's own log lines (ui/training.TrainingJob._log)."""

    def __init__(self, sample_path, max_runs=MAX_RUNS, **extra_env):
        super().__init__(sample_path)
        self.extra_env = {"DIGITLAB_MAX_RUNS": str(max_runs), **extra_env}

    def start(self, *args, **kwargs):
        saved = {k: os.environ.get(k) for k in self.extra_env}
        os.environ.update(self.extra_env)   # StreamlitServer.start copies os.environ
        try:
            return super().start(*args, **kwargs)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def psutil_process(self):
        import psutil
        return psutil.Process(self.process.pid)

    def rss_bytes(self):
        """Resident memory of the server and its children."""
        import psutil
        proc = self.psutil_process()
        total = proc.memory_info().rss
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
        return total

    def most_runs_at_once(self, since=0.0):
        """The most runs holding a slot at the same moment (runs started after `since`)."""
        events = []
        for start, end in self.runs().values():
            if start >= since:
                events += [(start, 1), (end if end is not None else float("inf"), -1)]
        most = now = 0
        for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start at a tie
            now += step
            most = max(most, now)
        return most

    def http_seconds(self, path="/Data"):
        """Seconds for the server alone to answer a plain HTTP GET (no browser)."""
        start = time.perf_counter()
        with urllib.request.urlopen(self.url + path, timeout=60) as answer:
            answer.read()
        return time.perf_counter() - start


def load_average():
    with contextlib.suppress(OSError):
        return os.getloadavg()
    return (float("nan"),) * 3


def titles():
    return {u: t for u, _, t in app_pages()}


def widgets_mounted(page, timeout=PAGE_TIMEOUT_MS):
    """Wait until the main area's inputs are drawn with their values.

    In a fresh tab the script can be finished ("notRunning") ~0.5 s before the widgets appear
    (their code loads lazily), and a number input first shows its default (0.00) for a few
    frames before the value the app put in st.session_state (1.00). Typing into another widget
    in that window sends those defaults back, and the app keeps them (seen: keep-probability 0
    and biases off, so "Create network" is disabled).
    """
    nonzero = ["Dropout keep-probability", "Learning rate", "β2", "Batch size", "Epochs"]
    page.wait_for_function(
        """nonzero => { const m = document.querySelector('[data-testid=stMain]');
                        if (!m) return false;
                        const spins = [...m.querySelectorAll('input[type=number], [role=spinbutton]')];
                        return spins.length > 0 && m.querySelectorAll('[data-testid=stCheckbox] input').length > 0
                               && !spins.some(i => nonzero.includes(i.getAttribute('aria-label'))
                                                   && !(parseFloat(i.value) > 0)); }""",
        arg=nonzero, timeout=timeout)
    page.wait_for_timeout(200)


# --- one browser session -------------------------------------------------------------------

@dataclass
class Session:
    name: str
    width: str                # the hidden layers typed on Build, e.g. "104" or "1024, 1024"
    epochs: int
    context: object = None
    page: object = None
    seen: list = field(default_factory=list)   # statuses read by this thread
    closed: bool = False
    crashed: bool = False                      # the tab's renderer process died
    console: list = field(default_factory=list)  # the tab's last console errors

    @property
    def architecture(self):
        hidden = [w.strip() for w in self.width.split(",") if w.strip()]
        return "-".join(["784", *hidden, "10"])

    def open(self, browser):
        self.context = browser.new_context(viewport=VIEWPORT)
        self.context.add_init_script(QUEUE_FLAG_JS.replace("QUEUE_MESSAGE", QUEUE_MESSAGE))
        self.page = self.context.new_page()
        self.page.set_default_timeout(PAGE_TIMEOUT_MS)
        self.page.on("crash", lambda _page: setattr(self, "crashed", True))
        self.page.on("console", self._console)
        return self

    def _console(self, message):
        if message.type == "error":
            self.console = (self.console + [message.text[:300]])[-5:]

    def showed_queue_message(self):
        return "waiting" in self.statuses() or bool(self.page.evaluate("() => window.__digitlabQueued"))

    def close(self):
        if not self.closed and self.context is not None:
            self.context.close()
            self.closed = True

    def state(self):
        return self.page.evaluate(STATE_JS)

    @staticmethod
    def status(state):
        """completed / waiting / running / stopped / failed / diverged / other, from Train's
        status box."""
        text = state["main"]
        if "Completed" in text:
            return "completed"
        if QUEUE_MESSAGE in text:
            return "waiting"
        if RUNNING_MESSAGE in text:
            return "running"
        for word in ("Stopped", "Failed", "Diverged"):
            if word in text:
                return word.lower()
        return "other"

    def observe(self):
        """Read the tab's status once (and remember it)."""
        if self.crashed:
            raise AssertionError(f"{self.name}: the Chromium tab crashed (a browser failure, not the app's)")
        status = self.status(self.state())
        self.seen.append(status)
        return status

    def statuses(self):
        return list(self.seen)


def prepare(sessions, url):
    """Build each session's network and open Train with its epochs set, interleaved."""
    t = titles()
    for s in sessions:
        s.page.goto(f"{url}/Build", wait_until="commit")
    for s in sessions:
        wait_title(s.page, t["Build"])
        settle(s.page)
        widgets_mounted(s.page)
        box = s.page.get_by_role("textbox", name="Hidden layer widths (comma-separated)")
        box.fill(s.width)
        box.press("Enter")
    for s in sessions:
        main_area(s.page).get_by_text(re.compile(rf"\b{s.architecture}\b")).first.wait_for()
        settle(s.page)
        s.page.get_by_role("button", name="Create network").click()
    for s in sessions:
        main_area(s.page).get_by_text("Untrained test accuracy").wait_for()
        settle(s.page)
        assert_no_exception(s.page, f"{s.name} Build")
        go_to(s.page, "Train")
    for s in sessions:
        wait_title(s.page, t["Train"])
        settle(s.page)
        widgets_mounted(s.page)
        epochs = s.page.get_by_role("spinbutton", name="Epochs", exact=True)
        epochs.fill(str(s.epochs))
        epochs.press("Enter")
    for s in sessions:
        settle(s.page)
        value = s.page.get_by_role("spinbutton", name="Epochs", exact=True).input_value()
        assert value == str(s.epochs), f"{s.name}: Epochs shows {value!r}"
        assert_no_exception(s.page, f"{s.name} Train")


def press_start(sessions):
    """Click Start in every tab, then check that each click reached its session (Start gives
    way to Pause/Stop, or the run already ended)."""
    for s in sessions:
        s.page.get_by_role("button", name="Start training").click()
    for s in sessions:
        s.page.wait_for_function(
            """() => { const t = document.querySelector('[data-testid=stMain]').innerText;
                       return t.includes('Stop') || t.includes('Completed'); }""")


class PageLoad:
    """A fresh /Data load in a new context of `browser`, timed in the page (see H1_TIMER_JS)."""

    def __init__(self, browser, url, path="Data", active_runs=0):
        self.path, self.active_at_start = path, active_runs
        self.context = browser.new_context(viewport=VIEWPORT)
        self.context.add_init_script(H1_TIMER_JS)
        self.page = self.context.new_page()
        self.page.set_default_timeout(PAGE_TIMEOUT_MS)
        self.started = time.monotonic()
        self.page.goto(f"{url}/{path}", wait_until="commit")
        self.seconds = None
        self.active_at_end = None

    def poll(self, active_runs):
        """Seconds to the visible h1 once it is there (and close the context), else None."""
        if self.seconds is None:
            ms = self.page.evaluate("() => window.__digitlabH1 || null")
            if ms is not None:
                self.seconds = ms / 1000
            elif time.monotonic() - self.started > PAGE_LOAD_TIMEOUT_S:
                self.seconds = float("inf")
            if self.seconds is not None:
                self.active_at_end = active_runs
                if math.isfinite(self.seconds):
                    wait_title(self.page, titles()[self.path])
                    assert_no_exception(self.page, f"/{self.path} during the runs")
                self.context.close()
        return self.seconds


@dataclass
class BatchResult:
    sessions: list
    runs: dict                    # job -> (start, end) holding a slot, s after the Start clicks (server log)
    max_running_shown: int        # tabs whose first view after Start said "Training…"
    server_most: int              # most runs holding a slot at once, logged in the server
    page_loads: list              # PageLoad
    http_seconds: list            # plain GET of /Data during the runs (the server alone)
    prepare_s: float
    start_to_done_s: float
    final: dict                   # name -> what the tab shows at the end


def evidence(sessions, server, error):
    """Re-raise `error` with every open tab's text, a screenshot of each and the server log."""
    import tempfile
    folder = tempfile.mkdtemp(prefix="digitlab-concurrency-")
    parts = []
    for s in sessions:
        if s.closed or s.page is None:
            continue
        parts.append(f"--- {s.name} ({s.architecture}) at {s.page.url}, statuses {s.statuses()[-6:]}"
                     + (", CRASHED" if s.crashed else "") + (f", console errors {s.console}" if s.console else ""))
        with contextlib.suppress(Exception):
            s.page.screenshot(path=f"{folder}/{s.name}.png")
            state = s.state()
            parts.append(f"main:\n{state['main'][:700]}\nsidebar: …{state['side'][-200:]}")
    raise AssertionError(f"{error}\nscreenshots: {folder}\n" + "\n".join(parts)
                         + f"\nserver log tail:\n{server.log_tail(2000)}") from error


def run_batch(browser, server, sessions, visitor=None, page_loads=PAGE_LOADS, timeout=TRAIN_TIMEOUT_S):
    """Prepare `sessions`, press Start in all, watch them until every run completed, meanwhile
    timing `page_loads` fresh /Data loads in `visitor` (a browser). Sessions stay open."""
    for s in sessions:
        s.open(browser)
    try:
        return _run_batch(server, sessions, visitor, page_loads, timeout)
    except Exception as error:  # noqa: BLE001 - keep the evidence
        evidence(sessions, server, error)


def _run_batch(server, sessions, visitor, page_loads, timeout):
    t0 = time.monotonic()
    prepare(sessions, server.url)
    prepare_s = time.monotonic() - t0
    origin = time.time()
    press_start(sessions)
    started = time.monotonic()
    # Each tab's first view of its run (queued, or training, or already done); then every user
    # goes to Home while the runs go on, as a user may: training does not need the Train page,
    # and the 8 tabs stop redrawing live charts on the cores the server and the timed page loads
    # need (in a class, the students' browsers run on their own machines).
    first_views = {s.name: wait_status(s, {"waiting", "running", "completed"}, 60) for s in sessions}
    for s in sessions:
        go_to(s.page, "")
    loads, http, pending = [], [], None
    while True:
        ended = sum(end is not None for start, end in server.runs().values() if start >= origin)
        active = len(sessions) - ended
        if pending is not None and pending.poll(active) is not None:
            pending = None
        if visitor is not None and pending is None and len(loads) < page_loads and active:
            http.append(server.http_seconds())
            pending = PageLoad(visitor, server.url, active_runs=active)
            loads.append(pending)
        if not active and pending is None:
            break
        if time.monotonic() - started > timeout:
            raise AssertionError(f"only {ended} of {len(sessions)} runs ended after {timeout} s: {server.runs()}")
        time.sleep(0.1)
    done = time.monotonic() - started
    runs = {job: (start - origin, end - origin if end else None)
            for job, (start, end) in server.runs().items() if start >= origin}
    server_most = server.most_runs_at_once(since=origin)
    for s in sessions:  # back to Train: the finished run must still be there
        go_to(s.page, "Train")
    for s in sessions:
        wait_title(s.page, titles()["Train"])
    final = {s.name: read_result(s) for s in sessions}
    running_shown = sum(v == "running" for v in first_views.values())
    return BatchResult(sessions, runs, running_shown, server_most, loads, http, prepare_s, done, final)


def read_result(s, timeout=60):
    """After completion the page reruns whole (sidebar included): wait until the sidebar shows
    the run's test accuracy, then return what the tab shows."""
    deadline = time.monotonic() + timeout
    while True:
        settle(s.page)
        state = s.state()
        side_acc = re.search(r"Test accuracy:\s*([\d.]+%)", state["side"])
        if (state["metric"] and side_acc and side_acc.group(1) == state["metric"]) or time.monotonic() > deadline:
            break
        s.page.wait_for_timeout(300)
    history = re.search(r"(\d+) epochs?, median", state["main"])
    return {"state": state, "test_accuracy": state["metric"],
            "sidebar_accuracy": side_acc.group(1) if side_acc else None,
            "history": int(history.group(1)) if history else 0}


def replay_accuracies(sample_path, sessions):
    """Each session's run replayed alone in this process through the app's own code (same
    settings, seed, one BLAS thread): the test accuracy each tab must show if nothing leaked
    between sessions."""
    from threadpoolctl import threadpool_limits

    from engine.data import load_dataset
    from engine.network import parse_layers
    from engine.presets import build, build_config
    from ui.settings import APP_DEFAULTS
    from ui.training import TrainingJob

    data = load_dataset(str(sample_path), "mnist")
    out = {}
    with threadpool_limits(limits=1, user_api="blas"):
        for s in sessions:
            settings = dict(APP_DEFAULTS, hidden=parse_layers(s.width), epochs=s.epochs)
            net, optimizer, _ = build(settings)
            job = TrainingJob(net, optimizer, data.x_train, data.y_train, data.x_test, data.y_test,
                              build_config(settings, len(data.y_train))).start()
            job.join()
            assert job.status == "completed", job.message
            out[s.name] = f"{job.test_accuracy:.2%}"
    return out


def dataset_bytes(sample_path):
    import numpy as np
    with np.load(sample_path, allow_pickle=False) as d:
        return sum(d[k].nbytes for k in d.files)


def network_state_bytes(width):
    """Weights, gradients and Adam's two moments of 784-<width>-10 in float32."""
    from engine.network import parse_layers
    sizes = [784, *parse_layers(width), 10]
    params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    return 4 * params * 4


def rss_bound_per_session(sample_path, width):
    """What one more (trained) session may add to the server's RSS.

    The dataset is loaded once (st.cache_resource) and shared read-only as uint8: 3.7 MB for the
    4,000 + 1,000 digit sample. A session that copied it as float32 - what scaling the pixels up
    front would do - would add 4x that, 15 MB. The bound is that float32 size (capped at 60 MB
    for big datasets; full MNIST is 55 MB uint8, 220 MB float32) plus the session's own network
    state (weights, gradients, Adam's moments: 1.6 MB for 784-160-10). Measured here: 5-10 MB
    per session, nearly all glibc malloc arenas grown by the many script threads (with
    MALLOC_ARENA_MAX=2 in the server's environment it is ~2 MB)."""
    return network_state_bytes(width) + min(4 * dataset_bytes(sample_path), 60 * MB)


def first_page(browser, server):
    """The first visitor: Home, then Data (so Data's one-off imports are not in the timed
    loads). Returns the open session (it stays held)."""
    s = Session("first", str(BASE_WIDTH), EPOCHS).open(browser)
    s.page.goto(server.url + "/")
    wait_title(s.page)
    settle(s.page)
    go_to(s.page, "Data")
    wait_title(s.page, titles()["Data"])
    settle(s.page)
    return s


def idle_page_load(visitor, server):
    """A fresh /Data load with no run going (the reference for the loads during the runs)."""
    load = PageLoad(visitor, server.url)
    while load.poll(0) is None:
        time.sleep(0.05)
    return load.seconds


# --- fixtures ------------------------------------------------------------------------------


def wait_status(session, wanted, timeout):
    """Poll until the tab's status is one of `wanted`; returns it."""
    start = time.monotonic()
    while True:
        status = session.observe()
        if status in wanted:
            return status
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{session.name}: status {status!r}, not {wanted} after {timeout} s:\n"
                                 f"{session.state()['main'][:1500]}")
        time.sleep(0.05)


def training_processes(server):
    """The server's child processes (each run trains in one, forked from the server)."""
    import psutil
    out = set()
    for child in server.psutil_process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if child.status() != psutil.STATUS_ZOMBIE:
                out.add(child.pid)
    return out
