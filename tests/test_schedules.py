"""Learning-rate schedules: the documented rates, and the trainer using them."""
import json
import math

import numpy as np
import pytest

from engine import Adam, Network, Schedule, TrainConfig, learning_rate, trainer
from engine.errors import ConfigError


def test_the_constant_schedule_keeps_the_base_rate_throughout():
    for progress in (0, 0.5, 3, 99):
        assert learning_rate(0.01, Schedule(), progress, 10) == 0.01
        assert learning_rate(0.25, Schedule("constant", step_epochs=1, gamma=0.1), progress, 3) == 0.25
    assert Schedule().kind == "constant" and Schedule().warmup_epochs == 0   # the default schedule


def test_step_multiplies_by_gamma_every_step_epochs():
    s = Schedule("step", step_epochs=2, gamma=0.5)
    rates = [learning_rate(0.1, s, p, 10) for p in (0, 1.99, 2, 3.5, 4, 6.1)]
    assert rates == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.0125])


def test_cosine_falls_from_base_to_min_fraction():
    s = Schedule("cosine", min_fraction=0.1)
    assert learning_rate(1.0, s, 0, 10) == pytest.approx(1.0)
    assert learning_rate(1.0, s, 5, 10) == pytest.approx(0.1 + 0.9 * 0.5)
    assert learning_rate(1.0, s, 10, 10) == pytest.approx(0.1)
    assert learning_rate(1.0, s, 12, 10) == pytest.approx(0.1)          # past the end: stays at the floor
    assert learning_rate(1.0, s, 2.5, 10) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.25)))
    rates = [learning_rate(1.0, s, p, 10) for p in np.linspace(0, 10, 41)]
    assert rates == sorted(rates, reverse=True)


def test_warmup_ramps_linearly_then_hands_over():
    s = Schedule("constant", warmup_epochs=2)
    assert [learning_rate(0.01, s, p, 10) for p in (0, 0.5, 1, 1.5)] == pytest.approx([0, 0.0025, 0.005, 0.0075])
    assert learning_rate(0.01, s, 2, 10) == 0.01
    c = Schedule("cosine", warmup_epochs=2)
    assert learning_rate(1.0, c, 1, 10) == pytest.approx(0.5)
    assert learning_rate(1.0, c, 2, 10) == pytest.approx(1.0)             # cosine starts after warm-up
    assert learning_rate(1.0, c, 6, 10) == pytest.approx(0.5)             # halfway through the remaining 8
    assert learning_rate(1.0, c, 10, 10) == pytest.approx(0.0)
    st = Schedule("step", step_epochs=3, gamma=0.1, warmup_epochs=1)
    assert learning_rate(1.0, st, 0.5, 10) == pytest.approx(0.5)
    assert learning_rate(1.0, st, 2, 10) == pytest.approx(1.0)
    assert learning_rate(1.0, st, 3, 10) == pytest.approx(0.1)


@pytest.mark.parametrize("bad", [dict(kind="exponential"), dict(step_epochs=0), dict(gamma=0), dict(gamma=1.5),
                                 dict(min_fraction=-0.1), dict(min_fraction=2), dict(warmup_epochs=-1)])
def test_an_impossible_schedule_is_refused_naming_the_setting(bad):
    (name, value), = bad.items()
    with pytest.raises(ConfigError, match="exponential" if name == "kind" else name):
        Schedule(**bad)


def test_a_schedule_rebuilt_from_its_plain_dict_equals_it():
    s = Schedule("cosine", min_fraction=0.2, warmup_epochs=1)
    assert Schedule(**s.to_dict()) == s
    plain = json.loads(json.dumps(s.to_dict()))                       # as saved with a run
    assert plain == {"kind": "cosine", "step_epochs": 5.0, "gamma": 0.5, "min_fraction": 0.2, "warmup_epochs": 1}
    rebuilt = Schedule(**plain)
    for progress in (0.5, 4, 9):
        assert learning_rate(1.0, rebuilt, progress, 10) == learning_rate(1.0, s, progress, 10)
    assert Schedule(**{**plain, "min_fraction": 0.3}) != s


def test_trainer_uses_the_schedule_per_batch():
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 5)), rng.integers(0, 3, 40)
    s = Schedule("cosine", min_fraction=0.1, warmup_epochs=1)
    events = list(trainer(Network([5, 4, 3], seed=0), Adam(lr=0.02), x, y,
                          TrainConfig(epochs=3, batch_size=10, schedule=s)))
    batch = [e for e in events if e.kind == "batch"]
    expected = [learning_rate(0.02, s, (e.run_epoch - 1) + (e.batch - 1) / 4, 3) for e in batch]
    assert [e.lr for e in batch] == pytest.approx(expected)
    assert len(set(round(e.lr, 12) for e in batch)) > 6
    epochs = [e for e in events if e.kind == "epoch"]
    assert [e.lr for e in epochs] == pytest.approx([batch[4 * i + 3].lr for i in range(3)])
