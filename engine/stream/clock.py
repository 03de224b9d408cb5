"""One monotonic frame clock for every stage: frames are stamped at capture and after each stage."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


def now_ms() -> float:
    """The frame clock: monotonic milliseconds (the same clock in every stage and stream)."""
    return time.monotonic() * 1000.0


@dataclass
class FrameStamps:
    """Capture time and the time each stage finished, all on the frame clock (ms)."""

    index: int
    capture_ms: float
    stages: dict[str, float] = field(default_factory=dict)

    def mark(self, stage: str) -> None:
        self.stages[stage] = now_ms()

    def durations_ms(self) -> dict[str, float]:
        """Time spent in each stage (ms), in stage order, starting from the capture."""
        durations, previous = {}, self.capture_ms
        for stage, stamp in self.stages.items():
            durations[stage] = stamp - previous
            previous = stamp
        return durations
