"""The streaming server in-process: a real aiortc client through the real websocket signaling.

Network safety: the server restricts ICE host candidates to 127.0.0.1 and uses no STUN server; the
client gets no ICE servers either, and a test asserts every candidate of a session is loopback.
"""

import asyncio
import json
import re

import numpy as np
import pytest

pytest.importorskip("mediapipe")
pytest.importorskip("aiortc")

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from websockets.asyncio.client import connect

from pirender.engine.server.app import AvatarServer, ServerConfig
from pirender.engine.server.ice import is_loopback, restrict_host_candidates

restrict_host_candidates(["127.0.0.1"])  # the client side of the tests too


async def _start_server() -> AvatarServer:
    server = AvatarServer(ServerConfig(port=0))
    await server.start()
    return server


class Client:
    """A minimal page: websocket signaling + a recvonly video peer connection + a data channel."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.frames: list[np.ndarray] = []
        self.messages: list[dict] = []

    async def start(self, mode: str = "idle"):  # type: ignore[no-untyped-def]
        self.ws = await connect(f"ws://127.0.0.1:{self.port}/ws")
        hello = json.loads(await self.ws.recv())
        assert hello["type"] == "hello" and hello["slots"]
        self.channel = self.pc.createDataChannel("control")
        self.pc.addTransceiver("video", direction="recvonly")
        self.received = asyncio.get_running_loop().create_future()

        @self.pc.on("track")
        def on_track(track):  # type: ignore[no-untyped-def]
            if not self.received.done():
                self.received.set_result(track)

        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self.ws.send(json.dumps({"type": "offer", "sdp": self.pc.localDescription.sdp, "mode": mode}))
        answer = await self.next_message("answer")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        self.track = await asyncio.wait_for(self.received, 10)
        return hello

    async def next_message(self, kind: str, timeout_s: float = 10.0) -> dict:
        async def wait() -> dict:
            while True:
                message = json.loads(await self.ws.recv())
                self.messages.append(message)
                if message["type"] == kind:
                    return message

        return await asyncio.wait_for(wait(), timeout_s)

    async def receive(self, count: int) -> list[np.ndarray]:
        frames = []
        for _ in range(count):
            frame = await asyncio.wait_for(self.track.recv(), 10)
            frames.append(frame.to_ndarray(format="rgb24"))
        return frames

    async def close(self) -> None:
        await self.pc.close()
        await self.ws.close()


def _candidate_addresses(sdp: str) -> list[str]:
    return re.findall(r"a=candidate:\S+ \d+ \S+ \d+ (\S+) \d+ typ", sdp)


def test_a_client_receives_frames_over_loopback_only() -> None:
    async def run() -> None:
        server = await _start_server()
        client = Client(server.port)
        try:
            await client.start("idle")
            frames = await client.receive(15)
            assert all(f.shape == (256, 256, 3) for f in frames)
            assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 0.5  # idle motion
            local = _candidate_addresses(client.pc.localDescription.sdp)
            remote = _candidate_addresses(client.pc.remoteDescription.sdp)
            assert local and remote and all(is_loopback(a) for a in local + remote)
            stats = await client.next_message("stats")
            assert stats["fps"] > 5 and set(stats["stage_ms"]) == {"motion", "render", "send"}
            assert all(v >= 0 for v in stats["stage_ms"].values())  # monotonic stamps
        finally:
            await client.close()
            await server.close()

    asyncio.run(run())


def test_sliders_change_the_frames_and_two_peers_have_their_own_streams() -> None:
    async def run() -> None:
        server = await _start_server()
        first, second = Client(server.port), Client(server.port)
        try:
            await first.start("sliders")
            await second.start("sliders")
            assert server.active_streams() == 2
            before = (await first.receive(3))[-1]
            await first.ws.send(json.dumps({"type": "control", "slots": {"yaw": 0.5, "jaw_open": 1.0}}))
            await asyncio.sleep(0.3)
            after = (await first.receive(5))[-1]
            untouched = (await second.receive(5))[-1]
            assert np.abs(after.astype(int) - before.astype(int)).mean() > 3
            assert np.abs(untouched.astype(int) - before.astype(int)).mean() < 1  # the other stream
        finally:
            await first.close()
            await second.close()
            await server.close()

    asyncio.run(run())


def test_a_vanished_peer_is_cleaned_up() -> None:
    async def run() -> None:
        server = await _start_server()
        client = Client(server.port)
        await client.start("idle")
        await client.receive(3)
        await client.ws.close()  # the page closes without a word
        for _ in range(20):
            if not server.peers:
                break
            await asyncio.sleep(0.05)
        assert not server.peers and server.active_streams() == 0
        await client.pc.close()
        await server.close()

    asyncio.run(run())


def test_bad_messages_get_errors_and_the_server_keeps_serving() -> None:
    async def run() -> None:
        server = await _start_server()
        try:
            async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
                await ws.recv()  # hello
                cases = [
                    ("not json", "JSONDecodeError"),
                    (json.dumps([1, 2]), "JSON object"),
                    (json.dumps({"type": "nonsense"}), "no stream yet"),
                    (json.dumps({"type": "offer", "sdp": "v=garbage"}), "invalid SDP"),
                    (json.dumps({"type": "offer", "sdp": "x", "mode": "dance"}), "mode must be"),
                ]
                for text, expected in cases:
                    await ws.send(text)
                    reply = json.loads(await ws.recv())
                    assert reply["type"] == "error" and expected in reply["message"], reply
                await ws.send(json.dumps({"type": "ping", "client_ms": 5.0}))
                pong = json.loads(await ws.recv())
                assert pong["type"] == "pong" and pong["server_ms"] > 0
            # the page is served, paths outside web_client are not
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /../pyproject.toml HTTP/1.1\r\nHost: x\r\n\r\n")
            status = (await reader.readline()).decode()
            assert " 404 " in status
            writer.close()
        finally:
            await server.close()

    asyncio.run(run())
