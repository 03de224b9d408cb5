"""The render stage as a Ray Serve deployment: streams of many front ends, replicas across machines.

``pirender serve --render ray://HOST:10001`` keeps the front end thin (signaling, aiortc, tracking,
encoding) and sends each frame's (portrait, window) to the deployment :data:`APP_NAME` of a Ray
cluster. There, the replicas (:class:`_RenderReplica`, one per GPU, or per ``num_cpus`` cores) render
with the same open-space renderer as in-process, batching the requests of all the streams they serve
(``@serve.batch``, bounded wait); Serve scales the replica count on the requests queued per replica.

**Session affinity.** Every request of a stream carries the stream's session (its portrait, named by
a hash of its pixels, and the stream) as its Serve multiplexed-model id, so Serve sends a new session
to a lightly loaded replica and keeps it there (``@serve.multiplexed``: the least recently used of
:data:`SESSIONS_PER_REPLICA` forgotten). A replica prepares each portrait once, however many of its
sessions show it, and renders those sessions' frames together. The portrait's pixels travel once,
through Ray's object store; a replica that has not seen a portrait fetches them from there and
prepares it. If the replica dies, :class:`RayRenderService` retries the frame (Serve routes it to a
live replica, which prepares the portrait from the object store) until
:attr:`RayRenderConfig.retry_s` runs out.

Ray is an optional dependency (``pip install 'pirender-live[ray]'``): only this module imports it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from ..errors import PirenderError
from ..image import SourceImage
from ..renderer.base import PreparedSource, Renderer
from .batcher import render_windows
from .ray_address import LOOPBACK_ENV, check_reachable, enable_client_token_auth, needs_loopback_node

enable_client_token_auth()  # before Ray is imported (a front end calls ray_address.prepare_environment)

try:
    import ray
    from ray import serve
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
    from ray.serve.handle import DeploymentHandle
except ImportError:  # pragma: no cover - the message below is the behaviour
    raise PirenderError(
        "rendering on a Ray cluster needs Ray Serve: pip install 'pirender-live[ray]'"
    ) from None

log = logging.getLogger("pirender.ray")

#: the Serve application (and deployment) name front ends look for
APP_NAME = "pirender-render"
#: sessions (a stream of a portrait) a replica keeps (the least recently used is forgotten beyond)
SESSIONS_PER_REPLICA = 64
#: prepared portraits a replica keeps (the least recently used is forgotten beyond)
PORTRAITS_PER_REPLICA = 32


@dataclass
class RayRenderConfig:
    """The render deployment (one replica = one renderer) and how a front end uses it.

    Attributes:
        renderer: ``mesh`` or ``neural`` (``api.open_space_renderer``).
        size_px: frame side (256 or 512).
        min_replicas, max_replicas: Serve's autoscaling bounds (equal: a fixed count).
        target_queued: requests in flight per replica Serve aims at when scaling (queue length).
        upscale_delay_s: how long the queues must stay above the target before Serve adds replicas.
        num_cpus: CPU cores reserved per replica (also its torch threads, at least 1).
        num_gpus: GPUs per replica (1: one replica pinned per GPU; the renderer runs on ``cuda``).
        max_batch: most requests rendered in one call per replica.
        batch_wait_ms: how long a replica waits for more requests after the first one.
        retry_s: how long a front end retries a frame whose replica died before failing the stream.
    """

    renderer: str = "mesh"
    size_px: int = 256
    min_replicas: int = 1
    max_replicas: int = 1
    target_queued: float = 4.0
    upscale_delay_s: float = 10.0
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    max_batch: int = 16
    batch_wait_ms: float = 2.0
    retry_s: float = 30.0

    def __post_init__(self) -> None:
        if not 1 <= self.min_replicas <= self.max_replicas:
            bounds = f"{self.min_replicas}..{self.max_replicas}"
            raise PirenderError(f"replicas: need 1 <= min <= max, got {bounds}")
        if self.num_cpus <= 0 or self.num_gpus < 0:
            raise PirenderError("a replica needs num_cpus > 0 and num_gpus >= 0")
        if self.max_batch < 1 or self.batch_wait_ms < 0 or self.retry_s <= 0:
            raise PirenderError("max_batch >= 1, batch_wait_ms >= 0 and retry_s > 0 are required")


@dataclass(frozen=True)
class RenderReply:
    """One frame from the deployment: ``rgb`` (H, W, 3) uint8 and the replica that drew it."""

    rgb: np.ndarray
    replica: str


def portrait_key(image: SourceImage) -> str:
    """The id of a portrait on the cluster: a hash of its size and pixels (hex, 32 characters)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(np.asarray(image.rgb.shape, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(image.rgb).data)
    return digest.hexdigest()


_Work = tuple[PreparedSource, np.ndarray]  # a portrait and one window (width, T) to render


class _RenderReplica:
    """One replica of the render deployment (wrapped by ``serve.deployment`` in :func:`render_app`).

    Requests: :meth:`render` ``(session, [image ref], window (width, T) float32) -> RenderReply``;
    :meth:`describe` its config. The renderer runs on one worker thread (it is not re-entrant), never
    on the replica's event loop.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        from ..api import load_renderer

        self.config = RayRenderConfig(**config)
        import torch

        torch.set_num_threads(max(1, int(self.config.num_cpus)))
        device = "cuda" if self.config.num_gpus > 0 else "cpu"
        self.renderer: Renderer = load_renderer(
            backend=self.config.renderer, image_size_px=self.config.size_px, device=device
        )
        self.replica = serve.get_replica_context().replica_id.unique_id
        self._images: OrderedDict[str, Any] = OrderedDict()  # portrait key -> its pixels' object ref
        self._prepared: OrderedDict[str, PreparedSource] = OrderedDict()  # portrait key -> prepared
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="render")
        batching: Any = self._render_batch  # serve.batch's wrapper (its stubs omit the setters)
        batching.set_max_batch_size(self.config.max_batch)
        batching.set_batch_wait_timeout_s(self.config.batch_wait_ms / 1000)

    @serve.multiplexed(max_num_models_per_replica=SESSIONS_PER_REPLICA)
    async def _session(self, session: str) -> PreparedSource:
        """The portrait of ``session`` (``KEY/STREAM``) prepared on this replica: once per portrait,
        shared by its sessions here (Serve reports the session loaded, for routing)."""
        key = session.split("/")[0]
        prepared = self._prepared.get(key)
        if prepared is None:
            image: SourceImage = await self._images[key]
            loop = asyncio.get_running_loop()
            prepared = await loop.run_in_executor(self._executor, self.renderer.prepare, image)
            self._prepared[key] = prepared
            while len(self._prepared) > PORTRAITS_PER_REPLICA:
                self._prepared.popitem(last=False)
        self._prepared.move_to_end(key)
        return prepared

    async def render(self, session: str, image: list[Any], window: np.ndarray) -> RenderReply:
        """The frame of ``window`` (width, T) for ``session`` (``KEY/STREAM``: the portrait ``KEY``,
        pixels at ``image[0]``, an object ref in a list so that Ray does not fetch it every frame)."""
        key = session.split("/")[0]
        self._images[key] = image[0]
        self._images.move_to_end(key)
        while len(self._images) > 4 * PORTRAITS_PER_REPLICA:
            self._images.popitem(last=False)
        prepared = await self._session(session)
        rgb = await self._render_batch((prepared, window))
        return RenderReply(rgb, self.replica)

    def describe(self) -> dict[str, Any]:
        """This deployment's :class:`RayRenderConfig` (as a dict): front ends check they match it."""
        return asdict(self.config)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def _render_batch(self, requests: list[_Work]) -> list[np.ndarray]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._render_groups, requests)

    def _render_groups(self, requests: Sequence[_Work]) -> list[np.ndarray]:
        """Render the requests of each portrait in one call; the frames in request order."""
        groups: dict[int, list[int]] = {}
        for index, (source, _) in enumerate(requests):
            groups.setdefault(id(source), []).append(index)
        frames: list[np.ndarray] = [np.empty(0, np.uint8)] * len(requests)
        for indices in groups.values():
            windows = [requests[i][1] for i in indices]
            rendered = render_windows(self.renderer, requests[indices[0]][0], windows)
            for i, frame in zip(indices, rendered, strict=True):
                frames[i] = frame
        return frames


