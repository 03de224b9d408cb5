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
import hmac
import ipaddress
import logging
import mimetypes
import os
import re
import secrets
import signal
import socket
import sys
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import av
import numpy as np
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ..api import DEFAULT_SERVER_RENDERER, default_portrait, open_space_renderer
from ..clock import now_ms, now_s
from ..errors import PirenderError
from ..image import MAX_DECODE_SIDE_PX, SourceImage, read_image
from ..motion.io import load_motion
from ..motion.space import OPEN_SPACE, MotionSequence
from ..renderer.base import PreparedSource
from ..renderer.mesh.renderer import MeshRenderer
from ..stream.batcher import FrameService, RenderService
from ..stream.queues import LatestQueue
from ..stream.session import AvatarStream
from ..stream.sources import SLIDER_RANGES
from ..track.crop import crop_to_face
from .capture_clock import SenderClock
from .ice import bind_is_loopback, restrict_host_candidates
from .protocol import (
    CLIENT_MESSAGES,
    MAX_MESSAGE_BYTES,
    MAX_NEGOTIATIONS,
    MAX_QUEUED_UPLOADS,
    MAX_STREAMS,
    MAX_UPLOAD_BYTES,
    MODES,
    NEGOTIATION_TIMEOUT_S,
    STREAM_MESSAGES,
    VIDEO_CLOCK_HZ,
    Control,
    Hello,
    Limits,
    Mode,
    Offer,
    Ping,
    Presented,
    ProtocolError,
    SetMode,
    SlotInfo,
    Stop,
    Upload,
    decode_client_message,
    encode_message,
    parse_message,
)

log = logging.getLogger("pirender.server")
WEB_ROOT = Path(__file__).resolve().parents[2] / "web_client"
#: picture formats an upload may have (Pillow's names); decoded by the one loader, image.read_image
UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP")
#: The portrait pixel budget of an upload in a format decoded in full (PNG, WebP): 4096 x 4096. JPEG
#: uploads may have more: they are decoded at a reduced scale (image.read_image), never in full.
UPLOAD_MAX_PIXELS = MAX_DECODE_SIDE_PX * MAX_DECODE_SIDE_PX
#: Longest request target (path and query) served; longer ones get 414.
MAX_URL_CHARS = 2048
#: Longest path segment (a file name) looked up; longer ones get 404.
MAX_SEGMENT_CHARS = 255
#: Nice value of the upload worker thread (Linux): decoding a photo yields the CPU to the streams.
UPLOAD_NICE = 5
_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9._~-]+$")
#: ``ServerConfig.render``: frames rendered by this process (no cluster)
IN_PROCESS = "in-process"

Reply = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    portrait: str | None = None  # default: Grace Hopper from matplotlib, framed on the face
    size_px: int = 256
    renderer: str = DEFAULT_SERVER_RENDERER  # "mesh" or "neural" (api.open_space_renderer)
    fps: float = 25.0
    max_streams: int = MAX_STREAMS
    stun_urls: list[str] = field(default_factory=list)  # empty: no STUN (loopback and LANs)
    motion_file: str | None = None  # an open-space motion file for the "file" mode
    web_root: Path = WEB_ROOT
    #: access token for /ws; None: generated at start when the bind address is not loopback
    token: str | None = None
    #: whether /ws requires the token; None: exactly when the bind address is not loopback
    require_token: bool | None = None
    #: extra page origins allowed to open /ws (e.g. "https://app.example.org"); the server's own
    #: origin is always allowed
    allowed_origins: list[str] = field(default_factory=list)
    #: extra host names the server answers to (besides IP literals, localhost and this machine's name)
    allowed_hosts: list[str] = field(default_factory=list)
    max_negotiations: int = MAX_NEGOTIATIONS
    negotiation_timeout_s: float = NEGOTIATION_TIMEOUT_S
    max_queued_uploads: int = MAX_QUEUED_UPLOADS
    #: largest message on any channel (the websocket closes with 1009 beyond; the data channel errs)
    max_message_bytes: int = MAX_MESSAGE_BYTES
    upload_max_pixels: int = UPLOAD_MAX_PIXELS
    #: where frames are rendered: ``in-process`` (this process's batching render service) or a Ray
    #: cluster's address (``ray://HOST:10001``, ``HOST:6379``, ``auto``; ``stream.ray_render``)
    render: str = IN_PROCESS
    #: the Ray render deployment started when none runs: replicas (min, max), cores and GPUs each
    render_replicas: tuple[int, int] = (1, 1)
    render_cpus: float = 1.0
    render_gpus: float = 0.0


