"""``pirender serve``: the web client over HTTP, websocket signaling, WebRTC avatar streams.

One port serves ``web_client/`` and the signaling websocket ``/ws`` (the ``websockets`` package).
Each websocket is one peer with its own stream; all streams share one renderer through the batching
render service. Closing the page or dropping the socket frees the peer's tasks and tracks.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import mimetypes
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ..errors import PirenderError
from ..image import SourceImage, read_image
from ..motion.io import load_motion
from ..motion.space import OPEN_SPACE, MotionSequence
from ..renderer.base import PreparedSource
from ..renderer.mesh.renderer import MeshRenderer
from ..stream.batcher import RenderService
from ..stream.clock import now_ms
from ..stream.queues import LatestQueue
from ..stream.session import AvatarStream
from ..stream.sources import SLIDER_RANGES
from ..track.crop import crop_to_face
from .ice import is_loopback, restrict_host_candidates
from .protocol import MAX_MESSAGE_BYTES, MAX_STREAMS, MAX_UPLOAD_BYTES, MODES, VIDEO_CLOCK_HZ

log = logging.getLogger("pirender.server")
WEB_ROOT = Path(__file__).resolve().parents[2] / "web_client"
#: picture formats an upload may have (Pillow's names); decoded by the one loader, image.read_image
UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP")


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    portrait: str | None = None  # default: Grace Hopper from matplotlib, framed on the face
    size_px: int = 256
    fps: float = 25.0
    max_streams: int = MAX_STREAMS
    stun_urls: list[str] = field(default_factory=list)  # empty: no STUN (loopback and LANs)
    motion_file: str | None = None  # an open-space motion file for the "file" mode
    web_root: Path = WEB_ROOT


class AvatarTrack(MediaStreamTrack):
    """The avatar's video: one rendered frame per stream slot, stamped with its pts (90 kHz)."""

    kind = "video"

    def __init__(self, stream: AvatarStream, peer: Peer) -> None:
        super().__init__()
        self.stream = stream
        self.peer = peer

    async def recv(self) -> av.VideoFrame:
        rgb, stamps, pts = await self.stream.next_frame()
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = pts
        frame.time_base = Fraction(1, VIDEO_CLOCK_HZ)
        stamps.mark("send")
        self.stream.frame_sent(stamps.index, stamps.stages["send"])
        self.stream.stats.add(stamps)
        message: dict[str, Any] = {"type": "frame", "pts": pts, "capture_ms": stamps.capture_ms}
        if self.stream.mode == "talk":  # how open the frame's mouth is (the page measures A/V sync)
            message["mouth"] = self.stream.last_mouth_open
        self.peer.send_channel(message)
        return frame


class AvatarAudioTrack(MediaStreamTrack):
    """The driving audio back to the client (talk mode; silence otherwise), on the video's clock."""

    kind = "audio"

    def __init__(self, stream: AvatarStream) -> None:
        super().__init__()
        self.stream = stream

    async def recv(self) -> av.AudioFrame:
        pcm, pts = await self.stream.next_audio_frame()
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = self.stream.return_audio.sample_rate_hz
        frame.pts = pts
        frame.time_base = Fraction(1, frame.sample_rate)
        return frame