def render_app(config: RayRenderConfig) -> Any:
    """The Serve application of the render deployment, ready for ``serve.run``."""
    autoscaling = None
    options: dict[str, Any] = {"num_replicas": config.min_replicas}
    if config.max_replicas > config.min_replicas:
        autoscaling = {
            "min_replicas": config.min_replicas,
            "max_replicas": config.max_replicas,
            "target_ongoing_requests": config.target_queued,
            "upscale_delay_s": config.upscale_delay_s,
        }
        options = {"autoscaling_config": autoscaling}
    deployment = serve.deployment(
        name=APP_NAME,
        ray_actor_options={"num_cpus": config.num_cpus, "num_gpus": config.num_gpus},
        max_ongoing_requests=max(config.max_batch * 4, 32),
        health_check_period_s=2.0,
        health_check_timeout_s=10.0,
        **options,
    )(_RenderReplica)
    return deployment.bind(asdict(config))


def build_app(args: dict[str, Any]) -> Any:
    """Serve's application builder (``serve run pirender.engine.stream.ray_render:build_app
    renderer=neural num_gpus=1``, or KubeRay's ``RayService`` ``import_path`` with ``args``): the
    render deployment of ``RayRenderConfig(**args)``, the strings of a command line converted.

    Raises:
        PirenderError: an unknown or invalid option.
    """
    known = {f.name: f.type for f in fields(RayRenderConfig)}
    unknown = sorted(set(args) - set(known))
    if unknown:
        raise PirenderError(f"unknown render deployment options {unknown} (known: {', '.join(known)})")
    defaults = RayRenderConfig()
    typed = {name: type(getattr(defaults, name))(value) for name, value in args.items()}
    return render_app(RayRenderConfig(**typed))


