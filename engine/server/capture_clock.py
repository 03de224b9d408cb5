"""When a browser captured the media it sends: its RTCP sender reports map RTP time to its wall clock.

A WebRTC sender stamps each frame with an RTP timestamp derived from its capture time, and every
sender report (RFC 3550 section 6.4.1) pairs one RTP time with the sender's NTP wall-clock time. So a
received frame's capture time is ``ntp + (rtp_frame - rtp_report) / clock_rate`` on the sender's wall
clock, which ``engine.clock.wall_to_clock_s`` puts on the server clock (with the page's measured wall
offset when it sent one; else this machine's own wall clock: the same host, or both synced by NTP).

aiortc keeps sender reports to itself (its receiver reads them in ``_handle_rtcp_packet``), so
:meth:`SenderClock.attach` wraps that one method of one receiver instance to see them too; and its
receiver hands out frames whose ``pts`` is the RTP timestamp minus the stream's first one (its
``TimestampMapper``), whose origin :meth:`SenderClock.attach` reads back. Without either (another
aiortc), no capture time is given and callers fall back to the arrival time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from aiortc.rtp import RtcpSrPacket

from ..clock import wall_to_clock_s

_NTP_TO_UNIX_S = 2_208_988_800  # seconds from 1900-01-01 (NTP) to 1970-01-01 (Unix)


@dataclass(frozen=True)
class SenderReport:
    """One RTCP sender report: the sender's wall time (Unix s) at RTP time ``rtp`` (32-bit)."""

    wall_s: float
    rtp: int


def ntp_to_unix_s(ntp: int) -> float:
    """A 64-bit NTP timestamp (32.32 fixed point, s since 1900) as Unix seconds."""
    return (ntp >> 32) - _NTP_TO_UNIX_S + (ntp & 0xFFFFFFFF) / 2**32


class SenderClock:
    """Capture times of one remote track's frames, from its sender's reports.

    ``wall_offset_s`` (server clock - the sender's wall clock, s) is set when the page measured it.
    """

    def __init__(self) -> None:
        self._reports: dict[int, SenderReport] = {}  # by SSRC (the media's and e.g. its RTX's)
        self._media_ssrcs: Callable[[], set[int]] = lambda: set(self._reports)
        #: the RTP timestamp of a frame with ``pts`` 0 (None: unknown, no capture times given)
        self._rtp_origin: Callable[[], int | None] = lambda: 0
        self.wall_offset_s: float | None = None

    def attach(self, receiver: Any) -> None:
        """See the sender reports that reach aiortc's ``receiver`` (an ``RTCRtpReceiver``)."""
        handle: Callable[[Any], Awaitable[None]] = receiver._handle_rtcp_packet
        mapper = getattr(receiver, "_RTCRtpReceiver__timestamp_mapper", None)
        self._rtp_origin = lambda: None if mapper is None else getattr(mapper, "_origin", None)

        async def handle_and_note(packet: Any) -> None:
            if isinstance(packet, RtcpSrPacket):
                self.report(packet.ssrc, packet.sender_info.ntp_timestamp, packet.sender_info.rtp_timestamp)
            await handle(packet)

        receiver._handle_rtcp_packet = handle_and_note
        self._media_ssrcs = lambda: {source.source for source in receiver.getSynchronizationSources()}

    def report(self, ssrc: int, ntp: int, rtp: int) -> None:
        """Note a sender report of ``ssrc``: NTP time ``ntp`` (64-bit) at RTP time ``rtp``."""
        self._reports[ssrc] = SenderReport(ntp_to_unix_s(ntp), rtp & 0xFFFFFFFF)

    def captured_s(self, pts: int | None, time_base: Fraction | None) -> float | None:
        """The capture time (server clock, s) of the received frame with ``pts`` (its RTP timestamp
        less the stream's first) in ``time_base`` (1 / the RTP clock rate), or None before a sender
        report of its stream."""
        origin = self._rtp_origin()
        if pts is None or time_base is None or origin is None:
            return None
        media = self._media_ssrcs()
        reports = [report for ssrc, report in self._reports.items() if ssrc in media]
        if len(reports) != 1:  # none yet (or several streams: which one is ambiguous)
            return None
        report = reports[0]
        ticks = (int(pts) + origin - report.rtp) & 0xFFFFFFFF
        if ticks >= 2**31:  # a frame before the report
            ticks -= 2**32
        return wall_to_clock_s(report.wall_s + float(ticks * time_base), self.wall_offset_s)
