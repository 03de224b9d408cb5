"""The talking avatar: speech -> audio features -> the audio-to-motion flow -> the renderer.

Offline (``pirender talk --audio speech.wav --out out.mp4``): the whole file's features, motion
generated frame by frame by the flow (the same steps a live stream runs), voice activity gating the
mouth (silence closes it), rendered and muxed with the speech.

Latency a live stream adds: the flow looks ``audio_lookahead_frames`` video frames ahead (80 ms at
25 fps with the default model), the features need one 25 ms window (their 10 ms hop is inside a video
frame), and the VAD decides on 30 ms frames; see ``added_latency_ms``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .audio.features import FeatureConfig, FeatureNorm, StreamingLogMel, video_frame_audio_range
from .audio.sources import SAMPLE_RATE_HZ
from .audio.vad import VadConfig, VoiceActivity
from .audioflow.checkpoint import load_flow
from .audioflow.flow import AudioMotionFlow
from .audioflow.readout import MouthReadout
from .clock import now_s
from .errors import CheckpointError, PirenderError
from .motion.retarget import OpenRetargeter, frontal_rest_row
from .motion.space import AUTHORS_SPACE, OPEN_SPACE, MotionSequence, MotionSpace
from .motion.window import DEFAULT_RADIUS
from .pipeline import FrameSlot, TimedMotion
from .renderer.base import PreparedSource, Renderer

if TYPE_CHECKING:
    from .stream.sources import MicrophoneSource

#: The shipped default model (trained by ``make train-audio`` on the real speakers of the talking corpus).
DEFAULT_MODEL = Path(__file__).resolve().parent / "audioflow" / "default_flow.pt"
#: the open-space slots the voice moves (the mouth: closed at the portrait's rest values)
MOUTH_SLOTS = tuple(OPEN_SPACE.index(name) for name in ("jaw_open", "lip_pucker"))
_MOUTH = list(MOUTH_SLOTS)
_BLINKS = [OPEN_SPACE.index(name) for name in ("blink_right", "blink_left")]
_SCALE = OPEN_SPACE.index("scale")
_POSE = [OPEN_SPACE.index(name) for name in ("pitch", "yaw", "roll", "tx", "ty")]
_EXPRESSION = AUTHORS_SPACE.group("expression")


#: the shipped model's temperature. Its mouth comes from the mouth readout, which the temperature
#: does not touch; the temperature sets the variety of the rest (head, brows, gaze): 0.2 turns the
#: head between frames about as much as the corpus's real speakers (engine/audioflow/MODEL_CARD.md;
#: 0 = the flow's mean path, a still head)
DEFAULT_TEMPERATURE = 0.2


@dataclass(frozen=True)
class BlinkConfig:
    """Blinks of the talking avatar, made procedurally (speech does not drive blinking; the flow at
    temperature 0 never blinks). Intervals are drawn uniformly in ``min_interval_s .. max_interval_s``
    (mean 3.5 s: about 17 blinks a minute, the resting rate people show; Bentivoglio et al. 1997), each
    blink closes over ``close_s`` and opens over ``open_s`` (a 0.2 s blink) to ``depth`` (open-space
    blink units: 1 = closed; soft-limited like every row)."""

    min_interval_s: float = 2.0
    max_interval_s: float = 5.0
    close_s: float = 0.08
    open_s: float = 0.12
    depth: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.min_interval_s <= self.max_interval_s:
            raise PirenderError("blink intervals need 0 < min_interval_s <= max_interval_s")
        if self.close_s <= 0 or self.open_s <= 0 or self.close_s + self.open_s > self.min_interval_s:
            raise PirenderError("a blink's close_s and open_s must be > 0 and fit in min_interval_s")


class BlinkSchedule:
    """The blink value of video frames in order (:class:`BlinkConfig`), reproducible from ``seed``:
    the same frames give the same blinks offline and live."""

    def __init__(self, config: BlinkConfig, seed: int) -> None:
        self.config, self._seed = config, seed
        self.reset()

    def reset(self) -> None:
        self._rng = np.random.default_rng(self._seed)
        self._start_s = self._interval()

    def _interval(self) -> float:
        return float(self._rng.uniform(self.config.min_interval_s, self.config.max_interval_s))

    def at(self, time_s: float) -> float:
        """The blink value at ``time_s`` (non-decreasing times: a stream's frame centres)."""
        cfg = self.config
        while time_s >= self._start_s + cfg.close_s + cfg.open_s:  # that blink is over: draw the next
            self._start_s += self._interval()
        into = time_s - self._start_s
        if into < 0:
            return 0.0
        if into < cfg.close_s:
            return cfg.depth * into / cfg.close_s
        return cfg.depth * max(0.0, 1.0 - (into - cfg.close_s) / cfg.open_s)


@dataclass(frozen=True)
class TalkConfig:
    """``blinks``: procedural blinks (:class:`BlinkConfig`) on the open space, None for the flow's own.
    ``pose_smoothing_s``: time constant (s) of a causal exponential smoothing of the head pose (open
    space: pitch, yaw, roll, tx, ty): the flow's draws above temperature 0 jitter from frame to frame,
    as the tracked poses it learned from do; 0 = none."""

    fps: float = 25.0
    temperature: float = DEFAULT_TEMPERATURE
    seed: int = 0
    vad: VadConfig = field(default_factory=VadConfig)
    blinks: BlinkConfig | None = field(default_factory=BlinkConfig)
    pose_smoothing_s: float = 0.2

    def __post_init__(self) -> None:
        if self.fps <= 0 or self.temperature < 0 or self.pose_smoothing_s < 0:
            raise PirenderError("TalkConfig needs fps > 0, temperature >= 0 and pose_smoothing_s >= 0")


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
    model, info = load_flow(chosen, space=space, sample_rate_hz=SAMPLE_RATE_HZ)
    model.feature_norm = FeatureNorm.from_features(info.features)  # per-utterance features, if trained so
    readout = MouthReadout.from_features(info.features)  # the mouth's linear map, if trained with one
    if readout is not None:
        width = model.config.audio_context_frames * model.config.audio_feature_width
        if readout.feature_width != width or max(readout.slots) >= model.config.motion_width:
            raise CheckpointError(
                f"{chosen}: its mouth readout reads {readout.feature_width} numbers into slots "
                f"{list(readout.slots)}; the flow's window holds {width}, its rows "
                f"{model.config.motion_width}"
            )
    model.mouth_readout = readout
    return model


def added_latency_ms(model: AudioMotionFlow, fps: float = 25.0) -> dict[str, float]:
    """What a live stream waits for, in ms: the flow's audio lookahead, the feature window, the VAD frame."""
    return {
        "lookahead_ms": 1000.0 * model.config.audio_lookahead_frames / fps,
        "features_ms": 25.0,
        "vad_ms": 30.0,
    }


def vad_frame_at(video_frame: np.ndarray | int, fps: float, vad: VadConfig) -> np.ndarray:
    """The VAD frame(s) holding the centre of video frame(s) ``video_frame`` (the silence rule's ``v``)."""
    return ((np.asarray(video_frame) + 0.5) / fps) * 1000.0 // vad.frame_ms


class SpeechMotion:
    """Voice -> motion rows, one video frame at a time: the one path of every talking avatar (``pirender
    talk`` offline, ``talk --mic`` and the page's Talk mode live), so they agree exactly.

    Feed 16 kHz mono samples in chunks of any size (:meth:`push`) and end the voice with
    :meth:`finish`; each returns the motion rows it completed, in order. Per video frame ``i`` (of
    ``config.fps``):

    - **Features**: the mean log-mel of the frame's audio (``audio.features``: 10 ms frames, the
      fractional schedule of ``video_frame_features``), streamed (``StreamingLogMel``), bit-identical
      to the offline ``video_frame_log_mel`` of the whole voice; normalised per utterance when the
      model was trained so (``audio.features.FeatureNorm``, causal).
    - **Voice activity** (the silence rule): ``v_i`` = the VAD's decision (``audio.vad``: WebRTC VAD,
      energy floor, Silero VAD, hangover) for the VAD frame holding the video frame's centre; the frame's
      speaking weight is the mean of ``v_{i-1}, v_i, v_{i+1}`` (0 outside the voice), ~120 ms of
      smoothing, so the mouth closes over two frames instead of snapping.
    - **Motion**: the flow's step on the features of frames ``i - k .. i + tau`` (the first frame
      repeated before the start, the last after the end of the voice), latent drawn from
      ``torch.Generator(seed)`` at ``config.temperature``; when the model has a mouth readout
      (``audioflow.readout``), the mouth controls come from it, on the same window. Open space:
      the mouth controls (jaw_open, lip_pucker) times the speaking weight, never below 0, scale 1,
      the head pose smoothed (``config.pose_smoothing_s``, causal), the blinks at least
      ``config.blinks``'s (:class:`BlinkSchedule` at the frame's centre), moved onto the portrait's
      ``rest`` row.
      Authors' space: the expression blends to ``rest``'s with the weight.

    A row is complete once frame ``i + tau``'s features and ``v_{i+1}`` exist: it lags its voice by
    ``tau`` frames plus one feature window (``added_latency_ms``). :meth:`finish` completes the rest:
    ``ceil(duration * fps)`` rows in all (at least one).
    """

    def __init__(self, model: AudioMotionFlow, rest: np.ndarray, config: TalkConfig | None = None) -> None:
        self.model, self.config = model, config or TalkConfig()
        self._authors = model.config.space_name == AUTHORS_SPACE.name
        self._rest = np.asarray(rest, dtype=np.float32).copy()
        if self._authors and self._rest.shape != (AUTHORS_SPACE.width,):
            raise PirenderError(f"a {AUTHORS_SPACE.width}-wide rest row is needed, got {self._rest.shape}")
        self._retarget = None if self._authors else OpenRetargeter(frontal_rest_row(), self._rest)
        self._feature_config = FeatureConfig()
        self._floor = float(np.log(self._feature_config.log_floor))
        self._mel = StreamingLogMel(self._feature_config)
        self._vad = VoiceActivity(self.config.vad)
        norm = getattr(model, "feature_norm", None)  # set by load_talk_model from the checkpoint
        self._norm = None if norm is None else FeatureNorm(norm.mean, norm.std, norm.prior_frames)
        self._history = model.config.history_frames
        self._lookahead = model.config.audio_lookahead_frames
        blinks = None if self._authors else self.config.blinks
        self._blinks = None if blinks is None else BlinkSchedule(blinks, self.config.seed)
        smoothing = self.config.pose_smoothing_s * self.config.fps  # in frames
        self._pose_keep = float(np.exp(-1.0 / smoothing)) if smoothing > 0 else 0.0
        self.reset()

    def reset(self, *, keep_pose: bool = False) -> None:
        """Start a new voice (features, voice activity, the flow's state and latent draws);
        ``keep_pose``: the smoothed head pose goes on from where it is (a new voice of the same
        speaker, after an interruption) instead of starting at the flow's first pose."""
        self._mel.reset()
        self._vad.reset()
        self._mel_frames: list[np.ndarray] = []  # mel frames from index self._mel_base on
        self._mel_base = 0
        self._features: dict[int, np.ndarray] = {}  # per video frame (the ones still needed)
        self._next_feature = 0
        if self._norm is not None:
            self._norm.reset()
        self._voiced: list[bool] = []  # VAD decisions from VAD frame self._vad_base on
        self._vad_base = 0
        self._samples = 0
        self._finished = False
        self._state = self.model.reset()
        self._generator = torch.Generator().manual_seed(self.config.seed)
        if self._blinks is not None:
            self._blinks.reset()
        if not keep_pose:
            self._pose: np.ndarray | None = None  # the smoothed head pose (open space)
        self.frames_out = 0  # rows produced so far

    # -- the voice in --------------------------------------------------------------------------

    def push(self, samples: np.ndarray) -> list[np.ndarray]:
        """(n,) float32 samples at 16 kHz -> the rows this chunk completed (possibly none)."""
        if self._finished:
            raise PirenderError("this voice has ended (finish was called): reset() starts a new one")
        samples = np.asarray(samples, dtype=np.float32)
        self._samples += samples.size
        self._mel_frames.extend(self._mel.push(samples))
        self._voiced.extend(bool(v) for v in self._vad.process(samples))
        return self._produce()

    def finish(self) -> list[np.ndarray]:
        """End of the voice: the remaining rows (the audio zero-padded, missing voice = silence)."""
        self._mel_frames.extend(self._mel.flush())
        self._finished = True
        total = max(1, int(np.ceil(self._samples / SAMPLE_RATE_HZ * self.config.fps)))
        return self._produce(total)

    # -- per video frame -----------------------------------------------------------------------

    def _feature(self, frame: int) -> np.ndarray | None:
        """The features of video frame ``frame`` (made in order, each once), or None while its audio
        is incomplete."""
        while self._next_feature <= frame:
            value = self._make_feature(self._next_feature)
            if value is None:
                return None
            self._features[self._next_feature] = value
            self._next_feature += 1
        return self._features[frame]

    def _make_feature(self, frame: int) -> np.ndarray | None:
        """The mean log-mel of video frame ``frame`` (normalised per utterance when the model was
        trained so: ``audio.features.FeatureNorm``), or None while its audio is incomplete."""
        span = video_frame_audio_range(frame, self.config.fps, self._feature_config)
        available = self._mel_base + len(self._mel_frames)
        if span.stop > available and not self._finished:
            return None
        silence = np.full(self._feature_config.n_mels, self._floor, np.float32)  # beyond the voice
        rows = [self._mel_frames[j - self._mel_base] if j < available else silence for j in span]
        value = np.mean(np.stack(rows), axis=0).astype(np.float32)
        return value if self._norm is None else self._norm.push(value)

    def _voice(self, frame: int) -> float | None:
        """``v_frame`` (class docstring): 1.0 / 0.0, or None while the VAD has not decided it."""
        if frame < 0:
            return 0.0
        vad_frame = int(vad_frame_at(frame, self.config.fps, self.config.vad))
        index = vad_frame - self._vad_base
        if index < len(self._voiced):
            return float(self._voiced[index])
        return 0.0 if self._finished else None

    def _produce(self, total: int | None = None) -> list[np.ndarray]:
        rows = []
        while total is None or self.frames_out < total:
            n = self.frames_out
            last = n + self._lookahead if total is None else min(n + self._lookahead, total - 1)
            if self._feature(last) is None:
                break
            voices = [
                self._voice(n - 1),
                self._voice(n),
                self._voice(n + 1) if total is None or n + 1 < total else 0.0,
            ]
            if any(v is None for v in voices):
                break
            frames = np.clip(np.arange(n - self._history, n + self._lookahead + 1), 0, last)
            window = torch.from_numpy(np.stack([self._feature(int(i)) for i in frames]))  # type: ignore[misc]
            with torch.no_grad():
                motion, self._state = self.model.step(
                    window, self._state, temperature=self.config.temperature, generator=self._generator
                )
            row = motion.numpy().astype(np.float32)
            readout = self.model.mouth_readout
            if readout is not None:  # the mouth from the linear map of the same window
                row[list(readout.slots)] = readout.predict(window.numpy().reshape(-1))
            speaking = float(np.mean([v for v in voices if v is not None]))  # all known here
            rows.append(self._gate(row, speaking, n))
            self.frames_out += 1
            self._forget(self.frames_out)
        return rows

    def _gate(self, row: np.ndarray, speaking: float, frame: int) -> np.ndarray:
        if self._authors:  # silence: the rest expression (mouth as at rest)
            row[_EXPRESSION] = self._rest[_EXPRESSION] + speaking * (
                row[_EXPRESSION] - self._rest[_EXPRESSION]
            )
            return row
        row[_MOUTH] = gated_mouth(row[_MOUTH], speaking)
        row[_SCALE] = 1.0
        if self._pose is None:
            self._pose = row[_POSE].copy()
        else:
            self._pose = self._pose_keep * self._pose + (1.0 - self._pose_keep) * row[_POSE]
        row[_POSE] = self._pose
        if self._blinks is not None:
            row[_BLINKS] = np.maximum(row[_BLINKS], self._blinks.at((frame + 0.5) / self.config.fps))
        assert self._retarget is not None
        return self._retarget(row).astype(np.float32)

    def _forget(self, next_frame: int) -> None:
        """Drop what no later row needs (bounded memory on an endless stream)."""
        oldest = max(0, next_frame - self._history)
        for frame in [f for f in self._features if f < oldest]:
            del self._features[frame]
        first_mel = video_frame_audio_range(oldest, self.config.fps, self._feature_config).start
        if first_mel - self._mel_base > 256:
            del self._mel_frames[: first_mel - self._mel_base]
            self._mel_base = first_mel
        first_vad = int(
            vad_frame_at(next_frame - 2, self.config.fps, self.config.vad)
        )  # of v_{n-1}, one spare
        if first_vad - self._vad_base > 256:
            del self._voiced[: first_vad - self._vad_base]
            self._vad_base = first_vad


def gated_mouth(mouth: np.ndarray, speaking: float | np.ndarray) -> np.ndarray:
    """The silence rule on the mouth controls (open space, 0 = closed at the rest row): ``mouth``
    (..., 2) times the speaking weight (a number, or (...,) weights: ``speech_mask``), never below 0."""
    weight = speaking[..., None] if isinstance(speaking, np.ndarray) else speaking
    return np.maximum(mouth * weight, 0.0)


def speech_mask(samples: np.ndarray, frames: int, fps: float, config: VadConfig) -> np.ndarray:
    """(frames,) float in [0, 1]: each video frame's speaking weight (:class:`SpeechMotion`'s silence
    rule: the VAD frame at the video frame's centre, averaged over the frame and its two neighbours;
    beyond the voice counts as silence)."""
    voiced = VoiceActivity(config).process(samples).astype(np.float64)
    index = vad_frame_at(np.arange(frames), fps, config).astype(np.int64)
    v = np.zeros(frames)
    known = index < len(voiced)
    v[known] = voiced[index[known]]
    padded = np.pad(v, 1)
    return (padded[:-2] + padded[1:-1] + padded[2:]) / 3.0


def motion_for_speech(
    samples: np.ndarray, model: AudioMotionFlow, rest: np.ndarray, config: TalkConfig | None = None
) -> MotionSequence:
    """Motion of the speech for one portrait, in the model's space: ``ceil(duration * config.fps)``
    frames (at least one: any speech from one sample up gives a video as long as it), made by
    :class:`SpeechMotion` (the live path) fed the whole voice at once. Open space: ``rest`` is the
    portrait's rest row and the motion is moved onto it. Authors' space (PIRenderer): ``rest`` is a
    73-wide row whose expression the silent frames take (the portrait's own coefficients, or the
    model's mean).
    """
    cfg = config or TalkConfig()
    if len(samples) == 0:
        raise PirenderError("no audio samples to make motion from (the speech is empty)")
    speech = SpeechMotion(model, rest, cfg)
    rows = speech.push(samples) + speech.finish()
    space = AUTHORS_SPACE if model.config.space_name == AUTHORS_SPACE.name else OPEN_SPACE
    meta: dict[str, Any] = {"source": "audio-flow"}
    if space == OPEN_SPACE:
        meta["neutral_rest"] = [float(v) for v in rest]
    return MotionSequence(space, np.stack(rows).astype(np.float32), fps=cfg.fps, meta=meta)


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

    if renderer.space == OPEN_SPACE:
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
    window_radius: int = DEFAULT_RADIUS,
    microphone_stream: Any = None,
    renderer_name: str = "mesh",
    talk_config: TalkConfig | None = None,
) -> dict[str, float]:
    """The local microphone drives the portrait live (window and/or file), paced by the frame clock.

    The weight-free renderer by default; with a PIRenderer ``checkpoint`` (and a 73-wide audio model)
    the neural one, fed causal windows (the newest frame and ``2 * window_radius`` before it, so no
    added latency). Opens the microphone first, so a machine without one fails at once with a clear
    message. ``microphone_stream`` replaces the local microphone (anything with ``read(timeout_s)`` and
    a context manager, e.g. a file played in real time in tests).
    """
    import contextlib

    from .api import load_renderer, open_space_renderer
    from .audio.sources import MicrophoneStream
    from .fileio import staged_output
    from .image import load_source_image
    from .motion.window import StreamWindow, WindowSpec
    from .pipeline import FrameClock, FrameSink, LivePipeline
    from .renderer.checkpoint import read_checkpoint
    from .sinks.preview import PreviewWindow
    from .sinks.video_file import VideoFileWriter
    from .stream.sources import MicrophoneSource
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
        rest = talk_rest_row(renderer, prepared, model, source_motion)
        talk = TalkSource(audio_in, rest, model=model, fps=fps, config=talk_config)
        radius = 0 if renderer.min_window_frames == 1 else window_radius  # one-frame renderers: no window
        windows = StreamWindow(renderer.space, WindowSpec(radius=radius, lookahead_frames=0))
        spoken = SpokenMotion(microphone, audio_in, talk, fps=fps, max_seconds=max_seconds)
        sinks: list[FrameSink] = []
        with contextlib.ExitStack() as stack:
            stack.enter_context(renderer)  # released at the end (the mesh renderer's face finder)
            if out:
                # made beside `out`, moved into place when recording stops (Ctrl-C included); after
                # an error kept as <stem>.partial<suffix>, `out` left as it was
                staged = stack.enter_context(
                    staged_output(out, on_interrupt="finish", on_error="partial", what="the recording is")
                )
                sinks.append(
                    stack.enter_context(VideoFileWriter(staged, fps=fps, size_px=(size_px, size_px)))
                )
            if window:
                sinks.append(stack.enter_context(contextlib.closing(PreviewWindow("pirender talk"))))
            clock = FrameClock(fps, drop_late=False)  # a recording keeps every frame
            stats = LivePipeline(spoken, windows, renderer, prepared, sinks, clock=clock).run()
    return {
        "frames": float(stats.frames),
        "seconds": time.monotonic() - spoken.started,
        "latency_ms": talk.latency_ms,
    }


