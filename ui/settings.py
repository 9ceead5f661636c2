"""The settings a user chose on Build and Train: one dict per lab, in the schema of
engine.presets.DEFAULTS (the command line's too), kept in the lab because plain keys survive
navigation and widget keys do not. Widgets are named by the page's prefix and the setting's
key (b_hidden, t_lr, ...); two settings look different in their widget: `hidden` is typed as
text ("64, 32") and `augment` is a checkbox."""
import streamlit as st

from engine.errors import ConfigError
from engine.network import parse_layers
from engine.presets import DEFAULT_AUGMENT, defaults, preset

BUILD = ("hidden", "activation", "keep_prob", "use_bias", "seed", "dtype")            # on Build, prefix b_
TRAIN = ("optimizer", "lr", "beta1", "beta2", "eps", "momentum", "weight_decay", "batch_size", "epochs",
         "validation_split", "early_stopping", "schedule", "warmup_epochs", "max_norm", "augment")  # Train, t_
# The app holds a tenth of the training images out by default, so a first run shows validation curves.
APP_DEFAULTS = {**defaults(), "validation_split": 0.1}


def settings(lab):
    """The lab's settings (a dict with every key of the schema)."""
    for key, value in APP_DEFAULTS.items():
        lab.settings.setdefault(key, value)
    return lab.settings


def to_widget(key, value):
    if key == "hidden":
        return ", ".join(str(w) for w in value)
    if key == "augment":
        return value is not None
    return value


def from_widget(key, value, current):
    """A widget's value as the setting (`current` where the text is not a list of widths: the
    page says what is wrong with it)."""
    if key == "hidden":
        try:
            return parse_layers(value)
        except ConfigError:
            return current
    if key == "augment":
        return (current or dict(DEFAULT_AUGMENT)) if value else None
    return value


def bind(lab, keys, prefix):
    """Seed widget keys (prefix + key) from the lab's settings where the widget has no state yet."""
    store = settings(lab)
    for key in keys:
        st.session_state.setdefault(prefix + key, to_widget(key, store[key]))


def remember(lab, keys, prefix):
    """Copy widget values back into the lab so they survive page changes (and, when they
    changed, a server restart)."""
    store = settings(lab)
    before = dict(store)
    for key in keys:
        if prefix + key in st.session_state:
            store[key] = from_widget(key, st.session_state[prefix + key], store[key])
    if store != before:
        lab.save(weights=False)


def apply_preset(lab, name, build_prefix="b_", train_prefix="t_"):
    """Fill the lab's settings (and any live widgets) from an engine preset."""
    store = settings(lab)
    store.update(preset(name))
    for prefix, keys in ((build_prefix, BUILD), (train_prefix, TRAIN)):
        for key in keys:
            st.session_state[prefix + key] = to_widget(key, store[key])
    lab.save(weights=False)
