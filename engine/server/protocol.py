"""The JSON messages between the browser (or any client) and ``pirender serve``.

Signaling runs on a websocket at ``/ws`` (same port as the page); once connected, the same control
messages may also travel on the WebRTC data channel labelled ``"control"`` (lower latency).
Every message is a JSON object with a ``"type"``, checked by :func:`parse_message` whatever channel
it came on (the same limits: size, strict JSON, nesting) and field by field (numbers finite and in
range); anything else gets ``{"type": "error", "message": ...}`` and never stops a stream. Replies
are strict JSON (:func:`encode_message`: no NaN or Infinity).

Client -> server
Each message is a dataclass below (:data:`CLIENT_MESSAGES` maps a ``type`` to the one that checks
and holds it; :class:`Hello` is the server's first message); the modes are :data:`MODES`, and the
page learns them, the slots and the limits from ``hello`` (it has no list of its own).

- ``{"type": "offer", "sdp": str, "mode": "idle" | "sliders" | "camera" | "talk" | "file"}``: start a
  stream. For ``camera`` the offer carries the browser camera's video track (it drives the face
  tracker); an audio track (the microphone) is received into the stream's audio source. ``file``
  plays the server's ``--motion`` file (``hello.modes`` lists what this server offers). ``talk``
  drives the avatar from the offer's microphone track through the audio-to-motion flow.
- ``{"type": "mode", "mode": one of MODES}``: switch the motion source.
- ``{"type": "control", "slots": {name: value}}``: slider values in the open motion space, applied
  on top of the portrait's rest pose: ``pitch``/``yaw``/``roll`` in radians added to its own pose,
  ``tx``/``ty`` in inter-ocular distances, ``scale`` as a factor, expression controls as values.
  Names are those of the ``hello`` message; values are clamped to its ranges.
- ``{"type": "upload", "image": "data:image/jpeg;base64,..."}``: a new source portrait (PNG, JPEG or
  WebP, at most ``MAX_UPLOAD_BYTES`` decoded; PNG and WebP within ``hello.limits.max_upload_pixels``),
  prepared in the background: ``uploaded`` or an error follows. One at a time per client; at most
  ``MAX_QUEUED_UPLOADS`` waiting for all clients (beyond: an error, try again).
- ``{"type": "ping", "client_ms": float}``: clock-offset probe (see ``pong``).
- ``{"type": "presented", "frames": [{"rtp_timestamp": int, "pts": int, "presented_ms": float}, ...],
  "wall_offset_ms": float}``: the browser's presentation times (``requestVideoFrameCallback``) on
  the server clock, for the server's latency figures; ``pts`` is the frame's pts (the page learns the
  stream's RTP offset from the ``frame`` messages; aiortc adds a random one). ``wall_offset_ms``
  (optional): server clock - the browser's wall clock, which puts the capture times of its camera
  and microphone (RTCP sender reports, on its wall clock) on the server clock.
- ``{"type": "stop"}``: end the stream (closing the socket does the same).

Server -> client
- ``{"type": "hello", "slots": [{"name", "min", "max", "default", "unit"}], "limits":
  {"max_upload_bytes", "max_message_bytes", "max_upload_pixels", "max_presented"}, "modes": [the
  MODES this server offers], "fps": float}`` on connect (:class:`Hello`).
- ``{"type": "answer", "sdp": str}``; the offer must have a video section the server can send on.
  The stream takes one of ``max_streams`` slots once its connection is up; until then it is one of
  ``MAX_NEGOTIATIONS`` negotiations, dropped with an error after ``NEGOTIATION_TIMEOUT_S``.
- ``{"type": "uploaded"}``: the uploaded portrait is in use.
- ``{"type": "pong", "client_ms": float, "server_ms": float}``: ``server_ms`` on the server's frame
  clock (milliseconds, monotonic).
- ``{"type": "frame", "pts": int, "capture_ms": float, "motion_ms": float, "mouth": float}`` (data
  channel, every frame): the frame's RTP presentation time stamp (90 kHz), its render slot
  (``capture_ms``) and the capture time of what drove it (``motion_ms``: the camera frame, the voice,
  the slider move; both on the server's clock, ms); ``mouth`` (talk mode) its mouth opening.
- ``{"type": "stats", "mode": str, "fps": float, "stage_ms": {stage: p50}, "glass_to_glass_ms":
  {"p50", "p90", "p99"} | null, "motion_to_photon_ms": {...} | null, "av_offset_ms": {"p10", "p50",
  "p90"} | null, "dropped": int}`` once a second: render slot -> display, capture -> display (the
  first frame of each new motion) and the audio - video send offset; ``dropped``: frame slots skipped
  because rendering fell behind.
- ``{"type": "error", "message": str}``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

#: Largest websocket / data-channel message accepted (bytes); uploads are the big ones. The websocket
#: closes with 1009 beyond it (its frames are never buffered); the data channel answers an error.
MAX_MESSAGE_BYTES = 12 * 1024 * 1024
#: Largest decoded portrait upload (bytes).
MAX_UPLOAD_BYTES = 8 * 1024 * 1024
#: Concurrent streams one server accepts by default (a slot is taken when the connection is up).
MAX_STREAMS = 8
#: Offers answered whose connection is not up yet, counted apart from the streams.
MAX_NEGOTIATIONS = 8
#: Seconds an answered offer may take to connect (ICE + DTLS) before it is dropped.
NEGOTIATION_TIMEOUT_S = 10.0
#: Uploads waiting for the one upload worker, all clients together (one in flight per client).
MAX_QUEUED_UPLOADS = 4
#: Deepest nesting of objects and arrays in a message (the protocol itself needs 3).
MAX_NESTING = 8
#: Largest number of entries of one ``presented`` message (a second of frames needs 25-60).
MAX_PRESENTED = 1000
#: WebRTC video clock (RTP timestamps of video run at 90 kHz).
VIDEO_CLOCK_HZ = 90_000
#: The motion sources of a stream (``stream.session.AvatarStream``): the one list, sent in ``hello``.
Mode = Literal["idle", "sliders", "camera", "file", "talk"]
MODES: tuple[Mode, ...] = get_args(Mode)


class ProtocolError(ValueError):
    """A client message that breaks the protocol; its text goes back as ``{"type": "error"}``."""


def parse_message(data: str | bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> dict[str, Any]:
    """One client message from any channel (websocket or data channel) -> a JSON object with a
    string ``"type"``.

    The same limits for every channel: at most ``max_bytes`` (the server's ``max_message_bytes``,
    default :data:`MAX_MESSAGE_BYTES`), strict JSON (``NaN`` and
    ``Infinity`` are refused, as browsers' ``JSON.parse`` refuses them), at most :data:`MAX_NESTING`
    levels of objects and arrays.

    Raises:
        ProtocolError: with a one-line reason.
    """
    size = len(data.encode() if isinstance(data, str) else data)
    if size > max_bytes:
        raise ProtocolError(f"a message of {size} bytes is over the {max_bytes} byte limit")
    too_deep = ProtocolError(f"a message may nest objects and arrays at most {MAX_NESTING} deep")
    try:
        message = json.loads(data, parse_constant=_refuse_constant)
    except RecursionError:  # nested beyond what the parser follows
        raise too_deep from None
    except ValueError as exc:  # JSONDecodeError, bad UTF-8, integers of more than 4300 digits
        raise ProtocolError(f"not valid JSON ({exc})") from None
    if _nesting(message) > MAX_NESTING:
        raise too_deep
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError("a message is a JSON object with a string 'type'")
    return message


def number(message: dict[str, Any], key: str, *, low: float = -math.inf, high: float = math.inf) -> float:
    """``message[key]`` as a finite number within [low, high] (JSON numbers only; bools refused).

    Raises:
        ProtocolError: the field is missing, not a number, not finite or out of range.
    """
    if key not in message:
        raise ProtocolError(f"the field {key!r} is missing")
    return finite(message[key], key, low=low, high=high)


def finite(value: Any, name: str, *, low: float = -math.inf, high: float = math.inf) -> float:
    """A JSON value checked as a finite number within [low, high] (see :func:`number`)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(f"{name!r} must be a number, got {type(value).__name__}")
    try:
        result = float(value)
    except OverflowError:  # an integer beyond float range
        raise ProtocolError(f"{name!r} is out of range") from None
    if not math.isfinite(result):
        raise ProtocolError(f"{name!r} must be a finite number")
    if not low <= result <= high:
        raise ProtocolError(f"{name!r} must be within [{low:g}, {high:g}], got {result:g}")
    return result


def text(
    message: dict[str, Any], key: str, *, default: str | None = None, max_chars: int | None = None
) -> str:
    """``message[key]`` as a string (``default`` when missing and a default is given).

    Raises:
        ProtocolError: missing without a default, not a string, longer than ``max_chars``.
    """
    if key not in message:
        if default is None:
            raise ProtocolError(f"the field {key!r} is missing")
        return default
    value = message[key]
    if not isinstance(value, str):
        raise ProtocolError(f"{key!r} must be a string, got {type(value).__name__}")
    if max_chars is not None and len(value) > max_chars:
        raise ProtocolError(f"{key!r} is longer than {max_chars} characters")
    return value


def encode_message(message: dict[str, Any]) -> str:
    """A server message as strict JSON: non-finite floats (an empty statistic) become ``null``."""
    return json.dumps(_finite_or_null(message), allow_nan=False, separators=(",", ":"))


def _finite_or_null(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite_or_null(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_null(item) for item in value]
    if hasattr(value, "item") and hasattr(value, "dtype"):  # numpy scalars
        return _finite_or_null(value.item())
    return value


def _refuse_constant(name: str) -> Any:
    raise ProtocolError(f"{name} is not a JSON number (numbers must be finite)")


def _nesting(value: Any) -> int:
    """Deepest nesting of objects and arrays in a parsed message (iterative: no recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth <= MAX_NESTING:  # deeper is refused anyway: do not walk a deep bomb
                children = item.values() if isinstance(item, dict) else item
                stack.extend((child, depth + 1) for child in children)
    return deepest


def mode_of(message: dict[str, Any], key: str = "mode", *, default: Mode | None = None) -> Mode:
    """``message[key]`` as one of :data:`MODES`.

    Raises:
        ProtocolError: missing without a default, not a string, not a mode.
    """
    value = text(message, key, default=default)
    for mode in MODES:
        if value == mode:
            return mode
    raise ProtocolError(f"mode must be one of {', '.join(MODES)}")


# -- client -> server ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Offer:
    """Start a stream (module docstring)."""

    sdp: str
    mode: Mode

    @classmethod
    def from_json(cls, message: dict[str, Any]) -> Offer:
        return cls(text(message, "sdp"), mode_of(message, default="idle"))


@dataclass(frozen=True)
class Stop:
    """End the stream."""

    @classmethod
    def from_json(cls, message: dict[str, Any]) -> Stop:
        del message
        return cls()


@dataclass(frozen=True)
class Ping:
    """Clock-offset probe; ``client_ms`` comes back in the ``pong``."""

    client_ms: float

    @classmethod
    def from_json(cls, message: dict[str, Any]) -> Ping:
        return cls(number(message, "client_ms"))


@dataclass(frozen=True)
class SetMode:
    """Switch the motion source (``{"type": "mode"}``)."""

    mode: Mode

    @classmethod
    def from_json(cls, message: dict[str, Any]) -> SetMode:
        return cls(mode_of(message))


@dataclass(frozen=True)
class Control:
    """Slider values, finite numbers by slot name (clamped to ``hello``'s ranges by the stream)."""

    slots: dict[str, float]

    @classmethod
    def from_json(cls, message: dict[str, Any]) -> Control:
        slots = message.get("slots")
        if not isinstance(slots, dict):
            raise ProtocolError("'slots' must be an object of name: number")
        return cls({name: finite(value, name) for name, value in slots.items()})


@dataclass(frozen=True)
class Upload:
    """A new portrait as a data URL (decoded and checked by the server's upload worker)."""

    image: str

    @classmethod
    def from_json(cls, message: dict[str, Any]) -> Upload:
        return cls(text(message, "image"))


@dataclass(frozen=True)
class PresentedFrame:
    """When the browser showed the frame with ``pts`` (server clock, ms)."""

    pts: int
    presented_ms: float


@dataclass(frozen=True)
class Presented:
    """The browser's presentation times (entries without a ``pts`` are skipped) and, when it has
    measured it, ``wall_offset_ms``: server clock - its wall clock (``Date.now()``), which puts the
    capture times of its camera and microphone (RTCP sender reports, wall clock) on the server clock."""

    frames: tuple[PresentedFrame, ...]
    wall_offset_ms: float | None = None

    @classmethod
    def from_json(cls, message: dict[str, Any]) -> Presented:
        frames = message.get("frames")
        if not isinstance(frames, list) or len(frames) > MAX_PRESENTED:
            raise ProtocolError(f"'frames' must be a list of at most {MAX_PRESENTED} objects")
        out = []
        for entry in frames:
            if not isinstance(entry, dict):
                raise ProtocolError("each of 'frames' must be an object")
            if "pts" in entry:
                pts = finite(entry["pts"], "pts", low=0, high=2**63)
                out.append(PresentedFrame(int(pts), number(entry, "presented_ms")))
        offset = message.get("wall_offset_ms")
        return cls(tuple(out), None if offset is None else number(message, "wall_offset_ms"))


ClientMessage = Offer | Stop | Ping | SetMode | Control | Upload | Presented
#: ``type`` -> the message class that checks and holds it
CLIENT_MESSAGES: dict[str, type[ClientMessage]] = {
    "offer": Offer,
    "stop": Stop,
    "ping": Ping,
    "mode": SetMode,
    "control": Control,
    "upload": Upload,
    "presented": Presented,
}
#: the messages that act on a stream (the others work before an offer)
STREAM_MESSAGES = frozenset({"mode", "control", "upload", "presented"})


def decode_client_message(message: dict[str, Any]) -> ClientMessage:
    """A parsed message (:func:`parse_message`) as its dataclass, every field checked.

    Raises:
        ProtocolError: an unknown ``type`` or a bad field (the reason in one line).
    """
    kind = message["type"]
    if kind not in CLIENT_MESSAGES:
        raise ProtocolError(f"unknown message type {kind!r}")
    return CLIENT_MESSAGES[kind].from_json(message)


# -- server -> client ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SlotInfo:
    """One slider of ``hello``: its range, default and unit (``stream.sources.SLIDER_RANGES``)."""

    name: str
    min: float
    max: float
    default: float
    unit: str


@dataclass(frozen=True)
class Limits:
    """The limits a client must respect (``hello.limits``)."""

    max_upload_bytes: int
    max_message_bytes: int
    max_upload_pixels: int
    max_presented: int = MAX_PRESENTED


@dataclass(frozen=True)
class Hello:
    """The server's first message: what the page builds its controls from."""

    slots: tuple[SlotInfo, ...]
    limits: Limits
    modes: tuple[Mode, ...]
    fps: float

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "hello",
            "slots": [asdict(slot) for slot in self.slots],
            "limits": asdict(self.limits),
            "modes": list(self.modes),
            "fps": self.fps,
        }
