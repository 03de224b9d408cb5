"""Exceptions the engine raises for bad input. The CLI prints them as one line, without a traceback."""


class PirenderError(Exception):
    """Base class of every error caused by the user's input (files, arguments, checkpoints)."""


class MotionError(PirenderError, ValueError):
    """Motion numbers or a motion file that cannot be used."""


class CheckpointError(PirenderError, ValueError):
    """A checkpoint that is missing, not a checkpoint, or does not match the model."""


class ImageError(PirenderError, ValueError):
    """A source image that cannot be read or used."""


class LandmarkError(PirenderError, ValueError):
    """Face points that cannot be used for the alignment (wrong shape, not finite, degenerate)."""


def exception_text(exc: BaseException, *, with_type: bool = True) -> str:
    """An exception as one line for an error message (some libraries put newlines in theirs)."""
    text = " ".join(str(exc).split())
    if not with_type:
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def describe_value(value: object) -> str:
    """A short description of what was passed where an array or tensor was expected."""
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is not None and dtype is not None:
        kind = "array" if type(value).__module__.startswith("numpy") else "tensor"
        return f"{dtype} {kind} of shape {tuple(shape)}"
    return type(value).__name__
