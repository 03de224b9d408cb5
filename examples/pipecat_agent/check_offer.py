"""Talk to the example bot as a browser would, from aiortc, and measure what comes back.

    python examples/pipecat_agent/bot.py --port 7870 &
    python examples/pipecat_agent/check_offer.py --url http://127.0.0.1:7870 --seconds 16

Posts an SDP offer from an aiortc ``RTCPeerConnection`` (ICE on 127.0.0.1 only, no STUN) to the
bot's ``/api/offer``, sends a microphone track (silence, then, two seconds into the bot's greeting, a
spoken sentence from espeak-ng: a barge-in) and records the avatar's video and voice as they arrive.
Prints one JSON object: video frames, their size and rate, when the bot spoke, whether the barge-in
stopped it, whether it answered after, and the audio-to-video offset at arrival (the lag that
maximises the correlation of the voice's loudness with the mouth region's change; positive: the
video is later). Exit status 1 when a check fails. ``--contact-sheet`` saves received frames across
the session as a PNG.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MIC_RATE = 48000
MIC_FRAME = 960  # 20 ms


@dataclass
class Recording:
    started: float = field(default_factory=time.monotonic)
    video_times: list[float] = field(default_factory=list)
    video_frames: list[np.ndarray] = field(default_factory=list)
    audio_times: list[float] = field(default_factory=list)
    audio_rms: list[float] = field(default_factory=list)
    first_voice_s: float | None = None  # when the bot's voice first arrived
    user_speech: tuple[float, float] | None = None  # (start, end) s since started


def espeak(text: str) -> np.ndarray:
    """espeak-ng's voice at MIC_RATE (int16)."""
    import soxr

    wav = subprocess.run(["espeak-ng", "--stdout", text], check=True, capture_output=True).stdout
    voice = np.frombuffer(wav[44:], "<i2").astype(np.float32) / 32768
    return (np.clip(soxr.resample(voice, 22050, MIC_RATE), -1, 1) * 32767).astype(np.int16)


def make_microphone(recording: Recording, speech: np.ndarray, barge_after_s: float) -> Any:
    from aiortc import MediaStreamTrack
    from av import AudioFrame

    class Microphone(MediaStreamTrack):
        """Silence; ``speech`` once the bot has spoken for ``barge_after_s`` (real-time paced)."""

        kind = "audio"

        def __init__(self) -> None:
            super().__init__()
            self._sent = 0
            self._start: float | None = None
            self._speech_at: int | None = None  # sample where the speech starts

        async def recv(self) -> AudioFrame:
            if self._start is None:
                self._start = time.monotonic()
            wait = self._start + self._sent / MIC_RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            chunk = np.zeros(MIC_FRAME, np.int16)
            first = recording.first_voice_s
            if (
                self._speech_at is None
                and first is not None
                and time.monotonic() - recording.started - first >= barge_after_s
            ):
                self._speech_at = self._sent
                now = time.monotonic() - recording.started
                recording.user_speech = (now, now + len(speech) / MIC_RATE)
            if self._speech_at is not None:
                into = self._sent - self._speech_at
                part = speech[into : into + MIC_FRAME]
                chunk[: len(part)] = part
            frame = AudioFrame.from_ndarray(chunk[None, :], format="s16", layout="mono")
            frame.sample_rate = MIC_RATE
            frame.pts = self._sent
            frame.time_base = fractions.Fraction(1, MIC_RATE)
            self._sent += MIC_FRAME
            return frame

    return Microphone()


async def record(track: Any, recording: Recording) -> None:
    from aiortc.mediastreams import MediaStreamError

    try:
        while True:
            frame = await track.recv()
            now = time.monotonic() - recording.started
            if track.kind == "video":
                recording.video_times.append(now)
                recording.video_frames.append(frame.to_ndarray(format="rgb24"))
            else:
                pcm = frame.to_ndarray().astype(np.float32).reshape(-1) / 32768
                recording.audio_times.append(now)
                recording.audio_rms.append(float(np.sqrt(np.mean(pcm**2))))
                if recording.first_voice_s is None and recording.audio_rms[-1] > 0.01:
                    recording.first_voice_s = now
    except MediaStreamError:
        return


async def session(url: str, seconds: float, barge_after_s: float) -> Recording:
    import aiohttp
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    from pirender.engine.server.ice import restrict_host_candidates

    restrict_host_candidates(["127.0.0.1"])
    recording = Recording()
    speech = espeak("Wait please stop and tell me something else")  # one breath: one user turn
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver(make_microphone(recording, speech, barge_after_s), direction="sendrecv")
    pc.addTransceiver("video", direction="sendrecv")
    tasks: list[asyncio.Task[None]] = []

    @pc.on("track")
    def on_track(track: Any) -> None:
        tasks.append(asyncio.create_task(record(track, recording)))

    await pc.setLocalDescription(await pc.createOffer())  # aiortc gathers its candidates here
    async with aiohttp.ClientSession() as http:
        body = {"sdp": pc.localDescription.sdp, "type": "offer"}
        async with http.post(f"{url}/api/offer", json=body) as response:
            response.raise_for_status()
            answer = await response.json()
    recording.started = time.monotonic()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
    await asyncio.sleep(seconds)
    await pc.close()
    for task in tasks:
        task.cancel()
    return recording


