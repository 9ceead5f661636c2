"""Labs that survive a browser reload, a closed tab and a server restart.

A reload starts a new Streamlit session with an empty `st.session_state`, which would lose the
user's network, runs and settings. Each lab therefore gets a random token that the app keeps in
the page's URL (`?lab=...`); a new session that arrives with the token of a lab whose own
session has gone takes that lab over: from this registry while the server runs, from disk
(ui/lab_store.py) after a restart. A lab whose session is still open (the link was copied into
another tab, or shared) is never shared: the newcomer gets a lab of its own.

A lab's run belongs to the lab, not to its tab: it goes on while nobody looks, and ends by Stop,
by finishing, or when the lab expires, IDLE_SECONDS (DIGITLAB_LAB_IDLE_HOURS, default 2) after
its last visitor. Labs without a run leave memory sooner (KEEP_SECONDS, at most KEEP_LABS of
them and KEEP_BYTES of networks): they are on disk, and the next visit reads them back.
A janitor thread does this once a minute, and keeps the disk within its bounds.
"""
import os
import secrets
import threading
import time

from ui import lab_store

KEEP_SECONDS = 30 * 60
KEEP_LABS = 8
KEEP_BYTES = 512 * 2**20  # networks of closed sessions kept in memory at most (weights, gradients, Adam's moments)
IDLE_SECONDS = float(os.environ.get("DIGITLAB_LAB_IDLE_HOURS", 2)) * 3600
SWEEP_SECONDS = 60

_lock = threading.Lock()
_labs = {}  # token -> [lab, owner session id, last seen (monotonic)]
_janitor = []


def current_session_id():
    """The running script's session id, or None outside a Streamlit script run."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx
    ctx = get_script_run_ctx()
    return None if ctx is None else ctx.session_id


def session_open(session_id):
    """True only when the server says this browser session is connected. (AppTest's mocked
    runtime answers with a truthy mock, and disappears between script runs: `is True` counts
    that as closed, so AppTest sessions never own labs.)"""
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
    with _lock:
        if not getattr(lab, "token", None):
            lab.token = secrets.token_urlsafe(16)
        _labs[lab.token] = [lab, session_id, time.monotonic()]
        if not _janitor:
            _janitor.append(threading.Thread(target=_sweep_forever, name="digitlab-lab-janitor", daemon=True))
            _janitor[0].start()
    return lab.token


def claim(token, session_id, wait=0.5, make_lab=None):
    """The lab kept under `token` if its own session has gone (it becomes this session's), else
    None. Not in memory: read back from disk (after a server restart; `make_lab` makes the
    empty Lab to fill). A reloading tab closes its old connection first, but give the server
    `wait` seconds to notice before calling the owner's tab open."""
    if not token:
        return None
    deadline = time.monotonic() + wait
    while True:
        with _lock:
            entry = _labs.get(str(token))
            if entry is not None:
                lab, owner, _ = entry
                if owner == session_id or not session_open(owner):
                    entry[1], entry[2] = session_id, time.monotonic()
                    return lab
        if entry is None:
            return _from_disk(str(token), session_id, make_lab)
        if time.monotonic() >= deadline:
            return None  # someone else's open tab: never share a lab between two sessions
        time.sleep(0.1)


def _from_disk(token, session_id, make_lab):
    if make_lab is None:
        return None
    lab = lab_store.load(token, make_lab)
    if lab is None:
        return None
    with _lock:
        entry = _labs.get(token)
        if entry is not None:  # another session restored it meanwhile: theirs
            return None
        _labs[token] = [lab, session_id, time.monotonic()]
    return lab


def _lab_bytes(lab):
    """About what a lab's network holds: weights, gradients and two optimizer moments."""
    net = getattr(lab, "network", None)
    return 0 if net is None else 4 * net.params.nbytes


def _training(lab):
    job = getattr(lab, "job", None)
    return job is not None and job.active


def _forget_old(now):
    """Expire labs without a visitor for IDLE_SECONDS (their run stops and is saved); drop from
    memory the labs of closed sessions that do not train, beyond KEEP_SECONDS, KEEP_LABS or
    KEEP_BYTES (newest kept first): they are on disk. Returns the labs whose run was stopped."""
    expired = []
    for token, entry in list(_labs.items()):
        lab, owner, seen = entry
        if session_open(owner):
            entry[2] = seen = now  # an open tab is a visitor, even an idle one
        if now - seen > IDLE_SECONDS:
            if _training(lab):
                hours = IDLE_SECONDS / 3600
                lab.job.stop(f"Stopped because the lab had no visitor for {hours:g} hour{'s' * (hours != 1)}")
                expired.append(lab)
            del _labs[token]
    closed = sorted(((seen, t) for t, (lab, owner, seen) in _labs.items()
                     if not session_open(owner) and not _training(lab)), reverse=True)  # newest first: kept
    kept_bytes = 0
    for count, (seen, token) in enumerate(closed, 1):
        kept_bytes += _lab_bytes(_labs[token][0])
        if count > KEEP_LABS or kept_bytes > KEEP_BYTES or now - seen > KEEP_SECONDS:
            del _labs[token]
    return expired


def sweep():
    """One round of the janitor: expire and forget labs in memory, keep the disk in bounds."""
    with _lock:
        _forget_old(time.monotonic())
        in_use = set(_labs)
    lab_store.prune(in_use)


def _sweep_forever():
    while True:
        time.sleep(SWEEP_SECONDS)
        try:
            sweep()
        except Exception as error:  # never let housekeeping take the server down
            print(f"digitlab: lab janitor: {type(error).__name__}: {error}", flush=True)