_TALK_MAX_BACKLOG_S = 2.0  # a talk source this far behind its microphone skips the stale voice


class TalkSource:
    """Motion from the client's microphone through the audio-to-motion flow, frame by frame.

    Audio arrives in ``microphone`` (16 kHz); ``engine.talk.SpeechMotion`` turns it into motion, the
    same object (features, voice-activity silence rule, flow, retargeting) ``pirender talk`` runs
    offline, so a file played into the microphone gives the offline motion exactly. Motion frame
    ``n`` needs the features of frames up to ``n + tau`` (the model's lookahead), so the motion shown
    lags the voice by ``tau`` frames plus the feature window: ``latency_ms``. Open-space models move
    onto the portrait's ``rest`` row; an authors'-space model (for PIRenderer) gives absolute 73-wide
    rows whose expression is ``rest``'s during silence. When the consumer falls more than
    :data:`_TALK_MAX_BACKLOG_S` behind the microphone, the stale voice is skipped (a new voice starts).
    """

    def __init__(
        self,
        microphone: MicrophoneSource,
        rest: np.ndarray,
        *,
        model: AudioMotionFlow | None = None,
        fps: float = 25.0,
        config: TalkConfig | None = None,
    ) -> None:
        self.model = model or load_talk_model()
        self._mic = microphone
        config = replace(config or TalkConfig(), fps=fps)
        self._speech = SpeechMotion(self.model, rest, config)
        self.origin_sample = microphone.samples_received  # the voice from now on drives the avatar
        self._consumed = self.origin_sample
        self._voice_start = self.origin_sample  # the sample where the current voice began
        self._samples_per_frame = round(microphone.sample_rate_hz / fps)
        self._latest = np.asarray(rest, dtype=np.float32).copy()
        lookahead = self.model.config.audio_lookahead_frames
        self.latency_ms = 1000.0 * lookahead / fps + 25.0

    @property
    def audio_position(self) -> int | None:
        """The microphone sample (absolute number) where the audio of the latest motion row begins;
        None before the first row. The sound a frame shows starts here."""
        produced = self._speech.frames_out
        if produced == 0:
            return None
        return self._voice_start + (produced - 1) * self._samples_per_frame

    def shown_captured_s(self, default_s: float) -> float:
        """When the audio the latest row shows was captured (``engine.clock``): the microphone's
        stamp of :attr:`audio_position`; ``default_s`` before the first row or when the microphone
        no longer remembers it."""
        position = self.audio_position
        captured = None if position is None else self._mic.captured_s(position)
        return default_s if captured is None else captured

    def motion(self, slot: FrameSlot) -> TimedMotion:
        """The newest row (as :meth:`row`) for frame ``slot``, with the capture time of the audio
        it shows (``pipeline.MotionSource``)."""
        started = now_s()
        row = self.row(slot.time_s)
        talk_ms = 1000 * (now_s() - started)
        return TimedMotion(row, slot.time_s, self.shown_captured_s(slot.due_s), {"talk": talk_ms})

    def row(self, time_s: float) -> np.ndarray:
        del time_s
        received = self._mic.samples_received
        if received - self._consumed > _TALK_MAX_BACKLOG_S * self._mic.sample_rate_hz:
            # fell behind by seconds: start a new voice with the newest audio (enough for a few rows)
            lookahead = self.model.config.audio_lookahead_frames
            self._consumed = self._voice_start = received - (lookahead + 4) * self._samples_per_frame
            self._speech.reset()
        new = received - self._consumed
        if new > 0:
            samples = self._mic.read(self._consumed, np.empty(new, dtype=np.float32))
            self._consumed = received
            rows = self._speech.push(samples)
            if rows:
                self._latest = rows[-1]
        return self._latest.copy()


