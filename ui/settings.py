"""Settings a user chose on Build and Train, kept in the lab (plain keys survive navigation;
widget keys do not), and the presets that fill them in."""
import streamlit as st

BUILD_DEFAULTS = {"layers": "64, 32", "activation": "relu", "keep_prob": 1.0, "use_bias": True,
                  "seed": 0, "dtype": "float32"}
TRAIN_DEFAULTS = {"optimizer": "adam", "lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                  "momentum": 0.9, "weight_decay": 0.0, "batch_size": 100, "epochs": 10,
                  "validation_split": 0.1, "augment": False, "schedule": "constant", "warmup": 0.0,
                  "max_norm": 0.0, "early_stopping": 0,
                  "continue_state": True}  # a run continues Adam's moments / momentum of the last one
# Settings whose widget writes them itself (Train's "Continue optimizer state", hidden during runs).
UNBOUND = {"continue_state"}


def settings(lab, which):
    """The lab's current build or train settings (a dict, filled with defaults)."""
    defaults = BUILD_DEFAULTS if which == "build" else TRAIN_DEFAULTS
    store = lab.build_settings if which == "build" else lab.train_settings
    for key, value in defaults.items():
        store.setdefault(key, value)
    return store


def bind(lab, which, prefix):
    """Seed widget keys (prefix + name) from the lab's settings where the widget has no state yet."""
    for key, value in settings(lab, which).items():
        if key not in UNBOUND:
            st.session_state.setdefault(prefix + key, value)


def remember(lab, which, prefix):
    """Copy widget values back into the lab so they survive page changes (and, when they
    changed, a server restart)."""
    store = settings(lab, which)
    before = dict(store)
    for key in list(store):
        if key not in UNBOUND and prefix + key in st.session_state:
            store[key] = st.session_state[prefix + key]
    if store != before:
        lab.save(weights=False)


def apply_preset(lab, name, build_prefix="b_", train_prefix="t_"):
    """Fill build and train settings (and any live widgets) from an engine preset."""
    from engine.presets import preset
    p = preset(name)
    build = settings(lab, "build")
    train = settings(lab, "train")
    build.update({
        "layers": ", ".join(str(w) for w in p.get("hidden", [64, 32])),
        "activation": p.get("activation", "relu"),
        "keep_prob": float(p.get("keep_prob", 1.0)),
        "use_bias": bool(p.get("use_bias", True)),
        "seed": int(p.get("seed", 0)),
        "dtype": p.get("dtype", "float32"),
    })
    for key in TRAIN_DEFAULTS:
        if key in p:
            train[key] = p[key]
    train["warmup"] = float(p.get("warmup_epochs", 0.0))
    train["augment"] = bool(p.get("augment"))
    for prefix, store in ((build_prefix, build), (train_prefix, train)):
        for key, value in store.items():
            st.session_state[prefix + key] = value
    lab.save(weights=False)
