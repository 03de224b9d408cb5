"""The streaming server in-process: a real aiortc client through the real websocket signaling.

Network safety: the server restricts ICE host candidates to 127.0.0.1 and uses no STUN server; the
client gets no ICE servers either, and a test asserts every candidate of a session is loopback.
"""

import asyncio
import json
import re
import shutil

import numpy as np
import pytest

pytest.importorskip("tflite")
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

        self.tracks: dict = {}

        @self.pc.on("track")
        def on_track(track):  # type: ignore[no-untyped-def]
            self.tracks[track.kind] = track
            if track.kind == "video" and not self.received.done():
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


async def _until(condition, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Wait until ``condition()`` holds (a connection comes up a moment after its answer)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


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
            await _until(lambda: server.active_streams() == 2)
            before = (await first.receive(3))[-1]
            await first.ws.send(json.dumps({"type": "control", "slots": {"yaw": 0.5, "jaw_open": 1.0}}))
            await asyncio.sleep(0.3)
            after = (await first.receive(5))[-1]
            untouched = (await second.receive(5))[-1]
            moved = np.abs(after.astype(int) - before.astype(int)).mean()
            assert moved > 3
            # the other stream did not move: only the video codec's noise (VP8 quality adapts to load)
            assert np.abs(untouched.astype(int) - before.astype(int)).mean() < moved / 5
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
                    ("not json", "not valid JSON"),
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
            writer.write(b"GET /../pyproject.toml HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            status = (await reader.readline()).decode()
            assert " 404 " in status
            writer.close()
        finally:
            await server.close()

    asyncio.run(run())


def test_one_peers_upload_never_changes_another_peers_portrait() -> None:
    """The renderer all streams share keeps no portrait of its own (issue 16): after peer A uploads a
    new face, A shows it and peer B keeps showing the server's portrait, frame for frame as before."""
    import base64

    from conftest import shared_data

    async def run() -> None:
        server = await _start_server()
        a, b = Client(server.port), Client(server.port)
        try:
            await a.start("sliders")  # sliders at rest: a still picture (idle mode moves the head)
            await b.start("sliders")
            a_before, b_before = (await a.receive(2))[-1], (await b.receive(2))[-1]
            default_source = server.source
            face = shared_data("vox_demo", "id10593_cY3-UkuZhJM_007714_007874_00186.jpg").read_bytes()
            url = "data:image/jpeg;base64," + base64.b64encode(face).decode()
            await a.ws.send(json.dumps({"type": "upload", "image": url}))
            await a.next_message("uploaded", timeout_s=30)

            def differs(x: np.ndarray, y: np.ndarray) -> float:
                return float(np.abs(x.astype(int) - y.astype(int)).mean())

            for _ in range(250):  # frames queued during the upload come first: wait for A's change
                a_after = (await a.receive(1))[0]
                if differs(a_after, a_before) > 10:  # A: another person
                    break
            assert differs(a_after, a_before) > 10
            b_frames = await b.receive(60)  # B's frames through and after A's upload
            assert max(differs(frame, b_before) for frame in b_frames) < 4  # B: the same portrait
            assert server.source is default_source  # the server's portrait for new streams too
        finally:
            await a.close()
            await b.close()
            await server.close()

    asyncio.run(run())


def test_uploads_are_checked_and_a_good_one_changes_the_portrait() -> None:
    import base64
    import io

    from PIL import Image

    from conftest import shared_data

    async def run() -> None:
        server = await _start_server()
        client = Client(server.port)
        try:
            await client.start("idle")
            before = (await client.receive(2))[-1]

            async def upload(data_url: str) -> dict | None:
                """The upload's error, or None once the server says it is in use."""
                await client.ws.send(json.dumps({"type": "upload", "image": data_url}))
                while True:
                    reply = json.loads(await asyncio.wait_for(client.ws.recv(), 30))
                    if reply["type"] in ("error", "uploaded"):
                        return reply if reply["type"] == "error" else None

            text = base64.b64encode(b"hello").decode()
            reply = await upload(f"data:image/png;base64,{text}")  # the loader's own words
            assert "uploaded image: not an image file Pillow can read" in reply["message"]
            assert "data URL" in (await upload("http://example.org/x.png"))["message"]
            huge = "A" * (int(8.5 * 1024 * 1024) * 4 // 3)  # over the upload limit, under the message limit
            assert "upload limit" in (await upload(f"data:image/png;base64,{huge}"))["message"]
            gif = io.BytesIO()
            Image.new("RGB", (64, 64)).save(gif, format="GIF")
            gif_url = "data:image/gif;base64," + base64.b64encode(gif.getvalue()).decode()
            reply = await upload(gif_url)
            assert "GIF pictures are not accepted here (accepted: PNG, JPEG, WebP)" in reply["message"]
            flat = io.BytesIO()
            Image.new("RGB", (320, 240), (90, 100, 110)).save(flat, format="PNG")
            flat_url = "data:image/png;base64," + base64.b64encode(flat.getvalue()).decode()
            assert "uploaded image: no human face found" in (await upload(flat_url))["message"]
            face = shared_data("vox_demo", "id10593_cY3-UkuZhJM_007714_007874_00186.jpg").read_bytes()
            assert await upload("data:image/jpeg;base64," + base64.b64encode(face).decode()) is None
            after = (await client.receive(4))[-1]
            assert np.abs(after.astype(int) - before.astype(int)).mean() > 10  # another person
        finally:
            await client.close()
            await server.close()

    asyncio.run(run())


def test_soak_several_streams_memory_and_queues_stay_bounded() -> None:
    import resource

    async def run() -> None:
        server = await _start_server()
        clients = [Client(server.port) for _ in range(3)]
        try:
            for client in clients:
                await client.start("idle")
            await asyncio.gather(*(c.receive(10) for c in clients))  # warm
            rss_before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            deadline = asyncio.get_running_loop().time() + 4.0
            queue_sizes = []
            while asyncio.get_running_loop().time() < deadline:
                await asyncio.gather(*(c.receive(5) for c in clients))
                queue_sizes.append(server.service._queue.qsize())
            rss_after_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            assert max(queue_sizes) <= len(clients)  # one pending request per stream at most
            assert rss_after_kb - rss_before_kb < 80_000  # no growth beyond 80 MB over the soak
            for peer in server.peers:
                assert len(peer.stream.capture_ms_by_pts) <= 600  # bounded history
        finally:
            for client in clients:
                await client.close()
            await server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert not [t for t in tasks if "Peer" in repr(t.get_coro())]  # no peer task left behind

    asyncio.run(run())


def test_file_mode_microphone_stream_limit_and_oversized_messages(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from aiortc.mediastreams import AudioStreamTrack

    from pirender.engine.motion.edit import demo_open_motion
    from pirender.engine.motion.io import save_motion

    save_motion(tmp_path / "motion.npz", demo_open_motion(frames=50))

    async def run() -> None:
        server = AvatarServer(ServerConfig(port=0, max_streams=1, motion_file=str(tmp_path / "motion.npz")))
        await server.start()
        first = Client(server.port)
        first.pc.addTrack(AudioStreamTrack())  # a microphone (silence) sent to the server
        try:
            hello = await first.start("file")
            assert "file" in hello["modes"]
            frames = await first.receive(10)
            assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 0.5  # the file plays
            peer = next(iter(server.peers))
            for _ in range(40):
                if peer.stream.microphone.samples_received > 0:
                    break
                await asyncio.sleep(0.05)
            assert peer.stream.microphone.samples_received > 0
            # a second stream is over this server's limit: an error, the first stream goes on
            async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
                await ws.recv()
                await ws.send(json.dumps({"type": "offer", "sdp": first.pc.localDescription.sdp}))
                reply = json.loads(await ws.recv())
                assert reply["type"] == "error" and "full" in reply["message"]
            # an oversized message closes only its own socket
            async with connect(f"ws://127.0.0.1:{server.port}/ws", max_size=None) as ws:
                await ws.recv()
                await ws.send("x" * (13 * 1024 * 1024))
                with pytest.raises(Exception, match="1009"):
                    await ws.recv()
            assert len(await first.receive(5)) == 5
        finally:
            await first.close()
            await server.close()

    asyncio.run(run())


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (apt-get install espeak-ng)")
def test_talk_mode_moves_the_mouth_with_the_microphone(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    from aiortc.contrib.media import MediaPlayer

    from pirender.engine.motion.space import OPEN_SPACE

    wav = tmp_path / "speech.wav"
    text = "hello, the avatar listens to this voice and opens its mouth when it speaks"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), text], check=True)

    async def run() -> None:
        server = await _start_server()
        client = Client(server.port)
        player = MediaPlayer(str(wav))
        client.pc.addTrack(player.audio)  # the "microphone"
        jaw = []
        try:
            await client.start("talk")
            peer = next(iter(server.peers))
            for _ in range(12):
                await client.receive(5)
                jaw.append(float(peer.stream.talk.row(0.0)[OPEN_SPACE.index("jaw_open")]))
            assert peer.stream.microphone.samples_received > 16_000  # a second of voice arrived
            assert max(jaw) > 0.2, jaw  # the voice opened the mouth
            assert peer.stream.talk.latency_ms == pytest.approx(105.0)  # 80 ms lookahead + 25 ms window
        finally:
            await client.close()
            await server.close()

    asyncio.run(run())


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (apt-get install espeak-ng)")
def test_talk_mode_sends_the_voice_back_with_the_video(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    import av
    from aiortc.contrib.media import MediaPlayer

    from pirender.engine.audio.sources import load_audio

    wav = tmp_path / "speech.wav"
    text = "one two three four five, the voice comes back with the picture"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(wav), text], check=True)
    voice = load_audio(wav)  # 16 kHz mono

    async def run() -> None:
        server = await _start_server()
        client = Client(server.port)
        player = MediaPlayer(str(wav))
        client.pc.addTrack(player.audio)  # sendrecv: the microphone goes up, the avatar's audio comes back
        resampler = av.AudioResampler(format="flt", layout="mono", rate=16_000)
        returned: list[np.ndarray] = []
        try:
            await client.start("talk")
            assert "audio" in client.tracks, "talk mode sends an audio track back"

            async def listen() -> None:
                while True:
                    frame = await client.tracks["audio"].recv()
                    returned.extend(chunk.to_ndarray().reshape(-1) for chunk in resampler.resample(frame))

            listener = asyncio.get_running_loop().create_task(listen())
            await client.receive(75)  # 3 s of video
            listener.cancel()
            stats = next(iter(server.peers)).stream.stats.summary()
            assert stats["av_offset_ms"] is not None  # measured for every frame pair
        finally:
            await client.close()
            await server.close()
        received = np.concatenate(returned)
        assert len(received) > 2 * 16_000
        # The returned audio is the voice (through Opus twice): a clear peak of the normalized
        # cross-correlation with the spoken file (unrelated signals stay near 0).
        # two seconds well inside the speech: the loudest (not the last: on a busy machine the 75
        # frames take longer than 3 s and the last seconds of audio come after the ~4 s voice ended)
        starts = range(0, len(received) - 32_000 + 1, 4_000)
        first = max(starts, key=lambda i: float(np.mean(received[i : i + 32_000] ** 2)))
        segment = received[first : first + 32_000]
        assert np.sqrt(np.mean(segment**2)) > 1e-3, "the returned audio is silent"

        # what the ear hears, not the waveform (Opus, twice, keeps the sound, not its phase): the
        # loudness envelope (10 ms RMS) of those seconds against the spoken file's at every lag (2 s
        # of another espeak-ng sentence peak at 0.39-0.47 here; the returned voice at 0.83-0.98)
        def envelope(x: np.ndarray) -> np.ndarray:
            return np.sqrt(np.mean(x[: len(x) // 160 * 160].reshape(-1, 160) ** 2, axis=1))

        ours, theirs = envelope(segment), envelope(voice)
        windows = np.lib.stride_tricks.sliding_window_view(theirs, len(ours))
        scores = np.array([np.corrcoef(w, ours)[0, 1] for w in windows])
        best = int(np.nanargmax(scores))
        print(f"returned voice: envelope correlation {scores[best]:.2f} at {best * 10} ms "
              f"(median over lags {np.nanmedian(scores):.2f}), A/V send offset {stats}")  # fmt: skip
        assert scores[best] > 0.8 and scores[best] - np.nanmedian(scores) > 0.4, scores[best]

    asyncio.run(run())


def _upload_variants(folder) -> dict:  # type: ignore[no-untyped-def]
    """The demo portrait as an EXIF-rotated JPEG, an RGBA PNG with a transparent border and a
    16-bit grey PNG: the kinds the upload used to decode differently from the CLI."""
    from matplotlib import cbook
    from PIL import Image

    grace = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    paths = {}
    rotated = grace.transpose(Image.Transpose.ROTATE_90)  # stored sideways ...
    exif = Image.Exif()
    exif[0x0112] = 6  # ... and tagged "rotate 90 degrees clockwise to show"
    paths["exif"] = folder / "sideways.jpg"
    rotated.save(paths["exif"], quality=95, exif=exif.tobytes())
    rgba = Image.new("RGBA", (700, 800), (0, 0, 0, 0))  # transparent: white once composited
    rgba.paste(grace, (94, 100))
    paths["rgba"] = folder / "cutout.png"
    rgba.save(paths["rgba"])
    grey16 = (np.asarray(grace.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    paths["grey16"] = folder / "grey16.png"
    Image.fromarray(grey16).save(paths["grey16"])
    return paths


def test_an_upload_decodes_and_frames_as_the_cli_does(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The same file through the upload and through the CLI's loader (``--source``, ``--face-crop``)
    gives identical pixels, and the kinds the upload used to get wrong come out right."""
    from pirender.engine.image import load_source_image, read_image
    from pirender.engine.server.app import upload_portrait
    from pirender.engine.track.crop import crop_to_face

    paths = _upload_variants(tmp_path)
    for kind, path in paths.items():
        raw = path.read_bytes()
        np.testing.assert_array_equal(read_image(raw).rgb, read_image(path).rgb, err_msg=kind)
        np.testing.assert_array_equal(load_source_image(raw).rgb, load_source_image(path).rgb, err_msg=kind)
        uploaded = upload_portrait(raw, size_px=256)
        np.testing.assert_array_equal(uploaded.rgb, crop_to_face(path).rgb, err_msg=kind)
    assert read_image(paths["exif"]).original_size_px == (512, 600)  # upright, as the EXIF tag says
    assert (read_image(paths["rgba"]).rgb[:50, :50] == 255).all()  # transparency over white
    grey = read_image(paths["grey16"]).rgb
    assert grey.max() > 200 and (grey[..., 0] == grey[..., 2]).all()  # scaled, not clipped to 255


def test_upload_errors_are_the_loaders(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import io

    from PIL import Image

    from pirender.engine.errors import ImageError
    from pirender.engine.server.app import upload_portrait

    with pytest.raises(ImageError, match="uploaded image: not an image file Pillow can read"):
        upload_portrait(b"hello", size_px=256)
    with pytest.raises(ImageError, match="uploaded image: truncated or corrupt"):
        upload_portrait(b"\xff\xd8\xff\xe0" + bytes(64), size_px=256)
    bmp = io.BytesIO()
    Image.new("RGB", (64, 64)).save(bmp, format="BMP")
    with pytest.raises(ImageError, match="BMP pictures are not accepted here"):
        upload_portrait(bmp.getvalue(), size_px=256)


# -- hostile and faulty clients (issue 12) ------------------------------------------------------------


def _strict(text: str) -> dict:
    """Parse a server message as browsers do: NaN and Infinity are not JSON."""

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in a server message: {text[:200]}")

    return json.loads(text, parse_constant=refuse)


async def _http(port: int, request: bytes) -> tuple[int, bytes, bytes]:
    """One raw HTTP request -> (status, header block, body read until the server closes)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = re.search(rb"(?i)content-length: (\d+)", head)
    if request.startswith(b"HEAD"):
        body = await asyncio.wait_for(reader.read(), 10)  # nothing may follow the headers
    else:
        body = await asyncio.wait_for(reader.readexactly(int(length.group(1))), 10) if length else b""
    writer.close()
    return int(head.split()[1]), head, body


def _bomb_png() -> bytes:
    """A 13000 x 13000 single-colour PNG: a few KiB encoded, 169 megapixels decoded."""
    import io

    from PIL import Image

    encoded = io.BytesIO()
    Image.new("1", (13000, 13000)).save(encoded, format="PNG", optimize=True)
    return encoded.getvalue()


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


def test_a_hostile_upload_neither_stalls_another_viewer_nor_bloats_the_server() -> None:
    import base64

    from conftest import shared_data

    bomb = "data:image/png;base64," + base64.b64encode(_bomb_png()).decode()
    photo = shared_data("portraits").glob("*.jpg")
    real = "data:image/jpeg;base64," + base64.b64encode(next(iter(sorted(photo))).read_bytes()).decode()

    async def run() -> None:
        server = await _start_server()
        viewer, attacker = Client(server.port), Client(server.port)
        try:
            await viewer.start("idle")
            await attacker.start("idle")
            await viewer.receive(10)
            arrivals: list[float] = []
            peak_mb = [_rss_mb()]
            start_mb = peak_mb[0]
            loop = asyncio.get_running_loop()

            async def watch() -> None:
                while True:
                    await asyncio.wait_for(viewer.track.recv(), 10)
                    arrivals.append(loop.time())
                    peak_mb.append(_rss_mb())

            watcher = asyncio.create_task(watch())
            await asyncio.sleep(0.5)
            replies = []
            for data_url in [bomb] * 8 + [real]:  # eight in a row, then a real photo
                await attacker.ws.send(json.dumps({"type": "upload", "image": data_url}))
                while True:
                    reply = _strict(await asyncio.wait_for(attacker.ws.recv(), 60))
                    if reply["type"] in ("error", "uploaded"):
                        replies.append(reply)
                        break
            await asyncio.sleep(0.5)
            watcher.cancel()
            gaps = np.diff(arrivals)
            assert len(arrivals) > 10 and gaps.max() < 0.75, f"the viewer froze for {gaps.max():.2f} s"
            assert peak_mb and max(peak_mb) - start_mb < 300, (
                f"memory rose by {max(peak_mb) - start_mb:.0f} MB"
            )
            assert all(r["type"] == "error" and "megapixels" in r["message"] for r in replies[:8]), replies
            assert replies[8]["type"] in ("uploaded", "error")  # a real photo is prepared as ever
        finally:
            await viewer.close()
            await attacker.close()
            await server.close()

    asyncio.run(run())


def test_uploads_are_one_at_a_time_per_client_and_queued_for_all() -> None:
    import base64
    import threading

    from conftest import shared_data

    face = shared_data("vox_demo", "id10593_cY3-UkuZhJM_007714_007874_00186.jpg").read_bytes()
    data_url = "data:image/jpeg;base64," + base64.b64encode(face).decode()

    async def replies(client: Client, count: int) -> list[str]:
        """The next ``count`` replies other than stats: their type, or an error's message."""
        kinds: list[str] = []
        while len(kinds) < count:
            reply = _strict(await asyncio.wait_for(client.ws.recv(), 60))
            if reply["type"] != "stats":
                kinds.append(reply["type"] if reply["type"] != "error" else reply["message"])
        return kinds

    async def run() -> None:
        server = AvatarServer(ServerConfig(port=0, max_queued_uploads=1))
        await server.start()
        first, second = Client(server.port), Client(server.port)
        worker_free = threading.Event()
        try:
            await first.start("idle")
            await second.start("idle")
            assert server.uploads is not None
            held = server.uploads.submit(worker_free.wait, 60)  # the upload worker is busy
            for _ in range(3):
                await first.ws.send(json.dumps({"type": "upload", "image": data_url}))
            await first.ws.send(json.dumps({"type": "ping", "client_ms": 1.0}))  # not held up
            kinds = await replies(first, 3)
            assert kinds.count("an upload is already being prepared; wait for its reply") == 2, kinds
            assert "pong" in kinds, kinds
            await second.ws.send(json.dumps({"type": "upload", "image": data_url}))
            assert (await replies(second, 1)) == [
                "the server is busy preparing other portraits; try again in a moment"
            ]
            worker_free.set()
            held.result(10)
            assert (await replies(first, 1)) == ["uploaded"]  # the queued one went through
            await second.ws.send(json.dumps({"type": "upload", "image": data_url}))
            assert (await replies(second, 1)) == ["uploaded"]  # and the queue is free again
        finally:
            worker_free.set()
            await first.close()
            await second.close()
            await server.close()

    asyncio.run(run())


def test_offers_are_validated_and_failed_ones_give_their_slot_back() -> None:
    async def run() -> None:
        server = AvatarServer(
            ServerConfig(port=0, max_streams=1, max_negotiations=2, negotiation_timeout_s=1.0)
        )
        await server.start()
        sockets = []
        try:
            # an offer without a video section: audio and a data channel only
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            pc.createDataChannel("control")
            pc.addTransceiver("audio", direction="sendrecv")
            await pc.setLocalDescription(await pc.createOffer())
            no_video = pc.localDescription.sdp
            await pc.close()
            for _ in range(8):  # eight sockets with invalid offers, kept open
                ws = await connect(f"ws://127.0.0.1:{server.port}/ws")
                sockets.append(ws)
                await ws.recv()
                await ws.send(json.dumps({"type": "offer", "sdp": no_video}))
                reply = _strict(await ws.recv())
                assert (
                    reply["type"] == "error" and "no video section (m=video; found: audio" in reply["message"]
                )
            assert server.active_streams() == 0 and server.negotiations() == 0
            # two offers whose connection never comes up hold negotiation places, not stream slots
            stalled = []
            for _ in range(2):
                hanging = RTCPeerConnection(RTCConfiguration(iceServers=[]))
                hanging.addTransceiver("video", direction="recvonly")
                await hanging.setLocalDescription(await hanging.createOffer())
                ws = await connect(f"ws://127.0.0.1:{server.port}/ws")
                sockets.append(ws)
                await ws.recv()
                await ws.send(json.dumps({"type": "offer", "sdp": hanging.localDescription.sdp}))
                assert _strict(await ws.recv())["type"] == "answer"  # never applied: no ICE
                stalled.append((hanging, ws))
            assert server.negotiations() == 2 and server.active_streams() == 0
            third = Client(server.port)
            with pytest.raises(AssertionError, match="being set up"):
                try:
                    await third.start("idle")
                except TimeoutError:
                    raise AssertionError(str(third.messages)) from None
            await third.close()
            for hanging, ws in stalled:  # they time out and say so
                reply = _strict(await asyncio.wait_for(ws.recv(), 5))
                assert reply["type"] == "error" and "not established within 1 s" in reply["message"]
                await hanging.close()
            assert server.negotiations() == 0
            client = Client(server.port)
            await client.start("idle")
            assert len(await client.receive(5)) == 5
            await _until(lambda: server.active_streams() == 1)
            await client.close()
        finally:
            for ws in sockets:
                await ws.close()
            await server.close()

    asyncio.run(run())


def test_every_channel_has_the_same_limits_and_no_value_stops_a_stream() -> None:
    limit = 300_000  # the default 12 MiB takes a minute through aiortc's SCTP on a busy CPU

    async def run() -> None:
        server = AvatarServer(ServerConfig(port=0, max_message_bytes=limit))
        await server.start()
        client = Client(server.port)
        try:
            await client.start("sliders")
            channel_replies: asyncio.Queue[str] = asyncio.Queue()

            @client.channel.on("message")
            def on_message(data):  # type: ignore[no-untyped-def]
                message = _strict(data)
                if message["type"] != "frame":
                    channel_replies.put_nowait(data)

            await _until(lambda: client.channel.readyState == "open")
            hostile = [
                ("[" * 100_000 + "]" * 100_000, "nest"),
                ('{"type": "x", "a": ' + "[" * 20 + "]" * 20 + "}", "nest"),
                ('{"type": "ping", "client_ms": NaN}', "not valid JSON"),
                ('{"type": "ping", "client_ms": 1e999}', "finite"),
                ('{"type": "control", "slots": {"yaw": Infinity}}', "not valid JSON"),
                ('{"type": "control", "slots": {"yaw": 1e400}}', "finite"),
                ('{"type": "control", "slots": {"yaw": "0.3"}}', "must be a number"),
                ('{"type": "presented", "frames": [{"pts": 1e300, "presented_ms": 1}]}', "within"),
                ('{"type": "presented", "frames": [{"pts": 5, "presented_ms": -1e999}]}', "finite"),
                ('{"type": "presented", "frames": "abc"}', "must be a list"),
                ('{"type": "ping", "client_ms": ' + "9" * 5000 + "}", "not valid JSON"),
            ]
            for text, expected in hostile:
                await client.ws.send(text)  # the websocket
                reply = _strict(await asyncio.wait_for(client.ws.recv(), 10))
                while reply["type"] == "stats":
                    reply = _strict(await asyncio.wait_for(client.ws.recv(), 10))
                assert reply["type"] == "error" and expected in reply["message"], (text[:60], reply)
                client.channel.send(text)  # the data channel: the same answer
                reply = _strict(await asyncio.wait_for(channel_replies.get(), 10))
                assert reply["type"] == "error" and expected in reply["message"], (text[:60], reply)
            # a hostile client ignores the 256 KiB the server's SCTP advertises (browsers keep to it):
            # aiortc delivers whatever arrives, the server's own limit must refuse it
            client.pc.sctp._remote_max_message_size = 0
            client.channel.send("x" * (limit + 1))
            reply = _strict(await asyncio.wait_for(channel_replies.get(), 60))
            assert reply["type"] == "error" and "byte limit" in reply["message"]
            # the stream goes on, and a good value still works on both channels
            frames = await client.receive(5)
            client.channel.send(json.dumps({"type": "control", "slots": {"yaw": 0.5, "jaw_open": 1.0}}))
            await client.ws.send(json.dumps({"type": "ping", "client_ms": 2.0}))
            await client.next_message("pong")
            await asyncio.sleep(0.5)
            assert channel_replies.empty(), channel_replies.get_nowait()
            # frames queued at the client while the hostile messages went: read until the move shows
            for _ in range(1500):
                moved = (await client.receive(1))[-1]
                if np.abs(moved.astype(int) - frames[-1].astype(int)).mean() > 3:
                    break
            assert np.abs(moved.astype(int) - frames[-1].astype(int)).mean() > 3
            stats = await client.next_message("stats")
            _strict(json.dumps(stats))
        finally:
            await client.close()
            await server.close()

    asyncio.run(run())


def test_host_origin_and_http_status_codes() -> None:
    async def run() -> None:
        server = AvatarServer(ServerConfig(port=0, allowed_origins=["https://app.example.org"]))
        await server.start()
        port = server.port
        try:
            host = f"127.0.0.1:{port}".encode()
            ok, head, body = await _http(port, b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
            assert ok == 200 and b"<html" in body.lower()
            for name in (b"localhost", b"[::1]", b"127.0.0.1"):
                assert (await _http(port, b"GET / HTTP/1.1\r\nHost: " + name + b":1\r\n\r\n"))[0] == 200
            # DNS rebinding: a page of another site resolved to 127.0.0.1 carries that site's name
            status, _, _ = await _http(port, b"GET / HTTP/1.1\r\nHost: attacker.example:80\r\n\r\n")
            assert status == 403
            assert (await _http(port, b"GET / HTTP/1.1\r\n\r\n"))[0] == 400  # no Host at all
            status, head, body = await _http(port, b"HEAD / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
            assert status == 200 and b"Content-Length" in head and body == b""
            status, head, _ = await _http(port, b"POST / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
            assert status == 405 and b"Allow: GET, HEAD" in head
            status, _, _ = await _http(port, b"DELETE /ws HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
            assert status == 405
            for path in (
                b"/a\x00b",
                b"/" + b"a" * 300,
                b"/%00",
                b"/web_client/../../etc/passwd",
                b"/.git/HEAD",
            ):
                status, _, _ = await _http(port, b"GET " + path + b" HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
                assert status == 404, path
            status, _, _ = await _http(
                port, b"GET /" + b"a/" * 4000 + b" HTTP/1.1\r\nHost: " + host + b"\r\n\r\n"
            )
            assert status == 414
            # cross-site websocket use: only this server's own origin and the allowed ones
            with pytest.raises(Exception, match="403"):
                await connect(f"ws://127.0.0.1:{port}/ws", origin="http://attacker.example")
            with pytest.raises(Exception, match="403"):
                await connect(f"ws://127.0.0.1:{port}/ws", origin="null")
            for origin in (f"http://127.0.0.1:{port}", "https://app.example.org"):
                async with connect(f"ws://127.0.0.1:{port}/ws", origin=origin) as ws:
                    assert _strict(await ws.recv())["type"] == "hello"
        finally:
            await server.close()

    asyncio.run(run())


def test_access_token_when_exposed_and_loopback_from_the_resolved_address() -> None:
    from pirender.engine.server.app import access_token
    from pirender.engine.server.ice import bind_is_loopback

    for spelling in (
        "127.0.0.1",
        "localhost",
        "127.0.0.2",
        "::1",
        "0:0:0:0:0:0:0:1",
        "[::1]",
        "::ffff:127.0.0.1",
    ):
        assert bind_is_loopback(spelling), spelling
    for spelling in ("0.0.0.0", "::"):
        assert not bind_is_loopback(spelling), spelling
    exposed = access_token(ServerConfig(host="0.0.0.0"), loopback=False)
    assert exposed and len(exposed) >= 32 and exposed != access_token(ServerConfig(), loopback=False)
    assert access_token(ServerConfig(), loopback=True) is None
    assert access_token(ServerConfig(require_token=False), loopback=False) is None  # --no-token
    assert access_token(ServerConfig(token="s3cret"), loopback=True) == "s3cret"

    async def run() -> None:
        # "localhost" is loopback too: loopback-only ICE candidates, no token needed
        server = AvatarServer(ServerConfig(host="localhost", port=0))
        await server.start()
        client = Client(server.port)
        try:
            assert server.loopback and server.token is None
            await client.start("idle")
            remote = _candidate_addresses(client.pc.remoteDescription.sdp)
            assert remote and all(is_loopback(a) for a in remote)
        finally:
            await client.close()
            await server.close()
        # the token, as an exposed server requires it (tested on loopback: nothing leaves this machine)
        server = AvatarServer(ServerConfig(port=0, require_token=True))
        await server.start()
        try:
            token = server.token
            assert token and server.page_url().endswith(f"/#token={token}")
            url = f"ws://127.0.0.1:{server.port}/ws"
            for bad in (url, f"{url}?token=wrong", f"{url}?token={token[:-1]}"):
                with pytest.raises(Exception, match="401"):
                    await connect(bad)
            async with connect(f"{url}?token={token}") as ws:
                assert _strict(await ws.recv())["type"] == "hello"
            async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
                assert _strict(await ws.recv())["type"] == "hello"
            status, _, _ = await _http(
                server.port, f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode()
            )
            assert status == 200  # the page itself is public; it passes the fragment's token on
        finally:
            await server.close()

    asyncio.run(run())


def test_camera_mode_reports_motion_to_photon_from_the_cameras_capture_time() -> None:
    """A real face video as the client's camera: each frame's motion carries the camera frame's
    capture time (the client's RTCP sender reports), so the server reports motion-to-photon (capture
    -> presentation) beside the render-slot figure, and it is the longer of the two."""
    from aiortc.contrib.media import MediaPlayer

    from pirender.engine.clock import now_ms

    from conftest import shared_data

    clip = shared_data("talking", "DPE__d.mp4")

    async def run() -> None:
        server = await _start_server()
        client = Client(server.port)
        player = MediaPlayer(str(clip))
        client.pc.addTrack(player.video)  # the "camera"
        try:
            await client.start("camera")
            peer = next(iter(server.peers))
            await _until(lambda: peer.stream is not None and peer.stream.camera is not None)
            for _ in range(100):  # 4 s: sender reports arrive every second or so
                await client.receive(1)
                pts = peer.stream._pts_order[-1]
                presented = {"type": "presented", "frames": [{"pts": pts, "presented_ms": now_ms()}]}
                await client.ws.send(json.dumps(presented))
            camera = peer.stream.camera
            assert camera.frames_with_face > 10  # the tracker saw the face
            (video_clock,) = [c for c in peer.sender_clocks if c._reports]  # the camera's reports
            stats = peer.stream.stats
            m2p, g2g = np.median(stats.motion_to_photon_ms), np.median(stats.glass_to_glass_ms)
            assert len(stats.motion_to_photon_ms) > 20 and m2p > g2g > 0, (m2p, g2g)
            assert m2p < 2000 and "track" in stats.stage_ms  # the tracker's own stage
            summary = await client.next_message("stats")
            assert summary["motion_to_photon_ms"]["p50"] > 0 and video_clock.wall_offset_s is None
        finally:
            await client.close()
            player.video.stop()
            await server.close()

    asyncio.run(run())
