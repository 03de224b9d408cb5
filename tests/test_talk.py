"""The talking avatar: the shipped audio-to-motion model, the talk / train-audio / prepare-audio commands."""

import math
import shutil
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from pirender.engine.audio.sources import SAMPLE_RATE_HZ, load_audio
from pirender.engine.errors import PirenderError
from pirender.engine.motion.io import load_motion
from pirender.engine.motion.retarget import frontal_rest_row
from pirender.engine.motion.space import OPEN_SPACE
from pirender.engine.talk import (
    DEFAULT_MODEL,
    BlinkConfig,
    BlinkSchedule,
    TalkConfig,
    load_talk_model,
    motion_for_speech,
    speech_mask,
)
from pirender.training.cli import main

from conftest import shared_data

JAW = OPEN_SPACE.index("jaw_open")
_MOUTH = [OPEN_SPACE.index(name) for name in ("jaw_open", "lip_pucker")]
#: Documented behaviour of the shipped model (measured: 0.80 on this unseen voice, 0.37 on d20).
MIN_ENERGY_CORRELATION = 0.5
MIN_REAL_CLIP_CORRELATION = 0.2

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="needs espeak-ng (apt-get install espeak-ng)"
)


def _speak(tmp_path: Path, text: str, voice: str) -> np.ndarray:
    wav = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", "160", "-w", str(wav), text], check=True)
    return load_audio(wav)


def _envelope(samples: np.ndarray, frames: int, fps: float = 25.0) -> np.ndarray:
    hop = round(SAMPLE_RATE_HZ / fps)
    return np.array([np.sqrt((samples[i * hop : (i + 1) * hop] ** 2).mean() + 1e-12) for i in range(frames)])


@needs_espeak
def test_the_default_model_opens_the_mouth_with_an_unseen_voice(tmp_path: Path) -> None:
    speech = _speak(
        tmp_path, "hello there, this is a voice the model never heard. we talk about rivers.", "en-029+klatt3"
    )
    silence = np.zeros(SAMPLE_RATE_HZ, dtype=np.float32)
    samples = np.concatenate([silence, speech, silence])
    motion = motion_for_speech(samples, load_talk_model(), frontal_rest_row(), TalkConfig(temperature=0.6))
    jaw = motion.values[:, JAW]
    correlation = float(np.corrcoef(jaw, _envelope(samples, len(jaw)))[0, 1])
    print(f"jaw / speech-energy correlation on an unseen voice: {correlation:.3f}")
    assert correlation > MIN_ENERGY_CORRELATION
    assert jaw[:20].max() < 0.05 and jaw[-20:].max() < 0.05  # silence keeps the mouth closed
    # and speech opens it, as far as real speakers do (their tracked jaw_open during speech: median
    # 0.07-0.17 on the held-out clips; the previous model's 0.6 was the "mouth wide open" complaint)
    assert 0.1 < jaw[30:-30].mean() < 0.4


@pytest.mark.slow
def test_the_held_out_real_clip(tmp_path: Path) -> None:
    """d20's own mouth (tracked from its video) against the model's mouth from d20's voice."""
    pytest.importorskip("tflite")
    from pirender.training.audio_pairs import prepare_pairs

    report = prepare_pairs(shared_data("driving", "d20.mp4"), tmp_path / "pairs", progress=False)
    assert report.written == ["d20.mp4"]
    tracked = load_motion(tmp_path / "pairs" / "d20.npz")
    samples = load_audio(tmp_path / "pairs" / "d20.wav")
    motion = motion_for_speech(samples, load_talk_model(), frontal_rest_row(), TalkConfig(temperature=0.0))
    frames = min(len(motion), len(tracked))
    correlation = float(np.corrcoef(motion.values[:frames, JAW], tracked.values[:frames, JAW])[0, 1])
    print(f"model mouth vs the clip's tracked mouth (d20, temperature 0): {correlation:.3f}")
    assert correlation > MIN_REAL_CLIP_CORRELATION


@needs_espeak
def test_talk_writes_a_video_with_the_speech(tmp_path: Path) -> None:
    pytest.importorskip("tflite")
    speech = _speak(tmp_path, "the avatar speaks.", "en-us")
    portrait = shared_data("vox_demo", "id10010_Fi21gDronE4_001686_002204_00079.jpg")
    out = tmp_path / "talk.mp4"
    assert (
        main(["talk", "--source", str(portrait), "--audio", str(tmp_path / "speech.wav"), "--out", str(out)])
        == 0
    )
    with av.open(str(out)) as container:
        kinds = sorted(s.type for s in container.streams)
        video = container.streams.video[0]
        video_s = float(video.duration * video.time_base)
    assert kinds == ["audio", "video"]
    assert abs(video_s - len(speech) / SAMPLE_RATE_HZ) < 0.1  # the video lasts as long as the speech


