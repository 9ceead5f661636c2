"""Metrics of a trained network: probabilities, predicted classes, confusion matrix, per-class
accuracy, confident mistakes. (The loss and accuracy a run reports are engine.trainer.evaluate,
exported as engine.evaluate.)"""
import numpy as np

from .trainer import batch_inputs


def as_batch(images, n_features):
    """One image (28x28 or 784) or many ((n, 28, 28) or (n, 784)) as an (n, features) array."""
    images = np.asarray(images)
    if images.size == n_features:
        return images.reshape(1, n_features)
    return images.reshape(len(images), -1)


def predict_proba(network, images):
    """Class probabilities for images: uint8 pixels (scaled here) or floats in [0, 1]."""
    images = as_batch(images, network.sizes[0])
    idx = np.arange(len(images))
    return network.predict_proba(batch_inputs(images, idx, network.dtype, images.dtype == np.uint8))


def predict(network, images):
    """Predicted class of each image."""
    return predict_proba(network, images).argmax(axis=1)


def confusion_matrix(true_labels, predicted, num_classes=10):
    """counts[t, p]: how many images of class t were predicted as p."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(true_labels, dtype=np.intp), np.asarray(predicted, dtype=np.intp)), 1)
    return counts


def per_class_accuracy(confusion):
    """Share of each class predicted right (NaN for a class with no images)."""
    totals = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(confusion) / np.maximum(totals, 1), np.nan)


def evaluate_network(network, images, labels):
    """Everything the Evaluate page shows, computed once: probabilities, predictions,
    accuracy, confusion matrix and per-class accuracy."""
    probabilities = predict_proba(network, images)
    predicted = probabilities.argmax(axis=1)
    confusion = confusion_matrix(labels, predicted, network.sizes[-1])
    return {
        "probabilities": probabilities,
        "predicted": predicted,
        "accuracy": float((predicted == np.asarray(labels)).mean()) if len(labels) else float("nan"),
        "confusion": confusion,
        "per_class_accuracy": per_class_accuracy(confusion),
    }


def most_confident_mistakes(probabilities, labels, count=12):
    """Indices of wrong predictions, most confident first."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probabilities[wrong, predicted[wrong]]
    return wrong[np.argsort(-confidence)][:count]
