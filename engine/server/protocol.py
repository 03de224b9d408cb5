"""The JSON messages between the browser (or any client) and ``pirender serve``.

Signaling runs on a websocket at ``/ws`` (same port as the page); once connected, the same control
messages may also travel on the WebRTC data channel labelled ``"control"`` (lower latency).
Every message is a JSON object with a ``"type"``; unknown types, bad JSON and oversized messages get
``{"type": "error", "message": ...}`` and never close other streams.

Client -> server
- ``{"type": "offer", "sdp": str, "mode": "idle" | "sliders" | "camera" | "file"}``: start a
  stream. For ``camera`` the offer carries the browser camera's video track (it drives the face
  tracker); an audio track (the microphone) is received into the stream's audio source. ``file``
  plays the server's ``--motion`` file (``hello.modes`` lists what this server offers). ``talk``
  drives the avatar from the offer's microphone track through the audio-to-motion flow.
- ``{"type": "mode", "mode": "idle" | "sliders" | "camera"}``: switch the motion source.
- ``{"type": "control", "slots": {name: value}}``: slider values in the open motion space, applied
  on top of the portrait's rest pose: ``pitch``/``yaw``/``roll`` in radians added to its own pose,
  ``tx``/``ty`` in inter-ocular distances, ``scale`` as a factor, expression controls as values.
  Names are those of the ``hello`` message; values are clamped to its ranges.
- ``{"type": "upload", "image": "data:image/jpeg;base64,..."}``: a new source portrait (PNG, JPEG or
  WebP, at most ``MAX_UPLOAD_BYTES`` decoded).
- ``{"type": "ping", "client_ms": float}``: clock-offset probe (see ``pong``).
- ``{"type": "presented", "frames": [{"rtp_timestamp": int, "pts": int, "presented_ms": float}, ...]}``:
  the browser's presentation times (``requestVideoFrameCallback``) on the server clock, for the
  server's glass-to-glass figures; ``pts`` is the frame's pts (the page learns the stream's RTP
  offset from the ``frame`` messages; aiortc adds a random one).
- ``{"type": "stop"}``: end the stream (closing the socket does the same).

Server -> client
- ``{"type": "hello", "slots": [{"name", "min", "max", "default", "unit"}], "limits": {...},
  "modes": [...], "fps": float}`` on connect.
- ``{"type": "answer", "sdp": str}``.
- ``{"type": "pong", "client_ms": float, "server_ms": float}``: ``server_ms`` on the server's frame
  clock (milliseconds, monotonic).
- ``{"type": "frame", "pts": int, "capture_ms": float}`` (data channel, every frame): the frame's
  RTP presentation time stamp (90 kHz) and its capture time on the server's frame clock.
- ``{"type": "stats", "mode": str, "fps": float, "stage_ms": {stage: p50}, "glass_to_glass_ms":
  {"p50", "p90", "p99"} | null, "dropped": int}`` once a second (``dropped``: frame slots skipped
  because rendering fell behind).
- ``{"type": "error", "message": str}``.
"""

from __future__ import annotations

#: Largest websocket / data-channel message accepted (bytes); uploads are the big ones.
MAX_MESSAGE_BYTES = 12 * 1024 * 1024
#: Largest decoded portrait upload (bytes).
MAX_UPLOAD_BYTES = 8 * 1024 * 1024
#: Concurrent streams one server accepts by default.
MAX_STREAMS = 8
#: WebRTC video clock (RTP timestamps of video run at 90 kHz).
VIDEO_CLOCK_HZ = 90_000
MODES = ("idle", "sliders", "camera", "file", "talk")
