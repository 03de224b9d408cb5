"""The talking avatar: speech -> audio features -> the audio-to-motion flow -> the renderer.

Offline (``pirender talk --audio speech.wav --out out.mp4``): the whole file's features, motion
generated frame by frame by the flow (the same steps a live stream runs), voice activity gating the
mouth (silence closes it), rendered and muxed with the speech.

Latency a live stream adds: the flow looks ``audio_lookahead_frames`` video frames ahead (80 ms at
25 fps with the default model), the features need one 25 ms window (their 10 ms hop is inside a video
frame), and the VAD decides on 30 ms frames; see ``added_latency_ms``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .audio.features import video_frame_log_mel
from .audio.sources import SAMPLE_RATE_HZ
from .audio.vad import VadConfig, VoiceActivity
from .audioflow.checkpoint import load_flow
from .audioflow.flow import AudioMotionFlow
from .errors import PirenderError
from .motion.retarget import retarget_open
from .motion.space import AUTHORS_SPACE, OPEN_SPACE, MotionSequence, MotionSpace
from .renderer.base import PreparedSource, Renderer

#: The shipped default model (trained by ``make train-audio`` on synthetic espeak-ng speech).
DEFAULT_MODEL = Path(__file__).resolve().parent / "audioflow" / "default_flow.pt"
_MOUTH = [OPEN_SPACE.index(name) for name in ("jaw_open", "lip_pucker")]
_EXPRESSION = AUTHORS_SPACE.group("expression")


@dataclass(frozen=True)
class TalkConfig:
    fps: float = 25.0
    temperature: float = 0.6
    seed: int = 0
    vad: VadConfig = field(default_factory=VadConfig)


def load_talk_model(path: str | Path | None = None, *, space: MotionSpace = OPEN_SPACE) -> AudioMotionFlow:
    """The flow of ``path`` (default: the shipped open-space model), checked to make ``space`` motion:
    the weight-free renderer reads the open space, PIRenderer the authors' 73-wide space."""
    if path is None and space == AUTHORS_SPACE:
        raise PirenderError(
            "PIRenderer needs an audio model of its own 73-wide motion space; the shipped model makes "
            "open-space motion for the weight-free renderer. Make one from talking-head videos: "
            "pirender prepare-audio videos/ --deep3d epoch_20.pth --out pairs; pirender train-audio "
            "pairs --out flow73.pt; then pirender talk --checkpoint ... --model flow73.pt"
        )
    chosen = Path(path) if path else DEFAULT_MODEL
    if not chosen.exists():
        raise PirenderError(f"audio-to-motion model {chosen} not found (train one: pirender train-audio)")
    model, _ = load_flow(chosen, space=space, sample_rate_hz=SAMPLE_RATE_HZ)
    return model


def added_latency_ms(model: AudioMotionFlow, fps: float = 25.0) -> dict[str, float]:
    """What a live stream waits for, in ms: the flow's audio lookahead, the feature window, the VAD frame."""
    return {
        "lookahead_ms": 1000.0 * model.config.audio_lookahead_frames / fps,
        "features_ms": 25.0,
        "vad_ms": 30.0,
    }


def speech_mask(samples: np.ndarray, frames: int, fps: float, config: VadConfig) -> np.ndarray:
    """(frames,) float in [0, 1]: how much each video frame is speech (VAD, smoothed over three video
    frames, ~120 ms at 25 fps; beyond the ends counts as silence). Audio shorter than one VAD frame
    (30 ms) has no speech: all zeros."""
    voiced = VoiceActivity(config).process(samples).astype(np.float32)  # per VAD frame
    times_s = (np.arange(len(voiced)) + 0.5) * config.frame_ms / 1000.0
    frame_times_s = (np.arange(frames) + 0.5) / fps
    mask = np.interp(frame_times_s, times_s, voiced, left=0.0, right=0.0) if len(voiced) else np.zeros(frames)
    kernel = np.ones(3) / 3
    # "valid" over a zero-padded mask: exactly `frames` values, also for one or two frames
    return np.clip(np.convolve(np.pad(mask, 1), kernel, mode="valid"), 0.0, 1.0)


def motion_for_speech(
    samples: np.ndarray, model: AudioMotionFlow, rest: np.ndarray, config: TalkConfig | None = None
) -> MotionSequence:
    """Motion of the speech for one portrait, in the model's space: ``ceil(duration * config.fps)``
    frames (at least one: any speech from one sample up gives a video as long as it).

    The flow generates frame by frame (``sample_sequence`` is a loop of the streaming ``step``);
    where the VAD hears no speech the mouth closes smoothly. Open space: ``rest`` is the portrait's
    rest row and the motion is moved onto it. Authors' space (PIRenderer): ``rest`` is a 73-wide row
    whose expression the silent frames take (the portrait's own coefficients, or the model's mean).
    """
    cfg = config or TalkConfig()
    if len(samples) == 0:
        raise PirenderError("no audio samples to make motion from (the speech is empty)")
    authors = model.config.space_name == AUTHORS_SPACE.name
    if authors and rest.shape != (AUTHORS_SPACE.width,):
        raise PirenderError(f"a {AUTHORS_SPACE.width}-wide rest row is needed, got {rest.shape}")
    frames = max(1, int(np.ceil(len(samples) / SAMPLE_RATE_HZ * cfg.fps)))
    audio = torch.from_numpy(video_frame_log_mel(samples, frames, cfg.fps))  # (frames, 40)
    generator = torch.Generator().manual_seed(cfg.seed)
    with torch.no_grad():
        rows = model.sample_sequence(audio, temperature=cfg.temperature, generator=generator).numpy()
    rows = rows.astype(np.float32)
    speaking = speech_mask(samples, frames, cfg.fps, cfg.vad)[:, None]  # (frames, 1)
    if authors:  # silence: the rest expression (mouth as at rest)
        rows[:, _EXPRESSION] = rest[_EXPRESSION] + speaking * (rows[:, _EXPRESSION] - rest[_EXPRESSION])
        return MotionSequence(AUTHORS_SPACE, rows, fps=cfg.fps, meta={"source": "audio-flow"})
    rows[:, _MOUTH] *= speaking
    rows[:, _MOUTH] = np.maximum(rows[:, _MOUTH], 0.0)
    rows[:, OPEN_SPACE.index("scale")] = 1.0
    driving = MotionSequence(OPEN_SPACE, rows, fps=cfg.fps, meta={"source": "audio-flow"})
    return retarget_open(driving, rest)


