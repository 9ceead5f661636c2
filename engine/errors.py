"""The engine's error types: one per kind of failure, each with a message that says what to do."""


class EngineError(Exception):
    """Base class: anything the engine refuses with a message meant for a person."""


class DatasetError(EngineError):
    """A dataset could not be loaded (missing, malformed, offline): the message says what to do."""


class ModelFileError(EngineError):
    """A saved network could not be loaded or saved: the message says what is wrong."""


class ConfigError(EngineError, ValueError):
    """An impossible architecture or hyper-parameter (layer width 0, learning rate NaN, ...)."""
