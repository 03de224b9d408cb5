"""pirender-live engine: motion sources -> windows -> renderers -> sinks.

The public API for embedding the engine (see the README for an example).
"""

from .api import BACKENDS, load_renderer
from .errors import CheckpointError, ImageError, MotionError, PirenderError
from .image import SourceImage, load_source_image, save_png, tensor_to_images
from .motion.edit import MotionEdit, neutral_frame
from .motion.io import load_motion, save_motion
from .motion.space import AUTHORS_SPACE, MotionFrame, MotionSequence, MotionSpace
from .motion.window import StreamWindow, WindowSpec, build_windows, sequence_windows
from .offline import render_to_video
from .renderer.base import Precision, PreparedSource, Renderer, RenderMode, RenderOutput
from .renderer.checkpoint import read_checkpoint, save_checkpoint

__all__ = [
    "AUTHORS_SPACE",
    "BACKENDS",
    "CheckpointError",
    "ImageError",
    "MotionEdit",
    "MotionError",
    "MotionFrame",
    "MotionSequence",
    "MotionSpace",
    "PirenderError",
    "Precision",
    "PreparedSource",
    "RenderMode",
    "RenderOutput",
    "Renderer",
    "SourceImage",
    "StreamWindow",
    "WindowSpec",
    "build_windows",
    "load_motion",
    "load_renderer",
    "load_source_image",
    "neutral_frame",
    "read_checkpoint",
    "render_to_video",
    "save_checkpoint",
    "save_motion",
    "save_png",
    "sequence_windows",
    "tensor_to_images",
]
