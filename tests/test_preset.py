"""The recommended preset earns its name on real digits (issue 6).

Trains the real presets, unchanged (same epochs, same augmentation), on the 4,000-digit MNIST
sample and scores them on its 1,000 test digits, 3 seeds each. About 1.5-2 minutes on a 2-core
machine. Skipped when data/mnist-sample.npz is absent.
"""
import statistics
import time

import numpy as np
import pytest

from conftest import require_sample
from engine.presets import build, preset
from engine.trainer import evaluate, train

SEEDS = (0, 1, 2)


def preset_accuracy(name, data):
    """Test accuracies (one per seed) and training seconds of a preset, exactly as defined."""
    accs, seconds = [], []
    for seed in SEEDS:
        net, opt, config = build(preset(name), seed=seed)
        start = time.perf_counter()
        end = train(net, opt, data["x_train"], data["y_train"], config)
        seconds.append(time.perf_counter() - start)
        assert end.reason == "completed", (name, seed, end.message)
        accs.append(evaluate(net, data["x_test"], data["y_test"])[1])
    return accs, seconds


@pytest.mark.slow
def test_recommended_preset_beats_the_notebook_net_by_two_points():
    with np.load(require_sample(), allow_pickle=False) as d:
        data = {k: d[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    from threadpoolctl import threadpool_limits
    # One BLAS thread, as the dashboard trains: OpenBLAS's 2 threads spin-wait on a busy
    # 2-core machine and made these small matrix products 10-30x slower.
    with threadpool_limits(limits=1, user_api="blas"):
        notebook, nb_seconds = preset_accuracy("notebook", data)
        recommended, rec_seconds = preset_accuracy("recommended", data)
    nb_mean, rec_mean = statistics.mean(notebook), statistics.mean(recommended)
    print(f"\nnotebook    {nb_mean:.2%} ± {statistics.stdev(notebook):.2%} "
          f"(seeds {[f'{a:.1%}' for a in notebook]}), {statistics.mean(nb_seconds):.1f} s per run"
          f"\nrecommended {rec_mean:.2%} ± {statistics.stdev(recommended):.2%} "
          f"(seeds {[f'{a:.1%}' for a in recommended]}), {statistics.mean(rec_seconds):.1f} s per run")
    assert rec_mean - nb_mean >= 0.02, (notebook, recommended)
    assert rec_mean >= 0.955, f"below the issue's 95.5% target: {recommended}"