def authors_rest_row(model: AudioMotionFlow) -> np.ndarray:
    """The model's mean motion (73,): the rest row when the portrait's own coefficients are unknown."""
    return model.motion_mean.detach().numpy().astype(np.float32).copy()


def talk_rest_row(
    renderer: Renderer, prepared: PreparedSource, model: AudioMotionFlow, source_motion: str | None = None
) -> np.ndarray:
    """The row the talking motion is relative to: the weight-free renderer's rest pose of the portrait;
    for PIRenderer the portrait's own coefficients (``source_motion``, a 73-wide file) or the model's
    mean."""
    from .motion.io import load_motion
    from .renderer.mesh.renderer import MeshRenderer

    if isinstance(renderer, MeshRenderer):
        return renderer.rest_row(prepared)
    if source_motion:
        own = load_motion(source_motion)
        renderer.space.check_compatible(own.space)
        return own.values[0].astype(np.float32)
    return authors_rest_row(model)


def run_talk_live(
    source_path: str,
    *,
    out: Path | None,
    window: bool,
    size_px: int = 256,
    face_crop: bool = False,
    model_path: str | Path | None = None,
    max_seconds: float | None = None,
    fps: float = 25.0,
    checkpoint: str | None = None,
    device: str = "auto",
    backend: str = "torch",
    precision: str = "fp32",
    source_motion: str | None = None,
    window_radius: int = 13,
    microphone_stream: Any = None,
    renderer_name: str = "mesh",
) -> dict[str, float]:
    """The local microphone drives the portrait live (window and/or file), paced by the frame clock.

    The weight-free renderer by default; with a PIRenderer ``checkpoint`` (and a 73-wide audio model)
    the neural one, fed causal windows (the newest frame and ``2 * window_radius`` before it, so no
    added latency). Opens the microphone first, so a machine without one fails at once with a clear
    message. ``microphone_stream`` replaces the local microphone (anything with ``read(timeout_s)`` and
    a context manager, e.g. a file played in real time in tests).
    """
    import contextlib
    import time

    from .api import load_renderer, open_space_renderer
    from .audio.sources import MicrophoneStream
    from .fileio import staged_output
    from .image import load_source_image, tensor_to_images
    from .motion.window import StreamWindow, WindowSpec
    from .renderer.checkpoint import read_checkpoint
    from .renderer.mesh.renderer import MeshRenderer
    from .sinks.preview import PreviewWindow
    from .sinks.video_file import VideoFileWriter
    from .stream.sources import MicrophoneSource, TalkSource
    from .track.crop import crop_to_face

    with microphone_stream or MicrophoneStream() as microphone:
        if checkpoint:
            info = read_checkpoint(checkpoint)
            renderer = load_renderer(info, backend=backend, device=device, precision=precision)
            size_px = info.image_size_px
        else:
            renderer = open_space_renderer(renderer_name, image_size_px=size_px)
        model = load_talk_model(model_path, space=renderer.space)
        image = (
            crop_to_face(source_path, size_px=size_px)
            if face_crop
            else load_source_image(source_path, size_px=size_px)
        )
        prepared = renderer.prepare(image)
        audio_in = MicrophoneSource()
        talk = TalkSource(
            audio_in, talk_rest_row(renderer, prepared, model, source_motion), model=model, fps=fps
        )
        radius = 0 if isinstance(renderer, MeshRenderer) else window_radius
        windows = StreamWindow(renderer.space, WindowSpec(radius=radius, lookahead_frames=0))
        frames, started = 0, time.monotonic()
        with contextlib.ExitStack() as stack:
            stack.enter_context(renderer)  # released at the end (the mesh renderer's face finder)
            writer = None
            if out:
                # made beside `out`, moved into place when recording stops (Ctrl-C included); after
                # an error kept as <stem>.partial<suffix>, `out` left as it was
                staged = stack.enter_context(
                    staged_output(out, on_interrupt="finish", on_error="partial", what="the recording is")
                )
                writer = stack.enter_context(VideoFileWriter(staged, fps=fps, size_px=(size_px, size_px)))
            preview = (
                stack.enter_context(contextlib.closing(PreviewWindow("pirender talk"))) if window else None
            )
            while max_seconds is None or time.monotonic() - started < max_seconds:
                block = microphone.read(timeout_s=1.0 / fps)
                if block is not None and len(block):
                    audio_in.feed_samples(block)
                motion_window = windows.push(talk.row(0.0))
                assert motion_window is not None  # causal windows: one per pushed frame
                rgb = tensor_to_images(renderer.render(motion_window, source=prepared).frame)[0]
                if writer is not None:
                    writer.write(rgb)
                if preview is not None and not preview.show(rgb):
                    break
                frames += 1
                due_s = started + frames / fps
                time.sleep(max(0.0, due_s - time.monotonic()))
    return {"frames": float(frames), "seconds": time.monotonic() - started, "latency_ms": talk.latency_ms}
