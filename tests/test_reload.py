"""A browser reload keeps the lab (ui/reload.py): the URL carries its token, a new session with
that token takes the lab back when the old session has gone, and never shares an open one."""
from app_support import APP, TIMEOUT, apps, build_network, data_path, env, goto, joined, lab  # noqa: F401
from ui import reload
from ui.state import LAB_PARAM, Lab


def reloaded(at):
    """A new session opened on the URL `at` shows (what a reload does)."""
    from streamlit.testing.v1 import AppTest
    again = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    again.query_params[LAB_PARAM] = at.query_params[LAB_PARAM]
    return again.run()


def test_the_url_names_the_lab_and_a_reload_brings_it_back(apps):
    at = apps.new()
    net = build_network(at, layers="16")
    token = at.query_params[LAB_PARAM]
    assert token == lab(at).token and len(token) >= 20
    again = reloaded(at)
    assert lab(again) is lab(at) and lab(again).network is net
    assert "784-16-10" in joined(again.sidebar.caption)
    goto(again, "2_Train.py")
    assert again.query_params[LAB_PARAM] == token  # the link keeps naming it on every page


def test_an_unknown_token_gives_a_fresh_lab(apps):
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params[LAB_PARAM] = "not-a-lab"
    at.run()
    assert lab(at).network is None and at.query_params[LAB_PARAM] != "not-a-lab"


def test_a_lab_whose_session_is_open_is_never_shared(monkeypatch):
    mine = Lab()
    token = reload.register(mine, "session-a")
    monkeypatch.setattr(reload, "session_open", lambda session_id: session_id == "session-a")
    assert reload.claim(token, "session-b") is None          # a copied link while the tab is open
    assert reload.claim(token, "session-a") is mine          # the owner itself
    monkeypatch.setattr(reload, "session_open", lambda session_id: False)
    assert reload.claim(token, "session-b") is mine          # after its tab closed: a reload


def test_old_labs_of_closed_sessions_are_forgotten(monkeypatch):
    monkeypatch.setattr(reload, "_labs", {})
    monkeypatch.setattr(reload, "session_open", lambda session_id: False)
    labs = [Lab() for _ in range(reload.KEEP_LABS + 3)]
    for i, one in enumerate(labs):
        reload.register(one, f"s{i}")
    reload._forget_old(reload.time.monotonic())
    assert len(reload._labs) == reload.KEEP_LABS
    assert reload.claim(labs[0].token, "new") is None and reload.claim(labs[-1].token, "new") is labs[-1]
    reload._labs[labs[-1].token][2] -= reload.KEEP_SECONDS + 1  # unused for too long
    reload._forget_old(reload.time.monotonic())
    assert reload.claim(labs[-1].token, "new") is None  # not in memory (nor, unsaved, on disk)


def test_kept_labs_stay_within_a_memory_budget(monkeypatch):
    from engine import Network
    monkeypatch.setattr(reload, "_labs", {})
    monkeypatch.setattr(reload, "session_open", lambda session_id: False)
    monkeypatch.setattr(reload, "KEEP_BYTES", 3 * 4 * Network([784, 64, 10]).params.nbytes)
    labs = [Lab(network=Network([784, 64, 10])) for _ in range(5)]
    for i, one in enumerate(labs):
        reload.register(one, f"s{i}")
        reload._labs[one.token][2] = reload.time.monotonic() - 10 + i  # registered in this order
    reload._forget_old(reload.time.monotonic())
    assert [lab_ for lab_ in labs if reload.claim(lab_.token, "new", wait=0)] == labs[-3:]
