"""Audio as real files carry it, and the soundtracks of rendered videos.

Decoding survives a format change mid-stream (concatenated MP3s), damaged packets (skipped with one
warning) and any length; ``talk`` and ``render --driving`` mux the original sound (its own rate and
channels, AAC) in sync with the video. Every input is written here with PyAV (no ffmpeg command).
"""

from __future__ import annotations

import random
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from pirender.engine.audio.sources import SAMPLE_RATE_HZ, AudioError, AudioFileReader, load_audio
from pirender.engine.sinks.mux import first_video_time_s, mux_soundtrack

from conftest import shared_data

MP3_FRAME_S = 1152 / 44_100  # one MP3 frame: the granularity of an MP3's length


# --------------------------------------------------------------------------------------------------
# writing test files with PyAV


def _tone(rate_hz: int, channels: int, duration_s: float, tone_hz: float) -> np.ndarray:
    """(channels, samples) float32 sine at 0.4 full scale, every channel the same."""
    count = round(duration_s * rate_hz)
    wave = (0.4 * np.sin(2 * np.pi * tone_hz * np.arange(count) / rate_hz)).astype(np.float32)
    return np.tile(wave, (channels, 1))


def _write_audio(
    path: Path,
    samples: np.ndarray,
    *,
    rate_hz: int,
    codec: str,
    container_format: str | None = None,
    options: dict[str, str] | None = None,
    sample_format: str = "fltp",
    block: int = 1152,
) -> Path:
    """``samples`` (channels, n) float in [-1, 1] encoded with ``codec`` into ``path``."""
    layout = "mono" if samples.shape[0] == 1 else "stereo"
    with av.open(str(path), "w", format=container_format, options=options or {}) as container:
        stream: Any = container.add_stream(codec, rate=rate_hz, layout=layout)
        if codec == "libmp3lame":
            stream.bit_rate = 64_000
        for start in range(0, samples.shape[1], block):
            part = samples[:, start : start + block]
            if sample_format == "s32":  # packed 32-bit (24-bit PCM is written from it)
                data = (np.clip(part.T, -1, 1) * (2**31 - 1)).astype(np.int32).reshape(1, -1)
            else:
                data = np.ascontiguousarray(part)
            frame = av.AudioFrame.from_ndarray(data, format=sample_format, layout=layout)
            frame.sample_rate = rate_hz
            frame.pts = start
            frame.time_base = Fraction(1, rate_hz)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def _mp3(path: Path, rate_hz: int, channels: int, duration_s: float, tone_hz: float, *, bare: bool) -> Path:
    """A LAME MP3 of a tone; ``bare``: without ID3 and Xing headers (as when streams are cut)."""
    options = {"id3v2_version": "0", "write_xing": "0"} if bare else {}
    return _write_audio(
        path, _tone(rate_hz, channels, duration_s, tone_hz), rate_hz=rate_hz, codec="libmp3lame",
        container_format="mp3", options=options,
    )  # fmt: skip


def _concatenated_mp3(tmp_path: Path, *, bare: bool = True) -> Path:
    """1 s of 440 Hz as 44.1 kHz mono MP3, then 1 s of 660 Hz as 48 kHz stereo MP3, in one file."""
    first = _mp3(tmp_path / "a.mp3", 44_100, 1, 1.0, 440.0, bare=bare)
    second = _mp3(tmp_path / "b.mp3", 48_000, 2, 1.0, 660.0, bare=bare)
    mixed = tmp_path / "mixed.mp3"
    mixed.write_bytes(first.read_bytes() + second.read_bytes())
    return mixed


def _damaged_mp3(tmp_path: Path, duration_s: float = 2.0) -> Path:
    """A 44.1 kHz mono MP3 with 2048 bytes in the middle overwritten by seeded random bytes."""
    good = _mp3(tmp_path / "good.mp3", 44_100, 1, duration_s, 440.0, bare=False)
    data = bytearray(good.read_bytes())
    middle, rng = len(data) // 2, random.Random(1)
    data[middle : middle + 2048] = bytes(rng.randrange(256) for _ in range(2048))
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(bytes(data))
    return bad


def _wav24(path: Path, samples: np.ndarray, rate_hz: int = 44_100) -> Path:
    """A 24-bit PCM WAV (``samples``: (channels, n))."""
    return _write_audio(path, samples, rate_hz=rate_hz, codec="pcm_s24le", sample_format="s32", block=4096)


