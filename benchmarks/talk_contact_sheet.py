"""A contact sheet of the talking avatar against the real speaker: does the mouth follow the voice?

For a stretch of a real talking clip, ``pirender talk`` animates a portrait from the clip's own sound
with each model given; the sheet shows, at evenly spaced instants, the real speaker's frame and each
model's avatar frame, and below them the mouth opening over the stretch: the speaker's (tracked, from
a prepared dataset when ``--data`` is given) and each model's (``engine.talk.motion_for_speech``, the
same path the videos were made with), plus the voice's loudness. The avatar rows show its lower face.

Example::

    .venv/bin/python benchmarks/talk_contact_sheet.py ../shared/data/talking/MimicTalk__German_20s.mp4 \\
        --start 4 --seconds 4 --model shipped= --model old=runs/flow_ship.pt --data data/talking \\
        --out docs/talk_contact_sheet.jpg
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import av
import numpy as np

from pirender.engine.api import default_portrait

#: height of the pictures on the sheet, px
HEIGHT = 160
#: the avatar's lower face (top, bottom, left, right; fractions of its face-cropped frame)
MOUTH_BOX = (0.45, 0.95, 0.2, 0.8)


def frames_at(
    video: Path, times_s: np.ndarray, height: int, box: tuple[float, float, float, float] = (0, 1, 0, 1)
) -> list[np.ndarray]:
    """RGB frames of ``video`` nearest each time (s), cut to ``box`` (top, bottom, left, right as
    fractions of the frame) and resized to ``height`` px high."""

    out: list[np.ndarray | None] = [None] * len(times_s)
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        half_period = 0.5 / float(stream.average_rate or 25)
        for frame in container.decode(stream):
            t = frame.time or 0.0
            for i, want in enumerate(times_s):
                if out[i] is None and t + half_period >= want:
                    image = frame.to_image()
                    top, bottom, left, right = box
                    w, h = image.size
                    image = image.crop((round(left * w), round(top * h), round(right * w), round(bottom * h)))
                    width = round(image.width * height / image.height)
                    out[i] = np.asarray(image.resize((width, height)))
    last = next((f for f in reversed(out) if f is not None), np.zeros((height, height, 3), np.uint8))
    return [f if f is not None else last for f in out]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clip", type=Path, help="a real talking clip with sound (video file)")
    parser.add_argument("--start", type=float, default=0.0, help="start of the stretch, s (0)")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of the stretch, s (4)")
    parser.add_argument(
        "--model",
        action="append",
        required=True,
        help="LABEL=PATH of an audio-to-motion model (LABEL= : the shipped one); repeat to compare",
    )
    parser.add_argument("--portrait", type=Path, help="the avatar's portrait (default: the demo's)")
    parser.add_argument("--data", type=Path, help="the prepared dataset holding the clip: its tracked mouth")
    parser.add_argument("--frames", type=int, default=10, help="instants shown (10)")
    parser.add_argument("--out", type=Path, required=True, help="the sheet (.jpg or .png)")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pirender.engine.audio.sources import SAMPLE_RATE_HZ, load_audio
    from pirender.engine.motion.retarget import frontal_rest_row
    from pirender.engine.motion.space import OPEN_SPACE
    from pirender.engine.talk import TalkConfig, load_talk_model, motion_for_speech
    from pirender.training.talk_eval import frame_energy

    jaw_slot = OPEN_SPACE.index("jaw_open")
    models = [
        (label, Path(path) if path else None) for label, _, path in (m.partition("=") for m in args.model)
    ]
    portrait = args.portrait or default_portrait()
    times = args.start + (np.arange(args.frames) + 0.5) * args.seconds / args.frames
    rows = [("speaker", frames_at(args.clip, times, HEIGHT))]
    with tempfile.TemporaryDirectory() as tmp:
        for label, path in models:
            video = Path(tmp) / f"{len(rows)}.mp4"
            command = [
                sys.executable,
                "-m",
                "pirender.engine.cli.main",
                "talk",
                "--source",
                str(portrait),
                "--face-crop",
                "--renderer",
                "mesh",
                "--audio",
                str(args.clip),
                "--start",
                str(args.start),
                "--seconds",
                str(args.seconds),
                "--no-blinks",
                "--out",
                str(video),
            ]
            if path is not None:
                command += ["--model", str(path)]
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)  # fmt: skip
            rows.append((label or "shipped", frames_at(video, times - args.start, HEIGHT, MOUTH_BOX)))
    width = max(sum(f.shape[1] for f in frames) for _, frames in rows)
    figure = plt.figure(figsize=(width / 80, (HEIGHT * len(rows) + 240) / 80), dpi=80)
    grid = figure.add_gridspec(len(rows) + 1, 1, height_ratios=[HEIGHT] * len(rows) + [200])
    for k, (label, frames) in enumerate(rows):
        axis = figure.add_subplot(grid[k])
        axis.imshow(np.concatenate(frames, axis=1))
        axis.set_axis_off()
        axis.set_title(label, loc="left", fontsize=10)
    samples = load_audio(args.clip)
    part = samples[round(args.start * SAMPLE_RATE_HZ) : round((args.start + args.seconds) * SAMPLE_RATE_HZ)]
    plot = figure.add_subplot(grid[len(rows)])
    t25 = (np.arange(int(np.ceil(len(part) / SAMPLE_RATE_HZ * 25))) + 0.5) / 25
    loudness = frame_energy(part, t25, 25.0)
    plot.fill_between(t25, 0, np.clip((loudness + 60) / 60, 0, 1) * 0.1, color="0.85", label="loudness")
    if args.data:
        from pirender.training.talk_data import speech_clips

        clips = [c for split in ("train", "test") for c in speech_clips(args.data, split)[0]]
        clip = next((c for c in clips if c.name == args.clip.stem), None)
        if clip is not None:
            inside = (clip.times_s >= args.start) & (clip.times_s < args.start + args.seconds)
            real = clip.rows[inside, jaw_slot]
            plot.plot(clip.times_s[inside] - args.start, real - np.percentile(clip.rows[:, jaw_slot], 5),
                      color="k", label="speaker (tracked)")  # fmt: skip
    rest = frontal_rest_row()
    for label, path in models:
        jaw = motion_for_speech(part, load_talk_model(path), rest, TalkConfig()).values[:, jaw_slot]
        plot.plot((np.arange(len(jaw)) + 0.5) / 25, jaw - rest[jaw_slot], label=label or "shipped")
    for t in times - args.start:
        plot.axvline(t, color="0.8", lw=0.5)
    plot.set_xlim(0, args.seconds)
    plot.set_xlabel("s")
    plot.set_ylabel("mouth opening (jaw_open)")
    plot.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