def connect(address: str, *, local_cpus: int | None = None) -> None:
    """Join the Ray cluster at ``address`` as a driver (no-op when already joined).

    ``address``: ``ray://HOST:PORT`` (Ray Client, from any machine: the head's client port, 10001 by
    default), ``HOST:PORT`` (the head's GCS port, 6379, from a machine of the cluster), ``auto`` (the
    cluster this machine belongs to) or ``local`` (a new one-machine cluster owned by this process,
    bound to 127.0.0.1: for tests and development; ``local_cpus`` cores).

    Raises:
        PirenderError: no cluster answers at ``address``.
    """
    if ray.is_initialized():
        return
    if needs_loopback_node(address) and os.environ.get(LOOPBACK_ENV) != "0":
        raise PirenderError(
            f"Ray reaches a cluster on 127.0.0.1 ({address}) only with {LOOPBACK_ENV}=0 set before Ray "
            "is imported (stream.ray_address.prepare_environment does it; pirender serve and bench call it)"
        )
    check_reachable(address)
    kwargs: dict[str, Any] = {"log_to_driver": False}
    if address == "local":
        kwargs.update(include_dashboard=False, num_cpus=local_cpus, _node_ip_address="127.0.0.1")
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise PirenderError(
            f"no Ray cluster at {address!r}: {exc} (start one: make ray-up; a cluster with token "
            "authentication needs its token on this machine: RAY_AUTH_TOKEN=<`ray get-auth-token` on the "
            "head>, README: Scale-out with Ray Serve)"
        ) from None


