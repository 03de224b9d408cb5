"""The pipecat avatar stage (engine/agents/pipecat.py), run through pipecat's own test utilities.

A real voice (espeak-ng) goes in as TTS audio frames; the avatar's frames come out. Checked: images
at fps, audio out equal to audio in and sent with its frame's image, the mouth of every frame equal
to the offline talking motion of the same timeline (so the lips follow the voice exactly
``delay_frames`` behind its arrival), idle frames with the mouth closed, interruption (queued voice
dropped, mouth closed at once, passed on), other sample rates and channel counts, bad audio, a
renderer too slow for real time (frames dropped, audio kept). Mesh renderer at 128 px; each test runs
the pipeline a few seconds of real time.

Last, the example (examples/pipecat_agent/bot.py, serving 127.0.0.1) end to end: from an aiortc peer
(check_offer.py), and its page in the system Chromium (tests/browser/pipecat_page.mjs; skipped, saying
why, without chromium, node or playwright-core: ``make browser-deps``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pipecat", reason="pipecat is not installed (pip install 'pirender-live[pipecat]')")
soxr = pytest.importorskip("soxr")

from pipecat.frames.frames import (  # noqa: E402
    ErrorFrame,
    Frame,
    InterruptionFrame,
    OutputImageRawFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed  # noqa: E402
from pipecat.tests.utils import SleepFrame, run_test  # noqa: E402

from pirender.engine.agents.lipsync import (  # noqa: E402
    MOUTH_SLOT,
    AvatarAssets,
    AvatarConfig,
    LipSync,
    load_avatar_assets,
)
from pirender.engine.agents.pipecat import METADATA_KEY, PirenderAvatar  # noqa: E402
from pirender.engine.talk import TalkConfig, motion_for_speech  # noqa: E402

from conftest import BROWSER_DIR, require_browser_tools  # noqa: E402

FPS = 25.0
SIZE_PX = 128
SENTENCE = "Hello there. I am a talking portrait, and my lips follow the voice."


@pytest.fixture(scope="module")
def assets() -> AvatarAssets:
    loaded = load_avatar_assets(AvatarConfig(size_px=SIZE_PX, fps=FPS))
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def voice_22k() -> np.ndarray:
    """espeak-ng's voice (22.05 kHz mono float32, trimmed of silent ends)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt install espeak-ng): no real voice to speak with")
    wav = subprocess.run(
        ["espeak-ng", "--stdout", SENTENCE], check=True, capture_output=True, timeout=30
    ).stdout
    pcm = np.frombuffer(wav[44:], dtype="<i2").astype(np.float32) / 32768.0  # past the RIFF header
    loud = np.flatnonzero(np.abs(pcm) > 0.01)
    return pcm[loud[0] : loud[-1] + 1].copy()


def at_rate(voice_22k: np.ndarray, rate: int, seconds: float | None = None) -> np.ndarray:
    """The voice at ``rate`` Hz as 16-bit PCM samples (the first ``seconds`` of it)."""
    voice = soxr.resample(voice_22k, 22050, rate).astype(np.float32)
    if seconds is not None:
        voice = voice[: round(seconds * rate)]
    return np.clip(np.round(voice * 32767), -32768, 32767).astype("<i2")


