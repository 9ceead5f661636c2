"""Helpers for the real-browser tests (tests/test_browser.py): a Streamlit server on a free
port, Debian's Chromium through Playwright, waits, navigation, drawing and screenshots.

Recipe and gotchas: ../shared/notes/STACK.md. Never run `playwright install` (downloads are
blocked); Chromium comes from apt (`/usr/bin/chromium`).
"""
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT_DIR = ROOT / "docs" / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
IDLE = "[data-testid=stApp][data-test-script-state=notRunning]"
EXCEPTION = "[data-testid=stException]"
VIEWPORT = {"width": 1400, "height": 1000}

# Generous: 2 cores, other test suites may run at the same time.
SERVER_START_TIMEOUT = 60
PAGE_TIMEOUT_MS = 60_000
RUN_LOG = re.compile(r"digitlab: run (\w+) (started|ended) ([\d.]+)")  # ui/training.py's log lines


# --- availability ------------------------------------------------------------------------

def chromium_path():
    """Debian's Chromium, or None."""
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    return shutil.which("chromium")


def require_browser():
    """Skip (with the reason) unless Chromium and the playwright package are both available."""
    path = chromium_path()
    if path is None:
        pytest.skip("Chromium not found (/usr/bin/chromium or `chromium` on PATH): "
                    "apt-get install -y chromium fonts-noto-color-emoji")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as missing:
        pytest.skip(f"playwright is not importable ({missing}): pip install playwright "
                    "(do not run `playwright install`; Debian's Chromium is used)")
    return path


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)


# --- the server --------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StreamlitServer:
    """`streamlit run app.py` in its own process group, logging to a file."""

    def __init__(self, sample_path, root=ROOT, home=None, port=None):
        """sample_path: MNIST_PATH (None: none, as on a fresh clone). home: DIGITLAB_HOME (a
        restarted server is given the folder of the one it replaces)."""
        self.root = Path(root)
        self.sample_path = None if sample_path is None else Path(sample_path)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmp = Path(tempfile.mkdtemp(prefix="digitlab-browser-server-"))
        self.log_path = self.tmp / "streamlit.log"
        self.home = Path(home) if home else self.tmp / "home"
        self.process = None

    def start(self, timeout=SERVER_START_TIMEOUT):
        env = dict(os.environ, KERAS_HOME=str(self.tmp / "keras"), DIGITLAB_HOME=str(self.home),
                   TF_CPP_MIN_LOG_LEVEL="3", DIGITLAB_MODELS_DIR=str(self.tmp / "models"),
                   DIGITLAB_UPLOAD_DIR=str(self.tmp / "uploads"), PYTHONUNBUFFERED="1")
        env.pop("MNIST_PATH", None)
        if self.sample_path is not None:
            env["MNIST_PATH"] = str(self.sample_path)
        cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
               "--server.address", "127.0.0.1", "--server.port", str(self.port),
               "--browser.gatherUsageStats", "false"]
        self._log = open(self.log_path, "a")
        self.process = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"streamlit exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"streamlit not healthy after {timeout} s:\n{self.log_tail()}")

    def runs(self):
        """{run id: [start, end or None]} (wall clock) of the runs that trained, from the app's
        'digitlab: run <id> started|ended <time>' log lines."""
        out = {}
        with contextlib.suppress(OSError):
            for run, event, when in RUN_LOG.findall(self.log_path.read_text(errors="replace")):
                if event == "started":
                    out[run] = [float(when), None]
                elif run in out:
                    out[run][1] = float(when)
        return out

    def log_tail(self, chars=4000):
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def kill(self):
        """`kill -9` the server process alone (as a crash would); its training processes notice
        they have lost their parent and end by themselves."""
        self.process.kill()
        self.process.wait(timeout=10)
        self._log.close()
        self.process = None

    def stop(self):
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log.close()
        self.process = None


@contextlib.contextmanager
def running_server(sample_path):
    server = StreamlitServer(sample_path).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.tmp, ignore_errors=True)


# --- the app's pages ---------------------------------------------------------------------

PAGE_SETUP = re.compile(r"""page_setup\(\s*"([^"]+)",\s*"([^"]+)"(?:,\s*heading="([^"]+)")?""")


def page_heading(path):
    """The h1 a page script shows: `page_setup(title, icon, heading=...)` in its source
    (heading, or "icon title"), or None when the call is not written with plain literals."""
    match = PAGE_SETUP.search(Path(path).read_text(encoding="utf-8"))
    if match is None:
        return None
    title, icon, heading = match.groups()
    return heading or f"{icon} {title}"


def app_pages(root=ROOT):
    """[(url_path, name, title)] of pages/*.py in sidebar order: url_path is the file name without
    its numeric prefix ("Gradient_check"), name is its lower-case form for screenshots, title
    is the page's h1 (see page_heading)."""
    found = []
    for path in (Path(root) / "pages").glob("*.py"):
        match = re.match(r"^(\d*)_?(.+)$", path.stem)
        order = int(match.group(1)) if match.group(1) else 10 ** 6
        url_path = match.group(2)
        found.append((order, url_path, url_path.lower(), page_heading(path)))
    return [(u, n, t) for _, u, n, t in sorted(found)]


def home_title(root=ROOT):
    return page_heading(Path(root) / "app.py")


# --- waiting and checking ----------------------------------------------------------------

def wait_idle(page, timeout=PAGE_TIMEOUT_MS):
    """The script is not running (combine with a wait for the text you expect: a click's rerun
    may not have started yet when this first matches)."""
    page.wait_for_selector(IDLE, timeout=timeout)


def settle(page, timeout=PAGE_TIMEOUT_MS, pause_ms=300):
    """Idle, a short pause for a pending rerun to start, idle again."""
    wait_idle(page, timeout)
    page.wait_for_timeout(pause_ms)
    wait_idle(page, timeout)


