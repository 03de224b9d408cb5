"""Live sink: RGB frames -> a virtual webcam that video-call apps (Zoom, Meet, Teams, OBS) can pick.

Wraps `pyvirtualcam <https://github.com/letmaik/pyvirtualcam>`_, imported only when a camera is
opened (``pip install pyvirtualcam``). Its backends: v4l2loopback on Linux (a loopback
``/dev/videoN`` created by the ``v4l2loopback`` kernel module), OBS Studio's virtual camera on
Windows and macOS (plus Unity Capture on Windows).

Frames are (H, W, 3) uint8 RGB, as :func:`pirender.engine.image.tensor_to_images` returns them.
Every error (package missing, no virtual camera device, unknown backend, wrong frame) is a
:class:`~pirender.engine.errors.PirenderError` with one line that says what to do.
"""

from __future__ import annotations

import glob
import math
import numbers
import os
import platform
from types import ModuleType, TracebackType
from typing import Any

import numpy as np

from ..errors import PirenderError, describe_value, exception_text

__all__ = ["LINUX_SETUP", "VirtualCamera", "setup_hint"]

#: What to run on Linux to get a loopback device apps list as "pirender".
LINUX_SETUP = (
    "sudo apt install v4l2loopback-dkms && sudo modprobe v4l2loopback devices=1 exclusive_caps=1 "
    'card_label="pirender"'
)

# What to install on the other systems pyvirtualcam supports.
_WINDOWS_SETUP = (
    "install OBS Studio 26+ (https://obsproject.com), start its virtual camera once "
    "(Start Virtual Camera), then close OBS"
)
_MACOS_SETUP = (
    "install OBS Studio 30+ (https://obsproject.com), start its virtual camera once and allow "
    "the system extension it asks for, then close OBS"
)

# The longest underlying reason quoted in an error message, in characters.
_MAX_REASON_CHARS = 240

# pyvirtualcam appends this pointer to its Linux error; the hint we give replaces it.
_PYVIRTUALCAM_FOOTER = "See also pyvirtualcam's documentation."


def setup_hint(system: str | None = None) -> str:
    """What to install so a virtual camera backend exists on ``system`` (``platform.system()``)."""
    system = platform.system() if system is None else system
    if system == "Linux":
        return f"install and load v4l2loopback: {LINUX_SETUP}"
    if system == "Windows":
        return _WINDOWS_SETUP
    if system == "Darwin":
        return _MACOS_SETUP
    return f"pyvirtualcam has no virtual camera backend for {system or 'this system'}"


def _linux_diagnosis(device: str | None) -> str:
    """What /dev and /sys say about loopback devices (pyvirtualcam already reports a missing ``device``)."""
    facts = []
    if device is None and not glob.glob("/dev/video*"):
        facts.append("no /dev/video* device")
    if not os.path.isdir("/sys/module/v4l2loopback"):
        facts.append("kernel module v4l2loopback not loaded")
    return ", ".join(facts)


def _import_pyvirtualcam() -> ModuleType:
    try:
        import pyvirtualcam
    except ImportError:
        raise PirenderError(
            "virtual camera: the pyvirtualcam package is missing: pip install pyvirtualcam"
        ) from None
    return pyvirtualcam


def _check_size(size_px: tuple[int, int]) -> tuple[int, int]:
    if (
        not isinstance(size_px, tuple | list)
        or len(size_px) != 2
        or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in size_px)
        or min(size_px) <= 0
    ):
        raise PirenderError(f"virtual camera: size_px must be (width, height) in pixels > 0, got {size_px!r}")
    return int(size_px[0]), int(size_px[1])