def render_stage(config: ServerConfig, renderer: MeshRenderer) -> FrameService:
    """The streams' render stage: this process's batching service, or the Ray Serve deployment at
    ``config.render`` (``stream.ray_render``; Ray is imported only then).

    Raises:
        PirenderError: Ray Serve is not installed; ``config.render`` is not a Ray address.
    """
    if config.render == IN_PROCESS:
        return RenderService(renderer)
    from ..stream.ray_address import prepare_environment

    prepare_environment(config.render)  # before Ray is imported
    from ..stream.ray_render import RayRenderConfig, RayRenderService

    low, high = config.render_replicas
    deployment = RayRenderConfig(
        renderer=config.renderer,
        size_px=config.size_px,
        min_replicas=low,
        max_replicas=high,
        num_cpus=config.render_cpus,
        num_gpus=config.render_gpus,
    )
    return RayRenderService(renderer, config.render, deployment)


class AvatarTrack(MediaStreamTrack):
    """The avatar's video: one rendered frame per stream slot, stamped with its pts (90 kHz)."""

    kind = "video"

    def __init__(self, stream: AvatarStream, peer: Peer) -> None:
        super().__init__()
        self.stream = stream
        self.peer = peer

    async def recv(self) -> av.VideoFrame:
        rendered, pts = await self.stream.next_frame()
        frame = av.VideoFrame.from_ndarray(rendered.rgb, format="rgb24")
        frame.pts = pts
        frame.time_base = Fraction(1, VIDEO_CLOCK_HZ)
        self.stream.frame_sent(rendered, now_ms())
        message: dict[str, Any] = {
            "type": "frame",
            "pts": pts,
            "capture_ms": 1000 * rendered.slot.due_s,  # the render slot
            "motion_ms": 1000 * rendered.motion.captured_s,  # the capture of what drove it
        }
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
    """One websocket client: its peer connection, stream and tasks.

    States: connected (socket only) -> negotiating (offer answered, the connection not up yet; counted
    against ``max_negotiations`` and dropped after ``negotiation_timeout_s``) -> streaming (the
    connection is up; counted against ``max_streams``). Every failure returns to connected.
    """

    def __init__(self, server: AvatarServer, websocket: ServerConnection) -> None:
        self.server = server
        self.websocket = websocket
        self.pc: RTCPeerConnection | None = None
        self.stream: AvatarStream | None = None
        self.channel: Any = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.negotiating = False
        self.streaming = False
        self.upload: asyncio.Task[None] | None = None
        #: capture times of the client's camera and microphone (RTCP sender reports), per track
        self.sender_clocks: list[SenderClock] = []
        #: the handler of each client message class (``_dispatch``)
        self._handlers: dict[type, Callable[[Any, Reply], Awaitable[dict[str, Any] | None]]] = {
            Ping: self._on_ping,
            Offer: self._on_offer,
            Stop: self._on_stop,
            SetMode: self._on_mode,
            Control: self._on_control,
            Upload: self._on_upload,
            Presented: self._on_presented,
        }

    # -- messages -------------------------------------------------------------------------------
    async def send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.websocket.send(encode_message(message))

    def send_channel(self, message: dict[str, Any]) -> None:
        if self.channel is not None and self.channel.readyState == "open":
            self.channel.send(encode_message(message))

    async def _send_channel(self, message: dict[str, Any]) -> None:
        self.send_channel(message)

    async def handle(self, data: str | bytes, reply: Reply | None = None) -> dict[str, Any] | None:
        """One client message from any channel -> the reply (or None). Bad input gets an error reply,
        never a crash: every message goes through ``protocol.parse_message`` and every field is
        checked. Replies that come later (an upload's result) go to ``reply`` (default: the socket).
        """
        kind = "?"
        try:
            message = parse_message(data, max_bytes=self.server.config.max_message_bytes)
            kind = message["type"]
            return await self._dispatch(kind, message, reply or self.send)
        except (ValueError, KeyError, TypeError, PirenderError) as exc:
            return {"type": "error", "message": _error_text(exc)}
        except Exception:  # a fault of ours: logged, the client told, the connection kept
            log.exception("error handling a %r message", kind)
            return {"type": "error", "message": f"internal error while handling a {kind!r} message"}

    async def _dispatch(self, kind: str, message: dict[str, Any], reply: Reply) -> dict[str, Any] | None:
        """Check the message (``protocol.decode_client_message``) and run its handler (a table by
        message class). A stream message before an offer is refused before its fields are read."""
        if kind in STREAM_MESSAGES or kind not in CLIENT_MESSAGES:
            self.require_stream()  # an unknown type without a stream: "no stream yet" first
        decoded = decode_client_message(message)
        return await self._handlers[type(decoded)](decoded, reply)

    async def _on_ping(self, message: Ping, reply: Reply) -> dict[str, Any]:
        return {"type": "pong", "client_ms": message.client_ms, "server_ms": now_ms()}

    async def _on_offer(self, message: Offer, reply: Reply) -> dict[str, Any]:
        return await self.offer(message.sdp, message.mode)

    async def _on_stop(self, message: Stop, reply: Reply) -> None:
        await self.close()

    async def _on_mode(self, message: SetMode, reply: Reply) -> None:
        stream = self.require_stream()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.server.tracking, stream.build_mode, message.mode)
        if self.stream is stream:  # still the same stream after the build
            stream.set_mode(message.mode)

    async def _on_control(self, message: Control, reply: Reply) -> None:
        self.require_stream().sliders.set(message.slots)

    async def _on_upload(self, message: Upload, reply: Reply) -> None:
        self.require_stream()
        self.start_upload(message.image, reply)

    async def _on_presented(self, message: Presented, reply: Reply) -> None:
        stream = self.require_stream()
        if message.wall_offset_ms is not None:  # the page's wall clock, measured against ours
            for clock in self.sender_clocks:
                clock.wall_offset_s = message.wall_offset_ms / 1000
        for frame in message.frames:
            stream.presented(frame.pts, frame.presented_ms)

    def require_stream(self) -> AvatarStream:
        if self.stream is None:
            raise ProtocolError("no stream yet: send an offer first")
        return self.stream

    # -- uploads --------------------------------------------------------------------------------
    def start_upload(self, data_url: str, reply: Reply) -> None:
        """Prepare an uploaded portrait in the background: one upload at a time per client, at most
        ``max_queued_uploads`` waiting for the server's one upload worker. The result comes as
        ``{"type": "uploaded"}`` or an error on ``reply``; the client's other messages go on.

        Raises:
            ProtocolError: this client's previous upload is not done, or the queue is full.
        """
        if self.upload is not None and not self.upload.done():
            raise ProtocolError("an upload is already being prepared; wait for its reply")
        if self.server.uploads_waiting >= self.server.config.max_queued_uploads:
            raise ProtocolError("the server is busy preparing other portraits; try again in a moment")
        self.upload = self.spawn(self._upload(data_url, reply))

    async def _upload(self, data_url: str, reply: Reply) -> None:
        try:
            source, rest = await self.server.prepare_upload(data_url)
        except (ValueError, PirenderError) as exc:
            await reply({"type": "error", "message": _error_text(exc)})
            return
        except Exception:
            log.exception("error preparing an upload")
            await reply({"type": "error", "message": "internal error while preparing the upload"})
            return
        stream = self.stream
        if stream is not None:  # a face tracker or talk model for the new portrait: built off the loop
            sources = await asyncio.get_running_loop().run_in_executor(
                self.server.tracking, stream.sources_for, rest
            )
            if self.stream is stream:
                stream.set_source(source, rest, sources)
                await reply({"type": "uploaded"})
                return
        await reply({"type": "error", "message": "the stream ended before the upload was ready"})

    # -- WebRTC ---------------------------------------------------------------------------------
    async def offer(self, sdp: str, mode: Mode) -> dict[str, Any]:
        """Answer an SDP offer. The offer must have a video section the server can send on.

        Raises:
            ProtocolError: a bad mode, an invalid offer (what is missing is named), the server full,
                too many negotiations in progress. The peer's slot is given back on every failure.
        """
        if mode not in MODES:
            raise ProtocolError(f"mode must be one of {', '.join(MODES)}")
        if mode == "file" and self.server.motion_file is None:
            raise ProtocolError("no motion file on this server (pirender serve --motion FILE)")
        check_offer(sdp)
        if self.pc is not None:
            await self.close()
        config = self.server.config
        if self.server.active_streams() >= config.max_streams:
            raise ProtocolError(f"the server is full ({config.max_streams} streams)")
        if self.server.negotiations() >= config.max_negotiations:
            raise ProtocolError(
                f"{config.max_negotiations} connections are being set up; try again in a few seconds"
            )
        self.negotiating = True
        try:
            return await self._answer(sdp, mode)
        except ProtocolError:
            await self.close()
            raise
        except Exception as exc:  # aiortc's own refusals of an offer it cannot answer
            await self.close()
            raise ProtocolError(f"invalid SDP offer ({_error_text(exc)})") from None

    async def _answer(self, sdp: str, mode: Mode) -> dict[str, Any]:
        ice_servers = [RTCIceServer(urls=url) for url in self.server.config.stun_urls]
        self.pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=ice_servers))
        self.stream = stream = AvatarStream(
            self.server.service,
            self.server.source,
            self.server.rest,
            fps=self.server.config.fps,
            motion_file=self.server.motion_file,
        )
        await asyncio.get_running_loop().run_in_executor(self.server.tracking, stream.build_mode, mode)
        stream.set_mode(mode)

        @pc.on("datachannel")
        def on_datachannel(channel: Any) -> None:
            self.channel = channel

            @channel.on("message")
            def on_message(data: str | bytes) -> None:
                self.spawn(self._reply_on_channel(data))

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            sender_clock = SenderClock()
            for receiver in pc.getReceivers():
                if receiver.track is track:
                    sender_clock.attach(receiver)
            self.sender_clocks.append(sender_clock)
            if track.kind == "video":
                self.spawn(self._camera(track, sender_clock))
            elif track.kind == "audio":
                self.spawn(self._microphone(track, stream, sender_clock))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if self.pc is not pc:
                return
            if pc.connectionState == "connected":
                await self._admit()
            elif pc.connectionState in ("failed", "closed"):
                await self.close()

        if self.server.loopback:
            sdp = _without_mdns_candidates(sdp)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except Exception as exc:
            raise ProtocolError(f"invalid SDP offer ({_error_text(exc)})") from None
        pc.addTrack(AvatarTrack(stream, self))
        if any(t.kind == "audio" for t in pc.getTransceivers()):  # the client offered audio: send it back
            pc.addTrack(AvatarAudioTrack(stream))
        await pc.setLocalDescription(await pc.createAnswer())
        self.spawn(self._negotiation_deadline(pc))
        return {"type": "answer", "sdp": pc.localDescription.sdp}

    async def _admit(self) -> None:
        """The connection is up: the negotiation becomes a stream (a slot), if one is free."""
        if not self.negotiating:
            return
        self.negotiating = False
        if self.server.active_streams() >= self.server.config.max_streams:
            full = f"the server is full ({self.server.config.max_streams} streams)"
            await self.send({"type": "error", "message": full})
            await self.close()
            return
        self.streaming = True
        self.spawn(self._stats())

    async def _negotiation_deadline(self, pc: RTCPeerConnection) -> None:
        await asyncio.sleep(self.server.config.negotiation_timeout_s)
        if self.pc is pc and self.negotiating:
            late = f"the connection was not established within {self.server.config.negotiation_timeout_s:g} s"
            await self.send({"type": "error", "message": late})
            await self.close()

    async def _reply_on_channel(self, data: str | bytes) -> None:
        reply = await self.handle(data, self._send_channel)
        if reply is not None:
            self.send_channel(reply)

    async def _camera(self, track: MediaStreamTrack, sender_clock: SenderClock) -> None:
        """Browser camera frames -> the tracker, on its own thread; stale frames are dropped. Each
        frame's capture time is the browser's (its sender reports), or its arrival here before
        the first report."""
        frames: LatestQueue[tuple[np.ndarray, float, float]] = LatestQueue(maxsize=1)
        loop = asyncio.get_running_loop()

        async def track_frames() -> None:
            while True:
                rgb, time_s, captured_s = await frames.get()
                if self.stream is not None and self.stream.camera is not None:
                    camera = self.stream.camera
                    await loop.run_in_executor(self.server.tracking, camera.feed, rgb, time_s, captured_s)

        worker = self.spawn(track_frames())
        try:
            while True:
                frame = await track.recv()
                if not isinstance(frame, av.VideoFrame):  # a video track gives video frames
                    continue
                captured_s = _capture_time(sender_clock, frame)
                frames.put((frame.to_ndarray(format="rgb24"), float(frame.time or 0.0), captured_s))
        except MediaStreamError:
            pass
        finally:
            worker.cancel()

    async def _microphone(
        self, track: MediaStreamTrack, stream: AvatarStream, sender_clock: SenderClock
    ) -> None:
        """Browser microphone -> the stream's audio source (bounded ring, newest seconds kept), each
        frame stamped with its capture time (as the camera's)."""
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                stream.microphone.feed(frame, _capture_time(sender_clock, frame, audio=True))

    async def _stats(self) -> None:
        while self.stream is not None:
            await asyncio.sleep(1.0)
            if self.stream is None:
                break
            await self.send({"type": "stats", "mode": self.stream.mode, **self.stream.stats.summary()})

    def spawn(self, coroutine: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:  # retrieved: never "never retrieved"
            log.error("peer task failed", exc_info=task.exception())

    async def close(self) -> None:
        """Free everything of this peer (tasks, tracks, connection, its stream slot)."""
        pc, stream = self.pc, self.stream
        self.pc, self.stream, self.channel = None, None, None
        self.negotiating = self.streaming = False
        current = asyncio.current_task()
        for task in list(self.tasks):
            if task is not current:
                task.cancel()
        if pc is not None:
            await pc.close()
        if stream is not None:
            stream.close()


class AvatarServer:
    """The service: page, signaling websocket, streams, uploads; the exposure rules of the README
    ("Serving beyond this machine"): Host and Origin checks, the access token, loopback-only ICE."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.renderer = open_space_renderer(config.renderer, image_size_px=config.size_px)
        self.service = render_stage(config, self.renderer)
        self.tracking: ThreadPoolExecutor | None = None  # face tracking's own thread, made at start
        self.uploads: ThreadPoolExecutor | None = None  # the one upload worker, made at start
        self.uploads_waiting = 0  # uploads queued or in progress, all clients
        self.peers: set[Peer] = set()
        self.source: PreparedSource
        self.rest: np.ndarray
        self.motion_file: MotionSequence | None = None
        self.loopback = True  # decided at start from what the bind address resolves to
        self.token: str | None = None  # the token /ws requires, if any (decided at start)
        self._host_names: set[str] = set()
        self._server: Server | None = None

    def active_streams(self) -> int:
        """Streams whose connection is up (the slots ``max_streams`` limits)."""
        return sum(peer.streaming for peer in self.peers)

    def negotiations(self) -> int:
        """Offers answered whose connection is not up yet (limited by ``max_negotiations``)."""
        return sum(peer.negotiating for peer in self.peers)

    async def start(self) -> None:
        """Resolve the exposure rules, prepare the portrait, listen.

        Raises:
            PirenderError: the bind address does not resolve, the portrait or motion file is unusable.
        """
        self.loopback = bind_is_loopback(self.config.host)
        self.token = access_token(self.config, loopback=self.loopback)
        self._host_names = _own_host_names(self.config.host, self.config.allowed_hosts)
        if self.loopback:
            restrict_host_candidates(["127.0.0.1"])
        self.tracking = ThreadPoolExecutor(max_workers=1, thread_name_prefix="track")
        self.uploads = ThreadPoolExecutor(1, thread_name_prefix="upload", initializer=_lower_priority)
        self.service.start()
        if self.config.motion_file:
            self.motion_file = load_motion(self.config.motion_file)
            if self.motion_file.space != OPEN_SPACE:
                raise PirenderError(f"{self.config.motion_file}: the live server plays open-space motion")
        portrait = self.config.portrait or str(default_portrait())
        self.source = await self.service.prepare(crop_to_face(portrait, size_px=self.config.size_px))
        self.rest = self.renderer.rest_row(self.source)
        self._server = await serve(
            self._connection,
            self.config.host,
            self.config.port,
            process_request=self._http,
            max_size=self.config.max_message_bytes,
        )

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(next(iter(self._server.sockets)).getsockname()[1])

    def page_url(self) -> str:
        """The page's address, with the token in the URL fragment (never sent over HTTP) if one is
        required."""
        host = self.config.host
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        if ":" in shown:
            shown = f"[{shown.strip('[]')}]"
        fragment = f"#token={self.token}" if self.token else ""
        return f"http://{shown}:{self.port}/{fragment}"

    async def close(self) -> None:
        for peer in list(self.peers):
            await peer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await self.service.close()
        self.renderer.close()
        for executor in (self.tracking, self.uploads):
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)

    async def prepare_upload(self, data_url: str) -> tuple[PreparedSource, np.ndarray]:
        """A portrait from a data URL (size and type checked) -> prepared source and its rest row.

        Decoding (within ``upload_max_pixels``), the face crop and the renderer's preparation run on
        the one upload worker (a low-priority thread): never on the event loop, never on the render
        thread, one upload at a time for the whole server.

        Raises:
            ValueError: not a base64 data URL of an image; over :data:`MAX_UPLOAD_BYTES`.
            ImageError, PirenderError: the loader's and the face crop's refusals.
        """
        header, _, payload = data_url.partition(",")
        if not header.startswith("data:image/") or ";base64" not in header:
            raise ProtocolError("an upload is a base64 data URL of an image")
        if len(payload) * 3 // 4 > MAX_UPLOAD_BYTES:
            raise ProtocolError(f"the image is over the {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB upload limit")
        assert self.uploads is not None
        self.uploads_waiting += 1
        try:
            work = partial(self._prepare_upload, payload)
            return await asyncio.get_running_loop().run_in_executor(self.uploads, work)
        finally:
            self.uploads_waiting -= 1

    def _prepare_upload(self, payload: str) -> tuple[PreparedSource, np.ndarray]:
        try:
            raw = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError("the upload is not valid base64") from None
        portrait = upload_portrait(raw, size_px=self.config.size_px, max_pixels=self.config.upload_max_pixels)
        source = self.renderer.prepare(portrait)  # MeshRenderer.prepare: only this thread after start
        return source, self.renderer.rest_row(source)

    async def _connection(self, websocket: ServerConnection) -> None:
        peer = Peer(self, websocket)
        self.peers.add(peer)
        try:
            await peer.send(self.hello())
            async for data in websocket:
                reply = await peer.handle(data)
                if reply is not None:
                    await peer.send(reply)
        except ConnectionClosed:
            pass
        finally:
            self.peers.discard(peer)
            await peer.close()

    def hello(self) -> dict[str, Any]:
        """The ``hello`` message (``protocol.Hello``): slots, limits, the modes this server offers."""
        return Hello(
            slots=tuple(
                SlotInfo(name, low, high, default, unit)
                for name, (low, high, default, unit) in SLIDER_RANGES.items()
            ),
            limits=Limits(
                max_upload_bytes=MAX_UPLOAD_BYTES,
                max_message_bytes=self.config.max_message_bytes,
                max_upload_pixels=self.config.upload_max_pixels,
            ),
            modes=tuple(m for m in MODES if m != "file" or self.motion_file is not None),
            fps=self.config.fps,
        ).to_json()

    # -- HTTP -----------------------------------------------------------------------------------
    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        """Serve ``web_client/`` (GET and HEAD); let ``/ws`` upgrade to a websocket after the Host,
        Origin and token checks. Every refusal is a plain HTTP status, never a 500."""
        if request.method not in ("GET", "HEAD"):
            response = connection.respond(405, "method not allowed\n")
            response.headers["Allow"] = "GET, HEAD"
            return response
        if len(request.path) > MAX_URL_CHARS:
            return connection.respond(414, "URI too long\n")
        host = request.headers.get("Host", "")
        if not host:
            return connection.respond(400, "a Host header is required\n")
        if not self._host_allowed(host):
            return connection.respond(403, "forbidden host (add it with pirender serve --allow-host)\n")
        target = urlsplit(request.path)
        if target.path == "/ws":
            if request.method != "GET":
                response = connection.respond(405, "method not allowed\n")
                response.headers["Allow"] = "GET"
                return response
            origin = request.headers.get("Origin")
            if origin is not None and not self._origin_allowed(origin, host):
                return connection.respond(403, "forbidden origin (allow it: pirender serve --allow-origin)\n")
            if self.token is not None and not self._token_given(request, target.query):
                return connection.respond(401, "an access token is required (open the URL serve printed)\n")
            return None
        file = self._static_file(target.path)
        if file is None:
            return connection.respond(404, "not found\n")
        body = file.read_bytes()
        content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))),
                           ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"),
                           ("Referrer-Policy", "no-referrer")])  # fmt: skip
        return Response(200, "OK", headers, b"" if request.method == "HEAD" else body)

    def _static_file(self, path: str) -> Path | None:
        """The file of ``web_client/`` a URL path names, or None (outside it, odd or missing)."""
        relative = "index.html" if path in ("", "/") else path.lstrip("/")
        segments = relative.split("/")
        if any(len(part) > MAX_SEGMENT_CHARS or not _SAFE_SEGMENT.match(part) or part in (".", "..")
               for part in segments):  # fmt: skip
            return None
        root = self.config.web_root.resolve()
        try:
            target = (root / relative).resolve()
            return target if target.is_relative_to(root) and target.is_file() else None
        except (OSError, ValueError):
            return None

    def _host_allowed(self, host: str) -> bool:
        """The Host header names this server: an IP literal, localhost, this machine's names or an
        ``allowed_hosts`` entry (a page reached by DNS rebinding carries the attacker's name)."""
        name = _host_name(host)
        return bool(name) and (is_ip_literal(name) or name in self._host_names)

    def _origin_allowed(self, origin: str, host: str) -> bool:
        """A browser page may open /ws only from this server's own origin or an allowed one."""
        wanted = origin.rstrip("/").lower()
        if wanted in (o.rstrip("/").lower() for o in self.config.allowed_origins):
            return True
        return wanted in (f"http://{host.lower()}", f"https://{host.lower()}")

    def _token_given(self, request: Request, query: str) -> bool:
        assert self.token is not None
        given = parse_qs(query).get("token", [""])[0]
        authorization = request.headers.get("Authorization", "")
        if authorization.startswith("Bearer "):
            given = authorization[len("Bearer ") :].strip()
        return hmac.compare_digest(given.encode(), self.token.encode())


def access_token(config: ServerConfig, *, loopback: bool) -> str | None:
    """The token /ws requires: ``config.token`` or a new random one (192 bits, URL-safe) when a token
    is required, None when not. Required by default exactly when the bind address is not loopback;
    ``config.require_token`` overrides (a given ``config.token`` alone also turns it on)."""
    require = config.require_token
    if require is None:
        require = not loopback or config.token is not None
    return (config.token or secrets.token_urlsafe(24)) if require else None


def check_offer(sdp: str) -> None:
    """An SDP offer the server can answer: a session description with a video section (``m=video``)
    the server may send on (``recvonly`` or ``sendrecv``, not rejected with port 0).

    Raises:
        ProtocolError: naming what is missing.
    """
    lines = [line.strip() for line in sdp.splitlines()]
    if not lines or not lines[0].startswith("v="):
        raise ProtocolError("invalid SDP offer: it must start with 'v=0'")
    sections: list[list[str]] = []
    for line in lines:
        if line.startswith("m="):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
    videos = [section for section in sections if section[0].startswith("m=video ")]
    if not videos:
        found = ", ".join(section[0].split()[0][2:] for section in sections) or "no media sections"
        raise ProtocolError(
            f"invalid SDP offer: it has no video section (m=video; found: {found}); the avatar is sent "
            "as video: add a video transceiver (direction recvonly)"
        )
    for section in videos:
        parts = section[0].split()
        directions = {"a=sendonly", "a=inactive"} & set(section[1:])
        if len(parts) > 1 and parts[1] != "0" and not directions:
            return
    raise ProtocolError(
        "invalid SDP offer: its video section does not receive (sendonly, inactive or port 0); "
        "offer the video as recvonly or sendrecv"
    )


def is_ip_literal(name: str) -> bool:
    """Whether a host name is an IP address literal (a DNS rebinding page cannot use one)."""
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def _host_name(host: str) -> str:
    """The name of a Host header, lower case, without the port: ``[::1]:8080`` -> ``[::1]``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else ""
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _own_host_names(bind_host: str, allowed: list[str]) -> set[str]:
    names = {"localhost", bind_host.lower().strip("[]"), *(name.lower() for name in allowed)}
    with contextlib.suppress(OSError):
        names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
    return names


def _lower_priority() -> None:
    """Upload worker initializer: a lower CPU priority for this thread only (Linux nice values are
    per thread), so decoding a photo yields the CPU to the streams' render and encode threads."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), UPLOAD_NICE)


_MAX_UPLINK_S = 10.0  # a capture time further back than this is a clock mismatch, not latency


def _capture_time(sender_clock: SenderClock, frame: Any, *, audio: bool = False) -> float:
    """When a frame that arrived now was captured (``engine.clock``, s): from its sender's reports,
    or its arrival (for audio: the arrival of its first sample) when they cannot place it (no report
    yet, or a time after the arrival or more than :data:`_MAX_UPLINK_S` before it)."""
    arrived_s = now_s()
    if audio:
        arrived_s -= frame.samples / frame.sample_rate
    captured_s = sender_clock.captured_s(frame.pts, frame.time_base)
    if captured_s is None or not arrived_s - _MAX_UPLINK_S <= captured_s <= arrived_s:
        return arrived_s
    return captured_s


def _error_text(exc: BaseException) -> str:
    """An error's message as the client sees it: the text of our own errors, the kind and text of
    a library's."""
    if isinstance(exc, ProtocolError | PirenderError):
        return str(exc)
    if isinstance(exc, KeyError):
        return f"the field {exc} is missing"
    return f"{type(exc).__name__}: {exc}"


def upload_portrait(raw: bytes, *, size_px: int, max_pixels: int = UPLOAD_MAX_PIXELS) -> SourceImage:
    """An uploaded picture's encoded bytes -> the portrait framed on its face, as ``--face-crop`` frames a
    file: the one loader (``image.read_image``: EXIF rotation, transparency over white, 16-bit, the
    size rule; formats limited to :data:`UPLOAD_FORMATS`; formats decoded in full limited to
    ``max_pixels``, refused from the header before any decoding) and ``track.crop.crop_to_face``.

    Raises:
        ImageError: not a readable picture, a format not accepted, too many pixels, no human face.
    """
    picture = read_image(raw, label="uploaded image", formats=UPLOAD_FORMATS, max_pixels=max_pixels)
    return crop_to_face(picture, size_px=size_px)


def _without_mdns_candidates(sdp: str) -> str:
    """Drop ``*.local`` (mDNS) candidates: resolving them would send multicast onto the LAN, which a
    server bound to loopback must never do; the loopback candidates connect without them."""
    lines = sdp.splitlines()
    kept = [line for line in lines if not (line.startswith("a=candidate:") and ".local " in line)]
    return "\r\n".join(kept) + "\r\n"


async def serve_forever(config: ServerConfig) -> None:
    """Run the server until cancelled, saying at start-up how it is exposed."""
    server = AvatarServer(config)
    await server.start()
    if not server.loopback:
        print(f"pirender serve: listening on {config.host}, reachable from other machines", flush=True)
        if server.token is None:
            print("pirender serve: WARNING: no access token (--no-token): anyone who reaches this port "
                  "controls the avatar", flush=True)  # fmt: skip
        else:
            print("pirender serve: an access token is required; the URL below carries it", flush=True)
    print(f"pirender serve: open {server.page_url()} (Ctrl-C stops)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = []
    for signum in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C and SIGTERM: a clean stop, streams closed
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
            handled.append(signum)
    try:
        await stop.wait()
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
        await server.close()
    print("pirender serve: stopped", flush=True)