class SpokenMotion:
    """A microphone driving the talking avatar, as a motion source (``pipeline.MotionSource``) on a
    frame clock (``pipeline.FrameClock``): each slot reads what the microphone has (waiting at most
    one frame for a block), feeds it to ``talk`` and returns its newest row, until ``max_seconds``
    of slots (None: until stopped). A row's capture time is when the audio its mouth shows was
    captured (``microphone``'s blocks are stamped as they are read)."""

    def __init__(
        self,
        microphone: Any,
        audio_in: MicrophoneSource,
        talk: TalkSource,
        *,
        fps: float,
        max_seconds: float | None,
    ) -> None:
        self._microphone, self._audio_in, self._talk = microphone, audio_in, talk
        self._fps, self._max_seconds = fps, max_seconds
        self.started = time.monotonic()

    def motion(self, slot: FrameSlot) -> TimedMotion | None:
        if self._max_seconds is not None and slot.time_s >= self._max_seconds:
            return None
        block = self._microphone.read(timeout_s=1.0 / self._fps)
        read_s = now_s()
        if block is not None and len(block):
            self._audio_in.feed_samples(block, captured_s=read_s - len(block) / self._audio_in.sample_rate_hz)
        row = self._talk.row(0.0)
        talk_ms = 1000 * (now_s() - read_s)
        return TimedMotion(row, slot.time_s, self._talk.shown_captured_s(read_s), {"talk": talk_ms})