def _dominant_hz(samples: np.ndarray, rate_hz: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate_hz)[np.argmax(spectrum)])


def _decoded(path: Path) -> tuple[np.ndarray, int, int, str]:
    """The first audio stream of ``path``: (channels, n) float32, rate, channels, codec name."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate, channels, codec = stream.rate, stream.channels, stream.codec_context.name
        frames = [frame.to_ndarray() for frame in container.decode(stream)]
    return np.concatenate(frames, axis=1).astype(np.float32), rate, channels, codec


def _lag_s(reference: np.ndarray, shifted: np.ndarray, rate_hz: int) -> float:
    """How much later (s) ``shifted`` plays the content of ``reference`` (cross-correlation peak)."""
    n = min(len(reference), len(shifted))
    a, b = reference[:n] - reference[:n].mean(), shifted[:n] - shifted[:n].mean()
    correlation = np.fft.irfft(np.fft.rfft(b, 2 * n) * np.conj(np.fft.rfft(a, 2 * n)))
    lag = int(np.argmax(correlation))
    return (lag if lag < n else lag - 2 * n) / rate_hz


# --------------------------------------------------------------------------------------------------
# decoding


@pytest.mark.parametrize("bare", [True, False], ids=["bare", "with-headers"])
def test_a_format_change_mid_stream_decodes_whole(tmp_path: Path, bare: bool) -> None:
    """Concatenated MP3s (44.1 kHz mono, then 48 kHz stereo) decode to the end: a resampler per format.
    With ID3/Xing headers the second file's header is one undecodable packet in the middle: skipped."""
    mixed = _concatenated_mp3(tmp_path, bare=bare)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        samples = load_audio(mixed)
    duration_s = len(samples) / SAMPLE_RATE_HZ
    # each part decodes with LAME's delay and padding: up to two MP3 frames longer
    assert 2.0 <= duration_s <= 2.0 + 4 * MP3_FRAME_S
    assert _dominant_hz(samples[3200:12800], SAMPLE_RATE_HZ) == pytest.approx(440, abs=3)
    assert _dominant_hz(samples[-12800:-3200], SAMPLE_RATE_HZ) == pytest.approx(660, abs=3)
    assert len(caught) == (0 if bare else 1)  # the header in the middle: one warning with its count
    with AudioFileReader(mixed) as reader:
        formats = {(found.rate_hz, found.channels) for found in reader.formats()}
    assert {(44_100, 1), (48_000, 2)} <= formats


