"""An agent's voice as a timeline of video frames, and the portrait that speaks it (framework-free).

A voice agent's speech synthesiser streams audio in chunks of any size at its own sample rate; an
avatar must show each slice of that audio with the face that says it. :class:`LipSync` keeps one
timeline of video frames at ``fps``: each frame is that frame's share of the voice, or silence while
the agent is quiet. Frames are fed as soon as the voice arrives (resampled to 16 kHz by ``soxr``,
turned into motion by ``engine.talk.SpeechMotion``) and taken out one per frame-clock tick; a frame's
motion needs ``delay_frames`` frames of audio after it (the flow's lookahead, a feature window, the
voice-activity frame, the resampler), so the caller keeps that much of the timeline fed ahead and
sends each frame's audio with the image of that frame's row: audio and lips leave together, on one
frame clock, ``delay_frames`` frames after the voice came in (when it comes in real time).

Silence is fed to the same path while the agent is quiet, so idle motion (closed mouth, head pose,
blinks) and speech are one motion stream, and the rows that end a voice come out as the silence after
it is fed (what ``SpeechMotion.finish`` would give: it pads the voice with silence too) without ending
and restarting the stream. :meth:`LipSync.reset` drops everything (an interruption): the next frame
shows the portrait at rest, mouth closed.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..api import OPEN_RENDERERS, default_portrait, open_space_renderer
from ..audio.sources import SAMPLE_RATE_HZ
from ..audioflow.flow import AudioMotionFlow
from ..errors import PirenderError, describe_value
from ..image import load_source_image, tensor_to_images
from ..motion.space import OPEN_SPACE
from ..motion.window import DEFAULT_RADIUS, StreamWindow, WindowSpec
from ..renderer.base import PreparedSource
from ..renderer.mesh.renderer import MeshRenderer
from ..talk import MOUTH_SLOTS, SpeechMotion, TalkConfig, load_talk_model, talk_rest_row

if TYPE_CHECKING:
    import soxr

#: the open-space slot whose value is how far the mouth is open (0 at rest)
MOUTH_SLOT = OPEN_SPACE.index("jaw_open")
#: the most the streaming 16 kHz resampler holds back (ms): soxr's HQ filter, going down from 22.05-48
#: kHz, keeps up to ~36 ms of a chunk until the next (below 16 kHz its quick cubic one keeps < 1 ms)
RESAMPLER_HOLD_MS = 40.0


@dataclass(frozen=True)
class AvatarConfig:
    """The speaking avatar.

    Attributes:
        portrait: the portrait (image file); None: the embedded default (Grace Hopper, needs matplotlib).
        renderer: ``mesh`` (weight-free, fastest) or ``neural`` (``engine.api.OPEN_RENDERERS``).
        fps: video frames per second (> 0); the audio is cut into frames of ``1 / fps`` s.
        size_px: side of the square video in pixels (the mesh renderer: a multiple of 4, >= 64).
        talk_model: the audio-to-motion flow (a checkpoint of ``pirender train-audio``); None: the
            shipped one.
        face_crop: frame the portrait around its largest face first (as ``pirender serve`` does).
        device: where the neural renderer's network runs (``cpu``, ``cuda``; the mesh renderer: CPU).
        talk: the talking motion's settings (temperature, blinks, voice activity); its ``fps`` is
            replaced by ``fps``.
    """

    portrait: str | Path | None = None
    renderer: str = "mesh"
    fps: float = 25.0
    size_px: int = 256
    talk_model: str | Path | None = None
    face_crop: bool = True
    device: str = "cpu"
    talk: TalkConfig = field(default_factory=TalkConfig)

    def __post_init__(self) -> None:
        if not self.fps > 0:
            raise PirenderError(f"the avatar's fps must be > 0, not {self.fps}")
        if self.renderer not in OPEN_RENDERERS:
            raise PirenderError(
                f"unknown avatar renderer {self.renderer!r} (choose one of {', '.join(OPEN_RENDERERS)})"
            )
        if self.size_px % 4 or self.size_px < 64:
            raise PirenderError(f"the avatar's size_px must be a multiple of 4 and >= 64, not {self.size_px}")


@dataclass
class AvatarAssets:
    """What every frame of one avatar reads, loaded once (:func:`load_avatar_assets`): the renderer,
    the prepared portrait, the audio-to-motion model and the portrait's rest row (open space, (width,)).
    Not thread-safe: one :class:`LipSync` renders with it at a time."""

    config: AvatarConfig
    renderer: MeshRenderer
    prepared: PreparedSource
    model: AudioMotionFlow
    rest: np.ndarray

    def close(self) -> None:
        """Release the renderer (its face finder)."""
        self.renderer.close()


def load_avatar_assets(config: AvatarConfig | None = None) -> AvatarAssets:
    """Load the renderer, the portrait and the talk model of ``config`` (blocking: about a second on a
    CPU; run it off an event loop).

    Raises:
        PirenderError: a missing or unreadable portrait, a portrait without a face (``face_crop``),
            a missing talk model, or matplotlib missing for the default portrait.
    """
    cfg = config or AvatarConfig()
    renderer = open_space_renderer(cfg.renderer, image_size_px=cfg.size_px, device=cfg.device)
    try:
        portrait = cfg.portrait if cfg.portrait is not None else default_portrait()
        if cfg.face_crop:
            from ..track.crop import crop_to_face

            image = crop_to_face(str(portrait), size_px=cfg.size_px)
        else:
            image = load_source_image(str(portrait), size_px=cfg.size_px)
        prepared = renderer.prepare(image)
        model = load_talk_model(cfg.talk_model, space=renderer.space)
        rest = talk_rest_row(renderer, prepared, model).astype(np.float32)
    except BaseException:
        renderer.close()
        raise
    return AvatarAssets(cfg, renderer, prepared, model, rest)


def voice_delay_frames(model: AudioMotionFlow, rest: np.ndarray, config: TalkConfig) -> int:
    """Frames of voice beyond a frame that its motion row waits for (``config.fps``): the flow's
    lookahead, the feature window and the voice-activity frame, as ``SpeechMotion`` counts them (probed
    on a scratch one fed silence frame by frame), plus the 16 kHz resampler's hold-back
    (:data:`RESAMPLER_HOLD_MS`) in whole frames. 4 frames (160 ms) for the shipped model at 25 fps."""
    fps = config.fps
    probe = SpeechMotion(model, rest, config)
    fed, need = 0, 0
    for frame in range(max(8, math.ceil(2 * fps))):
        target = round((frame + 1) * SAMPLE_RATE_HZ / fps)
        probe.push(np.zeros(target - fed, dtype=np.float32))
        fed = target
        need = max(need, frame + 1 - probe.frames_out)
    return need + math.ceil(RESAMPLER_HOLD_MS * fps / 1000.0)


def frame_samples(sample_rate_hz: int, fps: float, frame: int) -> int:
    """Samples of video frame ``frame`` at ``sample_rate_hz``: frame ``i`` covers samples
    ``round(i * rate / fps) .. round((i + 1) * rate / fps)`` (whole frames at a fractional ratio)."""
    per_frame = sample_rate_hz / fps
    return round((frame + 1) * per_frame) - round(frame * per_frame)


def pcm16_to_mono(audio: bytes, num_channels: int) -> np.ndarray:
    """Interleaved 16-bit PCM (pipecat's audio frames) -> (frames,) float32 mono in [-1, 1].

    Raises:
        PirenderError: ``num_channels`` < 1, or a byte count that is not whole samples of every channel.
    """
    if num_channels < 1:
        raise PirenderError(f"audio needs at least one channel, not {num_channels}")
    if len(audio) % (2 * num_channels):
        raise PirenderError(
            f"audio of {len(audio)} bytes is not whole 16-bit samples of {num_channels} channel(s) "
            "(expected signed 16-bit little-endian PCM)"
        )
    pcm = np.frombuffer(audio, dtype="<i2")
    if num_channels == 1:
        return pcm.astype(np.float32) / 32768.0
    return pcm.reshape(-1, num_channels).mean(axis=1, dtype=np.float32) / 32768.0


class LipSync:
    """One avatar's voice timeline: video frames in order, each a frame's share of the voice or silence.

    The caller appends frames with :meth:`feed` (one frame of voice: :func:`frame_samples` samples of
    ``(n,)`` float32 mono in [-1, 1] at any sample rate, fewer where the voice ends; or None: silence)
    as soon as it has them, ahead of time when the voice comes faster than real time, and takes the
    motion rows out with :meth:`next_row`, one per frame in the same order, one frame-clock tick each.
    A row needs :attr:`delay_frames` frames of the timeline after its own: the caller keeps that many
    fed ahead (silence when there is no voice), so a voice that arrives is shown and heard
    :attr:`delay_frames` frames later, with its lips. :meth:`render` draws the latest row. Not
    thread-safe: call from one thread (a render worker).

    Figures: :attr:`frames_fed`, :attr:`frames_out` since the last :meth:`reset`; :attr:`late_rows`
    frames whose row was not ready when taken (the previous row was shown again; 0 unless the caller
    fed fewer than :attr:`delay_frames` frames ahead).
    """

    def __init__(self, assets: AvatarAssets) -> None:
        self.assets = assets
        cfg = assets.config
        self.fps = cfg.fps
        talk = replace(cfg.talk, fps=cfg.fps)
        self.delay_frames = voice_delay_frames(assets.model, assets.rest, talk)
        self._speech = SpeechMotion(assets.model, assets.rest, talk)
        radius = 0 if assets.renderer.min_window_frames == 1 else DEFAULT_RADIUS  # causal windows
        self._windows = StreamWindow(assets.renderer.space, WindowSpec(radius=radius, lookahead_frames=0))
        self._silence = np.zeros(frame_samples(SAMPLE_RATE_HZ, cfg.fps, 0) + 2, dtype=np.float32)
        self._rows: deque[np.ndarray] = deque()
        self.late_rows = 0
        self.row = assets.rest.copy()
        self.reset()

    def reset(self) -> None:
        """Forget the voice (an interruption): the motion fed ahead is dropped and the next row is
        the latest one with the mouth closed (the portrait's rest mouth) until rows of the new
        timeline are ready; the head goes on from its pose (no jump)."""
        self._speech.reset(keep_pose=True)
        self._windows.reset()
        self._rows.clear()
        self._resampler: soxr.ResampleStream | None = None
        self._resampler_rate = 0
        self._fed = 0  # 16 kHz samples given to the speech motion since the reset
        self.frames_fed = 0
        self.frames_out = 0
        self._window: np.ndarray | None = None
        self.row = self.row.copy()  # where the head is (at first the portrait at rest), mouth closed
        self.row[list(MOUTH_SLOTS)] = self.assets.rest[list(MOUTH_SLOTS)]

    def feed(
        self, voice: np.ndarray | None, sample_rate_hz: int = SAMPLE_RATE_HZ, *, ends: bool = False
    ) -> None:
        """Append one video frame to the timeline.

        Args:
            voice: the frame's voice, (n,) float32 mono at ``sample_rate_hz``; None: a silent frame.
            sample_rate_hz: the voice's sample rate (Hz, > 0).
            ends: the voice pauses or ends after this frame (the resampler gives out what it holds
                and the frame is completed with silence).

        Raises:
            PirenderError: a voice that is not a 1-D float32 array, or a sample rate <= 0.
        """
        target = round((self.frames_fed + 1) * SAMPLE_RATE_HZ / self.fps)
        if voice is not None:
            self._push_voice(voice, sample_rate_hz, ends)
        else:
            self._flush_resampler()
        if (voice is None or ends) and self._fed < target:  # silence to the end of this frame
            self._push16(self._silence[: target - self._fed])
        self.frames_fed += 1

    def next_row(self) -> np.ndarray:
        """The motion row (``(width,)`` float32, open space) of the next frame of the timeline; the
        previous row again (counted in :attr:`late_rows`) when it is not ready."""
        if self._rows:
            self.row = self._rows.popleft()
        else:
            self.late_rows += 1
        self.frames_out += 1
        self._window = self._windows.push(self.row)
        return self.row

    def render(self) -> np.ndarray:
        """The latest row's image: (size_px, size_px, 3) uint8 RGB (blocking CPU work, tens of ms)."""
        window = self._window if self._window is not None else self._windows.push(self.row)
        assert window is not None  # causal windows (no lookahead) exist from the first row
        self._window = window
        assets = self.assets
        frame = assets.renderer.render(window[None], source=assets.prepared).frame
        return tensor_to_images(frame)[0]

    def _push_voice(self, voice: np.ndarray, sample_rate_hz: int, ends: bool) -> None:
        if not isinstance(voice, np.ndarray) or voice.ndim != 1 or voice.dtype != np.float32:
            raise PirenderError(f"a voice chunk must be a (n,) float32 array, got {describe_value(voice)}")
        if sample_rate_hz <= 0:
            raise PirenderError(f"the voice's sample rate must be > 0 Hz, not {sample_rate_hz}")
        if sample_rate_hz == SAMPLE_RATE_HZ and self._resampler is None:
            self._push16(voice)
            return
        if self._resampler is not None and self._resampler_rate != sample_rate_hz:
            self._flush_resampler()  # the rate changed: a new stream
        if self._resampler is None:
            import soxr

            # down to 16 kHz: the HQ filter (its motion equals that of an offline resampling); up from
            # below: the quick cubic one (HQ would hold back ~115 ms at 8 kHz)
            quality = "HQ" if sample_rate_hz >= SAMPLE_RATE_HZ else "QQ"
            self._resampler = soxr.ResampleStream(
                sample_rate_hz, SAMPLE_RATE_HZ, 1, dtype="float32", quality=quality
            )
            self._resampler_rate = sample_rate_hz
        self._push16(self._resampler.resample_chunk(voice, last=ends))
        if ends:
            self._resampler = None

    def _flush_resampler(self) -> None:
        if self._resampler is not None:
            self._push16(self._resampler.resample_chunk(self._silence[:0], last=True))
            self._resampler = None

    def _push16(self, samples: np.ndarray) -> None:
        if samples.size:
            self._fed += samples.size
            self._rows.extend(self._speech.push(samples))
