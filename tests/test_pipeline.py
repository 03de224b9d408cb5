"""The live pipeline (engine/pipeline.py): a frame clock, a motion source, the window rule, the
renderer and sinks with one verb; ``live``, ``webcam``, ``talk --mic`` and every server stream run it
(their own tests cover them)."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from pirender.engine.clock import now_s
from pirender.engine.image import load_source_image, tensor_to_images
from pirender.engine.motion.space import OPEN_SPACE
from pirender.engine.motion.window import StreamWindow, WindowSpec
from pirender.engine.pipeline import FrameClock, FrameSlot, LivePipeline, SourcePaced, TimedMotion
from pirender.engine.renderer.mesh.renderer import MeshRenderer

from conftest import shared_data

PORTRAIT = ("vox_demo", "id10010_Fi21gDronE4_001686_002204_00079.jpg")


class Scripted:
    """A motion source of fixed rows (then the end), each captured 'now'."""

    def __init__(self, rows: list[np.ndarray]) -> None:
        self.rows = list(rows)

    def motion(self, slot: FrameSlot) -> TimedMotion | None:
        if not self.rows:
            return None
        index = 3 - len(self.rows)
        return TimedMotion(self.rows.pop(0), index / 25.0, now_s(), {"script": 0.5})


class Collect:
    def __init__(self, stop_after: int | None = None) -> None:
        self.frames: list[tuple[np.ndarray, float]] = []
        self.stop_after = stop_after

    def send(self, rgb: np.ndarray, time_s: float) -> bool:
        self.frames.append((rgb, time_s))
        return self.stop_after is None or len(self.frames) < self.stop_after


def test_the_pipeline_renders_each_motion_into_every_sink_until_the_source_ends() -> None:
    with MeshRenderer() as renderer:
        prepared = renderer.prepare(load_source_image(shared_data(*PORTRAIT)))
        rest = renderer.rest_row(prepared)
        turned = rest.copy()
        turned[OPEN_SPACE.index("yaw")] += 0.3
        first, second = Collect(), Collect()
        window = StreamWindow(OPEN_SPACE, WindowSpec(radius=0, lookahead_frames=0))
        pipeline = LivePipeline(Scripted([rest, turned, rest]), window, renderer, prepared, [first, second])
        stats = pipeline.run()
        expected = renderer.render(turned[:, None], source=prepared).frame
    assert stats.frames == 3 and [t for _, t in first.frames] == [0.0, 0.04, 0.08]
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(first.frames, second.frames, strict=True))
    assert np.array_equal(first.frames[1][0], tensor_to_images(expected)[0])  # the motion it was given
    assert set(stats.stage_ms) == {"script", "render", "sink"} and len(stats.total_ms) == 3
    assert list(stats.stage_ms["script"]) == [0.5] * 3 and min(stats.total_ms) >= 0 and stats.wall_s > 0


def test_a_sink_that_asks_to_stop_stops_the_pipeline() -> None:
    with MeshRenderer() as renderer:
        prepared = renderer.prepare(load_source_image(shared_data(*PORTRAIT)))
        rest = renderer.rest_row(prepared)
        window = StreamWindow(OPEN_SPACE, WindowSpec(radius=0, lookahead_frames=0))
        closing, other = Collect(stop_after=2), Collect()
        stats = LivePipeline(Scripted([rest] * 3), window, renderer, prepared, [closing, other]).run()
    assert stats.frames == 2 and len(closing.frames) == len(other.frames) == 2  # every sink got frame 2


class FakeTime:
    """A clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_frame_clock_gives_real_time_slots_and_skips_late_ones_only_when_asked() -> None:
    clock_time = FakeTime()
    dropping = FrameClock(25.0, drop_late=True, clock=clock_time)
    first, second = dropping.next_slot(), dropping.next_slot()
    assert (first.index, first.time_s, first.due_s) == (0, 0.0, 100.0)
    assert (second.index, second.due_s) == (1, pytest.approx(100.04))
    clock_time.now = 100.5  # the loop stalled for half a second: slots 2..11 are late
    late = dropping.next_slot()
    assert late.index == 12 and late.due_s == pytest.approx(100.48) and dropping.dropped == 10
    keeping = FrameClock(25.0, drop_late=False, clock=FakeTime())
    keeping.next_slot()
    keeping._clock.now = 100.5  # type: ignore[attr-defined]
    assert [keeping.next_slot().index for _ in range(3)] == [1, 2, 3] and keeping.dropped == 0
    with pytest.raises(ValueError, match="fps"):
        FrameClock(0.0, drop_late=True)


def test_a_source_paced_clock_never_waits() -> None:
    clock_time = FakeTime()
    paced = SourcePaced(clock_time)
    slot = paced.next_slot()
    assert slot.due_s == 100.0 and math.isnan(slot.time_s) and paced.next_slot().index == 1


def test_a_pulled_pipeline_renders_off_the_event_loop_on_its_clock() -> None:
    """The server's form: ``pull`` awaits each slot of a real-time clock (a WebRTC track pulls)."""

    class Rows:
        def __init__(self, row: np.ndarray) -> None:
            self.row, self.slots = row, []

        def motion(self, slot: FrameSlot) -> TimedMotion:
            self.slots.append(slot)
            return TimedMotion(self.row, slot.time_s, slot.due_s - 0.010)  # captured 10 ms before

    with MeshRenderer() as renderer:
        prepared = renderer.prepare(load_source_image(shared_data(*PORTRAIT)))
        source = Rows(renderer.rest_row(prepared))
        window = StreamWindow(OPEN_SPACE, WindowSpec(radius=0, lookahead_frames=0))
        clock = FrameClock(50.0, drop_late=False)
        pipeline = LivePipeline(source, window, renderer, prepared, clock=clock)

        async def pull_three() -> list:
            return [await pipeline.pull() for _ in range(3)]

        frames = asyncio.run(pull_three())
    assert [f.slot.index for f in frames] == [0, 1, 2] and all(f is not None for f in frames)
    assert frames[2].rendered_s >= frames[0].slot.due_s + 0.04  # slot 2 was waited for, 40 ms on
    assert frames[0].rgb.shape == (renderer.image_size_px, renderer.image_size_px, 3)
    assert min(pipeline.stats.total_ms) >= 10.0  # capture -> out includes the 10 ms before the slot
    assert set(pipeline.stats.stage_ms) == {"motion", "render"}  # no sinks: no sink stage
