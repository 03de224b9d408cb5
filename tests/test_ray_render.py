"""The render stage on a Ray Serve deployment (``stream.ray_render``): a one-machine Ray cluster on
127.0.0.1 with two CPU replicas renders the server's streams exactly as this process does, keeps each
stream on the replica that prepared its portrait, and loses no stream when that replica dies."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # Ray's node address: 127.0.0.1 (read at import)
os.environ.setdefault("RAY_AUTH_MODE", "token")  # every cluster of this module: token authentication
pytest.importorskip("ray.serve", reason="Ray Serve is not installed (pip install 'pirender-live[ray]')")
pytest.importorskip("tflite", reason="the mesh renderer's face models need the tflite package")

import ray
from ray import serve

from pirender.engine.api import default_portrait, open_space_renderer
from pirender.engine.errors import PirenderError
from pirender.engine.image import SourceImage
from pirender.engine.motion.edit import demo_open_motion
from pirender.engine.motion.retarget import OpenRetargeter, frontal_rest_row
from pirender.engine.motion.space import OPEN_SPACE
from pirender.engine.motion.window import StreamWindow, WindowSpec
from pirender.engine.pipeline import FrameSlot, LivePipeline, SourcePaced, TimedMotion
from pirender.engine.renderer.mesh.renderer import MeshRenderer
from pirender.engine.stream import ray_render
from pirender.engine.stream.batcher import FrameService, RenderService
from pirender.engine.track.crop import crop_to_face

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

FRAMES = 24
#: a frame whose replica is killed is re-rendered by another replica within this (s): the dead
#: replica is seen at once (its requests fail), the portrait is prepared again from the object store
RECOVERY_BOUND_S = 10.0


class ScriptedMotion:
    """The demo motion on a portrait, one row per slot (deterministic: slot index -> row)."""

    def __init__(self, rest: np.ndarray) -> None:
        retarget = OpenRetargeter(frontal_rest_row(), rest)
        self._rows = [retarget(row) for row in demo_open_motion(frames=FRAMES * 4, fps=25.0).values]

    def motion(self, slot: FrameSlot) -> TimedMotion:
        return TimedMotion(self._rows[slot.index % len(self._rows)], slot.index / 25.0, slot.due_s)


@pytest.fixture(scope="module")
def renderer() -> Iterator[MeshRenderer]:
    with open_space_renderer("mesh") as mesh:
        yield mesh


@pytest.fixture(scope="module")
def portraits() -> list[SourceImage]:
    grace = crop_to_face(str(default_portrait()), size_px=256)
    mirrored = replace(grace, rgb=np.ascontiguousarray(grace.rgb[:, ::-1]), path=None)
    return [grace, mirrored]


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    """A new Ray cluster of this process on 127.0.0.1 (2 CPUs), shut down after the module."""
    assert not ray.is_initialized(), "another test left Ray running"
    ray_render.connect("local", local_cpus=2)
    try:
        yield
    finally:
        serve.shutdown()
        ray.shutdown()


async def _stream(
    service: FrameService, renderer: MeshRenderer, image: SourceImage, frames: int
) -> list[np.ndarray]:
    prepared = await service.prepare(image)
    window = StreamWindow(OPEN_SPACE, WindowSpec(radius=0, lookahead_frames=0))
    source = ScriptedMotion(renderer.rest_row(prepared))
    pipeline = LivePipeline(source, window, service, prepared, clock=SourcePaced())
    out = []
    for _ in range(frames):
        frame = await pipeline.pull()
        assert frame is not None
        out.append(frame.rgb)
    return out


def test_bench_measures_the_ray_hop_beside_this_process(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """``pirender bench --streams mesh --streams-render local:2``: the same stream counts in this
    process and through a one-machine cluster (started and stopped by the command)."""
    from pirender.training.cli import main

    out = tmp_path / "streams.json"
    args = ["bench", "--streams", "mesh", "--streams-only", "--streams-seconds", "0.5"]
    assert main([*args, "--streams-render", "local:2", "--json", str(out)]) == 0
    assert not ray.is_initialized()  # the command's own cluster is gone
    import json

    streams = json.loads(out.read_text())["streams"]
    here, there = streams["latency_by_count"], streams["ray"]["latency_by_count"]
    assert set(there) <= set(here) and there
    for latency in [*here.values(), *there.values()]:
        render = latency["render_ms"]
        assert 0 < render["p50"] <= render["p90"] <= render["p99"]
    assert "the Ray hop, 1 stream(s): render stage p50" in capsys.readouterr().out


def test_bench_and_serve_refuse_bad_ray_options(capsys) -> None:  # type: ignore[no-untyped-def]
    from pirender.engine.cli.commands import replica_bounds
    from pirender.training.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--streams", "torch fp32", "--streams-render", "local:2"])
    assert exit_info.value.code == 2 and "the Ray deployment renders" in capsys.readouterr().err
    assert replica_bounds("3") == (3, 3) and replica_bounds("1:4") == (1, 4)
    for bad in ("0", "4:1", "two", "1:"):
        with pytest.raises(PirenderError, match="--render-replicas"):
            replica_bounds(bad)
    with pytest.raises(PirenderError, match="min <= max"):
        ray_render.RayRenderConfig(min_replicas=3, max_replicas=2)
    with pytest.raises(PirenderError, match="unknown render deployment options"):
        ray_render.build_app({"replicas": "2"})
    app = ray_render.build_app({"renderer": "mesh", "max_replicas": "4", "num_cpus": "0.5"})
    assert type(app).__name__ == "Application"


def test_the_cluster_binds_the_loopback_only(cluster: None) -> None:
    node = ray._private.worker.global_worker.node  # where its services listen
    assert node.node_ip_address == "127.0.0.1"
    assert node.gcs_address.startswith("127.0.0.1:")


def test_two_streams_on_two_replicas_render_what_this_process_renders(
    cluster: None, renderer: MeshRenderer, portraits: list[SourceImage]
) -> None:
    config = ray_render.RayRenderConfig(min_replicas=2, max_replicas=2, num_cpus=0.5)

    async def both(service: FrameService) -> list[list[np.ndarray]]:
        try:
            return list(await asyncio.gather(*(_stream(service, renderer, p, FRAMES) for p in portraits)))
        finally:
            await service.close()

    remote = ray_render.RayRenderService(renderer, "local", config)
    on_ray = asyncio.run(both(remote))
    here = asyncio.run(both(RenderService(renderer)))
    assert len(ray_render.replica_actor_names()) == 2
    for ray_frames, local_frames in zip(on_ray, here, strict=True):
        assert len(ray_frames) == len(local_frames) == FRAMES
        for a, b in zip(ray_frames, local_frames, strict=True):
            assert a.shape == b.shape == (256, 256, 3)
            assert np.abs(a.astype(np.int16) - b).max() <= 1  # the same renderer, batched differently
    assert not np.array_equal(on_ray[0][0], on_ray[1][0])  # two portraits, two different streams
    # session affinity: once its portrait is prepared, each stream's frames stay on one replica
    assert len(remote.stats.replicas) == 2  # two sessions (portrait, stream)
    for served in remote.stats.replicas.values():
        later = Counter(list(served)[FRAMES // 2 :])
        assert later.most_common(1)[0][1] >= 0.8 * len(later), served
    assert remote.stats.retries == 0


def test_a_stream_survives_the_death_of_its_replica(
    cluster: None, renderer: MeshRenderer, portraits: list[SourceImage]
) -> None:
    config = ray_render.RayRenderConfig(min_replicas=2, max_replicas=2, num_cpus=0.5)
    service = ray_render.RayRenderService(renderer, "local", config)

    async def run() -> tuple[list[float], float]:
        prepared = await service.prepare(portraits[0])
        window = StreamWindow(OPEN_SPACE, WindowSpec(radius=0, lookahead_frames=0))
        pipeline = LivePipeline(ScriptedMotion(renderer.rest_row(prepared)), window, service, prepared)
        times: list[float] = []
        killed_at = 0.0
        for index in range(3 * FRAMES):
            pulled = asyncio.ensure_future(pipeline.pull())
            if index == FRAMES:  # mid-stream, a frame in flight: kill the replica serving the stream
                await asyncio.sleep(0.005)
                (served,) = service.stats.replicas.values()  # one stream: one session
                serving = served[-1]
                (name,) = [n for n in ray_render.replica_actor_names() if n.endswith(serving)]
                ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
                killed_at = time.monotonic()
            frame = await pulled
            assert frame is not None and frame.rgb.shape == (256, 256, 3)
            times.append(time.monotonic())
        return times, killed_at

    try:
        times, killed_at = asyncio.run(run())
    finally:
        asyncio.run(service.close())
    after = [t for t in times if t > killed_at]
    assert len(after) == 2 * FRAMES  # the frame in flight and every later one came
    gap = after[0] - killed_at
    print(f"frames resumed {gap:.2f} s after the replica was killed ({service.stats.retries} retries)")
    assert gap < RECOVERY_BOUND_S
    served = service.stats.replicas[next(iter(service.stats.replicas))]
    assert len(set(served)) >= 2  # the stream moved to another replica


def test_pirender_serve_streams_frames_rendered_on_the_cluster(cluster: None) -> None:
    """The server with ``render`` set to the cluster: a WebRTC client gets frames the deployment drew."""
    from test_server import Client

    from pirender.engine.server.app import AvatarServer, ServerConfig

    async def run() -> None:
        server = AvatarServer(ServerConfig(port=0, render="auto"))  # the cluster this process joined
        await server.start()
        client = Client(server.port)
        try:
            assert isinstance(server.service, ray_render.RayRenderService)
            await client.start("idle")
            frames = await client.receive(15)
            assert all(f.shape == (256, 256, 3) for f in frames)
            assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 0.5  # idle motion
            assert server.service.stats.frames >= 15  # drawn by the replicas
        finally:
            await client.close()
            await server.close()

    asyncio.run(run())


def test_a_front_end_refuses_a_deployment_that_draws_other_frames(cluster: None) -> None:
    running = ray_render.RayRenderConfig(min_replicas=1, max_replicas=1, num_cpus=0.5)
    ray_render.deploy(running)  # the one the other tests left, or a new one
    with pytest.raises(PirenderError, match=r"draws mesh frames at 256 px .* needs mesh at 512 px"):
        ray_render.deploy(replace(running, size_px=512))


def test_ray_addresses_and_the_environment_ray_needs(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from pirender.engine.stream import ray_address

    assert ray_address.cluster_endpoint("ray://10.0.0.5:10001") == ("10.0.0.5", 10001)
    assert ray_address.cluster_endpoint("127.0.0.1:6379") == ("127.0.0.1", 6379)
    assert ray_address.cluster_endpoint("[::1]:6379") == ("::1", 6379)
    assert ray_address.cluster_endpoint("local") is None
    for bad in ("in-process", "ray://nohost", "host:port"):
        with pytest.raises(PirenderError, match="not a Ray address"):
            ray_address.cluster_endpoint(bad)
    monkeypatch.setattr(ray_address, "CURRENT_CLUSTER_FILE", tmp_path / "ray_current_cluster")
    with pytest.raises(PirenderError, match="no Ray cluster on this machine"):
        ray_address.cluster_endpoint("auto")
    (tmp_path / "ray_current_cluster").write_text("127.0.0.1:6379\n")
    assert ray_address.cluster_endpoint("auto") == ("127.0.0.1", 6379)
    monkeypatch.setitem(sys.modules, "ray", None)  # as before Ray is imported (this module joined one)
    monkeypatch.delenv(ray_address.LOOPBACK_ENV, raising=False)
    ray_address.prepare_environment("10.0.0.5:6379")  # a real cluster: Ray picks the node address
    assert ray_address.LOOPBACK_ENV not in os.environ
    ray_address.prepare_environment("auto")  # this machine's loopback cluster (make ray-up)
    assert os.environ[ray_address.LOOPBACK_ENV] == "0"
    monkeypatch.delenv(ray_address.AUTH_MODE_ENV, raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN", "x" * 32)
    ray_address.prepare_environment("ray://127.0.0.1:10001")  # a Ray Client driver sends the token
    assert os.environ[ray_address.AUTH_MODE_ENV] == "token"
    started = time.monotonic()
    with pytest.raises(PirenderError, match=r"no Ray cluster answers at 127\.0\.0\.1:9"):
        ray_address.check_reachable("ray://127.0.0.1:9")
    assert time.monotonic() - started < 5  # at once, not after Ray's minute of retries
