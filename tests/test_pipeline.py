"""The local live pipeline (engine/pipeline.py): a motion source, the window rule, the renderer and
sinks with one verb; ``live``, ``webcam`` and ``talk --mic`` run it (their own tests cover them)."""

from __future__ import annotations

import time

import numpy as np

from pirender.engine.image import load_source_image, tensor_to_images
from pirender.engine.motion.space import OPEN_SPACE
from pirender.engine.motion.window import StreamWindow, WindowSpec
from pirender.engine.pipeline import LivePipeline, TimedMotion
from pirender.engine.renderer.mesh.renderer import MeshRenderer

from conftest import shared_data

PORTRAIT = ("vox_demo", "id10010_Fi21gDronE4_001686_002204_00079.jpg")


class Scripted:
    """A motion source of fixed rows (then the end), each captured 'now'."""

    def __init__(self, rows: list[np.ndarray]) -> None:
        self.rows = list(rows)

    def next(self) -> TimedMotion | None:
        if not self.rows:
            return None
        index = 3 - len(self.rows)
        return TimedMotion(self.rows.pop(0), index / 25.0, time.perf_counter(), {"script": 0.5})


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
    assert stats.stage_ms["script"] == [0.5] * 3 and min(stats.total_ms) >= 0 and stats.wall_s > 0


def test_a_sink_that_asks_to_stop_stops_the_pipeline() -> None:
    with MeshRenderer() as renderer:
        prepared = renderer.prepare(load_source_image(shared_data(*PORTRAIT)))
        rest = renderer.rest_row(prepared)
        window = StreamWindow(OPEN_SPACE, WindowSpec(radius=0, lookahead_frames=0))
        closing, other = Collect(stop_after=2), Collect()
        stats = LivePipeline(Scripted([rest] * 3), window, renderer, prepared, [closing, other]).run()
    assert stats.frames == 2 and len(closing.frames) == len(other.frames) == 2  # every sink got frame 2
