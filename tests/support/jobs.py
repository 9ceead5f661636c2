"""Small training jobs for the tests of ui/training.py and ui/dask_training.py."""
import time

import ui.training as training
from engine.network import Network
from engine.optimizers import Adam
from engine.trainer import TrainConfig


def make_job(data, epochs=3, place=None, **config):
    """A 784-16-10 run on `data` (seeded: the same numbers every time), not started."""
    net = Network([784, 16, 10], seed=1)
    return training.TrainingJob(net, Adam(0.003), data.x_train, data.y_train, data.x_test, data.y_test,
                                TrainConfig(epochs=epochs, batch_size=50, seed=2, **config), place=place)


def wait_until(predicate, timeout=30):
    """True once predicate() is, False after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False