def tts_frames(pcm: np.ndarray, rate: int, *, channels: int = 1, seed: int = 0) -> list[Frame]:
    """TTSStarted, the voice in chunks of irregular sizes (5-60 ms), TTSStopped."""
    rng = np.random.default_rng(seed)
    frames: list[Frame] = [TTSStartedFrame(context_id="c1")]
    interleaved = np.repeat(pcm, channels) if channels > 1 else pcm
    start = 0
    while start < len(pcm):
        size = int(rng.integers(rate // 200, rate * 6 // 100))
        chunk = interleaved[start * channels : (start + size) * channels]
        frames.append(
            TTSAudioRawFrame(audio=chunk.tobytes(), sample_rate=rate, num_channels=channels, context_id="c1")
        )
        start += size
    frames.append(TTSStoppedFrame(context_id="c1"))
    return frames


class Timing(BaseObserver):
    """When the avatar pushed each image (time.monotonic)."""

    def __init__(self, source: object) -> None:
        super().__init__()
        self.source = source
        self.image_times: list[float] = []

    async def on_push_frame(self, data: FramePushed) -> None:
        if data.source is self.source and isinstance(data.frame, OutputImageRawFrame):
            self.image_times.append(time.monotonic())


def run(avatar: PirenderAvatar, frames: list[Frame]) -> tuple[list[Frame], list[Frame], Timing]:
    timing = Timing(source=avatar)
    down, up = asyncio.run(run_test(avatar, frames_to_send=frames, observers=[timing], start_timeout=10.0))
    return list(down), list(up), timing


def images_of(frames: list[Frame]) -> list[OutputImageRawFrame]:
    return [f for f in frames if isinstance(f, OutputImageRawFrame)]


def audio_of(frames: list[Frame]) -> list[TTSAudioRawFrame]:
    return [f for f in frames if isinstance(f, TTSAudioRawFrame)]


def expected_mouths(
    assets: AvatarAssets, pcm: np.ndarray, rate: int, start_frame: int, frames: int
) -> np.ndarray:
    """The offline talking motion (``motion_for_speech``) of the timeline the avatar should have
    played: silence, the voice from video frame ``start_frame`` on, silence; its mouth per frame."""
    voice = pcm.astype(np.float32) / 32768.0
    if rate != 16000:
        quality = "HQ" if rate >= 16000 else "QQ"
        voice = soxr.resample(voice, rate, 16000, quality=quality).astype(np.float32)
    per_frame = round(16000 / FPS)
    head = np.zeros(start_frame * per_frame, np.float32)
    tail = np.zeros(max(0, frames * per_frame - len(head) - len(voice)) + per_frame, np.float32)
    timeline = np.concatenate([head, voice, tail])
    motion = motion_for_speech(timeline, assets.model, assets.rest, TalkConfig(fps=FPS))
    return motion.values[:frames, MOUTH_SLOT]


def check_speech(assets: AvatarAssets, pcm: np.ndarray, rate: int, down: list[Frame], avatar: PirenderAvatar):
    images, audio = images_of(down), audio_of(down)
    # audio out = audio in: the same samples, in order, at the input rate, one frame's worth a frame
    assert {a.sample_rate for a in audio} == {rate}
    assert b"".join(a.audio for a in audio) == pcm.tobytes()
    per_frame = round(rate / FPS)
    assert all(abs(a.num_frames - per_frame) <= 1 for a in audio[:-1]), [a.num_frames for a in audio]
    # one clock: every audio frame right after the image of its own frame (same pts), frames consecutive
    assert avatar.stats.dropped == 0 and avatar.stats.late_rows == 0
    for a in audio:
        before = down[down.index(a) - 1]
        assert isinstance(before, OutputImageRawFrame) and before.pts == a.pts
        assert before.metadata[METADATA_KEY]["voiced"]
    indices = [i.metadata[METADATA_KEY]["frame"] for i in images]
    assert indices == list(range(indices[0], indices[0] + len(indices)))
    assert [i.pts for i in images] == [round(k * 1e9 / FPS) for k in indices]
    # the lips: each frame's mouth is the offline motion of the same timeline, the voice starting
    # where its first audio frame went out
    start = audio[0].pts * FPS / 1e9
    assert start == pytest.approx(round(start))
    mouths = np.array([i.metadata[METADATA_KEY]["mouth"] for i in images])
    expected = expected_mouths(assets, pcm, rate, round(start) - indices[0], len(images))
    np.testing.assert_allclose(mouths, expected, atol=2e-4)
    voiced = mouths[round(start) - indices[0] : round(start) - indices[0] + len(audio)]
    assert voiced.max() > 0.15, "the mouth opens while the voice plays"
    assert np.all(mouths[: round(start) - indices[0]] == 0.0), "closed before the voice"


def test_speech_at_24k_gives_frames_at_fps_with_the_voice_in_sync(assets, voice_22k):
    pcm = at_rate(voice_22k, 24000)
    seconds = len(pcm) / 24000
    avatar = PirenderAvatar(assets=assets)
    frames = tts_frames(pcm, 24000)
    down, up, timing = run(avatar, [*frames, SleepFrame(sleep=seconds + 0.8)])
    images = images_of(down)
    # frames at fps: the wall time between the first and last image
    span = timing.image_times[-1] - timing.image_times[0]
    assert (len(images) - 1) / span == pytest.approx(FPS, rel=0.05)
    assert len(images) >= (seconds + 0.3) * FPS  # the voice's frames and idle ones around them
    check_speech(assets, pcm, 24000, down, avatar)
    # the audio went out delay_frames (4: 160 ms) after it came in, the TTS frames around it
    assert avatar.delay_frames == 4
    assert 0.9 * avatar.delay_ms <= avatar.stats.voice_delay_ms[0] <= avatar.delay_ms + 1000 / FPS + 30
    kinds = [type(f) for f in down if isinstance(f, (TTSStartedFrame, TTSStoppedFrame, TTSAudioRawFrame))]
    assert kinds[0] is TTSStartedFrame and kinds[-1] is TTSStoppedFrame
    assert kinds.count(TTSStartedFrame) == 1 and kinds.count(TTSStoppedFrame) == 1
    assert not [f for f in up if isinstance(f, ErrorFrame)]


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_other_sample_rates(assets, voice_22k, rate):
    pcm = at_rate(voice_22k, rate, seconds=1.6)
    avatar = PirenderAvatar(assets=assets)
    down, _, _ = run(avatar, [*tts_frames(pcm, rate, seed=rate), SleepFrame(sleep=1.6 + 0.6)])
    check_speech(assets, pcm, rate, down, avatar)


def test_stereo_audio_is_passed_on_and_drives_the_mouth(assets, voice_22k):
    pcm = at_rate(voice_22k, 44100, seconds=1.2)
    avatar = PirenderAvatar(assets=assets)
    down, _, _ = run(avatar, [*tts_frames(pcm, 44100, channels=2), SleepFrame(sleep=1.2 + 0.6)])
    audio = audio_of(down)
    assert {a.num_channels for a in audio} == {2}
    assert b"".join(a.audio for a in audio) == np.repeat(pcm, 2).tobytes()
    assert max(i.metadata[METADATA_KEY]["mouth"] for i in images_of(down)) > 0.15


def test_interruption_drops_the_queued_voice_and_closes_the_mouth(assets, voice_22k):
    pcm = at_rate(voice_22k, 24000)
    seconds = len(pcm) / 24000
    assert seconds > 2.5
    avatar = PirenderAvatar(assets=assets)
    frames = [*tts_frames(pcm, 24000), SleepFrame(sleep=1.2), InterruptionFrame(), SleepFrame(sleep=0.6)]
    down, _, _ = run(avatar, frames)
    cut = next(i for i, f in enumerate(down) if isinstance(f, InterruptionFrame))
    before, after = down[:cut], down[cut + 1 :]
    # the voice played up to the interruption, the rest dropped: fewer frames than the utterance
    played = b"".join(a.audio for a in audio_of(before))
    assert 0 < len(played) < 0.6 * pcm.nbytes
    assert pcm.tobytes().startswith(played)
    assert not audio_of(after) and not [f for f in after if isinstance(f, TTSStoppedFrame)]
    assert max(i.metadata[METADATA_KEY]["mouth"] for i in images_of(before)[-10:]) > 0.05, "mid-speech"
    # the next frame shows the mouth closed, and the frames keep coming (idle) at fps
    after_images = images_of(after)
    assert len(after_images) >= 0.5 * FPS
    assert [i.metadata[METADATA_KEY]["mouth"] for i in after_images] == [0.0] * len(after_images)
    assert avatar.stats.interruptions == 1
    # the head goes on from where it was (no jump back to the rest pose): across the cut, the upper
    # half of the picture (the mouth is below) changes no more than between neighbouring frames
    upper = [
        np.frombuffer(i.image, np.uint8).reshape(SIZE_PX, SIZE_PX, 3)[: SIZE_PX // 2].astype(np.float32)
        for i in [*images_of(before)[-12:], *after_images[:12]]
    ]
    changes = [float(np.abs(b - a).mean()) for a, b in itertools.pairwise(upper)]
    across = changes[11]
    assert across <= max(3 * float(np.median(changes)), 2.0), (across, changes)


def test_idle_frames_come_at_fps_with_the_mouth_closed(assets):
    avatar = PirenderAvatar(assets=assets)
    down, _, timing = run(avatar, [SleepFrame(sleep=1.5)])
    images = images_of(down)
    assert not audio_of(down)
    assert len(images) == pytest.approx(1.5 * FPS, abs=4)
    span = timing.image_times[-1] - timing.image_times[0]
    assert (len(images) - 1) / span == pytest.approx(FPS, rel=0.05)
    assert {i.size for i in images} == {(SIZE_PX, SIZE_PX)} and {i.format for i in images} == {"RGB"}
    assert all(len(i.image) == SIZE_PX * SIZE_PX * 3 for i in images)
    assert [i.metadata[METADATA_KEY]["mouth"] for i in images] == [0.0] * len(images)
    rgb = np.frombuffer(images[-1].image, np.uint8)
    assert rgb.std() > 20, "a portrait, not a blank frame"
    # stopped cleanly: the render worker thread is gone
    assert not [t.name for t in threading.enumerate() if t.name.startswith("pirender-avatar")]


def test_bad_audio_is_refused_with_a_clear_error(assets):
    avatar = PirenderAvatar(assets=assets)
    odd = TTSAudioRawFrame(audio=b"\x01\x02\x03", sample_rate=24000, num_channels=1)
    no_rate = TTSAudioRawFrame(audio=b"\x00\x00" * 240, sample_rate=0, num_channels=1)
    down, up, _ = run(avatar, [odd, no_rate, SleepFrame(sleep=0.4)])
    errors = [f for f in up if isinstance(f, ErrorFrame)]
    assert len(errors) == 2
    assert all("not 16-bit PCM" in e.error for e in errors)
    assert not audio_of(down) and images_of(down)  # dropped; the avatar keeps going
    with pytest.raises(Exception, match="float32"):
        LipSync(assets).feed(np.zeros(640, np.int16))  # type: ignore[arg-type]


def test_a_slow_renderer_drops_frames_but_never_audio(assets, voice_22k, monkeypatch):
    real_render = LipSync.render

    def slow_render(self):
        time.sleep(0.07)  # slower than a 40 ms frame
        return real_render(self)

    monkeypatch.setattr(LipSync, "render", slow_render)
    pcm = at_rate(voice_22k, 24000, seconds=1.5)
    avatar = PirenderAvatar(assets=assets)
    down, _, _ = run(avatar, [*tts_frames(pcm, 24000), SleepFrame(sleep=1.5 + 0.8)])
    assert avatar.stats.dropped > 0.25 * avatar.stats.frames
    assert avatar.stats.images + avatar.stats.dropped == avatar.stats.frames
    assert b"".join(a.audio for a in audio_of(down)) == pcm.tobytes()


def test_end_frame_plays_out_the_queued_voice(assets, voice_22k):
    pcm = at_rate(voice_22k, 24000, seconds=1.0)
    avatar = PirenderAvatar(assets=assets)
    down, _, _ = run(avatar, tts_frames(pcm, 24000))  # EndFrame right after the voice
    assert b"".join(a.audio for a in audio_of(down)) == pcm.tobytes()
    assert isinstance(
        [f for f in down if isinstance(f, (TTSAudioRawFrame, TTSStoppedFrame))][-1], TTSStoppedFrame
    )


def test_importing_without_pipecat_says_how_to_install():
    code = "import sys; sys.modules['pipecat'] = None; import pirender.engine.agents.pipecat"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "PirenderError" in result.stderr and "pip install 'pirender-live[pipecat]'" in result.stderr


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "pipecat_agent"
PIPECAT_PAGE = BROWSER_DIR / "pipecat_page.mjs"


@contextlib.contextmanager
def example_bot(tmp_path: Path, *args: str, ready_timeout_s: float = 60.0) -> Iterator[int]:
    """``examples/pipecat_agent/bot.py`` serving on a free 127.0.0.1 port (yields the port) until the
    block ends; its log in ``tmp_path/bot.log``."""
    import selectors
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (tmp_path / "bot.log").open("w")
    bot = subprocess.Popen(
        [sys.executable, str(EXAMPLE / "bot.py"), "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        assert bot.stdout is not None
        with selectors.DefaultSelector() as waiting:  # bounded: a bot that never gets ready fails
            waiting.register(bot.stdout, selectors.EVENT_READ)
            ready = bot.stdout.readline() if waiting.select(ready_timeout_s) else ""
        # printed once the avatar is loaded and the page is served
        assert "ready" in ready, (tmp_path / "bot.log").read_text()[-2000:]
        yield port
    finally:
        bot.terminate()
        bot.wait(timeout=30)
        log.close()


def test_the_example_answers_an_offer_and_speaks_with_its_face(tmp_path):
    """examples/pipecat_agent end to end on 127.0.0.1: bot.py serving, check_offer.py as the browser
    (aiortc): video at fps from the avatar, the greeting heard, a barge-in stops it, an answer after."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt install espeak-ng): the example's voice")
    pytest.importorskip("aiohttp")
    import json

    with example_bot(tmp_path, "--size", "128") as port:
        check = subprocess.run(
            [
                sys.executable,
                str(EXAMPLE / "check_offer.py"),
                "--url",
                f"http://127.0.0.1:{port}",
                "--seconds",
                "14",
            ],
            capture_output=True,
            text=True,
            timeout=90,
        )
        result = json.loads(check.stdout.strip().splitlines()[-1])
        assert result["checks"] == {
            "video_at_fps": True,
            "bot_spoke": True,
            "barge_in_stopped_the_bot": True,
            "bot_answered_after": True,
        }, result
        assert result["video_size"] == [128, 128]
        assert result["video_fps"] >= 20
        assert result["mouth_change_voiced"] > 2 * result["mouth_change_quiet"], result
        # the mouth against the sound's loudness at arrival, within ITU-R BT.1359's detectability
        # window: the picture at most 45 ms behind the sound, at most 125 ms ahead of it (a real mouth
        # opens before its sound; the shipped mouth, fitted to real mouths, leads the loudness of real
        # speech by 10-40 ms and measures ~100 ms ahead here: the pixel change of a 128 px face)
        assert -125 <= result["av_offset_ms"] <= 45, result


#: the user's words in the fake microphone (one breath: one turn for the VAD), after this much silence
#: from the moment the page opens the microphone: the bot's greeting has then been playing 2-3 s
USER_WORDS = "Wait please stop and tell me something else"
USER_AFTER_S = 4.5


def write_fake_microphone(path: Path) -> Path:
    """A 48 kHz mono WAV for Chromium's fake microphone: USER_AFTER_S s of silence, the user's words
    (espeak-ng), then silence longer than the page is watched (Chromium loops the file)."""
    import wave

    wav = subprocess.run(
        ["espeak-ng", "--stdout", "-v", "en-us", USER_WORDS], check=True, capture_output=True, timeout=30
    ).stdout
    words = np.frombuffer(wav[44:], dtype="<i2").astype(np.float32) / 32768.0  # 22.05 kHz
    words = soxr.resample(words, 22050, 48000).astype(np.float32)
    silence = np.zeros(round(USER_AFTER_S * 48000), np.float32)
    voice = np.concatenate([silence, words, np.zeros(30 * 48000, np.float32)])
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(48000)
        out.writeframes((np.clip(voice, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def greeting_seconds() -> float:
    """How long the example's greeting is (espeak-ng with bot.py's default voice and speed)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("pipecat_agent_bot", EXAMPLE / "bot.py")
    assert spec is not None and spec.loader is not None
    bot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bot)  # pipecat is imported only when the bot runs
    args = bot.parse_args([])
    wav = subprocess.run(
        ["espeak-ng", "--stdout", "-v", args.voice, "-s", str(args.words_per_minute), args.greeting],
        check=True,
        capture_output=True,
        timeout=30,
    ).stdout
    return (len(wav) - 44) / 2 / 22050


def test_the_example_page_in_chromium(tmp_path):
    """examples/pipecat_agent/index.html in the system Chromium (tests/browser/pipecat_page.mjs): the
    fake microphone plays silence then the user's words; Connect is clicked; the avatar video plays
    at fps at 256 px, the bot's voice arrives (the greeting), the user talking over it silences it,
    and it answers after. Loopback only (bot.py serves 127.0.0.1; Chromium without STUN/TURN and
    background networking). The result and a screenshot mid-greeting stay in tmp_path."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt install espeak-ng): the example's voice")
    pytest.importorskip("aiohttp")
    node = require_browser_tools()
    import json

    fake_mic = write_fake_microphone(tmp_path / "user.wav")
    out = tmp_path / "page"
    with example_bot(tmp_path, ready_timeout_s=40) as port:  # the default 256 px
        run = subprocess.run(
            [node, str(PIPECAT_PAGE), f"http://127.0.0.1:{port}/", str(out), str(fake_mic), "14"],
            capture_output=True,
            text=True,
            timeout=50,  # the script stops itself 30 s after its 14 s
        )
    print(run.stdout, end="")
    assert (out / "result.json").exists(), f"no result.json (rc {run.returncode}):\n{run.stderr}"
    result = json.loads((out / "result.json").read_text())
    assert run.returncode == 0 and result["ok"], f"{result.get('error')}\n{run.stderr}"
    summary = result["summary"]
    # loopback: the pair the browser used ends at 127.0.0.1
    pair = summary["rtc"]["pair"]
    assert pair is not None and pair["remote_address"] == "127.0.0.1", pair
    # the avatar video plays at about the bot's 25 fps, 256x256
    video = summary["video"]
    assert video["fps"] >= 20 and video["min_fps_2s"] >= 15, video
    assert video["sizes"] == ["256x256"], video
    assert (result["video_element"]["width"], result["video_element"]["height"]) == (256, 256)
    assert result["video_element"]["tracks"] == {"audio": 1, "video": 1}, result["video_element"]
    # the bot's voice arrives and the page plays it: RTP audio received with level, heard in an analyser
    rtc = summary["rtc"]
    assert rtc["audio_in"] and rtc["audio_in"]["bytes"] > 10_000, rtc
    assert rtc["max_inbound_audio_level"] > 0.01 and summary["audio"]["remote_max_rms"] > 0.05, summary
    # the greeting: over a second of the bot's voice before the user speaks, still speaking then
    assert summary["greeting"]["voiced_s_before_user"] > 1.0, summary["greeting"]
    barge = summary.get("barge_in")
    assert barge is not None, summary["audio"]  # the microphone's words reached the page's track
    assert barge["bot_speaking_when_user_started"], barge
    # barge-in: from 1 s after the user starts until they stop, the bot is silent (its greeting, left
    # alone, would still be playing then); then it answers
    assert barge["user_speech_s"][1] < summary["greeting"]["bot_first_voice_s"] + greeting_seconds(), barge
    assert barge["samples_during"] > 20 and barge["bot_max_rms_during"] < 0.01, barge
    assert barge["bot_answered_at_s"] is not None, (barge, summary["audio"])
    # the page: no errors; Hang up lets go of the microphone; a second Connect gets a new session
    errors = result["page_errors"] + result["console_errors"]
    assert not errors, errors
    assert result["after_hangup"] == {"status": "not connected", "connect_enabled": True, "mic_live": False}
    assert result["reconnect"]["ok"], result["reconnect"]
