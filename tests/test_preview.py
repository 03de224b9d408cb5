"""The desktop preview window of the live loops, with OpenCV's window calls recorded (no display)."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from pirender.engine.sinks.preview import PreviewWindow


def test_preview_shows_bgr_frames_and_stops_on_q_or_escape(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple] = []
    keys = iter([-1, ord("q"), 27])
    fake = types.SimpleNamespace(
        imshow=lambda title, image: calls.append(("show", title, image.copy())),
        waitKey=lambda delay_ms: next(keys),
        destroyAllWindows=lambda: calls.append(("closed",)),
    )
    monkeypatch.setitem(sys.modules, "cv2", fake)
    preview = PreviewWindow("pirender test")
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 255  # red
    assert preview.show(rgb) is True  # no key: go on
    assert preview.show(rgb) is False  # q
    assert preview.show(rgb) is False  # Esc
    preview.close()
    assert calls[0][1] == "pirender test" and (calls[0][2][..., 2] == 255).all()  # shown as BGR
    assert calls[-1] == ("closed",)
