"""Motion-to-photon latency in a real browser: from a driving event's capture to the avatar showing it.

``pirender serve`` runs as a user starts it; the system Chromium (headless, fake media devices) opens
its page and drives the avatar twice (``tests/browser/motion_to_photon.mjs``):

* **camera mode**: the fake camera plays a y4m made here from a real face (a frame of a real talking
  clip) that holds the face still for 1.6 s, then *tilts the head* (an instant 15 degree roll) for
  1.6 s, in a loop; a marker square in the corner says which half a frame is in. An event's capture
  time is the page's own camera track's ``captureTime`` (requestVideoFrameCallback) of the first frame
  with the new marker; the avatar shows it in the first presented frame that has moved at least
  **half way** from the old pose's picture to the new one (32x32 grey thumbnails of every presented
  frame, projected on the line between the two poses' mean pictures).
* **talk mode**: the fake microphone plays 1.6 s of silence, then 1.6 s of real speech (a GRID
  sentence from the talking corpus), in a loop. An event's capture time is the speech onset in the
  page's own microphone track (its level per 128-sample block, stamped when the block reaches the
  page: a few ms late, which makes the figure a few ms short); the avatar shows it in the first
  presented frame whose mouth (the opening the server rendered into it, matched by RTP timestamp) is
  at least half of that burst's largest opening.

It also reports what the page and the server measure themselves from each motion's capture time (the
instrumented motion-to-photon of ``pirender serve``) and the render-slot glass-to-glass figure.

Everything runs on 127.0.0.1. Needs /usr/bin/chromium, node and ``make browser-deps``.

Example:
    .venv/bin/python benchmarks/motion_to_photon.py --seconds 30 --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / ".." / "shared" / "data" / "talking"
HARNESS = ROOT / "tests" / "browser" / "motion_to_photon.mjs"
FACE_CLIP = SHARED / "DPE__d.mp4"  # a real face (256 px crop), its first frame
VOICE_CLIP = SHARED / "LipNet__bbaf2n.mpg"  # GRID: "bin blue at f two now"
CAMERA_W, CAMERA_H, CAMERA_FPS = 640, 480, 30
HALF_S = 1.6  # each half of the loop: still / tilted, silence / speech
ROLL_DEG = 15.0
MARKER_PX = 32
AUDIO_RATE_HZ = 48_000


def write_camera_y4m(path: Path, face_clip: Path = FACE_CLIP) -> None:
    """The fake camera: the clip's first frame (face 384 px, centred on grey), still then rolled."""
    with av.open(str(face_clip)) as container:
        first = next(container.decode(video=0)).to_image().convert("RGB")
    face_px = 384
    canvas = Image.new("RGB", (CAMERA_W, CAMERA_H), (128, 128, 128))
    canvas.paste(
        first.resize((face_px, face_px), Image.Resampling.BICUBIC),
        ((CAMERA_W - face_px) // 2, (CAMERA_H - face_px) // 2),
    )
    still = np.asarray(canvas).copy()
    tilted = np.asarray(
        canvas.rotate(ROLL_DEG, resample=Image.Resampling.BICUBIC, fillcolor=(128, 128, 128))
    ).copy()
    still[:MARKER_PX, :MARKER_PX] = 0
    tilted[:MARKER_PX, :MARKER_PX] = 255
    frames_per_half = round(HALF_S * CAMERA_FPS)
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{CAMERA_W} H{CAMERA_H} F{CAMERA_FPS}:1 Ip A1:1 C420jpeg\n".encode())
        for picture in [still] * frames_per_half + [tilted] * frames_per_half:
            out.write(b"FRAME\n" + _yuv420(picture))


def _yuv420(rgb: np.ndarray) -> bytes:
    """Full-range BT.601 (JFIF) planar 4:2:0 bytes of an (H, W, 3) uint8 picture."""
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    u = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    v = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b

    def half(plane: np.ndarray) -> np.ndarray:
        return plane.reshape(plane.shape[0] // 2, 2, plane.shape[1] // 2, 2).mean(axis=(1, 3))

    planes = [y, half(u), half(v)]
    return b"".join(np.clip(np.round(p), 0, 255).astype(np.uint8).tobytes() for p in planes)


def write_voice_wav(path: Path, voice_clip: Path = VOICE_CLIP) -> None:
    """The fake microphone: silence, then the clip's speech from its first onset, HALF_S each."""
    with av.open(str(voice_clip)) as container:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_RATE_HZ)
        chunks = [
            f.to_ndarray().reshape(-1)
            for frame in container.decode(audio=0)
            for f in resampler.resample(frame)
        ]
    samples = np.concatenate(chunks).astype(np.float32) / 32768
    block = AUDIO_RATE_HZ // 100
    rms = np.sqrt(np.mean(samples[: len(samples) // block * block].reshape(-1, block) ** 2, axis=1))
    onset = int(np.argmax(rms > 0.25 * rms.max()))
    while onset > 0 and rms[onset - 1] > 0.05 * rms.max():  # back to where the sound starts
        onset -= 1
    speech = samples[onset * block : onset * block + round(HALF_S * AUDIO_RATE_HZ)].copy()
    fade = round(0.05 * AUDIO_RATE_HZ)
    speech[-fade:] *= np.linspace(1, 0, fade)
    loop = np.concatenate([np.zeros(round(HALF_S * AUDIO_RATE_HZ), np.float32), speech])
    with av.open(str(path), "w", format="wav") as out:
        stream = out.add_stream("pcm_s16le", rate=AUDIO_RATE_HZ, layout="mono")
        frame = av.AudioFrame.from_ndarray((loop * 32767).astype(np.int16)[None], format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE_HZ
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


Trace = list[tuple[float, float]]  # (ms after the event's capture, how far the avatar has gone: 0..1)


def camera_latencies(camera: list[dict], avatar: list[dict]) -> tuple[list[float], int, list[Trace]]:
    """Per tilt / untilt event: ms from its capture to the first presented avatar frame half way to
    the new pose; how many events had no clear answer (skipped); each timed event's trace."""
    times = np.array([c["t"] if c["t"] is not None else c["shown"] for c in camera])
    marked = np.array([c["level"] > 128 for c in camera])
    events = [(times[i], bool(marked[i])) for i in range(1, len(marked)) if marked[i] != marked[i - 1]]
    shown = np.array([a["t"] for a in avatar])
    pictures = np.array([a["px"] for a in avatar], dtype=np.float32)
    latencies, skipped, traces = [], 0, []
    for captured, _ in events:
        before = pictures[(shown > captured - 600) & (shown <= captured)]
        after = pictures[(shown > captured + 1000) & (shown <= captured + 1500)]
        if len(before) < 5 or len(after) < 5:
            skipped += 1
            continue
        old, new = before.mean(axis=0), after.mean(axis=0)
        direction = new - old
        if np.abs(direction).mean() < 2.0:  # the avatar did not visibly move: no answer to time
            skipped += 1
            continue
        later = np.flatnonzero((shown > captured) & (shown <= captured + 1500))
        progress = (pictures[later] - old) @ direction / (direction @ direction)
        crossed = later[progress >= 0.5]
        if not len(crossed):
            skipped += 1
            continue
        latencies.append(float(shown[crossed[0]] - captured))
        traces.append([(float(shown[i] - captured), float(p)) for i, p in zip(later, progress, strict=True)])
    return latencies, skipped, traces


def talk_latencies(mic: list[dict], mouth: list[dict]) -> tuple[list[float], int, list[Trace]]:
    """Per speech onset: ms from its capture to the first presented frame whose mouth is half of
    that burst's widest opening; how many onsets had no clear answer (skipped); each timed onset's
    trace (the mouth opening over the burst's widest, from 200 ms before the onset)."""
    times = np.array([m["t"] for m in mic])
    level = np.array([m["rms"] for m in mic])
    loud = level > 0.25 * np.percentile(level, 99)
    quiet = level < 0.02 * np.percentile(level, 99)
    onsets, last_loud = [], -np.inf
    for i in np.flatnonzero(loud):
        if times[i] - last_loud > 1000:  # a new burst after the silence
            start = i
            while start > 0 and not quiet[start - 1]:
                start -= 1
            onsets.append(times[start])
        last_loud = times[i]
    shown = np.array([m["shown"] for m in mouth])
    opening = np.array([m["mouth"] for m in mouth])
    latencies, skipped, traces = [], 0, []
    for onset in onsets:
        burst = (shown > onset) & (shown <= onset + 1000 * HALF_S)
        if burst.sum() < 10 or opening[burst].max() < 0.05:
            skipped += 1
            continue
        half = 0.5 * opening[burst].max()
        crossed = np.flatnonzero(burst & (opening >= half))
        latencies.append(float(shown[crossed[0]] - onset))
        near = np.flatnonzero((shown > onset - 200) & (shown <= onset + 1000 * HALF_S))
        traces.append([(float(shown[i] - onset), float(opening[i] / (2 * half))) for i in near])
    return latencies, skipped, traces


def percentiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {f"p{q}": float(np.percentile(values, q)) for q in (50, 90, 99)}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def measure(seconds: float, workdir: Path) -> dict:
    """Runs pirender serve and the browser harness; the events, timed (see the module docstring)."""
    node = shutil.which("node")
    if (
        node is None
        or not Path("/usr/bin/chromium").exists()
        or not (HARNESS.parent / "node_modules").is_dir()
    ):
        raise SystemExit("needs node, /usr/bin/chromium and `make browser-deps`")
    y4m, wav, out = workdir / "camera.y4m", workdir / "voice.wav", workdir / "browser.json"
    write_camera_y4m(y4m)
    write_voice_wav(wav)
    pirender = Path(sys.executable).parent / "pirender"
    port = _free_port()
    server = subprocess.Popen(
        [str(pirender), "serve", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        url = None
        deadline = time.monotonic() + 120
        assert server.stdout is not None
        while url is None and time.monotonic() < deadline:
            line = server.stdout.readline()
            if not line:
                raise SystemExit("pirender serve stopped before it listened")
            found = re.search(r"open (http://\S+)", line)
            url = found.group(1) if found else None
        if url is None:
            raise SystemExit("pirender serve did not say where it listens within 120 s")
        print(f"# {url}: camera then talk, {seconds:.0f} s each", flush=True)
        subprocess.run(
            [node, str(HARNESS), url, str(out), str(y4m), str(wav), str(seconds)],
            check=False,
            timeout=2 * seconds + 180,
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    browser = json.loads(out.read_text())
    if not browser.get("ok"):
        raise SystemExit(f"the browser run failed: {browser.get('error')}")
    camera, talk = browser["camera"], browser["talk"]
    camera_ms, camera_skipped, camera_traces = camera_latencies(camera["camera"], camera["avatar"])
    talk_ms, talk_skipped, talk_traces = talk_latencies(talk["mic"], talk["mouth"])
    has_capture_time = all(c["t"] is not None for c in camera["camera"])

    def figures(logs: dict, latencies: list[float], skipped: int, traces: list[Trace]) -> dict:
        return {
            "events": len(latencies),
            "traces": traces,
            "skipped": skipped,
            "motion_to_photon_ms": percentiles(latencies),
            "all_ms": latencies,
            "page_motion_to_photon_ms": logs["state"].get("m2p"),
            "page_glass_to_glass_ms": logs["state"].get("g2g"),
            "server": logs.get("server_stats"),
        }

    return {
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU only",
        "browser": browser.get("browser_version"),
        "seconds_per_mode": seconds,
        "camera_capture_time": "captureTime" if has_capture_time else "frame callback time",
        "camera": figures(camera, camera_ms, camera_skipped, camera_traces),
        "talk": figures(talk, talk_ms, talk_skipped, talk_traces),
    }


def plot(result: dict, path: Path) -> None:
    """Each timed event's response over time after its capture, both modes, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    titles = {"camera": "camera: 15 deg head tilt", "talk": "talk: speech onset"}
    labels = {
        "camera": "avatar pose: fraction of the way to the new one",
        "talk": "mouth opening / burst's widest",
    }
    for axis, mode in zip(axes, ("camera", "talk"), strict=True):
        for trace in result[mode]["traces"]:
            times, values = zip(*trace, strict=True)
            axis.plot(times, values, color="tab:blue", alpha=0.35, lw=1)
        q = result[mode]["motion_to_photon_ms"]
        if q:
            axis.axvline(q["p50"], color="tab:red", lw=1.5, label=f"p50 {q['p50']:.0f} ms (half way)")
        axis.axhline(0.5, color="grey", lw=0.8, ls=":")
        axis.set(title=titles[mode], xlabel="ms after the capture of the event", xlim=(-200, 1200))
        axis.set_ylabel(labels[mode])
        axis.legend(loc="lower right")
    figure.suptitle(f"Motion-to-photon, pirender serve in headless Chromium ({result['machine']})")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def _fmt(q: dict[str, float] | None) -> str:
    return "n/a" if not q else f"{q['p50']:.0f} / {q['p90']:.0f} / {q['p99']:.0f}"


def report_lines(result: dict) -> list[str]:
    lines = [
        f"### Motion-to-photon in headless Chromium ({result['date']}, {result['machine']}, "
        f"Chromium {result['browser']})",
        "",
        "`.venv/bin/python benchmarks/motion_to_photon.py --seconds "
        f"{result['seconds_per_mode']:.0f}` (pirender serve, default mesh renderer, 25 fps; events timed "
        "from their capture in the page's own camera/microphone track to the first presented avatar frame "
        "half way to the new pose / half the burst's mouth opening). p50 / p90 / p99 ms:",
        "",
        "| mode | events (skipped) | event motion-to-photon | page's instrumented motion-to-photon "
        "| server's | render-slot glass-to-glass (page) |",
        "|---|---|---|---|---|---|",
    ]
    for mode, what in (("camera", "head tilt 15 deg"), ("talk", "speech onset")):
        r = result[mode]
        server = (r.get("server") or {}).get("motion_to_photon_ms")
        lines.append(
            f"| {mode} ({what}) | {r['events']} ({r['skipped']}) | {_fmt(r['motion_to_photon_ms'])} | "
            f"{_fmt(r['page_motion_to_photon_ms'])} | {_fmt(server)} | {_fmt(r['page_glass_to_glass_ms'])} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Motion-to-photon of pirender serve in headless Chromium (camera and talk mode).",
        epilog="example: .venv/bin/python benchmarks/motion_to_photon.py --seconds 30 "
        "--results benchmarks/RESULTS.md",
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds recorded per mode (default 30)")
    parser.add_argument("--json", type=Path, help="write every figure (each event's latency too) here")
    parser.add_argument("--results", type=Path, help="append the table to this RESULTS.md")
    parser.add_argument("--plot", type=Path, help="each event's response over time, as a PNG")
    parser.add_argument(
        "--keep", type=Path, help="keep the fake camera/microphone files and the browser log here"
    )
    args = parser.parse_args(argv)
    if not args.seconds > 0:
        parser.error("--seconds must be > 0")
    with tempfile.TemporaryDirectory(prefix="pirender-m2p-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        result = measure(args.seconds, workdir)
    lines = report_lines(result)
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    if args.plot:
        plot(result, args.plot)
    if args.results:
        with args.results.open("a") as out:
            out.write("\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