def assert_no_exception(page, where):
    boxes = page.locator(EXCEPTION)
    if boxes.count():
        text = "\n---\n".join(boxes.all_inner_texts())
        raise AssertionError(f"Streamlit exception shown on {where}:\n{text[:3000]}")


def main_area(page):
    return page.get_by_test_id("stMain")


def wait_title(page, title=None, timeout=PAGE_TIMEOUT_MS):
    """Wait for the page's h1 (exactly `title` when given) and return its text."""
    h1 = main_area(page).locator("h1").first
    h1.wait_for(timeout=timeout)
    if title is not None:
        page.wait_for_function(
            "t => { const h = document.querySelector('[data-testid=stMain] h1');"
            " return h && h.innerText.trim() === t; }", arg=title, timeout=timeout)
    return h1.inner_text().strip()


def sidebar_frame_heading(page):
    """The frame's "### Digit Lab" heading in the sidebar (ui/frame.py:sidebar_status)."""
    return page.get_by_test_id("stSidebarUserContent").get_by_role("heading", name="Digit Lab", exact=True)


# --- navigation (client-side, keeps the session) -----------------------------------------

def go_to(page, url_path):
    """Click the frame's page link in the sidebar to `url_path` ("" for Home). A full page load
    would start a new session and lose the lab, so never use page.goto() in the middle of a
    flow. (.streamlit/config.toml hides Streamlit's own page list; ui/frame.py draws links.)"""
    links = page.get_by_test_id("stSidebar").locator("a[data-testid=stPageLink-NavLink]")
    if not url_path:
        links.first.click()  # Home comes first
        return
    page.get_by_test_id("stSidebar").locator(
        f'a[data-testid=stPageLink-NavLink][href$="{url_path}"]').first.click()


# --- drawing -----------------------------------------------------------------------------

def canvas_locator(page):
    return page.get_by_test_id("stBidiComponentIsolated").locator("canvas.upper-canvas")


def draw(page, canvas, points):
    """One mouse stroke through `points`, given in canvas pixels (0..width, 0..height)."""
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    assert box and box["width"] > 0, "canvas has no size"
    sx = box["width"] / 280
    sy = box["height"] / 280
    xy = [(box["x"] + x * sx, box["y"] + y * sy) for x, y in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for x, y in xy[1:]:
        page.mouse.move(x, y, steps=2)
    page.mouse.up()


def stroke_one():
    """A tall vertical stroke in the middle of the 280x280 canvas."""
    return [(140, 40 + i * 8) for i in range(26)]  # y 40 .. 240


def stroke_zero(n=36):
    """A closed ellipse (a loop) centred on the canvas, taller than wide."""
    import math
    pts = [(140 + 60 * math.sin(2 * math.pi * i / n), 140 - 88 * math.cos(2 * math.pi * i / n))
           for i in range(n + 1)]
    return pts + [pts[1]]  # overlap the start a little so the loop is closed


# --- screenshots -------------------------------------------------------------------------

def screenshot(page, folder, name):
    """Full-page screenshot of the whole app. Streamlit scrolls inside its own container, so
    full_page alone captures only the viewport: grow the viewport to the content first."""
    size = page.viewport_size or VIEWPORT
    height = page.evaluate(
        "() => Math.max(...['stMain', 'stAppViewContainer', 'stSidebarContent', 'stMainBlockContainer']"
        ".map(id => document.querySelector(`[data-testid=${id}]`))"
        ".filter(Boolean).map(e => e.scrollHeight), document.body.scrollHeight)")
    tall = min(max(int(height) + 40, size["height"]), 8000)
    path = Path(folder) / f"{name}.png"
    try:
        if tall > size["height"]:
            page.set_viewport_size({"width": size["width"], "height": tall})
            page.wait_for_timeout(700)  # charts re-lay out on resize
        page.screenshot(path=str(path), full_page=True)
    finally:
        if tall > size["height"]:
            page.set_viewport_size(size)
    return path


def publish_screenshots(folder, names):
    """Copy <folder>/<name>.png to docs/screenshots/ when DIGITLAB_UPDATE_SCREENSHOTS=1 (so a
    normal or CI run never dirties the tree). Returns the copied paths."""
    if os.environ.get("DIGITLAB_UPDATE_SCREENSHOTS") != "1":
        return []
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in names:
        source = Path(folder) / f"{name}.png"
        if source.exists():
            copied.append(Path(shutil.copyfile(source, SCREENSHOT_DIR / f"{name}.png")))
    return copied


# --- browser tests' plumbing ---------------------------------------------------------------

@contextlib.contextmanager
def chromium_browser():
    """Debian's Chromium through Playwright (skips with the reason where either is missing)."""
    require_browser()
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            yield browser
        finally:
            browser.close()


class Trail:
    """A browser test's page and what it is doing (`trail.step = "reload"`); on failure, the
    evidence: a screenshot and the server's log tail in the message. Closes the page's context."""

    def __init__(self, browser, server, shots):
        self.server, self.shots, self.step = server, shots, "start"
        self.context = browser.new_context(viewport=VIEWPORT)
        self.page = self.context.new_page()
        self.page.set_default_timeout(PAGE_TIMEOUT_MS)

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        try:
            if isinstance(error, Exception):
                try:
                    path = screenshot(self.page, self.shots, f"FAILED_{self.step}")
                except Exception as shot_error:  # noqa: BLE001 - the original error matters more
                    path = f"(no screenshot: {shot_error})"
                raise AssertionError(f"{self.step}: {error}\nscreenshot: {path}\nserver log tail:\n"
                                     f"{self.server.log_tail()}") from error
        finally:
            self.context.close()