def shutdown_local() -> None:
    """Stop Serve and leave the cluster (the one :func:`connect` ``("local")`` made ends with it)."""
    serve.shutdown()
    ray.shutdown()


def deploy(config: RayRenderConfig, *, replace: bool = False) -> DeploymentHandle:
    """The handle of the render deployment on the joined cluster: the running one, or ``config``
    deployed (``replace``: redeploy with ``config`` even if one runs). Blocks until it is ready.

    Raises:
        PirenderError: the running deployment draws other frames (renderer, size) than ``config``.
    """
    if not replace:
        try:
            handle: DeploymentHandle = serve.get_app_handle(APP_NAME)
        except Exception:  # Serve not started or no such application: deploy it
            pass
        else:
            _check_running(handle, config)
            return handle
    serve.start(proxy_location="Disabled")  # handles only: no HTTP proxy listens anywhere
    return serve.run(render_app(config), name=APP_NAME, route_prefix=None)


def _check_running(handle: DeploymentHandle, config: RayRenderConfig) -> None:
    """Refuse a running deployment whose frames differ from ``config``'s; say which of its scaling
    settings (kept) differ."""
    running = handle.options(method_name="describe").remote().result(timeout_s=60)
    drawn = {key: running[key] for key in ("renderer", "size_px")}
    wanted = {key: getattr(config, key) for key in drawn}
    if drawn != wanted:
        raise PirenderError(
            f"the running render deployment {APP_NAME!r} draws {drawn['renderer']} frames at "
            f"{drawn['size_px']} px and this front end needs {wanted['renderer']} at {wanted['size_px']} px: "
            f"give the same --renderer and --size, or delete it first (serve delete {APP_NAME})"
        )
    scaling = ("min_replicas", "max_replicas", "num_cpus", "num_gpus", "max_batch")
    differ = [
        f"{key} {running[key]} (asked {getattr(config, key)})"
        for key in scaling
        if running[key] != getattr(config, key)
    ]
    if differ:
        log.warning("the running render deployment is kept as it is: %s", ", ".join(differ))


def replica_actor_names() -> list[str]:
    """The actor names of the render deployment's live replicas (namespace ``serve``)."""
    actors = ray.util.list_named_actors(all_namespaces=True)
    prefix = f"SERVE_REPLICA::{APP_NAME}#"
    return [a["name"] for a in actors if a["namespace"] == "serve" and a["name"].startswith(prefix)]


@dataclass
class _Portrait:
    source: PreparedSource  # kept so that its id is never reused while registered
    key: str
    image_ref: Any


@dataclass
class RayStats:
    """What a front end saw of the cluster: frames, retried frames (their replica died), the longest
    wait a retry caused (s) and the replicas that drew each session's frames (``KEY/STREAM``; newest
    1000)."""

    frames: int = 0
    retries: int = 0
    longest_recovery_s: float = 0.0
    replicas: dict[str, deque[str]] = field(default_factory=dict)


