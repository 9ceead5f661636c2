"""Labs that survive a browser reload.

A reload starts a new Streamlit session with an empty `st.session_state`, which would lose the
user's network, runs and settings. Each lab therefore gets a random token that the app keeps in
the page's URL (`?lab=...`); a new session that arrives with the token of a lab whose own
session has gone takes that lab over. A lab whose session is still open (the link was copied
into another tab, or shared) is never shared: the newcomer gets a lab of its own.

Labs of closed sessions are kept for KEEP_SECONDS, at most KEEP_LABS of them holding at most
KEEP_BYTES of networks (the oldest are dropped first).
A training run still stops when its tab closes (ui/training.py); its network keeps the weights.
"""
import secrets
import threading
import time

KEEP_SECONDS = 30 * 60
KEEP_LABS = 8
KEEP_BYTES = 512 * 2**20  # networks of closed sessions kept at most (weights, gradients, Adam's moments)

_lock = threading.Lock()
_labs = {}  # token -> [lab, owner session id, last seen (monotonic)]
_last_cleanup = [0.0]


def current_session_id():
    """The running script's session id, or None outside a Streamlit script run."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx
    ctx = get_script_run_ctx()
    return None if ctx is None else ctx.session_id


def session_open(session_id):
    """True only when the server says this browser session is connected. (AppTest's mocked
    runtime answers with a truthy mock, and disappears between script runs: `is True` counts
    that as closed, so AppTest sessions neither own labs nor stop runs as "tab closed".)"""
    import streamlit.runtime as runtime
    if session_id is None or not runtime.exists():
        return False
    try:
        return runtime.get_instance().is_active_session(session_id) is True
    except Exception:  # the runtime is shutting down
        return False


def register(lab, session_id):
    """Give `lab` a token (once) and record `session_id` as its owner, seen now (called on
    every script run, so a lab in use never expires). Returns the token."""
    now = time.monotonic()
    with _lock:
        if not getattr(lab, "token", None):
            lab.token = secrets.token_urlsafe(16)
        _labs[lab.token] = [lab, session_id, now]
        if now - _last_cleanup[0] > 60:
            _last_cleanup[0] = now
            _forget_old(now)
    return lab.token


def claim(token, session_id, wait=0.5):
    """The lab kept under `token` if its own session has gone (it becomes this session's), else
    None. A reloading tab closes its old connection first, but give the server `wait` seconds
    to notice before calling the owner's tab open."""
    if not token:
        return None
    deadline = time.monotonic() + wait
    while True:
        with _lock:
            entry = _labs.get(str(token))
            if entry is None or time.monotonic() - entry[2] > KEEP_SECONDS:
                return None
            lab, owner, _ = entry
            if owner == session_id or not session_open(owner):
                entry[1], entry[2] = session_id, time.monotonic()
                return lab
        if time.monotonic() >= deadline:
            return None  # someone else's open tab: never share a lab between two sessions
        time.sleep(0.1)


def _lab_bytes(lab):
    """About what a lab's network holds: weights, gradients and two optimizer moments."""
    net = getattr(lab, "network", None)
    return 0 if net is None else 4 * net.params.nbytes


def _forget_old(now):
    """Drop labs unused for KEEP_SECONDS, then the oldest labs of closed sessions beyond
    KEEP_LABS or KEEP_BYTES."""
    for token in [t for t, (_, _, seen) in _labs.items() if now - seen > KEEP_SECONDS]:
        del _labs[token]
    closed = sorted(((seen, t) for t, (_, owner, seen) in _labs.items() if not session_open(owner)),
                    reverse=True)  # newest first: they are kept
    kept_bytes = 0
    for count, (_, token) in enumerate(closed, 1):
        kept_bytes += _lab_bytes(_labs[token][0])
        if count > KEEP_LABS or kept_bytes > KEEP_BYTES:
            del _labs[token]
