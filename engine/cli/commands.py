"""What each ``pirender`` command does, given its parsed arguments."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from ..api import load_renderer
from ..errors import PirenderError
from ..image import load_source_image, save_png, tensor_to_images
from ..motion.edit import MotionEdit, demo_motion, neutral_frame, sweep
from ..motion.io import load_expression_presets, load_motion
from ..motion.space import AUTHORS_SPACE, MotionSequence
from ..offline import render_to_video
from ..renderer.checkpoint import build_generator, random_generator, read_checkpoint, save_checkpoint


def _check_out(path: str, suffixes: tuple[str, ...]) -> Path:
    out = Path(path).expanduser()
    if out.suffix.lower() not in suffixes:
        raise PirenderError(f"{out}: output must end in {' or '.join(suffixes)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def run_render(args: argparse.Namespace) -> int:
    out = _check_out(args.out, (".mp4", ".mkv", ".mov"))
    if args.batch < 1:
        raise PirenderError(f"--batch must be >= 1, got {args.batch}")
    motion = load_motion(args.motion, fps=args.fps)
    if args.fps is not None:
        motion = MotionSequence(motion.space, motion.values, fps=args.fps, meta=motion.meta)
    if args.max_frames is not None:
        if args.max_frames < 1:
            raise PirenderError(f"--max-frames must be >= 1, got {args.max_frames}")
        motion = MotionSequence(motion.space, motion.values[: args.max_frames], fps=motion.fps)
    renderer = load_renderer(args.checkpoint, device=args.device, precision=args.precision, mode=args.mode)
    renderer.check_motion(motion)
    renderer.prepare(load_source_image(args.source, size_px=renderer.image_size_px))
    summary = render_to_video(renderer, motion, out, batch_size=args.batch, radius=args.radius)
    print(summary.describe())
    return 0


def _parse_expression(items: list[str]) -> dict[int, float]:
    changes: dict[int, float] = {}
    for item in items:
        index, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            changes[int(index)] = changes.get(int(index), 0.0) + float(value)
        except ValueError:
            raise PirenderError(f"--exp {item!r}: expected INDEX=VALUE, e.g. --exp 3=1.5") from None
    return changes


def run_edit(args: argparse.Namespace) -> int:
    out = _check_out(args.out, (".mp4", ".mkv", ".mov") if args.sweep else (".png",))
    edit = MotionEdit(
        pitch_deg=args.pitch,
        yaw_deg=args.yaw,
        roll_deg=args.roll,
        translation=(args.tx, args.ty, args.tz),
        expression=_parse_expression(args.exp),
    )
    renderer = load_renderer(args.checkpoint, device=args.device, precision=args.precision, mode=args.mode)
    if args.source_motion:
        source_motion = load_motion(args.source_motion)
        renderer.check_motion(source_motion)
        base = source_motion.frame(0).values
    else:
        print("note: no --source-motion given: edits start from a neutral pose with an estimated crop")
        base = neutral_frame()
    if args.preset or args.presets:
        base = _with_preset(base, args.preset, args.presets)
    renderer.prepare(load_source_image(args.source, size_px=renderer.image_size_px))
    if args.sweep:
        summary = render_to_video(renderer, sweep(base, edit, frames=args.frames, fps=args.fps), out)
        print(summary.describe())
        return 0
    window = np.repeat(edit.apply(base)[:, None], renderer.min_window_frames, axis=1)  # (73, T)
    save_png(out, tensor_to_images(renderer.render(window).frame)[0])
    print(f"wrote {out}")
    return 0


def _with_preset(base: np.ndarray, name: str | None, presets_file: str | None) -> np.ndarray:
    if not (name and presets_file):
        raise PirenderError("--preset NAME and --presets FILE go together")
    presets = load_expression_presets(presets_file)
    if name not in presets:
        raise PirenderError(f"{presets_file}: no preset {name!r} (presets: {', '.join(presets)})")
    row = base.copy()
    row[AUTHORS_SPACE.group("expression")] = presets[name]
    return row


def run_info(args: argparse.Namespace) -> int:
    info = read_checkpoint(args.checkpoint)
    print(f"file:          {info.path}")
    print(f"format:        {info.kind}" + (f" (weights from {info.dict_key})" if info.dict_key else ""))
    if info.epoch is not None or info.iteration is not None:
        print(f"trained:       epoch {info.epoch}, iteration {info.iteration}")
    print(f"motion space:  {info.space.name} ({info.space.width} numbers per frame)")
    print(f"image size:    {info.image_size_px}x{info.image_size_px}")
    print(f"parameters:    {info.parameter_count:,} in {len(info.state_dict)} tensors")
    for key, value in info.meta.items():
        print(f"meta.{key}: {value}")
    try:
        build_generator(info)
    except PirenderError as exc:
        print(f"keys:          MISMATCH: {exc}")
        return 1
    print(f"keys:          ok (all {len(info.state_dict)} match the PIRenderer generator, strict load)")
    return 0


def _demo_portrait(path: str | None) -> str | Path:
    if path:
        return path
    try:
        from matplotlib import cbook
    except ImportError:
        raise PirenderError(
            "the default demo portrait ships with matplotlib: pip install 'pirender-live[demo]' "
            "or pass --source"
        ) from None
    return Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def run_demo(args: argparse.Namespace) -> int:
    out = _check_out(args.out, (".mp4", ".mkv", ".mov"))
    source = load_source_image(_demo_portrait(args.source))
    if args.checkpoint:
        renderer = load_renderer(args.checkpoint, device=args.device, mode=args.mode)
    else:
        print(
            "NOTE: no trained checkpoint given, so this demo renders with RANDOMLY INITIALISED weights.\n"
            "      The clip shows what an untrained PIRenderer computes (a distorted, false-colour\n"
            "      picture), not a face animation. Pass --checkpoint with the authors' weights to see one."
        )
        with tempfile.TemporaryDirectory() as tmp:
            random_weights = random_generator(seed=0)
            path = save_checkpoint(Path(tmp) / "random.pt", random_weights, meta={"weights": "random"})
            renderer = load_renderer(path, device=args.device, mode=args.mode)
    renderer.prepare(source)
    motion = demo_motion(neutral_frame(), frames=args.frames, fps=25.0)
    summary = render_to_video(renderer, motion, out)
    print(summary.describe())
    print(f"open it: {out.resolve()}")
    return 0
