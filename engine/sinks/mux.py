"""Adding a soundtrack to a rendered video (the talking avatar's offline output)."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np

from ..errors import PirenderError, exception_text


def mux_audio(
    video_path: str | os.PathLike[str],
    samples: np.ndarray,
    *,
    sample_rate_hz: int,
    out_path: str | os.PathLike[str],
) -> Path:
    """Copy the video stream of ``video_path`` (no re-encoding) and add ``samples`` (mono float32
    in [-1, 1]) as an AAC track starting at time 0, into ``out_path`` (a new file)."""
    target = Path(out_path)
    mono = np.clip(np.asarray(samples, dtype=np.float32).reshape(-1), -1.0, 1.0)
    try:
        with av.open(str(video_path)) as source, av.open(str(target), "w") as out:
            video_in = source.streams.video[0]
            video_out = out.add_stream_from_template(video_in)
            audio_out = out.add_stream("aac", rate=sample_rate_hz, layout="mono")
            for packet in source.demux(video_in):
                if packet.dts is None:
                    continue
                packet.stream = video_out
                out.mux(packet)
            chunk = 1024
            for start in range(0, len(mono), chunk):
                frame = av.AudioFrame.from_ndarray(
                    mono[None, start : start + chunk], format="flt", layout="mono"
                )
                frame.sample_rate = sample_rate_hz
                frame.pts = start
                for packet in audio_out.encode(frame):
                    out.mux(packet)
            for packet in audio_out.encode(None):
                out.mux(packet)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise PirenderError(f"{target}: cannot add the soundtrack ({exception_text(exc)})") from None
    return target
