"""The signaling messages as typed dataclasses (engine/server/protocol.py): one class per client
message, checked field by field; ``hello`` lists the modes and limits the page uses, so the page has
no list of its own to drift (issue 16)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pirender.engine.server.protocol import (
    CLIENT_MESSAGES,
    MAX_PRESENTED,
    MODES,
    Control,
    Hello,
    Limits,
    Offer,
    Ping,
    Presented,
    PresentedFrame,
    ProtocolError,
    SetMode,
    SlotInfo,
    Stop,
    Upload,
    decode_client_message,
    parse_message,
)

WEB = Path(__file__).resolve().parents[1] / "web_client"


def _decode(text: str) -> object:
    return decode_client_message(parse_message(text))


def test_every_client_message_decodes_to_its_dataclass() -> None:
    assert _decode('{"type": "offer", "sdp": "v=0"}') == Offer("v=0", "idle")
    assert _decode('{"type": "offer", "sdp": "v=0", "mode": "talk"}') == Offer("v=0", "talk")
    assert _decode('{"type": "stop"}') == Stop()
    assert _decode('{"type": "ping", "client_ms": 5}') == Ping(5.0)
    assert _decode('{"type": "mode", "mode": "camera"}') == SetMode("camera")
    assert _decode('{"type": "control", "slots": {"yaw": 0.5}}') == Control({"yaw": 0.5})
    assert _decode('{"type": "upload", "image": "data:,"}') == Upload("data:,")
    presented = '{"type": "presented", "frames": [{"pts": 3000, "presented_ms": 12.5}, {"rtp": 1}]}'
    assert _decode(presented) == Presented((PresentedFrame(3000, 12.5),))
    assert set(CLIENT_MESSAGES) == {"offer", "stop", "ping", "mode", "control", "upload", "presented"}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"type": "dance"}', "unknown message type 'dance'"),
        ('{"type": "offer"}', "'sdp' is missing"),
        ('{"type": "offer", "sdp": "x", "mode": "dance"}', "mode must be one of idle, sliders, camera"),
        ('{"type": "mode", "mode": 3}', "'mode' must be a string"),
        ('{"type": "ping"}', "'client_ms' is missing"),
        ('{"type": "control", "slots": [1]}', "'slots' must be an object"),
        ('{"type": "control", "slots": {"yaw": true}}', "'yaw' must be a number"),
        ('{"type": "upload", "image": 5}', "'image' must be a string"),
        ('{"type": "presented", "frames": [1]}', "each of 'frames' must be an object"),
        ('{"type": "presented", "frames": [{"pts": -1, "presented_ms": 0}]}', "'pts' must be within"),
    ],
)
def test_bad_fields_are_one_line_reasons(text: str, reason: str) -> None:
    with pytest.raises(ProtocolError, match=re.escape(reason)):
        _decode(text)
    frames = json.dumps({"type": "presented", "frames": [{}] * (MAX_PRESENTED + 1)})
    with pytest.raises(ProtocolError, match="at most"):
        _decode(frames)


def test_hello_carries_the_modes_slots_and_limits() -> None:
    hello = Hello(
        slots=(SlotInfo("yaw", -0.5, 0.5, 0.0, "rad"),),
        limits=Limits(max_upload_bytes=10, max_message_bytes=20, max_upload_pixels=30),
        modes=MODES,
        fps=25.0,
    ).to_json()
    assert hello == {
        "type": "hello",
        "slots": [{"name": "yaw", "min": -0.5, "max": 0.5, "default": 0.0, "unit": "rad"}],
        "limits": {
            "max_upload_bytes": 10,
            "max_message_bytes": 20,
            "max_upload_pixels": 30,
            "max_presented": MAX_PRESENTED,
        },
        "modes": ["idle", "sliders", "camera", "file", "talk"],
        "fps": 25.0,
    }


def test_the_page_takes_its_modes_from_hello() -> None:
    """app.js holds no list of modes (it builds the selector from ``hello.modes``); the page's labelled
    options are all modes the protocol knows, and the protocol's docstring names every mode."""
    script = (WEB / "app.js").read_text()
    assert "MODES" not in script and "hello.modes" in script
    assert not re.search(r"\[\s*'idle'\s*,", script)
    options = re.findall(r'<option value="([a-z]+)"', (WEB / "index.html").read_text())
    assert options and set(options) <= set(MODES)
    import pirender.engine.server.protocol as protocol

    offer_line = next(line for line in (protocol.__doc__ or "").splitlines() if '"type": "offer"' in line)
    assert all(f'"{mode}"' in offer_line for mode in MODES)
