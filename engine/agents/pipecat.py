"""A speaking portrait for pipecat voice agents: :class:`PirenderAvatar`, a ``FrameProcessor``.

Put it after the speech synthesiser::

    pipeline = Pipeline([transport.input(), stt, user_aggregator, llm, tts,
                         PirenderAvatar(AvatarConfig(portrait="me.jpg")),
                         transport.output(), assistant_aggregator])

with an output transport that has ``video_out_enabled=True``, ``video_out_width/height`` =
``size_px``, ``video_out_framerate`` = ``fps`` and ``video_out_is_live=False`` (each image then stays
on screen until the next; ``sync_with_audio`` images are shown when the audio before them has been
played).

**In**: the agent's audio (``TTSAudioRawFrame`` or any ``OutputAudioRawFrame`` going downstream):
16-bit PCM at any sample rate and channel count, in chunks of any size, usually faster than real
time. **Out**, on one frame clock at ``fps`` (``engine.pipeline.FrameClock``): per frame, the image
(``OutputImageRawFrame``, RGB, ``sync_with_audio`` set) and then that frame's audio
(``TTSAudioRawFrame``, the samples as they came in, cut into frames of ``1 / fps`` s, the voice's
last one shorter), both stamped with the frame's time (``pts``, ns since the start); frames that
came between the audio (``TTSStoppedFrame``, text frames) follow the audio they came after. The audio
is held back :attr:`PirenderAvatar.delay_frames` frames (the talking motion looks ahead; 160 ms with
the shipped model at 25 fps), so each frame's sound leaves with the image whose mouth says it.
While the agent is quiet, frames keep coming at ``fps``: silence fed to the same motion path (closed
mouth, head pose, blinks), no audio.

**Interruption** (``InterruptionFrame``, the user barges in): the voice not yet played is dropped (its
audio, images and the frames queued with it), the motion starts afresh and the next frame shows the
mouth closed; the interruption goes on downstream so the transport drops what it has queued.

**Falling behind**: rendering runs on one worker thread, never on the event loop. When it cannot keep
up, frame slots are skipped (``FrameClock(drop_late=True)``): their images are never rendered
(``stats.dropped``) but their audio is sent all the same (audio is never dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..clock import now_s
from ..errors import PirenderError, exception_text
from ..pipeline import FrameClock, history
from .lipsync import (
    MOUTH_SLOT,
    AvatarAssets,
    AvatarConfig,
    LipSync,
    frame_samples,
    load_avatar_assets,
    pcm16_to_mono,
)

try:
    from pipecat.frames.frames import (
        CancelFrame,
        EndFrame,
        Frame,
        InterruptionFrame,
        OutputAudioRawFrame,
        OutputImageRawFrame,
        StartFrame,
        SystemFrame,
        TTSAudioRawFrame,
        TTSStoppedFrame,
    )
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor, FrameProcessorSetup
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise PirenderError(
        f"the pipecat avatar needs pipecat ({exception_text(exc)}): pip install 'pirender-live[pipecat]'"
    ) from None

__all__ = ["AvatarConfig", "AvatarStats", "PirenderAvatar"]

#: frames without new audio after which a voice that was not ended (no TTSStoppedFrame) counts as ended
_PAUSE_FRAMES = 2
#: the key of the avatar's figures in an emitted image's ``metadata``
METADATA_KEY = "pirender"


@dataclass
class AvatarStats:
    """What a :class:`PirenderAvatar` did since it started.

    Attributes:
        frames: frames of the timeline sent (each one frame clock slot).
        images: of them with an image; ``frames - images`` = ``dropped``.
        dropped: frames sent without an image: the frame clock skipped their slots because rendering
            fell behind (``FrameClock(drop_late=True)``); their audio was still sent.
        audio_frames: audio frames sent downstream.
        late_rows: frames whose motion was not ready in time (the previous one was shown).
        interruptions: interruptions honoured.
        render_ms: per rendered image, the worker's time (ms: motion + render), newest first out.
        voice_delay_ms: per voice, from its first audio arriving to that audio being sent (ms).
    """

    frames: int = 0
    images: int = 0
    dropped: int = 0
    audio_frames: int = 0
    late_rows: int = 0
    interruptions: int = 0
    render_ms: deque[float] = field(default_factory=history, repr=False)
    voice_delay_ms: deque[float] = field(default_factory=history, repr=False)

    def summary(self) -> dict[str, float]:
        """The counts and the medians of the series (ms), for a log line."""
        counts = {
            name: float(getattr(self, name))
            for name in ("frames", "images", "dropped", "audio_frames", "late_rows", "interruptions")
        }
        for name in ("render_ms", "voice_delay_ms"):
            series = getattr(self, name)
            counts[f"{name}_median"] = float(np.median(series)) if series else float("nan")
        return counts


@dataclass(slots=True)
class _Slot:
    """One frame of the timeline not yet sent: its voice (16-bit PCM as it came; None: silence) and
    the frames to send after it."""

    audio: bytes | None
    sample_rate: int
    num_channels: int
    context_id: str | None
    frames: list[Frame]
    ends: bool = False  # the voice pauses or ends after this frame
    arrived_s: float | None = None  # when the first audio of a voice arrived (its first slot only)


def _warm_lipsync(assets: AvatarAssets) -> LipSync:
    """A :class:`LipSync` of ``assets`` that has rendered once (the first render is the slowest)."""
    lipsync = LipSync(assets)
    lipsync.render()
    return lipsync


class PirenderAvatar(FrameProcessor):
    """The agent's voice in, the speaking portrait (images at ``config.fps``) and the voice out, in sync.

    Args:
        config: the avatar (portrait, renderer, fps, size, talk model); default :class:`AvatarConfig`.
        assets: the avatar already loaded (:func:`~pirender.engine.agents.lipsync.load_avatar_assets`
            with the same config), e.g. to load it once before clients connect; default: loaded in
            :meth:`setup` off the event loop, and released in :meth:`cleanup`. Given assets are
            the caller's to close; one avatar renders with them at a time.
        sync_with_audio: mark images ``sync_with_audio`` (pipecat's output transport then shows
            each image once the audio before it has been played; needs ``video_out_is_live=False``).
        **kwargs: passed to ``FrameProcessor`` (``name``, ...).

    Raises:
        PirenderError: a bad config (see :class:`AvatarConfig`); load errors (a missing portrait or
            model) are pushed upstream as a fatal ``ErrorFrame`` when the pipeline starts.
    """

    def __init__(
        self,
        config: AvatarConfig | None = None,
        *,
        assets: AvatarAssets | None = None,
        sync_with_audio: bool = True,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.config = config or (assets.config if assets is not None else AvatarConfig())
        if assets is not None and assets.config != self.config:
            raise PirenderError("PirenderAvatar: the assets were loaded for another AvatarConfig")
        self._assets = assets
        self._own_assets = assets is None
        self._sync_with_audio = sync_with_audio
        self.stats = AvatarStats()
        self._lipsync: LipSync | None = None
        self._load_error: BaseException | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._clock_task: asyncio.Task[None] | None = None
        self._drained = asyncio.Event()
        self._drained.set()
        self._timeline: deque[_Slot] = deque()  # frames not yet sent, in order
        self._fed = 0  # slots at the front of the timeline already given to the motion
        self._voiced_slots = 0  # slots of the timeline with audio or frames to send
        self._partial = bytearray()  # audio of the current voice not yet a whole frame
        self._partial_format = (0, 0)  # (sample rate, channels) of self._partial
        self._partial_frames: list[Frame] = []  # frames that came after self._partial's audio
        self._partial_arrived_s: float | None = None
        self._last_audio_s = 0.0
        self._context_id: str | None = None
        self._voice_frame = 0  # frames cut from the current voice (frame sizes at fractional ratios)
        self._generation = 0  # bumped by every interruption: work started before it is stale
        self._reset_pending = False

    # -- figures -------------------------------------------------------------------------------

    @property
    def delay_frames(self) -> int:
        """Frames the voice is held back for its lips (known once the avatar is set up)."""
        if self._lipsync is None:
            raise PirenderError("PirenderAvatar: delay_frames is known once the pipeline has set it up")
        return self._lipsync.delay_frames

    @property
    def delay_ms(self) -> float:
        """:attr:`delay_frames` in ms."""
        return 1000.0 * self.delay_frames / self.config.fps

    # -- pipecat life cycle --------------------------------------------------------------------

    async def setup(self, setup: FrameProcessorSetup) -> None:  # type: ignore[override]
        """Load the avatar (portrait, renderer, talk model) on its worker thread."""
        await super().setup(setup)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pirender-avatar")
        loop = asyncio.get_running_loop()
        try:
            if self._assets is None:
                self._assets = await loop.run_in_executor(self._executor, load_avatar_assets, self.config)
            self._lipsync = await loop.run_in_executor(self._executor, _warm_lipsync, self._assets)
        except Exception as exc:  # reported when the pipeline starts (ErrorFrame)
            self._load_error = exc

    async def cleanup(self) -> None:
        """Stop the frame clock, end the worker thread and release the assets this avatar loaded."""
        await self._stop_clock()
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, True, cancel_futures=True)
        if self._own_assets and self._assets is not None:
            self._assets.close()
            self._assets = None
        await super().cleanup()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Take the agent's audio and the frames around it (module docstring); pass the rest on."""
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            await self.push_frame(frame, direction)
            await self._start()
        elif isinstance(frame, InterruptionFrame):
            self._interrupt()
            await self.push_frame(frame, direction)
        elif isinstance(frame, CancelFrame):
            await self._stop_clock()
            self._clear()
            await self.push_frame(frame, direction)
        elif isinstance(frame, EndFrame):
            await self._finish()
            await self.push_frame(frame, direction)
        elif direction != FrameDirection.DOWNSTREAM or isinstance(frame, SystemFrame):
            await self.push_frame(frame, direction)
        elif isinstance(frame, OutputAudioRawFrame):
            await self._take_audio(frame)
        else:
            if isinstance(frame, TTSStoppedFrame):
                self._end_voice()
            await self._follow_voice(frame)

    async def _start(self) -> None:
        if self._load_error is not None or self._lipsync is None:
            error = self._load_error or PirenderError("PirenderAvatar was not set up")
            await self.push_error(
                error_msg=f"PirenderAvatar could not load the avatar: {exception_text(error)}",
                exception=error if isinstance(error, Exception) else None,
                fatal=True,
            )
            return
        if self._clock_task is None:
            self._clock_task = self.create_task(self._run_clock(), name="pirender-avatar-clock")

    async def _finish(self) -> None:
        """EndFrame: play out the voice queued so far, then stop the clock."""
        self._end_voice()
        if self._clock_task is not None and self._voiced_slots:
            self._drained.clear()
            budget_s = 2.0 + (len(self._timeline) + 1) / self.config.fps
            with contextlib.suppress(TimeoutError):  # the clock stalled: end anyway
                await asyncio.wait_for(self._drained.wait(), budget_s)
        await self._stop_clock()

    async def _stop_clock(self) -> None:
        task, self._clock_task = self._clock_task, None
        if task is not None:
            await self.cancel_task(task)

    # -- the voice in --------------------------------------------------------------------------

    async def _take_audio(self, frame: OutputAudioRawFrame) -> None:
        """Append the agent's audio to the voice; whole frames go on the timeline at once."""
        if frame.sample_rate <= 0 or frame.num_channels < 1 or len(frame.audio) % (2 * frame.num_channels):
            await self.push_error(
                error_msg=(
                    f"PirenderAvatar: {frame.name} dropped: {len(frame.audio)} bytes at "
                    f"{frame.sample_rate} Hz, {frame.num_channels} channel(s) is not 16-bit PCM "
                    "(2 bytes a sample per channel, sample rate > 0)"
                )
            )
            return
        if not frame.audio:
            return
        audio_format = (frame.sample_rate, frame.num_channels)
        if self._partial and audio_format != self._partial_format:
            self._end_voice()  # another format: the voice so far ends here
        if not self._partial and self._voice_frame == 0:
            self._partial_arrived_s = now_s()
        self._partial_format = audio_format
        if isinstance(frame, TTSAudioRawFrame):
            self._context_id = frame.context_id
        self._partial.extend(frame.audio)
        self._last_audio_s = now_s()
        while len(self._partial) >= self._frame_bytes():
            self._cut(self._frame_bytes(), ends=False)

    def _frame_bytes(self) -> int:
        rate, channels = self._partial_format
        return 2 * channels * frame_samples(rate, self.config.fps, self._voice_frame)

    def _cut(self, size: int, *, ends: bool) -> None:
        """Move the first ``size`` bytes of the voice onto the timeline as one frame."""
        chunk = bytes(self._partial[:size])
        del self._partial[:size]
        rate, channels = self._partial_format
        slot = _Slot(chunk, rate, channels, self._context_id, self._partial_frames, ends)
        slot.arrived_s, self._partial_arrived_s = self._partial_arrived_s, None
        self._partial_frames = []
        self._timeline.append(slot)
        self._voiced_slots += 1
        self._voice_frame = 0 if ends else self._voice_frame + 1

    def _end_voice(self) -> None:
        """The voice pauses or ends: what is left of it becomes its last (short) frame."""
        if self._partial:
            self._cut(len(self._partial), ends=True)
        self._voice_frame = 0

    async def _follow_voice(self, frame: Frame) -> None:
        """A frame that came after the voice so far: sent after that audio (at once if none waits)."""
        if self._partial:
            self._partial_frames.append(frame)
        elif self._voiced_slots and self._timeline:
            last = self._timeline[-1]
            if last.audio is None and not last.frames:
                self._voiced_slots += 1
            last.frames.append(frame)
        else:
            await self.push_frame(frame)

    def _interrupt(self) -> None:
        self._generation += 1
        self._reset_pending = True
        self.stats.interruptions += 1
        self._clear()

    def _clear(self) -> None:
        self._timeline.clear()
        self._fed = 0
        self._voiced_slots = 0
        self._partial.clear()
        self._partial_frames = []
        self._partial_arrived_s = None
        self._voice_frame = 0
        self._drained.set()

    # -- the frame clock -----------------------------------------------------------------------

    async def _run_clock(self) -> None:
        """One slot per frame at ``fps``: motion and image on the worker, then image, audio, frames."""
        loop = asyncio.get_running_loop()
        clock = FrameClock(self.config.fps, drop_late=True)
        delay = self.delay_frames
        last_index = -1
        while True:
            slot = clock.next_slot()
            wait_s = slot.due_s - now_s()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            count = slot.index - last_index  # > 1 when slots were skipped
            last_index = slot.index
            # the timeline keeps `delay` frames after the ones sent now, padded with silence (a voice
            # that comes slower than real time gets gaps); a voice that stopped coming without a
            # TTSStoppedFrame is ended where it is first
            short = len(self._timeline) < count + delay
            if short and self._partial and now_s() - self._last_audio_s >= _PAUSE_FRAMES / self.config.fps:
                self._end_voice()
            while len(self._timeline) < count + delay:
                self._timeline.append(_Slot(None, 0, 0, None, []))
            # the motion is fed as far as this slot needs (a voice that came at once is fed over the
            # slots it plays in, not in one go)
            feeds = list(itertools.islice(self._timeline, self._fed, count + delay))
            self._fed = max(self._fed, count + delay)
            reset, self._reset_pending = self._reset_pending, False
            generation = self._generation
            assert self._executor is not None
            mouths, rgb, work_ms = await loop.run_in_executor(self._executor, self._work, reset, feeds, count)
            if generation != self._generation:
                continue  # interrupted meanwhile: this work is stale (the next slot resets)
            self.stats.render_ms.append(work_ms)
            await self._send(slot.index - count + 1, mouths, rgb, generation)

    def _work(self, reset: bool, feeds: list[_Slot], count: int) -> tuple[list[float], np.ndarray, float]:
        """On the worker thread: the new frames into the motion, ``count`` rows out, the last drawn."""
        started = time.perf_counter()
        lipsync = self._lipsync
        assert lipsync is not None
        if reset:
            lipsync.reset()
        for slot in feeds:
            if slot.audio is None:
                lipsync.feed(None)
            else:
                voice = pcm16_to_mono(slot.audio, slot.num_channels)
                lipsync.feed(voice, slot.sample_rate, ends=slot.ends)
        mouths = [float(lipsync.next_row()[MOUTH_SLOT]) for _ in range(count)]
        self.stats.late_rows = lipsync.late_rows
        rgb = lipsync.render()
        return mouths, rgb, 1000.0 * (time.perf_counter() - started)

    async def _send(self, first_index: int, mouths: list[float], rgb: np.ndarray, generation: int) -> None:
        """Send ``len(mouths)`` frames of the timeline: the last one's image, every one's audio and
        the frames that follow it; stops where an interruption comes in between."""
        fps = self.config.fps
        for offset, mouth in enumerate(mouths):
            if generation != self._generation or not self._timeline:
                return
            slot = self._timeline.popleft()
            self._fed = max(0, self._fed - 1)
            if slot.audio is not None or slot.frames:
                self._voiced_slots -= 1
            index = first_index + offset
            pts = round(index * 1e9 / fps)
            self.stats.frames += 1
            if offset == len(mouths) - 1:
                image = OutputImageRawFrame(
                    image=rgb.tobytes(), size=(rgb.shape[1], rgb.shape[0]), format="RGB"
                )
                image.sync_with_audio = self._sync_with_audio
                image.pts = pts
                image.metadata[METADATA_KEY] = {
                    "frame": index,
                    "mouth": mouth,
                    "voiced": slot.audio is not None,
                }
                self.stats.images += 1
                await self.push_frame(image)
            else:
                self.stats.dropped += 1
            if slot.audio is not None:
                audio = TTSAudioRawFrame(
                    audio=slot.audio,
                    sample_rate=slot.sample_rate,
                    num_channels=slot.num_channels,
                    context_id=slot.context_id,
                )
                audio.pts = pts
                if slot.arrived_s is not None:
                    self.stats.voice_delay_ms.append(1000.0 * (now_s() - slot.arrived_s))
                self.stats.audio_frames += 1
                await self.push_frame(audio)
            for follower in slot.frames:
                if generation != self._generation:
                    return
                await self.push_frame(follower)
        if not self._voiced_slots and not self._partial:
            self._drained.set()