def test_a_video_whose_audio_changes_format_decodes_whole(tmp_path: Path) -> None:
    """The concatenated MP3 stream copied into MKV (what prepare-audio reads) decodes to the end too."""
    mixed = _concatenated_mp3(tmp_path)
    mkv = tmp_path / "mixed.mkv"
    with av.open(str(mixed)) as source, av.open(str(mkv), "w") as out:
        stream = out.add_stream_from_template(source.streams.audio[0])
        for packet in source.demux(source.streams.audio[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    samples = load_audio(mkv)
    assert 2.0 <= len(samples) / SAMPLE_RATE_HZ <= 2.0 + 4 * MP3_FRAME_S
    assert _dominant_hz(samples[-12800:-3200], SAMPLE_RATE_HZ) == pytest.approx(660, abs=3)


def test_damaged_packets_are_skipped_with_one_warning(tmp_path: Path) -> None:
    bad = _damaged_mp3(tmp_path)
    with pytest.warns(UserWarning, match=r"bad\.mp3: skipped \d+ damaged audio packets? .*silence") as caught:
        samples = load_audio(bad)
    assert len([w for w in caught if "damaged" in str(w.message)]) == 1
    # like `ffmpeg -i bad.mp3 out.wav`: the damaged stretch (2 KB, ~0.26 s at 64 kb/s) is lost at most
    assert 1.65 <= len(samples) / SAMPLE_RATE_HZ <= 2.0 + 2 * MP3_FRAME_S
    assert _dominant_hz(samples[-8000:], SAMPLE_RATE_HZ) == pytest.approx(440, abs=3)  # decoding went on
    assert np.isfinite(samples).all() and np.abs(samples).max() <= 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_audio(bad, warn=False)  # a caller that reports the damage itself


def test_a_stream_with_nothing_decodable_is_a_clear_error(tmp_path: Path) -> None:
    """Every packet of a FLAC track replaced by random bytes (no FLAC sync code): a one-line error."""
    noise = (0.3 * np.random.default_rng(0).standard_normal((1, 48_000))).astype(np.float32)
    good = _write_audio(tmp_path / "good.mkv", noise, rate_hz=48_000, codec="flac", block=4608)
    rng = np.random.default_rng(1)
    path = tmp_path / "garbage.mkv"
    with av.open(str(good)) as source, av.open(str(path), "w") as out:
        stream = out.add_stream_from_template(source.streams.audio[0])
        for packet in source.demux(audio=0):
            if packet.dts is not None:
                garbage = av.Packet(rng.bytes(packet.size))
                garbage.pts, garbage.dts, garbage.time_base = packet.pts, packet.dts, packet.time_base
                garbage.stream = stream
                out.mux(garbage)
    with pytest.raises(AudioError, match=r"garbage\.mkv: all \d+ packets are damaged") as info:
        load_audio(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("duration_ms", [1, 20, 1013])
def test_short_24_bit_stereo_wavs_decode_to_their_length(tmp_path: Path, duration_ms: int) -> None:
    """44.1 kHz 24-bit stereo of any length, also 1 ms (44 samples, which the resampler alone drops)."""
    count = round(duration_ms * 44.1)
    wav = _wav24(tmp_path / "s.wav", _tone(44_100, 2, count / 44_100, 440.0))
    samples = load_audio(wav)
    assert len(samples) == round(count * SAMPLE_RATE_HZ / 44_100)
    assert np.abs(samples).max() > 0.1  # the sound, not silence


# --------------------------------------------------------------------------------------------------
# soundtracks


def _silent_video(path: Path, frames: int, *, fps: int = 25) -> Path:
    from pirender.engine.sinks.video_file import VideoFileWriter

    with VideoFileWriter(path, fps=fps, size_px=(32, 32)) as writer:
        for index in range(frames):
            writer.write(np.full((32, 32, 3), index * 5 % 256, np.uint8))
    return path


def test_the_soundtrack_keeps_the_original_rate_and_channels(tmp_path: Path) -> None:
    """44.1 kHz 24-bit stereo speech stays 44.1 kHz stereo (AAC), starts with the first video frame."""
    source = _tone(44_100, 2, 0.6, 440.0)
    source[1] = _tone(44_100, 1, 0.6, 1000.0)[0]  # the channels differ: a down-mix would show
    source[:, : 44_100 // 5] = 0  # 0.2 s of silence, then the tones: an onset to time
    wav = _wav24(tmp_path / "speech.wav", source)
    out = tmp_path / "talk.mp4"
    sound = mux_soundtrack(_silent_video(tmp_path / "v.mp4", 15), wav, out_path=out)
    assert (sound.codec, sound.format.rate_hz, sound.format.channels) == ("aac", 44_100, 2)
    decoded, rate, channels, codec = _decoded(out)
    assert (codec, rate, channels) == ("aac", 44_100, 2)
    assert decoded.shape[1] / rate == pytest.approx(0.6, abs=0.03)
    assert _dominant_hz(decoded[0, 10_000:25_000], rate) == pytest.approx(440, abs=5)
    assert _dominant_hz(decoded[1, 10_000:25_000], rate) == pytest.approx(1000, abs=5)
    assert abs(_lag_s(source[0], decoded[0], rate)) <= 0.002  # in sync, to 2 ms
    with av.open(str(out)) as container:
        assert 60_000 <= container.streams.audio[0].bit_rate <= 200_000  # ~128 kb/s for stereo


def test_a_wav_without_a_channel_mask_stays_mono(tmp_path: Path) -> None:
    """A 16 kHz mono WAV of Python's ``wave`` module (no channel mask: FFmpeg decodes it as "1
    channels") is muxed as mono AAC, not up-mixed to stereo (a newcomer's finding, issue 15)."""
    import wave

    wav = tmp_path / "voice.wav"
    with wave.open(str(wav), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(16_000)
        handle.writeframes((_tone(16_000, 1, 0.5, 440.0)[0] * 32767).astype("<i2").tobytes())
    out = tmp_path / "talk.mp4"
    sound = mux_soundtrack(_silent_video(tmp_path / "v.mp4", 15), wav, out_path=out)
    decoded, rate, channels, codec = _decoded(out)
    assert (codec, rate, channels) == ("aac", 16_000, 1)
    assert (sound.format.rate_hz, sound.format.channels) == (16_000, 1)
    assert _dominant_hz(decoded[0, 2_000:6_000], rate) == pytest.approx(440, abs=10)


def test_a_mid_stream_format_change_gets_its_widest_format(tmp_path: Path) -> None:
    out = tmp_path / "talk.mp4"
    sound = mux_soundtrack(_silent_video(tmp_path / "v.mp4", 55), _concatenated_mp3(tmp_path), out_path=out)
    decoded, rate, channels, _ = _decoded(out)
    assert (rate, channels) == (48_000, 2) == (sound.format.rate_hz, sound.format.channels)
    assert decoded.shape[1] / rate == pytest.approx(sound.duration_s, abs=0.03)
    assert 2.0 <= sound.duration_s <= 2.0 + 4 * MP3_FRAME_S


def test_the_soundtrack_is_cut_at_the_end_of_the_video(tmp_path: Path) -> None:
    wav = _wav24(tmp_path / "long.wav", _tone(48_000, 1, 2.0, 440.0), rate_hz=48_000)
    out = tmp_path / "short.mkv"
    sound = mux_soundtrack(_silent_video(tmp_path / "v.mkv", 10), wav, out_path=out)  # 0.4 s of video
    decoded, rate, channels, _ = _decoded(out)
    assert (rate, channels) == (48_000, 1)
    assert sound.duration_s == pytest.approx(0.4, abs=1e-3)
    assert decoded.shape[1] / rate == pytest.approx(0.4, abs=0.03)


def _clip_with_sound(path: Path, *, video_start_s: float, audio_start_s: float) -> np.ndarray:
    """A 1 s MKV: 25 fps frames from ``video_start_s`` and 48 kHz mono noise from ``audio_start_s``
    (its own timeline); returns the noise."""
    noise = (0.3 * np.random.default_rng(3).standard_normal(48_000)).astype(np.float32)
    with av.open(str(path), "w") as container:
        video: Any = container.add_stream("mpeg4", rate=25)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        video.codec_context.time_base = Fraction(1, 25)
        audio: Any = container.add_stream("flac", rate=48_000, layout="mono")
        for index in range(25):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), index * 9, np.uint8), format="rgb24")
            frame.pts = round(video_start_s * 25) + index
            frame.time_base = Fraction(1, 25)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        for start in range(0, len(noise), 4608):
            frame = av.AudioFrame.from_ndarray(noise[None, start : start + 4608], format="flt", layout="mono")
            frame.sample_rate = 48_000
            frame.pts = round(audio_start_s * 48_000) + start
            frame.time_base = Fraction(1, 48_000)
            container.mux(audio.encode(frame))
        container.mux(audio.encode(None))
    return noise


@pytest.mark.parametrize(("video_start_s", "audio_start_s"), [(0.0, 0.2), (0.2, 0.0)])
def test_a_driving_clip_sound_keeps_its_place_on_the_timeline(
    tmp_path: Path, video_start_s: float, audio_start_s: float
) -> None:
    """Sound starting after the first frame gets silence before it; sound starting before is cut."""
    clip = tmp_path / "clip.mkv"
    noise = _clip_with_sound(clip, video_start_s=video_start_s, audio_start_s=audio_start_s)
    start = first_video_time_s(clip)
    assert start == pytest.approx(video_start_s, abs=1e-3)
    out = tmp_path / "out.mp4"
    mux_soundtrack(_silent_video(tmp_path / "v.mp4", 25), clip, out_path=out, start_at_s=start)
    decoded, rate, _, _ = _decoded(out)
    assert rate == 48_000
    assert _lag_s(noise, decoded[0], rate) == pytest.approx(audio_start_s - video_start_s, abs=0.002)
    assert decoded.shape[1] / rate == pytest.approx(1.0 - max(0.0, video_start_s - audio_start_s), abs=0.03)


# --------------------------------------------------------------------------------------------------
# the commands


def _portrait() -> Path:
    pytest.importorskip("tflite")
    return shared_data("vox_demo", "id10010_Fi21gDronE4_001686_002204_00079.jpg")


@pytest.mark.parametrize("duration_ms", [1, 20])
def test_talk_with_a_very_short_wav_makes_a_one_frame_video(
    tmp_path: Path, duration_ms: int, capsys: pytest.CaptureFixture[str]
) -> None:
    from pirender.training.cli import main

    portrait = _portrait()
    wav = _wav24(tmp_path / "s.wav", _tone(44_100, 2, duration_ms / 1000, 300.0))
    out = tmp_path / "t.mp4"
    assert main(["talk", "--source", str(portrait), "--audio", str(wav), "--out", str(out)]) == 0
    assert f"holds only {duration_ms} ms of sound: a one-frame video" in capsys.readouterr().out
    with av.open(str(out)) as container:
        assert container.streams.video[0].frames == 1
        audio = container.streams.audio[0]
        assert (audio.rate, audio.channels) == (44_100, 2)


def test_talk_on_silence_says_no_speech_was_heard(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A silent track (d18's, d3's, d19's own) gives a still mouth, and the command says why."""
    from pirender.training.cli import main

    wav = _wav24(tmp_path / "quiet.wav", np.zeros((2, 44_100), dtype=np.float32))
    out = tmp_path / "t.mp4"
    assert main(["talk", "--source", str(_portrait()), "--audio", str(wav), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "no speech heard in" in printed and "sound muxed in" in printed


def test_talk_with_a_damaged_mp3_warns_and_keeps_the_sound(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pirender.training.cli import main

    portrait = _portrait()
    bad = _damaged_mp3(tmp_path, duration_s=1.0)
    out = tmp_path / "t.mp4"
    with pytest.warns(UserWarning, match="damaged audio packet") as caught:
        assert main(["talk", "--source", str(portrait), "--audio", str(bad), "--out", str(out)]) == 0
    assert len([w for w in caught if "damaged" in str(w.message)]) == 1  # once, not per decoding pass
    with av.open(str(out)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert (audio.rate, audio.channels, audio.codec_context.name) == (44_100, 1, "aac")
        assert 0.65 <= float(video.duration * video.time_base) <= 1.1  # 2 KB at 64 kb/s: 0.26 s lost at most


def test_render_driving_keeps_the_clip_sound_unless_no_audio(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pirender.training.cli import main

    portrait = _portrait()
    driving = shared_data("driving", "d11.mp4")  # 25 fps, 44.1 kHz stereo AAC speech
    common = ["render", "--source", str(portrait), "--driving", str(driving), "--max-frames", "12"]
    out = tmp_path / "with_sound.mp4"
    assert main([*common, "--out", str(out)]) == 0
    assert "muxed in" in capsys.readouterr().out
    decoded, rate, channels, codec = _decoded(out)
    assert (codec, rate, channels) == ("aac", 44_100, 2)
    assert decoded.shape[1] / rate == pytest.approx(12 / 25, abs=0.03)  # cut at the 12 frames
    with AudioFileReader(driving) as reader:
        original = np.concatenate(list(reader.chunks(rate_hz=44_100, layout="stereo")), axis=1)
    assert abs(_lag_s(original[0, : decoded.shape[1]], decoded[0], rate)) <= 0.002  # in sync
    silent = tmp_path / "silent.mp4"
    assert main([*common, "--no-audio", "--out", str(silent)]) == 0
    with av.open(str(silent)) as container:
        assert [s.type for s in container.streams] == ["video"]


def test_damaged_leading_packets_do_not_push_the_sound_late() -> None:
    """The reader gives the skipped packets' time as silence before its first decoded frame, and that
    frame's time as ``first_time_s``: the sound must start where the file puts it, not that much later."""
    from pirender.engine.sinks.mux import AudioFormat, _PlacedSamples

    rate = 1000

    class Reader:  # damaged packets for 0.2 s, then sound from 0.5 s on the file's timeline
        first_time_s = 0.5
        leading_silence_s = 0.2

        def chunks(self, *, rate_hz: int, layout: str):  # type: ignore[no-untyped-def]
            yield np.zeros((1, round(0.2 * rate_hz)), np.float32)
            yield np.ones((1, rate_hz), np.float32)

    placed = np.concatenate(list(_PlacedSamples(Reader(), AudioFormat(rate, "mono", 1), 0.0, None)), axis=1)  # type: ignore[arg-type]
    assert np.argmax(placed[0] > 0) / rate == pytest.approx(0.5)