class Peer:
    """One websocket client: its peer connection, stream and tasks."""

    def __init__(self, server: AvatarServer, websocket: ServerConnection) -> None:
        self.server = server
        self.websocket = websocket
        self.pc: RTCPeerConnection | None = None
        self.stream: AvatarStream | None = None
        self.channel: Any = None
        self.tasks: set[asyncio.Task[Any]] = set()

    # -- messages -------------------------------------------------------------------------------
    async def send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.websocket.send(json.dumps(message))

    def send_channel(self, message: dict[str, Any]) -> None:
        if self.channel is not None and self.channel.readyState == "open":
            self.channel.send(json.dumps(message))

    async def handle(self, text: str | bytes) -> dict[str, Any] | None:
        """One client message -> the reply (or None). Bad input gets an error reply, never a crash."""
        try:
            message = json.loads(text)
            if not isinstance(message, dict) or not isinstance(message.get("type"), str):
                raise ValueError("a message is a JSON object with a string 'type'")
            kind = message["type"]
            if kind == "ping":
                return {"type": "pong", "client_ms": float(message["client_ms"]), "server_ms": now_ms()}
            if kind == "offer":
                return await self.offer(str(message["sdp"]), str(message.get("mode", "idle")))
            if kind == "stop":
                await self.close()
                return None
            stream = self.require_stream()
            if kind == "mode":
                mode = str(message["mode"])
                if mode not in MODES:
                    raise ValueError(f"mode must be one of {', '.join(MODES)}")
                stream.set_mode(mode)
            elif kind == "control":
                slots = message["slots"]
                if not isinstance(slots, dict):
                    raise ValueError("'slots' must be an object of name: number")
                stream.sliders.set({str(k): float(v) for k, v in slots.items()})
            elif kind == "upload":
                source, rest = await self.server.prepare_upload(str(message["image"]))
                stream.set_source(source, rest)
            elif kind == "presented":
                for entry in message["frames"][:1000]:
                    if "pts" in entry:
                        stream.presented(int(entry["pts"]), float(entry["presented_ms"]))
            else:
                raise ValueError(f"unknown message type {kind!r}")
            return None
        except (ValueError, KeyError, TypeError, PirenderError) as exc:
            return {"type": "error", "message": f"{type(exc).__name__}: {exc}"}

    def require_stream(self) -> AvatarStream:
        if self.stream is None:
            raise ValueError("no stream yet: send an offer first")
        return self.stream

    # -- WebRTC ---------------------------------------------------------------------------------
    async def offer(self, sdp: str, mode: str) -> dict[str, Any]:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        if mode == "file" and self.server.motion_file is None:
            raise ValueError("no motion file on this server (pirender serve --motion FILE)")
        if self.pc is not None:
            await self.close()
        if self.server.active_streams() >= self.server.config.max_streams:
            raise PirenderError(f"the server is full ({self.server.config.max_streams} streams)")
        ice_servers = [RTCIceServer(urls=url) for url in self.server.config.stun_urls]
        self.pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=ice_servers))
        self.stream = stream = AvatarStream(
            self.server.service,
            self.server.source,
            self.server.rest,
            fps=self.server.config.fps,
            motion_file=self.server.motion_file,
        )
        stream.set_mode(mode)

        @pc.on("datachannel")
        def on_datachannel(channel: Any) -> None:
            self.channel = channel

            @channel.on("message")
            def on_message(text: str | bytes) -> None:
                self.spawn(self._reply_on_channel(text))

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                self.spawn(self._camera(track))
            elif track.kind == "audio":
                self.spawn(self._microphone(track, stream))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self.close()

        if is_loopback(self.server.config.host):
            sdp = _without_mdns_candidates(sdp)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except Exception as exc:
            await self.close()
            raise ValueError(f"invalid SDP offer ({exc})") from None
        pc.addTrack(AvatarTrack(stream, self))
        if any(t.kind == "audio" for t in pc.getTransceivers()):  # the client offered audio: send it back
            pc.addTrack(AvatarAudioTrack(stream))
        await pc.setLocalDescription(await pc.createAnswer())
        self.spawn(self._stats())
        return {"type": "answer", "sdp": pc.localDescription.sdp}

    async def _reply_on_channel(self, text: str | bytes) -> None:
        reply = await self.handle(text)
        if reply is not None:
            self.send_channel(reply)

    async def _camera(self, track: MediaStreamTrack) -> None:
        """Browser camera frames -> the tracker, on its own thread; stale frames are dropped."""
        frames: LatestQueue[tuple[np.ndarray, float]] = LatestQueue(maxsize=1)
        loop = asyncio.get_running_loop()

        async def track_frames() -> None:
            while True:
                rgb, time_s = await frames.get()
                if self.stream is not None and self.stream.camera is not None:
                    await loop.run_in_executor(self.server.tracking, self.stream.camera.feed, rgb, time_s)

        worker = self.spawn(track_frames())
        try:
            while True:
                frame = await track.recv()
                frames.put((frame.to_ndarray(format="rgb24"), float(frame.time or 0.0)))
        except MediaStreamError:
            pass
        finally:
            worker.cancel()

    async def _microphone(self, track: MediaStreamTrack, stream: AvatarStream) -> None:
        """Browser microphone -> the stream's audio source (bounded ring, newest seconds kept)."""
        with contextlib.suppress(MediaStreamError):
            while True:
                stream.microphone.feed(await track.recv())

    async def _stats(self) -> None:
        while self.stream is not None:
            await asyncio.sleep(1.0)
            if self.stream is None:
                break
            await self.send({"type": "stats", "mode": self.stream.mode, **self.stream.stats.summary()})

    def spawn(self, coroutine: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def close(self) -> None:
        """Free everything of this peer (tasks, tracks, connection)."""
        pc, stream = self.pc, self.stream
        self.pc, self.stream, self.channel = None, None, None
        current = asyncio.current_task()
        for task in list(self.tasks):
            if task is not current:
                task.cancel()
        if pc is not None:
            await pc.close()
        if stream is not None:
            stream.close()


class AvatarServer:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.renderer = MeshRenderer(image_size_px=config.size_px)
        self.service = RenderService(self.renderer)
        self.tracking: ThreadPoolExecutor | None = None  # face tracking's own thread, made at start
        self.peers: set[Peer] = set()
        self.source: PreparedSource
        self.rest: np.ndarray
        self.motion_file: MotionSequence | None = None
        self._server: Server | None = None

    def active_streams(self) -> int:
        return sum(peer.stream is not None for peer in self.peers)

    async def start(self) -> None:
        if is_loopback(self.config.host):
            restrict_host_candidates(["127.0.0.1"])
        self.tracking = ThreadPoolExecutor(max_workers=1, thread_name_prefix="track")
        self.service.start()
        if self.config.motion_file:
            self.motion_file = load_motion(self.config.motion_file)
            if self.motion_file.space != OPEN_SPACE:
                raise PirenderError(f"{self.config.motion_file}: the live server plays open-space motion")
        portrait = self.config.portrait or _default_portrait()
        self.source = await self.service.prepare(crop_to_face(portrait, size_px=self.config.size_px))
        self.rest = self.renderer.rest_row(self.source)
        self._server = await serve(
            self._connection,
            self.config.host,
            self.config.port,
            process_request=self._http,
            max_size=MAX_MESSAGE_BYTES,
        )

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(next(iter(self._server.sockets)).getsockname()[1])

    async def close(self) -> None:
        for peer in list(self.peers):
            await peer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await self.service.close()
        if self.tracking is not None:
            self.tracking.shutdown(wait=False, cancel_futures=True)

    async def prepare_upload(self, data_url: str) -> tuple[PreparedSource, np.ndarray]:
        """A portrait from a data URL (size and type checked) -> prepared source and its rest row."""
        header, _, payload = data_url.partition(",")
        if not header.startswith("data:image/") or ";base64" not in header:
            raise ValueError("an upload is a base64 data URL of an image")
        if len(payload) * 3 // 4 > MAX_UPLOAD_BYTES:
            raise ValueError(f"the image is over the {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB upload limit")
        try:
            raw = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("the upload is not valid base64") from None
        # off the event loop: a large photo takes a second to decode and search
        portrait = await asyncio.get_running_loop().run_in_executor(
            None, partial(upload_portrait, raw, size_px=self.config.size_px)
        )
        source = await self.service.prepare(portrait)
        return source, self.renderer.rest_row(source)

    async def _connection(self, websocket: ServerConnection) -> None:
        peer = Peer(self, websocket)
        self.peers.add(peer)
        try:
            await peer.send(self.hello())
            async for text in websocket:
                reply = await peer.handle(text)
                if reply is not None:
                    await peer.send(reply)
        except ConnectionClosed:
            pass
        finally:
            self.peers.discard(peer)
            await peer.close()

    def hello(self) -> dict[str, Any]:
        slots = [
            {"name": name, "min": low, "max": high, "default": default, "unit": unit}
            for name, (low, high, default, unit) in SLIDER_RANGES.items()
        ]
        limits = {"max_upload_bytes": MAX_UPLOAD_BYTES, "max_message_bytes": MAX_MESSAGE_BYTES}
        modes = [m for m in MODES if m != "file" or self.motion_file is not None]
        return {"type": "hello", "slots": slots, "limits": limits, "modes": modes, "fps": self.config.fps}

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        """Serve ``web_client/`` for plain HTTP requests; let ``/ws`` upgrade to a websocket."""
        path = request.path.split("?", 1)[0]
        if path == "/ws":
            return None
        relative = "index.html" if path in ("", "/") else path.lstrip("/")
        root = self.config.web_root.resolve()
        target = (root / relative).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            return connection.respond(404, "not found\n")
        body = target.read_bytes()
        content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))),
                           ("Cache-Control", "no-store")])  # fmt: skip
        return Response(200, "OK", headers, body)


