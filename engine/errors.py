"""Exceptions the engine raises for bad input. The CLI prints them as one line, without a traceback."""


class PirenderError(Exception):
    """Base class of every error caused by the user's input (files, arguments, checkpoints)."""


class MotionError(PirenderError, ValueError):
    """Motion numbers or a motion file that cannot be used."""


class CheckpointError(PirenderError, ValueError):
    """A checkpoint that is missing, not a checkpoint, or does not match the model."""


class ImageError(PirenderError, ValueError):
    """A source image that cannot be read or used."""
