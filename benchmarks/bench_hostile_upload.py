"""What one client's hostile uploads do to another client's video, on loopback.

A viewer receives the avatar over WebRTC while a second client uploads, one after another, N
decompression-bomb portraits (a 13000 x 13000 single-colour PNG: a few KiB encoded, 169 megapixels
decoded) and then one real photo. Reported: the viewer's frame gaps (max, p99) and frames/s from
the first upload to 1 s after the last reply, the server process's resident memory rise (VmRSS,
sampled at every viewer frame), and the server's reply to each upload.

Everything runs in this process on 127.0.0.1 (server and both clients); nothing leaves the machine.

Example:
    .venv/bin/python benchmarks/bench_hostile_upload.py --bombs 8 --json /tmp/hostile.json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from PIL import Image
from websockets.asyncio.client import connect

from pirender.engine.server.app import AvatarServer, ServerConfig
from pirender.engine.server.ice import restrict_host_candidates

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def bomb_png() -> bytes:
    encoded = io.BytesIO()
    Image.new("1", (13000, 13000)).save(encoded, format="PNG", optimize=True)
    return encoded.getvalue()


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


class Client:
    """Websocket signaling + a recvonly video peer connection (what the page does)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))

    async def start(self) -> None:
        self.ws = await connect(f"ws://127.0.0.1:{self.port}/ws", max_size=None)
        await self.ws.recv()  # hello
        self.pc.addTransceiver("video", direction="recvonly")
        track: asyncio.Future = asyncio.get_running_loop().create_future()
        self.pc.on("track", lambda t: track.done() or track.set_result(t))
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self.ws.send(json.dumps({"type": "offer", "sdp": self.pc.localDescription.sdp, "mode": "idle"}))
        while (reply := json.loads(await self.ws.recv()))["type"] != "answer":
            pass
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type="answer"))
        self.track = await asyncio.wait_for(track, 10)

    async def upload(self, data_url: str, timeout_s: float = 120) -> dict:
        """Send one upload and wait for its outcome (the old server answered errors only)."""
        await self.ws.send(json.dumps({"type": "upload", "image": data_url}))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                reply = json.loads(await asyncio.wait_for(self.ws.recv(), 3.0))
            except TimeoutError:
                return {"type": "no reply within 3 s (accepted)"}
            if reply["type"] in ("error", "uploaded"):
                return reply
        return {"type": "timeout"}

    async def close(self) -> None:
        await self.pc.close()
        await self.ws.close()


async def run(bombs: int, photo: Path, *, with_photo: bool = True) -> dict:
    restrict_host_candidates(["127.0.0.1"])
    server = AvatarServer(ServerConfig(port=0))
    await server.start()
    viewer, attacker = Client(server.port), Client(server.port)
    try:
        await viewer.start()
        await attacker.start()
        for _ in range(25):
            await viewer.track.recv()
        arrivals: list[float] = []
        memory = [rss_mb()]

        async def watch() -> None:
            while True:
                await viewer.track.recv()
                arrivals.append(time.monotonic())
                memory.append(rss_mb())

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(1.0)
        bomb = "data:image/png;base64," + base64.b64encode(bomb_png()).decode()
        real = "data:image/jpeg;base64," + base64.b64encode(photo.read_bytes()).decode()
        started = time.monotonic()
        replies = [await attacker.upload(bomb) for _ in range(bombs)]
        if with_photo:
            replies.append(await attacker.upload(real))
        if not replies:  # the baseline: nothing uploaded
            await asyncio.sleep(0.5)
        attack_s = time.monotonic() - started
        await asyncio.sleep(1.5)
        watcher.cancel()
        # the viewer from the first upload to 1 s after the last reply (frames already on their way
        # when the attack started count from there)
        during = np.array([t for t in arrivals if started <= t <= started + attack_s + 1.0])
        gaps_ms = np.diff(np.concatenate([[started], during])) * 1000
        return {
            "bombs": bombs,
            "attack_s": attack_s,
            "viewer_fps_during": _rate(during),
            "viewer_gap_ms_max": float(gaps_ms.max()),
            "viewer_gap_ms_p99": float(np.percentile(gaps_ms, 99)),
            "rss_rise_mb": max(memory) - memory[0],
            "replies": [r.get("message", r["type"])[:140] for r in replies],
        }  # fmt: skip
    finally:
        await viewer.close()
        await attacker.close()
        await server.close()


def _rate(times: np.ndarray) -> float:
    """Frames per second over arrival times (s)."""
    return (len(times) - 1) / max(float(times[-1] - times[0]), 1e-9) if len(times) > 1 else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bombs", type=int, default=8, help="bomb uploads in a row (default 8)")
    parser.add_argument("--photo", type=Path, default=SHARED / "portraits" / "s0.jpg", help="the real photo")
    parser.add_argument("--no-photo", action="store_true", help="the bombs only (0 bombs: the baseline)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if not args.photo.exists():
        parser.error(f"--photo {args.photo}: file not found")
    result = asyncio.run(run(args.bombs, args.photo, with_photo=not args.no_photo))
    photo = "" if args.no_photo else " + 1 photo"
    print(
        f"{result['bombs']} bomb uploads{photo} in {result['attack_s']:.1f} s: viewer "
        f"{result['viewer_fps_during']:.1f} frames/s, longest gap {result['viewer_gap_ms_max']:.0f} ms "
        f"(p99 {result['viewer_gap_ms_p99']:.0f} ms), server memory +{result['rss_rise_mb']:.0f} MB"
    )
    for index, reply in enumerate(result["replies"]):
        print(f"  upload {index + 1}: {reply}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
