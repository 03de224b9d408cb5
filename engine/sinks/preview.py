"""A desktop window that shows frames as they are made (OpenCV, from the ``track`` extra)."""

from __future__ import annotations

import numpy as np

_QUIT_KEYS = (27, ord("q"))  # Esc, q


class PreviewWindow:
    """``show(rgb)`` draws a frame and says whether to go on (False once Esc or q is pressed)."""

    def __init__(self, title: str) -> None:
        import cv2

        self._cv2 = cv2
        self.title = title

    def show(self, rgb: np.ndarray) -> bool:
        """(H, W, 3) uint8 RGB -> the window; False when the user asked to stop."""
        self._cv2.imshow(self.title, rgb[:, :, ::-1])
        return self._cv2.waitKey(1) & 0xFF not in _QUIT_KEYS

    def send(self, rgb: np.ndarray, time_s: float) -> bool:
        """The live pipeline's sink verb (``pipeline.FrameSink``): :meth:`show`."""
        del time_s
        return self.show(rgb)

    def close(self) -> None:
        self._cv2.destroyAllWindows()