def on_grid(times: list[float], values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    return np.interp(grid, np.asarray(times), values) if len(times) > 1 else np.zeros_like(grid)


def analyse(rec: Recording, barge_after_s: float) -> dict[str, Any]:
    video_t, audio_t = np.asarray(rec.video_times), np.asarray(rec.audio_times)
    rms = np.asarray(rec.audio_rms)
    result: dict[str, Any] = {"video_frames": len(video_t), "audio_frames": len(audio_t)}
    if len(video_t) < 10 or len(audio_t) < 10:
        result["ok"] = False
        return result
    steady = video_t[video_t > video_t[0] + 1.0]  # after the first second
    result["video_fps"] = round((len(steady) - 1) / (steady[-1] - steady[0]), 2) if len(steady) > 2 else 0.0
    h, w = rec.video_frames[0].shape[:2]
    result["video_size"] = [w, h]
    voiced = audio_t[rms > 0.01]
    result["bot_spoke_at_s"] = round(float(voiced[0]), 2) if len(voiced) else None

    # the mouth region's change from the first frame (the portrait at rest, before any voice), less
    # the change of the band above it (nose and cheeks: it moves with the head, not with the jaw)
    def change(top: float, bottom: float) -> np.ndarray:
        box = (slice(int(top * h), int(bottom * h)), slice(int(0.3 * w), int(0.7 * w)))
        rest = rec.video_frames[0][box].astype(np.float32)
        return np.array([np.abs(f[box].astype(np.float32) - rest).mean() for f in rec.video_frames])

    mouth = np.maximum(change(0.62, 0.88) - change(0.40, 0.58), 0.0)
    grid = np.arange(max(video_t[0], audio_t[0]), min(video_t[-1], audio_t[-1]), 0.01)
    loud = on_grid(rec.audio_times, rms, grid)
    moving = on_grid(rec.video_times, mouth, grid)
    lags = np.arange(-40, 41)  # +-400 ms in 10 ms steps
    scores = []
    for lag in lags:  # video later than audio by lag*10 ms
        a = loud[: len(loud) - lag] if lag > 0 else loud[-lag:]
        v = moving[lag:] if lag > 0 else moving[: len(moving) + lag]
        scores.append(float(np.corrcoef(a, v)[0, 1]) if a.std() > 0 and v.std() > 0 else 0.0)
    best = int(np.argmax(scores))
    result["av_offset_ms"] = int(lags[best] * 10)
    result["av_correlation"] = round(scores[best], 3)
    result["mouth_change_voiced"] = (
        round(float(np.mean(moving[loud > 0.01])), 2) if (loud > 0.01).any() else None
    )
    result["mouth_change_quiet"] = (
        round(float(np.mean(moving[loud <= 0.003])), 2) if (loud <= 0.003).any() else None
    )
    checks = {
        "video_at_fps": bool(result["video_fps"] >= 20),
        "bot_spoke": result["bot_spoke_at_s"] is not None,
    }
    if rec.user_speech is not None:
        start, end = rec.user_speech
        result["user_speech_s"] = [round(start, 2), round(end, 2)]
        quiet_from = start + 1.0  # VAD onset (~0.2 s) + the interruption's way through the pipeline
        during = rms[(audio_t > quiet_from) & (audio_t < end)]
        result["bot_rms_during_user_speech"] = round(float(during.mean()), 4) if len(during) else None
        still = audio_t[(audio_t >= start) & (audio_t < end) & (rms > 0.01)]
        result["bot_stopped_after_user_s"] = round(float(still[-1] - start), 2) if len(still) else 0.0
        after = audio_t[(audio_t > end + 0.3) & (rms > 0.01)]
        result["bot_answered_at_s"] = round(float(after[0]), 2) if len(after) else None
        checks["barge_in_stopped_the_bot"] = bool(len(during)) and float(np.max(during)) < 0.01
        checks["bot_answered_after"] = len(after) > 0
    else:
        checks["barge_in_happened"] = False
    result["checks"] = checks
    result["ok"] = all(checks.values())
    return result


def contact_sheet(rec: Recording, path: str, count: int = 12) -> None:
    from PIL import Image, ImageDraw

    times = np.asarray(rec.video_times)
    picks = np.linspace(0, len(times) - 1, count).round().astype(int)
    side = min(160, rec.video_frames[0].shape[0])  # thumbnails keep the sheet small
    cols = 6
    sheet = Image.new("RGB", (cols * side, (count + cols - 1) // cols * (side + 14)), "white")
    draw = ImageDraw.Draw(sheet)
    for n, i in enumerate(picks):
        x, y = (n % cols) * side, (n // cols) * (side + 14)
        thumb = Image.fromarray(rec.video_frames[i]).resize((side, side), Image.Resampling.LANCZOS)
        sheet.paste(thumb, (x, y))
        audio_t, rms = np.asarray(rec.audio_times), np.asarray(rec.audio_rms)
        around = rms[np.abs(audio_t - times[i]) <= 0.06]  # the bot's voice within 60 ms
        label = f"{times[i]:.1f} s: {'bot speaks' if len(around) and around.max() > 0.01 else 'quiet'}"
        if rec.user_speech and rec.user_speech[0] <= times[i] <= rec.user_speech[1]:
            label = f"{times[i]:.1f} s: user speaks"
        draw.text((x + 3, y + side), label, fill="black")
    sheet.quantize(colors=192).save(path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:7870")
    parser.add_argument("--seconds", type=float, default=16.0)
    parser.add_argument("--barge-after", type=float, default=2.0, help="s into the bot's first words")
    parser.add_argument("--contact-sheet", help="save received frames across the session here (PNG)")
    args = parser.parse_args(argv)
    if shutil.which("espeak-ng") is None:
        print(json.dumps({"ok": False, "error": "espeak-ng is not installed"}))
        return 1
    recording = asyncio.run(session(args.url, args.seconds, args.barge_after))
    result = analyse(recording, args.barge_after)
    if args.contact_sheet and recording.video_frames:
        contact_sheet(recording, args.contact_sheet)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