def _blinks(values: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) frame of each run of frames with the eyes more than half closed."""
    closed = np.flatnonzero(values > 0.5)
    runs = np.split(closed, np.flatnonzero(np.diff(closed) > 1) + 1) if closed.size else []
    return [(int(r[0]), int(r[-1])) for r in runs]


def test_the_talking_avatar_blinks_at_a_human_rate() -> None:
    """The flow's mean path never blinks; the procedural blinks (``BlinkConfig``: every 2-5 s, 0.2 s
    each, reproducible from the seed) are on by default, in speech and in silence; off, none."""
    model = load_talk_model()
    rest = frontal_rest_row()
    blink = OPEN_SPACE.index("blink_right")
    silence = np.zeros(20 * SAMPLE_RATE_HZ, np.float32)
    values = motion_for_speech(silence, model, rest, TalkConfig(seed=3)).values
    blinks = _blinks(values[:, blink])
    assert 20 / 5 - 1 <= len(blinks) <= 20 / 2  # about one every 3.5 s
    assert all(last - first + 1 <= 3 for first, last in blinks)  # brief: at most 3 frames half closed
    starts = np.array([first for first, _ in blinks]) / 25.0
    assert np.diff(starts).min() >= 2.0 - 0.1 and np.diff(starts).max() <= 5.0 + 0.1
    assert _blinks(values[:, blink + 1]) == blinks  # both eyes
    again = motion_for_speech(silence, model, rest, TalkConfig(seed=3)).values
    np.testing.assert_array_equal(values, again)  # the same seed, the same blinks
    other = motion_for_speech(silence, model, rest, TalkConfig(seed=4)).values
    assert _blinks(other[:, blink]) != blinks
    none = motion_for_speech(silence, model, rest, TalkConfig(seed=3, blinks=None)).values
    assert _blinks(none[:, blink]) == []
    # the schedule itself: a blink closes over close_s and opens over open_s
    schedule = BlinkSchedule(BlinkConfig(min_interval_s=2.0, max_interval_s=2.0), seed=0)
    assert schedule.at(1.99) == 0.0 and schedule.at(2.08) == pytest.approx(1.0)
    assert schedule.at(2.14) == pytest.approx(0.5) and schedule.at(2.2) == 0.0
    assert schedule.at(4.04) == pytest.approx(0.5)  # the next one 2 s later
    with pytest.raises(PirenderError):
        BlinkConfig(min_interval_s=3.0, max_interval_s=2.0)


def test_the_head_pose_is_smoothed_and_the_mouth_is_not() -> None:
    """Above temperature 0 the flow's head poses jitter frame to frame (as the tracked poses it learned
    from); ``pose_smoothing_s`` (causal) calms them and leaves the mouth as it was."""
    speech = load_audio(shared_data("talking", "LipNet__bbaf2n.mpg"))
    model, rest = load_talk_model(), frontal_rest_row()
    raw = motion_for_speech(speech, model, rest, TalkConfig(temperature=0.6, pose_smoothing_s=0.0)).values
    smooth = motion_for_speech(speech, model, rest, TalkConfig(temperature=0.6)).values

    def turn_per_frame(rows: np.ndarray) -> float:
        return float(np.linalg.norm(np.diff(rows[:, :3], axis=0), axis=1).mean())

    assert turn_per_frame(smooth) < 0.5 * turn_per_frame(raw)
    np.testing.assert_array_equal(smooth[:, JAW], raw[:, JAW])
    np.testing.assert_array_equal(smooth[0, :5], raw[0, :5])  # causal: it starts where the flow starts
    with pytest.raises(PirenderError):
        TalkConfig(pose_smoothing_s=-1.0)


@needs_espeak
def test_talk_uses_a_part_of_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--start`` and ``--seconds`` pick a part of ``--audio``'s file: the video and its sound last as
    long as that part (a newcomer's request, issue 15); a start past the end is a clear error."""
    pytest.importorskip("tflite")
    speech = _speak(tmp_path, "one two three four five six seven eight nine ten", "en-us")
    assert len(speech) / SAMPLE_RATE_HZ > 2.0
    portrait = shared_data("vox_demo", "id10010_Fi21gDronE4_001686_002204_00079.jpg")
    out = tmp_path / "part.mp4"
    common = ["talk", "--source", str(portrait), "--audio", str(tmp_path / "speech.wav")]
    assert main([*common, "--renderer", "mesh", "--start", "0.5", "--seconds", "1.2", "--out", str(out)]) == 0
    with av.open(str(out)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert float(video.duration * video.time_base) == pytest.approx(1.2, abs=0.05)
        assert audio.channels == 1  # the mono voice stays mono
        sound = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    assert len(sound) / audio.rate == pytest.approx(1.2, abs=0.08)
    capsys.readouterr()
    assert main([*common, "--start", "99", "--out", str(tmp_path / "late.mp4")]) == 2
    assert "--start 99 s" in capsys.readouterr().err


@needs_espeak
def test_train_audio_on_synthetic_pairs(tmp_path: Path) -> None:
    from pirender.engine.audioflow.checkpoint import read_flow_checkpoint
    from pirender.training.audio_data import write_pairs

    write_pairs(tmp_path / "pairs", 4, seed=3)
    out = tmp_path / "flow.pt"
    assert main(["train-audio", str(tmp_path / "pairs"), "--out", str(out), "--steps", "40"]) == 0
    info = read_flow_checkpoint(out)
    assert info.space.name == OPEN_SPACE.name and np.isfinite(info.training["val_nll"])


def test_missing_model_and_bad_audio_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert DEFAULT_MODEL.exists()  # the shipped model
    (tmp_path / "notes.txt").write_text("not audio")
    portrait = tmp_path / "p.png"
    assert (
        main(
            [
                "talk",
                "--source",
                str(portrait),
                "--audio",
                str(tmp_path / "notes.txt"),
                "--out",
                str(tmp_path / "o.mp4"),
            ]
        )
        == 2
    )
    assert "error:" in capsys.readouterr().err
    args = ["--out", str(tmp_path / "o.mp4"), "--model", str(tmp_path / "none.pt")]
    speech = tmp_path / "s.wav"
    from pirender.training.audio_pairs import write_wav

    write_wav(speech, np.zeros(1600, dtype=np.float32))
    assert main(["talk", "--source", str(portrait), "--audio", str(speech), *args]) == 2
    assert "not found" in capsys.readouterr().err


def test_talk_from_the_microphone_without_one_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        sounddevice = pytest.importorskip("sounddevice")
    except OSError:  # sounddevice raises OSError when the PortAudio library is missing
        pytest.skip("PortAudio is not installed: talk --mic says so instead (tested in test_audio_frontend)")
    try:
        has_input = any(d.get("max_input_channels", 0) > 0 for d in sounddevice.query_devices())
    except Exception:
        has_input = False
    if has_input:
        pytest.skip("this machine has a microphone: the no-device message cannot be shown")
    portrait = tmp_path / "p.png"
    assert main(["talk", "--source", str(portrait), "--mic", "--out", str(tmp_path / "o.mp4")]) == 2
    assert "no microphone found" in capsys.readouterr().err


@needs_espeak
def test_the_streaming_talk_source_follows_the_voice(tmp_path: Path) -> None:
    from pirender.engine.stream.sources import MicrophoneSource
    from pirender.engine.talk import TalkSource

    speech = _speak(tmp_path, "one two three, the mouth follows the voice", "en-gb")
    microphone = MicrophoneSource()
    talk = TalkSource(microphone, frontal_rest_row(), fps=25.0)
    jaw = []
    block = SAMPLE_RATE_HZ // 25
    silence = np.zeros(SAMPLE_RATE_HZ // 2, dtype=np.float32)
    for start in range(0, len(speech) + len(silence), block):  # 40 ms blocks, like a live stream
        samples = np.concatenate([speech, silence])[start : start + block]
        microphone.feed_samples(samples)
        jaw.append(float(talk.row(0.0)[JAW]))
    assert max(jaw) > 0.2  # speech opens the mouth
    assert jaw[-1] < 0.05  # and the trailing silence closes it


def test_microphone_reads_by_absolute_sample_number() -> None:
    from pirender.engine.stream.sources import MicrophoneSource

    microphone = MicrophoneSource(capacity_s=0.01)  # a 160-sample ring
    ramp = np.arange(1000, dtype=np.float32)
    microphone.feed_samples(ramp[:700])
    microphone.feed_samples(ramp[700:])
    out = np.empty(100, dtype=np.float32)
    for start in (0, 830, 839, 850, 900, 950, 1000):
        numbers = np.arange(start, start + 100)
        kept = (numbers >= 840) & (numbers < 1000)  # the newest 160 samples; later ones not received
        np.testing.assert_array_equal(microphone.read(start, out), np.where(kept, numbers, 0))


def test_returned_audio_is_the_sound_that_drove_each_frame() -> None:
    """The audio sent with stream time t starts at the microphone sample of the frame shown at t."""
    from pirender.engine.stream.audio_return import ReturnAudio
    from pirender.engine.stream.sources import MicrophoneSource

    microphone = MicrophoneSource()
    microphone.feed_samples(np.arange(20_000, dtype=np.float32) / 32768)  # sample k has the value k
    returned = ReturnAudio(microphone, fps=25.0)
    pcm, position = returned.frame(0)
    assert position is None and not pcm.any()  # no talk motion yet: silence
    returned.mark_video(0, 3000)  # frame 0's motion is the sound from sample 3000
    returned.mark_video(1, 3640)
    returned.mark_video(2, 5000)  # the talk source fell behind: a jump in the voice
    for index, first in ((0, 3000), (1, 3320), (2, 3640), (3, 3960), (4, 5000), (5, 5320), (6, 5640)):
        pcm, position = returned.frame(index)  # 20 ms frames: two per 40 ms video frame
        assert position == first
        np.testing.assert_allclose(pcm[0], np.arange(first, first + 320), atol=1)
    returned.mark_video(3, None)  # the stream left talk mode
    assert returned.frame(7)[1] is None


def test_the_browser_microphone_may_change_its_format_mid_stream() -> None:
    """A peer's audio switching from 48 kHz stereo to 44.1 kHz mono (a renegotiated or replaced
    track) keeps feeding the 16 kHz ring: about 16 000 samples per second of either."""
    import av

    from pirender.engine.stream.sources import MicrophoneSource

    microphone = MicrophoneSource()

    def frame(rate: int, layout: str, samples: int) -> av.AudioFrame:
        channels = 2 if layout == "stereo" else 1
        pcm = (np.sin(np.arange(samples) / 10.0) * 8000).astype(np.int16)
        made = av.AudioFrame.from_ndarray(np.tile(pcm, channels)[None], format="s16", layout=layout)
        made.sample_rate = rate
        return made

    for _ in range(50):  # 1 s of 48 kHz stereo in 20 ms frames
        microphone.feed(frame(48_000, "stereo", 960))
    for _ in range(50):  # then 1 s of 44.1 kHz mono
        microphone.feed(frame(44_100, "mono", 882))
    assert abs(microphone.samples_received - 32_000) < 400


@needs_espeak
def test_talk_drives_pirenderer_with_an_authors_space_flow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Either motion space: 73-wide pairs -> train-audio -> talk --checkpoint renders PIRenderer."""
    from pirender.engine.motion.io import save_motion
    from pirender.engine.motion.space import AUTHORS_SPACE, MotionSequence
    from pirender.engine.renderer.checkpoint import random_generator, save_checkpoint
    from pirender.engine.renderer.pirender.config import TINY_CONFIG
    from pirender.training.audio_pairs import write_wav

    pairs = tmp_path / "pairs"
    pairs.mkdir()
    rng = np.random.default_rng(0)
    for i, text in enumerate(["one two three four", "the quick brown fox", "rivers run to the sea"]):
        speech = _speak(tmp_path, text, "en-us")
        frames = int(np.ceil(len(speech) / SAMPLE_RATE_HZ * 25))
        rows = 0.05 * rng.standard_normal((frames, AUTHORS_SPACE.width)).astype(np.float32)
        rows[:, 0] = 5 * _envelope(speech, frames)  # one expression coefficient follows the voice
        rows[:, 70:] = (1.0, 128.0, 128.0)  # the crop slots
        write_wav(pairs / f"clip{i}.wav", speech)
        save_motion(pairs / f"clip{i}.npz", MotionSequence(AUTHORS_SPACE, rows, fps=25.0))
    flow = tmp_path / "flow73.pt"
    assert main(["train-audio", str(pairs), "--out", str(flow), "--steps", "100"]) == 0
    checkpoint = tmp_path / "tiny.pt"
    save_checkpoint(checkpoint, random_generator(TINY_CONFIG, seed=2), image_size_px=64)
    speech = _speak(tmp_path, "it speaks.", "en-gb")
    portrait = shared_data("vox_demo", "id10010_Fi21gDronE4_001686_002204_00079.jpg")
    common = ["talk", "--source", str(portrait), "--audio", str(tmp_path / "speech.wav")]
    out = tmp_path / "talk.mp4"
    capsys.readouterr()
    # the shipped open-space model cannot drive PIRenderer: said, not crashed
    assert main([*common, "--checkpoint", str(checkpoint), "--out", str(out)]) == 2
    assert "73-wide motion space" in capsys.readouterr().err
    assert main([*common, "--model", str(flow), "--out", str(out)]) == 2  # and the 73-wide one not the mesh
    assert "motion space is" in capsys.readouterr().err
    assert main([*common, "--checkpoint", str(checkpoint), "--model", str(flow), "--out", str(out)]) == 0
    with av.open(str(out)) as container:
        kinds = sorted(s.type for s in container.streams)
        video = container.streams.video[0]
        assert (video.codec_context.width, video.codec_context.height) == (64, 64)
        video_s = float(video.duration * video.time_base)
    assert kinds == ["audio", "video"]
    assert abs(video_s - len(speech) / SAMPLE_RATE_HZ) < 0.1
    # silence keeps the rest expression; speech moves it
    from pirender.engine.talk import authors_rest_row

    model = load_talk_model(flow, space=AUTHORS_SPACE)
    rest = authors_rest_row(model)
    motion = motion_for_speech(np.concatenate([speech, np.zeros(SAMPLE_RATE_HZ, np.float32)]), model, rest)
    speech_frames = int(len(speech) / SAMPLE_RATE_HZ * 25)
    np.testing.assert_allclose(motion.values[-10:, :64], np.tile(rest[:64], (10, 1)), atol=1e-5)
    assert np.abs(motion.values[:speech_frames, :64] - rest[:64]).max() > 0.01

    # live: the same models from a microphone (a fake one playing the speech in 40 ms blocks)
    from pirender.engine.talk import run_talk_live

    class FileMicrophone:
        def __init__(self, samples: np.ndarray) -> None:
            self.blocks = iter(np.array_split(samples, max(1, len(samples) // 640)))

        def __enter__(self) -> "FileMicrophone":
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def read(self, timeout_s: float) -> np.ndarray | None:
            return next(self.blocks, None)

    live = tmp_path / "live.mp4"
    stats = run_talk_live(
        str(portrait), out=live, window=False, model_path=flow, max_seconds=1.0,
        checkpoint=str(checkpoint), device="cpu", microphone_stream=FileMicrophone(speech),
    )  # fmt: skip
    # how many frames fit in the 1 s depends on the machine's speed (8 on 2 busy cores, 25 where the
    # renderer keeps up), so no lower bound but one frame; but the loop runs for the whole second and
    # the frame clock paces it: never more frames than 25 per second of it (+1 for the first)
    assert stats["seconds"] >= 1.0 and stats["latency_ms"] == pytest.approx(105.0)
    assert 1 <= stats["frames"] <= 25.0 * stats["seconds"] + 1
    with av.open(str(live)) as container:
        assert container.streams.video[0].frames == stats["frames"]


def test_a_long_talk_stream_keeps_bounded_state_and_skips_a_stale_backlog() -> None:
    from pirender.engine.stream.sources import MicrophoneSource
    from pirender.engine.talk import TalkSource

    microphone = MicrophoneSource(capacity_s=30.0)
    talk = TalkSource(microphone, frontal_rest_row(), fps=25.0)
    noise = (0.05 * np.random.default_rng(0).standard_normal(SAMPLE_RATE_HZ * 12)).astype(np.float32)
    for start in range(0, len(noise), 640):  # 12 s in 40 ms blocks, one row each
        microphone.feed_samples(noise[start : start + 640])
        talk.row(0.0)
    speech = talk._speech  # what the stream keeps stays bounded (a few hundred frames at most)
    assert len(speech._features) <= 8 and len(speech._mel_frames) <= 300 and len(speech._voiced) <= 300
    assert talk.audio_position is not None and talk.audio_position >= len(noise) - 4 * 640
    microphone.feed_samples(np.tile(noise, 2)[: SAMPLE_RATE_HZ * 15])  # 15 s arrive at once
    assert np.isfinite(talk.row(0.0)).all()  # the stale part is skipped, not replayed
    assert talk.audio_position >= len(noise) + SAMPLE_RATE_HZ * 15 - 4 * 640


def test_train_audio_refuses_mixed_spaces_and_too_short_pairs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pirender.engine.motion.io import save_motion
    from pirender.engine.motion.space import AUTHORS_SPACE, MotionSequence
    from pirender.training.audio_pairs import write_wav

    tone = (0.1 * np.sin(np.arange(SAMPLE_RATE_HZ) * 0.05)).astype(np.float32)  # 1 s
    mixed, short = tmp_path / "mixed", tmp_path / "short"
    for folder in (mixed, short):
        folder.mkdir()
    write_wav(mixed / "a.wav", tone)
    save_motion(
        mixed / "a.npz", MotionSequence(OPEN_SPACE, np.zeros((25, OPEN_SPACE.width), np.float32), fps=25.0)
    )
    write_wav(mixed / "b.wav", tone)
    save_motion(mixed / "b.npz", MotionSequence(AUTHORS_SPACE, np.zeros((25, 73), np.float32), fps=25.0))
    write_wav(short / "c.wav", tone[:1600])
    save_motion(
        short / "c.npz", MotionSequence(OPEN_SPACE, np.zeros((3, OPEN_SPACE.width), np.float32), fps=25.0)
    )
    capsys.readouterr()
    assert main(["train-audio", str(mixed), "--out", str(tmp_path / "m.pt"), "--steps", "2"]) == 2
    expected = f"motion space '{AUTHORS_SPACE.name}', the first pair's is '{OPEN_SPACE.name}'"
    assert expected in capsys.readouterr().err
    assert main(["train-audio", str(short), "--out", str(tmp_path / "s.pt"), "--steps", "2"]) == 2
    assert "too short to train on" in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists() and not (tmp_path / "s.pt").exists()


@pytest.mark.parametrize("duration_ms", [0.0625, 1, 10, 20, 30, 50, 80, 100, 130])
def test_motion_for_speech_of_any_length(duration_ms: float) -> None:
    """Every length from one sample up gives ceil(duration * fps) frames; loud white noise of any
    length is not a voice (the speech model), so the mouth stays closed as for silence (a real voice
    opening it: test_loud_applause_and_music_do_not_open_the_mouth)."""
    count = max(1, round(duration_ms * SAMPLE_RATE_HZ / 1000))
    loud = (0.3 * np.random.default_rng(0).standard_normal(count)).astype(np.float32)
    model, rest, config = load_talk_model(), frontal_rest_row(), TalkConfig()
    motion = motion_for_speech(loud, model, rest, config)
    assert len(motion) == max(1, math.ceil(count / SAMPLE_RATE_HZ * config.fps))
    assert np.isfinite(motion.values).all()
    closed = np.tile(rest[_MOUTH], (len(motion), 1))  # the rest pose's mouth, as for silence
    np.testing.assert_allclose(motion.values[:, _MOUTH], closed, atol=1e-6)


def test_motion_for_no_samples_is_a_clear_error() -> None:
    with pytest.raises(PirenderError, match="empty"):
        motion_for_speech(np.zeros(0, np.float32), load_talk_model(), frontal_rest_row())


def test_the_live_path_and_the_offline_path_agree_on_one_real_file() -> None:
    """A real speaker's file played into the microphone in uneven blocks: the live talk source shows
    exactly the rows ``pirender talk`` makes offline (one SpeechMotion: same features, silence rule,
    flow draws and retargeting), frame for frame, and a silent start keeps the mouth closed."""
    from pirender.engine.stream.sources import MicrophoneSource
    from pirender.engine.talk import SpeechMotion, TalkSource

    speech = load_audio(shared_data("talking", "LipNet__bbaf2n.mpg"))
    voice = np.concatenate([np.zeros(SAMPLE_RATE_HZ // 2, np.float32), speech])  # 0.5 s of silence first
    rest = frontal_rest_row()
    rest[OPEN_SPACE.index("yaw")] = 0.2  # a portrait turned a little: retargeting is part of the path
    config = TalkConfig(temperature=0.4, seed=3)  # flow draws and blinks: live follows the same config
    offline = motion_for_speech(voice, load_talk_model(), rest, config).values
    microphone = MicrophoneSource(capacity_s=30.0)
    talk = TalkSource(microphone, rest, fps=25.0, config=config)
    shown: dict[int, np.ndarray] = {}
    rng = np.random.default_rng(0)
    start = 0
    while start < len(voice):
        size = int(rng.integers(100, 640))  # at most a frame of audio a call: most rows are seen
        microphone.feed_samples(voice[start : start + size])
        start += size
        row = talk.row(0.0)
        if talk.audio_position is not None:
            shown[(talk.audio_position - talk.origin_sample) // 640] = row
    frames = sorted(shown)
    assert len(frames) > 0.7 * len(offline) and frames[-1] >= len(offline) - 4  # all but the lookahead
    for frame in frames:
        np.testing.assert_allclose(shown[frame], offline[frame], atol=1e-6)
    jaw = OPEN_SPACE.index("jaw_open")
    assert np.all(offline[:10, jaw] == rest[jaw])  # the silent start: mouth closed from the first frame
    assert offline[:, OPEN_SPACE.index("blink_right")].max() > 0.5  # a blink, live as offline
    # the same chunks straight into SpeechMotion, then finish: the offline rows, all of them
    direct = SpeechMotion(load_talk_model(), rest, config)
    rows = direct.push(voice[:7777]) + direct.push(voice[7777:]) + direct.finish()
    np.testing.assert_array_equal(np.stack(rows), offline)


def _applause_and_music(seconds: float = 4.0) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    t = np.arange(int(SAMPLE_RATE_HZ * seconds)) / SAMPLE_RATE_HZ
    applause = np.zeros_like(t)
    clap = int(0.01 * SAMPLE_RATE_HZ)
    for start in (rng.uniform(0, seconds - 0.02, size=int(80 * seconds)) * SAMPLE_RATE_HZ).astype(int):
        applause[start : start + clap] += rng.standard_normal(clap) * np.exp(-np.arange(clap) / 32.0)
    music = np.zeros_like(t)
    for k, f0 in enumerate([220.0, 262.0, 330.0, 392.0, 440.0, 330.0, 262.0, 220.0]):
        part = slice(int(k * 0.5 * SAMPLE_RATE_HZ), int((k + 1) * 0.5 * SAMPLE_RATE_HZ))
        for harmonic in range(1, 6):
            music[part] += np.sin(2 * np.pi * f0 * harmonic * t[part]) / harmonic
    return [
        (name, (0.3 * x / np.abs(x).max()).astype(np.float32))
        for name, x in (("applause", applause), ("music", music))
    ]


def test_loud_applause_and_music_do_not_open_the_mouth() -> None:
    """WebRTC's VAD calls both speech (85-99 % of frames); the speech model (Silero VAD) does not."""
    from pirender.engine.audio.vad import VadConfig

    rest = frontal_rest_row()
    jaw = OPEN_SPACE.index("jaw_open")
    model = load_talk_model()
    for name, sound in _applause_and_music():
        opened = motion_for_speech(sound, model, rest).values[:, jaw] - rest[jaw]
        assert np.mean(opened < 0.05) >= 0.95, (
            f"{name}: mouth open in {np.mean(opened >= 0.05):.0%} of frames"
        )
        without_model = VadConfig(speech_model=False)
        frames = int(len(sound) / SAMPLE_RATE_HZ * 25)
        assert speech_mask(sound, frames, 25.0, without_model).mean() > 0.5  # what the model prevents
    speech = load_audio(shared_data("talking", "LipNet__bbaf2n.mpg"))
    opened = motion_for_speech(speech, model, rest).values[:, jaw] - rest[jaw]
    assert np.mean(opened > 0.1) > 0.2  # a real voice still opens it


def test_per_utterance_feature_norm_is_causal_and_equal_live_and_offline(tmp_path: Path) -> None:
    from pirender.engine.audio.features import FeatureNorm
    from pirender.engine.talk import SpeechMotion
    from pirender.training.audio_trainer import TrainConfig, train

    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(50, 4))
    norm = FeatureNorm(np.zeros(4), np.ones(4), prior_frames=10)
    whole = norm.normalise(x)
    np.testing.assert_allclose([norm.push(f) for f in x], whole, atol=1e-6)  # push == whole
    changed = x.copy()
    changed[30:] += 100.0  # the future changes: the past stays (causal)
    np.testing.assert_allclose(FeatureNorm(np.zeros(4), np.ones(4), 10).normalise(changed)[:30], whole[:30])
    assert abs(float(whole[-10:].mean())) < 0.5  # a long utterance is centred on itself
    # trained with it: the checkpoint carries it and the stream applies it exactly as offline
    pairs = tmp_path / "pairs"
    speech = load_audio(shared_data("talking", "LipNet__bbaf2n.mpg"))
    from pirender.engine.motion.io import save_motion
    from pirender.engine.motion.space import MotionSequence
    from pirender.training.audio_pairs import write_wav

    pairs.mkdir()
    frames = int(len(speech) / SAMPLE_RATE_HZ * 25)
    for name in ("a", "b"):
        rows = np.tile(frontal_rest_row(), (frames, 1)).astype(np.float32)
        rows[:, JAW] = np.abs(np.sin(np.arange(frames) / 3.0)) * 0.3
        save_motion(
            pairs / f"{name}.npz", MotionSequence(OPEN_SPACE, rows, fps=25.0, meta={"identity": name})
        )
        write_wav(pairs / f"{name}.wav", speech)
    out = tmp_path / "flow.pt"
    config = TrainConfig(
        steps=4, eval_every=2, window_frames=20, feature_norm=True, lstm_hidden=8, flow_steps=2
    )
    train([pairs], out, config=config, validation_folders=[pairs], progress=False)
    model = load_talk_model(out)
    assert model.feature_norm is not None and model.feature_norm.prior_frames == 100.0
    offline = motion_for_speech(speech, model, frontal_rest_row()).values
    stream = SpeechMotion(model, frontal_rest_row())
    rows = [r for i in range(0, len(speech), 999) for r in stream.push(speech[i : i + 999])] + stream.finish()
    np.testing.assert_array_equal(np.stack(rows), offline)


def test_the_mouth_readout_is_a_closing_ridge_map_stored_with_the_flow(tmp_path: Path) -> None:
    """``audioflow.readout``: the ridge fit recovers a linear map, survives the checkpoint, is refused
    when it does not fit the flow's window, and makes the mouth of the talk path (live == offline)."""
    import torch

    from pirender.engine.audio.features import video_frame_log_mel
    from pirender.engine.audioflow.checkpoint import read_flow_checkpoint, save_flow_checkpoint
    from pirender.engine.audioflow.flow import audio_windows
    from pirender.engine.audioflow.readout import MouthReadout, fit_ridge
    from pirender.engine.errors import CheckpointError
    from pirender.engine.motion.io import save_motion
    from pirender.engine.motion.space import MotionSequence
    from pirender.engine.talk import MOUTH_SLOTS, SpeechMotion
    from pirender.training.audio_pairs import write_wav
    from pirender.training.audio_trainer import TrainConfig, readout_mouths, train

    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 3.0, size=(2000, 12))
    truth = rng.normal(size=(2, 12))
    y = x @ truth.T + np.array([0.3, -0.1])
    fitted = fit_ridge(x, y, MOUTH_SLOTS, ridge=1e-6)
    np.testing.assert_allclose(fitted.linear(x), y, atol=1e-6)
    shrunk = fit_ridge(x, y, MOUTH_SLOTS, ridge=1e6)  # a large penalty: towards the mean mouth
    assert np.abs(shrunk.linear(x) - y.mean(axis=0)).max() < 0.05 * np.abs(y - y.mean(axis=0)).max()
    closing = fitted.closing(x, np.abs(y), 0.4)  # closed on 40 % of the frames, sized like |y|
    made = closing.predict(x)
    np.testing.assert_allclose((made == 0).mean(axis=0), 0.4, atol=0.01)
    np.testing.assert_allclose(np.percentile(made, 95, axis=0), np.percentile(np.abs(y), 95, axis=0))
    soft = fitted.closing(x, np.abs(y), 0.4, softness=1.0).predict(x)  # the corner rounded: no hard zeros
    order = np.argsort(fitted.linear(x)[:, 0])
    assert soft.min() > 0 and np.all(np.diff(soft[order, 0]) >= -1e-12)  # monotone in the map
    np.testing.assert_allclose(np.percentile(soft, 95, axis=0), np.percentile(np.abs(y), 95, axis=0))
    assert np.mean(soft[:, 0] < 0.05 * soft[:, 0].max()) < np.mean(made[:, 0] == 0)
    again = MouthReadout.from_features({"mouth_readout": fitted.to_features()})
    assert again is not None and again.slots == MOUTH_SLOTS
    np.testing.assert_allclose(again.predict(x[:5]), fitted.predict(x[:5]))
    assert MouthReadout.from_features({}) is None
    with pytest.raises(CheckpointError, match="malformed"):
        MouthReadout.from_features({"mouth_readout": {"slots": [6]}})
    with pytest.raises(ValueError, match="12 expected"):
        fitted.predict(np.zeros(13))

    # trained on real speech with speakers: the checkpoint carries the readout, chosen on validation
    speech = load_audio(shared_data("talking", "LipNet__bbaf2n.mpg"))
    frames = int(len(speech) / SAMPLE_RATE_HZ * 25)
    envelope = np.sqrt(np.mean(speech[: frames * 640].reshape(frames, 640) ** 2, axis=1))  # RMS
    for folder, person in (("train", "a"), ("val", "b")):
        (tmp_path / folder).mkdir()
        rows = np.tile(frontal_rest_row(), (frames, 1)).astype(np.float32)
        rows[:, JAW] = 0.3 * envelope / envelope.max()  # a mouth that follows the voice
        meta = {"identity": person}
        save_motion(
            tmp_path / folder / f"{person}.npz", MotionSequence(OPEN_SPACE, rows, fps=25.0, meta=meta)
        )
        write_wav(tmp_path / folder / f"{person}.wav", speech)
    out = tmp_path / "flow.pt"
    config = TrainConfig(steps=4, eval_every=2, window_frames=20, lstm_hidden=8, flow_steps=2)
    train([tmp_path / "train"], out, config=config, validation_folders=[tmp_path / "val"], progress=False)
    info = read_flow_checkpoint(out)
    assert info.training["readout_ridge"] > 0 and len(info.training["readout_sync"]) == 20
    assert len(info.training["readout_softness"]) == 2
    model = load_talk_model(out)
    assert model.mouth_readout is not None and model.mouth_readout.feature_width == 6 * 40
    rest = frontal_rest_row()
    offline = motion_for_speech(speech, model, rest).values
    stream = SpeechMotion(model, rest)
    rows = [r for i in range(0, len(speech), 999) for r in stream.push(speech[i : i + 999])] + stream.finish()
    np.testing.assert_array_equal(np.stack(rows), offline)
    # the trainer chooses the readout by the mouths it computes directly: the talk path's, exactly
    windows = audio_windows(
        torch.from_numpy(video_frame_log_mel(speech, len(offline), 25.0))[None],
        history_frames=3,
        lookahead_frames=2,
    )
    made = readout_mouths(
        model.mouth_readout,
        windows[0].reshape(len(offline), -1).numpy(),
        speech_mask(speech, len(offline), 25.0, TalkConfig().vad),
    )
    np.testing.assert_allclose(offline[:, MOUTH_SLOTS], made, atol=1e-6)
    assert 0.05 < np.mean(made[:, 0] > 0) < 0.95  # it opens and closes
    without = load_talk_model(out)
    without.mouth_readout = None
    assert not np.allclose(motion_for_speech(speech, without, rest).values[:, JAW], offline[:, JAW])
    # a readout that does not read the flow's window is refused when the model loads
    model.mouth_readout = fit_ridge(x, y, MOUTH_SLOTS, ridge=1.0)
    features = {**info.features, "mouth_readout": model.mouth_readout.to_features()}
    save_flow_checkpoint(tmp_path / "bad.pt", model, space=OPEN_SPACE, features=features)
    with pytest.raises(CheckpointError, match="reads 12 numbers"):
        load_talk_model(tmp_path / "bad.pt")