class RayRenderService:
    """The server's render stage on a Ray cluster (the ``FrameService`` of ``stream.batcher``).

    :meth:`prepare` prepares the portrait here too (the front end needs its rest row) and sends its
    pixels to the object store once; :meth:`render` sends (session, window) to the deployment and
    awaits the frame, retrying on another replica when the one serving the stream dies.

    Args:
        renderer: the front end's own renderer (the same ``renderer``/``size_px`` as the deployment),
            for preparation only.
        address: the cluster (:func:`connect`).
        config: the deployment to start when none runs (:func:`deploy`).
    """

    def __init__(self, renderer: Renderer, address: str, config: RayRenderConfig | None = None) -> None:
        self.renderer, self.address = renderer, address
        self.config = config or RayRenderConfig(size_px=renderer.image_size_px)
        self.stats = RayStats()
        self._handle: DeploymentHandle | None = None
        self._portraits: OrderedDict[int, _Portrait] = OrderedDict()  # by id(PreparedSource)
        self._sessions: OrderedDict[str, DeploymentHandle] = OrderedDict()  # KEY/STREAM -> its handle
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ray-prepare")

    def start(self) -> None:
        """Nothing to start here: the cluster is joined by the first :meth:`prepare`."""

    async def close(self) -> None:
        """Forget the portraits (the deployment keeps running for other front ends)."""
        self._portraits.clear()
        self._sessions.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def prepare(self, image: SourceImage) -> PreparedSource:
        """Join the cluster (first call), prepare ``image`` here and register it with the cluster.

        Raises:
            PirenderError: no cluster, or the deployment cannot start.
        """
        loop = asyncio.get_running_loop()
        if self._handle is None:
            self._handle = await loop.run_in_executor(self._executor, self._connect)
        prepared = await loop.run_in_executor(self._executor, self.renderer.prepare, image)
        self._register(prepared)
        return prepared

    def _connect(self) -> DeploymentHandle:
        connect(self.address)
        return deploy(self.config)

    def _register(self, prepared: PreparedSource) -> _Portrait:
        known = self._portraits.get(id(prepared))
        if known is not None and known.source is prepared:
            self._portraits.move_to_end(id(prepared))
            return known
        assert self._handle is not None, "prepare() joins the cluster first"
        portrait = _Portrait(prepared, portrait_key(prepared.image), ray.put(prepared.image))
        self._portraits[id(prepared)] = portrait
        while len(self._portraits) > 4 * PORTRAITS_PER_REPLICA:  # bounded: the oldest portraits go
            self._portraits.popitem(last=False)
        return portrait

    def _session_handle(self, session: str) -> DeploymentHandle:
        handle = self._sessions.get(session)
        if handle is None:
            assert self._handle is not None, "prepare() joins the cluster first"
            handle = self._handle.options(method_name="render", multiplexed_model_id=session)
            self._sessions[session] = handle
            while len(self._sessions) > 4 * SESSIONS_PER_REPLICA:  # bounded: the oldest sessions go
                self._sessions.popitem(last=False)
        self._sessions.move_to_end(session)
        return handle

    async def render(self, source: PreparedSource, window: np.ndarray, *, stream: int = 0) -> np.ndarray:
        """The frame (H, W, 3) uint8 of ``window`` (width, T) for ``source`` (prepared by any
        renderer of the same kind: an upload is registered on first use) in ``stream`` (the
        session's replica keeps serving it).

        Raises:
            PirenderError: no replica rendered the frame within ``config.retry_s``.
        """
        portrait = self._register(source)
        session = f"{portrait.key}/{stream:x}"
        handle = self._session_handle(session)
        started = time.monotonic()
        retried = False
        while True:
            try:
                reply: RenderReply = await handle.remote(session, [portrait.image_ref], window)
                break
            except (RayActorError, ActorDiedError, ActorUnavailableError) as exc:
                waited = time.monotonic() - started
                if waited > self.config.retry_s:
                    raise PirenderError(f"no render replica answered for {waited:.0f} s: {exc}") from exc
                self.stats.retries += 1
                retried = True
                await asyncio.sleep(0.05)
        size = self.renderer.image_size_px
        if reply.rgb.shape != (size, size, 3):
            raise PirenderError(
                f"the render deployment {APP_NAME!r} draws {reply.rgb.shape[1]}x{reply.rgb.shape[0]} frames "
                f"and this front end serves {size}x{size}: give the same --size and --renderer, or "
                f"delete the deployment (serve delete {APP_NAME}) so that this front end deploys its own"
            )
        if retried:
            self.stats.longest_recovery_s = max(self.stats.longest_recovery_s, time.monotonic() - started)
        self.stats.frames += 1
        self.stats.replicas.setdefault(session, deque(maxlen=1000)).append(reply.replica)
        return reply.rgb