def upload_portrait(raw: bytes, *, size_px: int) -> SourceImage:
    """An uploaded picture's encoded bytes -> the portrait framed on its face, as ``--face-crop`` frames a
    file: the one loader (``image.read_image``: EXIF rotation, transparency over white, 16-bit, the
    size rule; formats limited to :data:`UPLOAD_FORMATS`) and ``track.crop.crop_to_face``.

    Raises:
        ImageError: not a readable picture, a format not accepted, too many pixels, no human face.
    """
    picture = read_image(raw, label="uploaded image", formats=UPLOAD_FORMATS)
    return crop_to_face(picture, size_px=size_px)


def _without_mdns_candidates(sdp: str) -> str:
    """Drop ``*.local`` (mDNS) candidates: resolving them would send multicast onto the LAN, which a
    server bound to loopback must never do; the loopback candidates connect without them."""
    lines = sdp.splitlines()
    kept = [line for line in lines if not (line.startswith("a=candidate:") and ".local " in line)]
    return "\r\n".join(kept) + "\r\n"


def _default_portrait() -> str:
    try:
        from matplotlib import cbook
    except ImportError:
        raise PirenderError(
            "the default portrait ships with matplotlib: pip install 'pirender-live[demo]'"
        ) from None
    return str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


async def serve_forever(config: ServerConfig) -> None:
    server = AvatarServer(config)
    await server.start()
    print(f"pirender serve: open http://{config.host}:{server.port}/ (Ctrl-C stops)", flush=True)
    try:
        await asyncio.Future()
    finally:
        await server.close()
