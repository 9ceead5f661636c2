"""What the network looks at: a saliency map and the smallest nudge that changes its mind.

Both come from the engine's own backprop carried one layer further, to the input pixels
(engine.reference.input_gradient):

- saliency: the gradient of one class's score (its logit, before softmax) with respect to
  every pixel: where ink added or removed would move that score most;
- nudge: fast gradient sign steps (Goodfellow et al., 2015): move every pixel a little in the
  direction that raises the loss of the digit read now, until the network reads another
  digit; the change is kept within +-epsilon per pixel, and the smallest epsilon that works
  is what is reported.
"""
from dataclasses import dataclass

import numpy as np

from . import reference


def _forward(network, image):
    x = np.asarray(image, dtype=network.dtype).reshape(1, -1)
    return reference.forward(network.weights, network.biases, x, network.activation, masks=[None] * (len(network.weights) - 1))


def saliency(network, image, class_index):
    """d(logit of class_index) / d(pixel), as a 28x28 (or input-shaped) float array."""
    fp = _forward(network, image)
    delta = np.zeros_like(fp.probabilities)
    delta[0, int(class_index)] = 1
    grad = reference.input_gradient(fp, delta, network.weights, network.activation)
    return grad.reshape(np.shape(image))


def loss_gradient(network, image, label):
    """d(cross-entropy of `label`) / d(pixel), input-shaped."""
    fp = _forward(network, image)
    delta = reference.output_delta(fp.probabilities, np.array([int(label)]))
    grad = reference.input_gradient(fp, delta, network.weights, network.activation)
    return grad.reshape(np.shape(image))


@dataclass
class Nudge:
    """The result of `nudge`: the changed image (None if no epsilon up to the limit worked)."""
    original_class: int
    image: np.ndarray = None
    new_class: int = None
    epsilon: float = float("nan")          # largest change of any pixel, as a share of full ink
    probabilities: np.ndarray = None       # of the changed image
    steps: int = 0

    @property
    def found(self):
        return self.image is not None


def nudge(network, image, step=0.01, max_epsilon=0.3):
    """The smallest change (in the largest change of any one pixel) that makes the network read
    another digit: fast gradient sign steps of `step`, each pixel kept within +-epsilon of the
    original and within [0, 1]; epsilon grows by `step` until the reading changes or passes
    `max_epsilon`."""
    image = np.asarray(image, dtype=np.float64)
    original = int(network.predict_proba(image.reshape(1, -1)).argmax())
    changed = image.copy()
    steps = 0
    for epsilon in np.arange(step, max_epsilon + step / 2, step):
        changed = np.clip(changed + step * np.sign(loss_gradient(network, changed, original)),
                          np.maximum(image - epsilon, 0), np.minimum(image + epsilon, 1))
        steps += 1
        probabilities = network.predict_proba(changed.reshape(1, -1))[0]
        if int(probabilities.argmax()) != original:
            return Nudge(original, changed, int(probabilities.argmax()), float(np.abs(changed - image).max()),
                         probabilities, steps)
    return Nudge(original, steps=steps)
