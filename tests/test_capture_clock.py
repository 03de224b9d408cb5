"""Capture times of a browser's media from its RTCP sender reports (engine/server/capture_clock.py),
and the microphone's capture stamps that talk mode's motion-to-photon starts from."""

from __future__ import annotations

import asyncio
import time
from fractions import Fraction
from types import SimpleNamespace

import numpy as np
import pytest
from aiortc.rtp import RtcpSenderInfo, RtcpSrPacket

from pirender.engine.clock import wall_to_clock_s
from pirender.engine.server.capture_clock import SenderClock, ntp_to_unix_s
from pirender.engine.stream.sources import MicrophoneSource

VIDEO = Fraction(1, 90_000)


def ntp(unix_s: float) -> int:
    whole = int(unix_s)
    return ((whole + 2_208_988_800) << 32) | round((unix_s - whole) * 2**32)


def test_ntp_times_read_as_unix_seconds() -> None:
    assert ntp_to_unix_s(ntp(1_800_000_000.25)) == pytest.approx(1_800_000_000.25, abs=1e-6)


def test_a_frame_is_placed_by_the_sender_report_of_its_stream() -> None:
    clock = SenderClock()
    assert clock.captured_s(1000, VIDEO) is None  # no report yet
    clock.wall_offset_s = -1_000_000.0  # server clock = wall - 1e6 s
    clock.report(ssrc=7, ntp=ntp(1_800_000_010.0), rtp=90_000)
    # 0.5 s of RTP time after the report; 0.1 s before it
    assert clock.captured_s(135_000, VIDEO) == pytest.approx(1_799_000_010.5)
    assert clock.captured_s(81_000, VIDEO) == pytest.approx(1_799_000_009.9)
    clock.report(ssrc=7, ntp=ntp(1_800_000_020.0), rtp=2**32 - 9_000)  # RTP time wraps around
    assert clock.captured_s(9_000, VIDEO) == pytest.approx(1_799_000_020.2)
    assert clock.captured_s(None, VIDEO) is None and clock.captured_s(9_000, None) is None


def test_without_a_measured_offset_the_senders_wall_clock_is_this_machines() -> None:
    clock = SenderClock()
    wall = time.time()
    clock.report(ssrc=1, ntp=ntp(wall), rtp=0)
    assert clock.captured_s(0, VIDEO) == pytest.approx(wall_to_clock_s(wall), abs=0.01)
    assert abs(wall_to_clock_s(time.time()) - time.monotonic()) < 0.01


def test_attach_sees_the_reports_a_receiver_gets_and_keeps_only_its_media_streams() -> None:
    seen: list[object] = []

    async def handle(packet: object) -> None:
        seen.append(packet)

    receiver = SimpleNamespace(
        _handle_rtcp_packet=handle,
        getSynchronizationSources=lambda: [SimpleNamespace(source=5)],
        # aiortc's frames count RTP time from the stream's first frame: here RTP time 1000
        _RTCRtpReceiver__timestamp_mapper=SimpleNamespace(_origin=1000),
    )
    clock = SenderClock()
    clock.attach(receiver)
    wall = time.time()

    def report(ssrc: int, rtp: int) -> RtcpSrPacket:
        return RtcpSrPacket(ssrc=ssrc, sender_info=RtcpSenderInfo(ntp(wall), rtp, 0, 0))

    asyncio.run(receiver._handle_rtcp_packet(report(5, 1000)))
    assert len(seen) == 1  # aiortc still handles it
    assert clock.captured_s(90_000, VIDEO) == pytest.approx(wall_to_clock_s(wall + 1.0), abs=0.01)
    asyncio.run(receiver._handle_rtcp_packet(report(6, 4_000_000)))  # e.g. the RTX stream's report
    assert clock.captured_s(90_000, VIDEO) == pytest.approx(wall_to_clock_s(wall + 1.0), abs=0.01)
    unmapped = SenderClock()  # an aiortc whose frames' origin cannot be read: no capture times
    unmapped.attach(SimpleNamespace(_handle_rtcp_packet=handle, getSynchronizationSources=lambda: []))
    unmapped.report(5, ntp(wall), 0)
    assert unmapped.captured_s(90_000, VIDEO) is None


def test_the_microphone_remembers_when_each_sample_was_captured() -> None:
    mic = MicrophoneSource()
    mic.feed_samples(np.zeros(1600, np.float32), captured_s=50.0)
    mic.feed_samples(np.zeros(320, np.float32), captured_s=50.2)  # after a 100 ms gap
    assert mic.captured_s(0) == 50.0 and mic.captured_s(800) == pytest.approx(50.05)
    assert mic.captured_s(1600) == 50.2 and mic.captured_s(1919) == pytest.approx(50.2 + 319 / 16000)
    assert mic.captured_s(1920) is None  # not received yet
    before = time.monotonic()
    mic.feed_samples(np.zeros(160, np.float32))  # unstamped: it ends now
    assert before - 0.01 - 0.01 <= mic.captured_s(1920) <= time.monotonic()
