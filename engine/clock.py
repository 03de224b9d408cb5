"""The clock: one monotonic time base for every stage of every live use (capture stamps, frame slots,
presentation reports). Durations inside one stage may use ``time.perf_counter``; a time that travels
between stages (a capture time carried by a motion, a frame slot, a client's presentation time
converted to this clock) is always on this one.

Times from other machines come onto it through :func:`wall_to_clock_s`: a peer's wall-clock time
(e.g. the NTP time of an RTCP sender report) minus the offset between that wall clock and this one.
"""

from __future__ import annotations

import time


def now_s() -> float:
    """The clock: monotonic seconds (``time.monotonic``)."""
    return time.monotonic()


def now_ms() -> float:
    """The clock in milliseconds."""
    return time.monotonic() * 1000.0


def wall_to_clock_s(wall_s: float, wall_offset_s: float | None = None) -> float:
    """A wall-clock time (s since the Unix epoch) on the clock.

    Args:
        wall_s: a wall-clock time, e.g. of a peer's RTCP sender report.
        wall_offset_s: clock - wall clock of that peer (s), when the peer measured it; None: the peer
            shares this machine's wall clock (the same host, or both synced by NTP).
    """
    if wall_offset_s is None:
        wall_offset_s = time.monotonic() - time.time()
    return wall_s + wall_offset_s
