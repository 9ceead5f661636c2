"""Digit Lab's engine: a multilayer feed-forward network written from scratch in NumPy.

    from engine import Network, Adam, TrainConfig, trainer
    net = Network([784, 64, 32, 10], seed=0)
    for event in trainer(net, Adam(), x_train, y_train, TrainConfig(epochs=10)):
        ...
"""
from .errors import ConfigError, DatasetError, EngineError, ModelFileError
from .metrics import confusion_matrix, evaluate_network, per_class_accuracy, predict, predict_proba
from .gradcheck import gradient_check, verdict
from .layers import accuracy, cross_entropy, dropout, relu, relu_derivative, softmax
from .network import FAULTS, Network, fully_connected, parameter_count, parse_layers
from .optimizers import SGD, Adam, make_optimizer
from .persistence import load_network, network_bytes, save_network
from .schedules import Schedule, learning_rate
from .trainer import BatchEvent, EndEvent, EpochEvent, TrainConfig, evaluate, train, trainer
