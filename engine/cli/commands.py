"""What each ``pirender`` command does, given its parsed arguments."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from ..api import load_renderer
from ..errors import PirenderError, exception_text
from ..image import load_source_image, save_png, tensor_to_images
from ..motion.edit import MotionEdit, demo_motion, neutral_frame, sweep
from ..motion.io import load_expression_presets, load_motion
from ..motion.retarget import cross_identity_scale
from ..motion.space import AUTHORS_SPACE, MotionFrame, MotionSequence
from ..motion.window import DEFAULT_RADIUS, build_windows
from ..offline import render_to_video
from ..renderer.checkpoint import build_generator, random_generator, read_checkpoint, save_checkpoint
from ..sinks.video_file import SUPPORTED_EXTENSIONS


def _check_out(path: str, suffixes: tuple[str, ...]) -> Path:
    """Validate the output path early; its folder is created only when there is output to write."""
    out = Path(path).expanduser()
    if out.suffix.lower() not in suffixes:
        raise PirenderError(f"{out}: output must end in {' or '.join(suffixes)}")
    if out.is_dir():
        raise PirenderError(f"{out}: is a folder; give a file name")
    return out


def _make_folder(out: Path) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PirenderError(
            f"{out}: cannot create its folder ({exception_text(exc, with_type=False)})"
        ) from None


def _positive(name: str, value: float | None) -> None:
    if value is not None and not value > 0:
        raise PirenderError(f"{name} must be > 0, got {value}")


def run_render(args: argparse.Namespace) -> int:
    out = _check_out(args.out, SUPPORTED_EXTENSIONS)
    for name, value in (("--batch", args.batch), ("--fps", args.fps), ("--max-frames", args.max_frames)):
        _positive(name, value)
    motion = load_motion(args.motion)
    if args.fps is not None or args.max_frames is not None:  # --fps overrides the file's own rate
        motion = MotionSequence(
            motion.space, motion.values[: args.max_frames], fps=args.fps or motion.fps, meta=motion.meta
        )
    if args.source_motion:
        motion = cross_identity_scale(motion, load_motion(args.source_motion).frame(0))
        print(f"cross-identity scale: x{motion.meta['cross_identity_scale']:.3f} (authors' rule)")
    info = read_checkpoint(args.checkpoint)
    info.space.check_compatible(motion.space)
    source = load_source_image(args.source, size_px=info.image_size_px)
    renderer = load_renderer(info, device=args.device, precision=args.precision, mode=args.mode)
    _make_folder(out)
    renderer.prepare(source)
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
    out = _check_out(args.out, SUPPORTED_EXTENSIONS if args.sweep else (".png",))
    _positive("--fps", args.fps)
    if args.sweep and args.frames < 2:
        raise PirenderError(f"--frames must be >= 2 for a sweep, got {args.frames}")
    if bool(args.preset) != bool(args.presets):
        raise PirenderError("--preset NAME and --presets FILE go together")
    edit = MotionEdit(
        pitch_deg=args.pitch,
        yaw_deg=args.yaw,
        roll_deg=args.roll,
        translation=(args.tx, args.ty, args.tz),
        expression=_parse_expression(args.exp),
    )
    if args.source_motion:
        base = load_motion(args.source_motion).frame(0)
    else:
        print("note: no --source-motion given: edits start from a neutral pose with an estimated crop")
        base = MotionFrame(AUTHORS_SPACE, neutral_frame())
    if args.preset:
        base = _with_preset(base, args.preset, args.presets)
    info = read_checkpoint(args.checkpoint)
    info.space.check_compatible(base.space)
    source = load_source_image(args.source, size_px=info.image_size_px)
    renderer = load_renderer(info, device=args.device, precision=args.precision, mode=args.mode)
    _make_folder(out)
    renderer.prepare(source)
    if args.sweep:
        summary = render_to_video(renderer, sweep(base.values, edit, frames=args.frames, fps=args.fps), out)
        print(summary.describe())
        return 0
    window = build_windows(edit.apply(base.values)[None], 0, DEFAULT_RADIUS)  # one frame, held still
    save_png(out, tensor_to_images(renderer.render(window).frame)[0])
    print(f"wrote {out}")
    return 0


def _with_preset(base: MotionFrame, name: str, presets_file: str) -> MotionFrame:
    presets = load_expression_presets(presets_file)
    if name not in presets:
        raise PirenderError(f"{presets_file}: no preset {name!r} (presets: {', '.join(presets)})")
    row = base.values.copy()
    row[AUTHORS_SPACE.group("expression")] = presets[name]
    return MotionFrame(base.space, row)


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
    out = _check_out(args.out, SUPPORTED_EXTENSIONS)
    _positive("--frames", args.frames)
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
    _make_folder(out)
    renderer.prepare(source)
    motion = demo_motion(neutral_frame(), frames=args.frames, fps=25.0)
    summary = render_to_video(renderer, motion, out)
    print(summary.describe())
    print(f"open it: {out.resolve()}")
    return 0