class VirtualCamera:
    """Send RGB frames to a virtual webcam; use as a context manager.

    Example::

        with VirtualCamera(size_px=(256, 256), fps=25.0) as camera:
            for frame in frames:                  # (256, 256, 3) uint8 RGB
                camera.send(frame)

    Frames are shown as they are sent: the sender keeps the pace (a live camera paces itself; a
    file is held to its frames' times by :class:`pirender.engine.pipeline.RealTimePacer`).

    Args:
        size_px: (width, height) of every frame in pixels.
        fps: frame rate announced to apps, in frames per second (> 0): the input's rate.
        backend: pyvirtualcam backend name (``v4l2loopback``, ``obs``, ``unitycapture``); ``None``
            tries every backend of this system.
        device: the device to use (Linux: ``/dev/videoN``; OBS: ``OBS Virtual Camera``); ``None``
            takes the first free one.

    Raises:
        PirenderError: pyvirtualcam not installed (``pip install pyvirtualcam``); no virtual camera
            backend or device (the message says what to install: v4l2loopback on Linux, OBS Studio on
            Windows and macOS, with the underlying reason); an unknown backend; bad size or fps.
    """

    def __init__(
        self,
        *,
        size_px: tuple[int, int],
        fps: float,
        backend: str | None = None,
        device: str | None = None,
    ) -> None:
        width_px, height_px = _check_size(size_px)
        if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not math.isfinite(fps) or fps <= 0:
            raise PirenderError(f"virtual camera: fps must be a positive number, got {fps!r}")
        self._width_px: int = width_px
        self._height_px: int = height_px
        self._fps: float = float(fps)
        self._frames_sent: int = 0
        self._closed: bool = False
        pyvirtualcam = _import_pyvirtualcam()
        self._check_backend(pyvirtualcam, backend)
        try:
            self._camera: Any = pyvirtualcam.Camera(
                width_px,
                height_px,
                self._fps,
                fmt=pyvirtualcam.PixelFormat.RGB,
                backend=backend,
                device=device,
            )
        except RuntimeError as exc:  # pyvirtualcam: every backend failed (one reason per backend)
            raise PirenderError(self._no_backend_message(exc, device)) from None
        except (OSError, ValueError, TypeError) as exc:
            raise PirenderError(
                f"virtual camera: cannot open a {width_px}x{height_px} camera ({exception_text(exc)})"
            ) from None

    @staticmethod
    def _check_backend(pyvirtualcam: ModuleType, backend: str | None) -> None:
        """Refuse a backend name this system lacks (pyvirtualcam would raise a bare KeyError)."""
        if backend is None:
            return
        registry = getattr(getattr(pyvirtualcam, "camera", None), "BACKENDS", None)
        if isinstance(registry, dict) and backend not in registry:
            available = ", ".join(sorted(registry)) or "none"
            raise PirenderError(
                f"virtual camera: no backend {backend!r} on {platform.system() or 'this system'} "
                f"(available: {available})"
            )

    def _no_backend_message(self, exc: RuntimeError, device: str | None) -> str:
        reason = exception_text(exc, with_type=False).replace(_PYVIRTUALCAM_FOOTER, "").strip()
        if len(reason) > _MAX_REASON_CHARS:
            reason = reason[: _MAX_REASON_CHARS - 3].rstrip() + "..."
        system = platform.system()
        if system == "Linux":
            diagnosis = _linux_diagnosis(device)
            if diagnosis:
                reason = f"{reason}; {diagnosis}"
        return (
            f"virtual camera: no virtual camera device to send {self._width_px}x{self._height_px} frames "
            f"to ({reason}); {setup_hint(system)}"
        )

    # ---------------------------------------------------------------------------------------------

    @property
    def size_px(self) -> tuple[int, int]:
        """(width, height) of the frames in pixels."""
        return self._width_px, self._height_px

    @property
    def fps(self) -> float:
        """Frame rate announced to apps, in frames per second."""
        return self._fps

    @property
    def frames_sent(self) -> int:
        """Number of frames sent so far."""
        return self._frames_sent

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._closed

    @property
    def backend(self) -> str:
        """Name of the pyvirtualcam backend in use (e.g. ``v4l2loopback``)."""
        return str(self._camera.backend)

    @property
    def device(self) -> str:
        """The virtual camera device in use (e.g. ``/dev/video0`` or ``OBS Virtual Camera``)."""
        return str(self._camera.device)

    def describe(self) -> str:
        """One line for the user: where the frames go."""
        return (
            f"virtual camera {self.device} ({self.backend}), {self._width_px}x{self._height_px} "
            f"at {self._fps:g} frames/s"
        )

    def send(self, frame_rgb: np.ndarray, time_s: float | None = None) -> bool:
        """Send one (H, W, 3) uint8 RGB frame; H and W must equal the camera's (height, width). A
        virtual camera shows frames as they come (``time_s`` is not used); True (the live pipeline's
        sink verb, ``pipeline.FrameSink``).

        Raises:
            PirenderError: camera closed, wrong dtype/shape, or the backend fails (device gone).
        """
        if self._closed:
            raise PirenderError("virtual camera: send() after close()")
        expected = (self._height_px, self._width_px, 3)
        if (
            not isinstance(frame_rgb, np.ndarray)
            or frame_rgb.dtype != np.uint8
            or frame_rgb.shape != expected
        ):
            raise PirenderError(
                f"virtual camera: frames must be {expected} (H, W, 3) uint8 RGB arrays, "
                f"got {describe_value(frame_rgb)}"
            )
        try:
            self._camera.send(np.ascontiguousarray(frame_rgb))
        except (RuntimeError, OSError, ValueError, TypeError) as exc:
            raise PirenderError(
                f"virtual camera: sending frame {self._frames_sent} failed ({exception_text(exc)})"
            ) from None
        self._frames_sent += 1
        return True

    def close(self) -> None:
        """Release the device; calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        self._camera.close()

    def __enter__(self) -> VirtualCamera:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"VirtualCamera(size_px=({self._width_px}, {self._height_px}), fps={self._fps}, "
            f"frames_sent={self._frames_sent}, {state})"
        )
