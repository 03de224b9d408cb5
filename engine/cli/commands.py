"""What each ``pirender`` command does, given its parsed arguments."""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from pathlib import Path

import numpy as np

from ..api import default_portrait, load_renderer, open_space_renderer
from ..errors import CheckpointError, PirenderError, exception_text
from ..fileio import check_output, prepare_folder, staged_output, temporary_path
from ..image import SourceImage, load_source_image, save_png, tensor_to_images
from ..live import run_live_loop
from ..motion.edit import MotionEdit, demo_motion, demo_open_motion, neutral_frame, sweep
from ..motion.io import load_expression_presets, load_motion, motion_crop, save_motion
from ..motion.retarget import cross_identity_scale, retarget_open
from ..motion.space import AUTHORS_SPACE, OPEN_SPACE, MotionFrame, MotionSequence
from ..motion.window import DEFAULT_RADIUS, build_windows
from ..offline import render_to_video
from ..renderer.base import PreparedSource, Renderer
from ..renderer.checkpoint import CheckpointInfo, build_generator, read_checkpoint
from ..renderer.mesh.renderer import MeshRenderer
from ..renderer.refine.renderer import is_refiner_file
from ..sinks.video_file import SUPPORTED_EXTENSIONS
from ..sources.frames import open_frames
from ..track.clip import track_clip
from ..track.crop import crop_to_face
from ..track.deep3d import Deep3DRegressor
from ..track.landmarks import FaceMesh, five_points
from ..track.tracker import TrackerConfig
from .options import DrivingOptions, PortraitOptions, RendererOptions


def check_out(path: str, suffixes: tuple[str, ...], *, overwrite: bool) -> Path:
    """Check an output path first, before any work: its suffix, not a folder, not an existing file
    without --overwrite, a folder that exists or can be made (:func:`~pirender.engine.fileio.check_output`).
    The folder itself is made by :func:`_make_folder` once the inputs have been read, before the work."""
    out = Path(path).expanduser()
    if out.suffix.lower() not in suffixes:
        raise PirenderError(f"{out}: output must end in {' or '.join(suffixes)}")
    return check_output(out, overwrite=overwrite)


def make_folder(out: Path) -> None:
    """Create the output's missing folder (before the work that ends in writing it)."""
    prepare_folder(out.parent, label=out)


def positive(name: str, value: float | None) -> None:
    if value is not None and not value > 0:
        raise PirenderError(f"{name} must be > 0, got {value}")


def _load_source(portrait: PortraitOptions, size_px: int) -> SourceImage:
    """The source portrait, framed around its face with --face-crop (VoxCeleb-style)."""
    if portrait.face_crop:
        return crop_to_face(portrait.path, size_px=size_px)
    return load_source_image(portrait.path, size_px=size_px)


#: how the demo names the open-space renderer it uses
_RENDERER_WORDS = {
    "mesh": "weight-free mesh renderer",
    "neural": "neural renderer (mesh warp + editing network trained on real people)",
}


def _read_renderer_checkpoint(path: str) -> CheckpointInfo | None:
    """A PIRenderer --checkpoint, read once; None when the file is instead a neural renderer network
    of ``pirender train-refiner`` (tried only after the PIRenderer read fails, so an authors'
    checkpoint is never loaded twice).

    Raises:
        CheckpointError: neither.
    """
    try:
        return read_checkpoint(path)
    except CheckpointError:
        if is_refiner_file(path):
            return None
        raise


def _refiner_renderer(
    options: RendererOptions, *, precision: str = "fp32", compile: bool = False
) -> MeshRenderer:
    """The neural renderer running the --checkpoint network (``pirender train-refiner --out``)."""
    renderer = load_renderer(
        options.checkpoint, backend="neural", device=options.device, precision=precision,
        mode=options.mode, image_size_px=options.size_px, compile=compile,
    )  # fmt: skip
    assert isinstance(renderer, MeshRenderer)
    return renderer


def _open_renderer(options: RendererOptions) -> tuple[Renderer, int]:
    """The renderer the options ask for (without its source yet) and its image size; a --checkpoint
    of the neural renderer's editing network (``pirender train-refiner --out``) runs that network."""
    if options.checkpoint:
        info = _read_renderer_checkpoint(options.checkpoint)
        if info is None:
            refiner = _refiner_renderer(options, precision=options.precision, compile=options.compile)
            return refiner, refiner.image_size_px
        renderer = load_renderer(
            info, backend=options.backend, device=options.device, precision=options.precision,
            mode=options.mode, compile=options.compile,
        )  # fmt: skip
        return renderer, info.image_size_px
    renderer = open_space_renderer(options.renderer, mode=options.mode, image_size_px=options.size_px)
    return renderer, renderer.image_size_px


def _driving_motion(driving: DrivingOptions, renderer: Renderer, prepared: PreparedSource) -> MotionSequence:
    """Track --driving; the authors' space (PIRenderer) needs the Deep3DFaceRecon regressor."""
    regressor = None
    if renderer.space == AUTHORS_SPACE:
        if not driving.deep3d:
            raise PirenderError(
                "driving PIRenderer from a video needs the Deep3DFaceRecon checkpoint (--deep3d "
                "epoch_20.pth); without --checkpoint the weight-free renderer needs none"
            )
        regressor = Deep3DRegressor.from_checkpoint(driving.deep3d, device=renderer_device(renderer))
    with open_frames(driving.path, max_frames=driving.max_frames) as frames:
        clip = track_clip(frames, regressor=regressor, config=_tracker_config(driving.neutral_frame))
    print(clip.describe())
    if clip.authors_motion is None or regressor is None:
        return clip.open_motion
    if driving.source_motion:
        return clip.authors_motion  # _fit_motion applies the cross-identity rule with it
    # the source portrait's own coefficients, for the authors' cross-identity scale rule
    with FaceMesh(static_images=True) as mesh:
        faces = mesh.detect(prepared.image.rgb)
    if not faces:
        raise PirenderError("no face found in the source portrait to measure its own coefficients")
    own = regressor.predict(prepared.image.rgb, five_points(max(faces, key=lambda f: np.ptp(f[:, 0]))))
    scaled = cross_identity_scale(clip.authors_motion, own)
    print(f"cross-identity scale: x{scaled.meta['cross_identity_scale']:.3f} (authors' rule)")
    return scaled


def _tracker_config(neutral: int | None) -> TrackerConfig:
    """The tracker's rules from the command line (``--neutral-frame``)."""
    if neutral is not None and neutral < 0:
        raise PirenderError(f"--neutral-frame must be a frame index >= 0, got {neutral}")
    return TrackerConfig(neutral_frame=neutral)


def renderer_device(renderer: Renderer) -> str:
    return str(getattr(renderer, "device", "cpu"))


def _fit_motion(
    motion: MotionSequence, renderer: Renderer, prepared: PreparedSource, source: MotionFrame | None
) -> MotionSequence:
    """Move the driver's motion onto the portrait ``prepared`` (relative to each one's neutral);
    ``source`` is the first frame of --source-motion."""
    if motion.space == OPEN_SPACE and renderer.space == OPEN_SPACE:
        return retarget_open(motion, renderer.rest_row(prepared))
    if motion.space == AUTHORS_SPACE and source is not None:
        scaled = cross_identity_scale(motion, source)
        print(f"cross-identity scale: x{scaled.meta['cross_identity_scale']:.3f} (authors' rule)")
        return scaled
    return motion


def run_render(args: argparse.Namespace) -> int:
    out = check_out(args.out, SUPPORTED_EXTENSIONS, overwrite=args.overwrite)
    for name, value in (("--batch", args.batch), ("--fps", args.fps), ("--max-frames", args.max_frames)):
        positive(name, value)
    if bool(args.motion) == bool(args.driving):
        raise PirenderError("give exactly one of --motion FILE or --driving VIDEO")
    source = load_motion(args.source_motion).frame(0) if args.source_motion else None
    motion = _load_motion_file(args.motion, source) if args.motion else None
    make_folder(out)
    renderer, size_px = _open_renderer(RendererOptions.from_args(args))
    if motion is not None:
        _check_space(renderer, motion)
    prepared = renderer.prepare(_load_source(PortraitOptions.from_args(args), size_px))
    if motion is None:
        motion = _driving_motion(DrivingOptions.from_args(args), renderer, prepared)
    if args.fps is not None or args.max_frames is not None:  # --fps overrides the file's own rate
        motion = MotionSequence(
            motion.space, motion.values[: args.max_frames], fps=args.fps or motion.fps, meta=motion.meta
        )
    motion = _fit_motion(motion, renderer, prepared, source)
    # the video and its sound are made beside `out` and moved into place together, once complete
    with staged_output(out, what="the frames written so far are") as staged:
        summary = render_to_video(
            renderer, prepared, motion, staged, batch_size=args.batch, radius=args.radius, in_place=True
        )
        print(dataclasses.replace(summary, path=out).describe())
        if args.driving and not args.no_audio:
            _add_driving_sound(staged, args.driving, fps=args.fps)
    return 0


def _add_driving_sound(video: Path, driving: str, *, fps: float | None) -> None:
    """Mux the driving clip's sound (if it has one) into the rendered ``video``, in sync with its first
    frame and cut at the video's end. A sound that cannot be decoded or converted (AudioError) leaves
    the video silent, with a note; a failure to write is an error (the hidden temporary file removed)."""
    import av

    from ..audio.sources import AudioError
    from ..sinks.mux import first_video_time_s, has_audio_stream, mux_soundtrack
    from ..sources.frames import video_stream_rate

    if not has_audio_stream(driving):
        return
    with av.open(driving) as container:
        rate = video_stream_rate(container.streams.video[0], [])[0] if container.streams.video else None
    if fps is not None and rate is not None and abs(float(rate) - fps) > 1e-3:
        print(f"note: --fps {fps:g} plays the clip at another speed than its {float(rate):g} fps: "
              "its sound is left out")  # fmt: skip
        return
    muxed = temporary_path(video)  # hidden, beside it
    try:
        sound = mux_soundtrack(video, driving, out_path=muxed, start_at_s=first_video_time_s(driving))
        os.replace(muxed, video)
    except AudioError as exc:
        print(f"note: the video has no sound: {exc}")
        return
    finally:
        muxed.unlink(missing_ok=True)
    print(f"sound of {driving} muxed in ({sound.describe()}; --no-audio leaves it out)")


def _load_motion_file(path: str, source: MotionFrame | None) -> MotionSequence:
    """--motion, completed with the crop of --source-motion where its layout has none (SadTalker's 70
    numbers per frame, Deep3DFaceRecon's 257/258)."""
    crop = motion_crop(source) if source is not None and source.space == AUTHORS_SPACE else None
    motion = load_motion(path, crop=crop)
    if crop is not None and str(motion.meta.get("layout", "")).endswith("+crop"):
        s, t0, t1 = (float(v) for v in crop)
        print(f"crop (s, t0, t1) = ({s:.4g}, {t0:.4g}, {t1:.4g}) from --source-motion: {path} has none")
    return motion


def _check_space(renderer: Renderer, motion: MotionSequence) -> None:
    if motion.space == renderer.space:
        return
    if renderer.space == OPEN_SPACE:
        raise PirenderError(
            f"motion of space {motion.space.name!r} needs PIRenderer (--checkpoint); the weight-free "
            f"renderer reads {OPEN_SPACE.name!r} motion (make some with: pirender track video.mp4)"
        )
    renderer.space.check_compatible(motion.space)


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


def _parse_controls(items: list[str]) -> dict[str, float]:
    changes: dict[str, float] = {}
    names = OPEN_SPACE.slot_names[OPEN_SPACE.group("expression")]
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in names:
            raise PirenderError(
                f"--set {item!r}: expected CONTROL=VALUE with CONTROL one of {', '.join(names)}"
            )
        try:
            changes[name] = float(value)
        except ValueError:
            raise PirenderError(f"--set {item!r}: {value!r} is not a number") from None
    return changes


def run_edit(args: argparse.Namespace) -> int:
    out = check_out(args.out, SUPPORTED_EXTENSIONS if args.sweep else (".png",), overwrite=args.overwrite)
    positive("--fps", args.fps)
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
        controls=_parse_controls(args.set),
    )
    make_folder(out)
    renderer, size_px = _open_renderer(RendererOptions.from_args(args))
    if renderer.space == OPEN_SPACE and (args.exp or args.preset or args.source_motion):
        raise PirenderError("--exp, --preset and --source-motion are for PIRenderer (--checkpoint)")
    if renderer.space == AUTHORS_SPACE and edit.controls:
        raise PirenderError("--set names controls of the weight-free renderer; PIRenderer takes --exp")
    prepared = renderer.prepare(_load_source(PortraitOptions.from_args(args), size_px))
    if renderer.space == OPEN_SPACE:
        base = MotionFrame(OPEN_SPACE, renderer.rest_row(prepared))
    elif args.source_motion:
        base = load_motion(args.source_motion).frame(0)
    else:
        print("note: no --source-motion given: edits start from a neutral pose with an estimated crop")
        base = MotionFrame(AUTHORS_SPACE, neutral_frame())
    renderer.space.check_compatible(base.space)
    if args.preset:
        base = _with_preset(base, args.preset, args.presets)
    if args.sweep:
        sequence = sweep(base, edit, frames=args.frames, fps=args.fps)
        summary = render_to_video(renderer, prepared, sequence, out)
        print(summary.describe())
        return 0
    window = build_windows(edit.apply(base)[None], 0, DEFAULT_RADIUS)  # one frame, held still
    save_png(out, tensor_to_images(renderer.render(window, source=prepared).frame)[0])
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
    return path or default_portrait()


def run_demo(args: argparse.Namespace) -> int:
    out = check_out(args.out, SUPPORTED_EXTENSIONS, overwrite=args.overwrite)
    positive("--frames", args.frames)
    make_folder(out)
    info = _read_renderer_checkpoint(args.checkpoint) if args.checkpoint else None
    if info is not None:
        source = load_source_image(_demo_portrait(args.source))
        renderer = load_renderer(info, device=args.device, mode=args.mode)
        prepared = renderer.prepare(source)
        motion = demo_motion(neutral_frame(), frames=args.frames, fps=25.0)
    else:
        if args.checkpoint:  # a neural renderer network of pirender train-refiner
            renderer = _refiner_renderer(RendererOptions.from_args(args))
        else:
            renderer = open_space_renderer(args.renderer, mode=args.mode, image_size_px=args.size)
        prepared = renderer.prepare(crop_to_face(_demo_portrait(args.source), size_px=args.size))
        motion = retarget_open(demo_open_motion(frames=args.frames, fps=25.0), renderer.rest_row(prepared))
        words = _RENDERER_WORDS[renderer.name]
        if args.checkpoint:
            print(f"{words}, network {args.checkpoint}")
        else:
            print(f"{words} (no checkpoint needed); --checkpoint switches to PIRenderer")
    summary = render_to_video(renderer, prepared, motion, out)
    print(summary.describe())
    print(f"open it: {out.resolve()}")
    return 0


def run_track(args: argparse.Namespace) -> int:
    out = check_out(args.out, (".npz",), overwrite=args.overwrite)
    positive("--max-frames", args.max_frames)
    if args.space == "authors" and not args.deep3d:
        raise PirenderError("--space authors needs the Deep3DFaceRecon checkpoint: --deep3d epoch_20.pth")
    regressor = Deep3DRegressor.from_checkpoint(args.deep3d, device=args.device) if args.deep3d else None
    config = _tracker_config(getattr(args, "neutral_frame", None))
    with open_frames(args.input, max_frames=args.max_frames) as frames:
        make_folder(out)
        clip = track_clip(frames, regressor=regressor, config=config)
    print(clip.describe())
    motion = clip.authors_motion if args.space == "authors" else clip.open_motion
    assert motion is not None
    save_motion(out, motion)
    print(f"wrote {len(motion)} frames of {motion.space.name} motion to {out}")
    return 0


def run_live(args: argparse.Namespace) -> int:
    """Camera (or any frames) -> tracker -> mesh renderer -> file / window, frame by frame."""
    out = check_out(args.out, SUPPORTED_EXTENSIONS, overwrite=args.overwrite) if args.out else None
    if out is None and not args.window:
        raise PirenderError("give --out FILE, --window, or both")
    positive("--max-frames", args.max_frames)
    config = _tracker_config(getattr(args, "neutral_frame", None))
    with open_frames(args.input, max_frames=args.max_frames) as frames:  # a missing input fails first
        if out is not None:
            make_folder(out)
        renderer = open_space_renderer(args.renderer, image_size_px=args.size)
        prepared = renderer.prepare(_load_source(PortraitOptions.from_args(args), args.size))
        stats = run_live_loop(renderer, prepared, frames, out=out, window=args.window, tracker_config=config)
    print(stats.describe())
    return 0


def replica_bounds(text: str) -> tuple[int, int]:
    """``--render-replicas``: ``N`` (a fixed count) or ``MIN:MAX`` (autoscaling bounds).

    Raises:
        PirenderError: not a count or bounds with 1 <= MIN <= MAX.
    """
    low, colon, high = text.partition(":")
    try:
        bounds = (int(low), int(high if colon else low))
    except ValueError:
        raise PirenderError(f"--render-replicas takes N or MIN:MAX, got {text!r}") from None
    if not 1 <= bounds[0] <= bounds[1]:
        raise PirenderError(f"--render-replicas needs 1 <= MIN <= MAX, got {text!r}")
    return bounds


def run_serve(args: argparse.Namespace) -> int:
    import asyncio

    from ..server.app import ServerConfig, serve_forever

    positive("--fps", args.fps)
    positive("--max-streams", args.max_streams)
    if not 0 <= args.port <= 65535:
        raise PirenderError(f"--port must be in 0..65535, got {args.port}")
    config = ServerConfig(
        host=args.host,
        port=args.port,
        portrait=args.source,
        size_px=args.size,
        renderer=args.renderer,
        fps=args.fps,
        max_streams=args.max_streams,
        stun_urls=list(args.stun),
        motion_file=args.motion,
        token=args.token,
        require_token=False if args.no_token else None,
        allowed_origins=list(args.allow_origin),
        allowed_hosts=list(args.allow_host),
        render=args.render,
        render_replicas=replica_bounds(args.render_replicas),
        render_cpus=args.render_cpus,
        render_gpus=args.render_gpus,
    )
    if args.token is not None and not re.fullmatch(r"[A-Za-z0-9._~-]{16,}", args.token):
        raise PirenderError(
            "--token must have at least 16 characters, letters, digits and . _ ~ - only "
            "(leave it out for a random one)"
        )
    try:
        asyncio.run(serve_forever(config))
    except OSError as exc:
        raise PirenderError(
            f"cannot serve on {args.host}:{args.port} ({exception_text(exc, with_type=False)})"
        ) from None
    return 0


def run_webcam(args: argparse.Namespace) -> int:
    from ..live import run_webcam as webcam_loop

    preview = (
        check_out(args.preview, SUPPORTED_EXTENSIONS, overwrite=args.overwrite) if args.preview else None
    )
    positive("--max-frames", args.max_frames)
    if preview is not None:
        make_folder(preview)
    stats = webcam_loop(
        args.source,
        camera=args.input,
        size_px=args.size,
        renderer=args.renderer,
        preview=preview,
        virtual=not args.no_virtual,
        max_frames=args.max_frames,
        face_crop=args.face_crop,
        virtual_backend=args.backend,
        virtual_device=args.video_device,
        announce=print,
    )
    print(stats.describe())
    return 0


def run_talk(args: argparse.Namespace) -> int:
    from ..audio.sources import SAMPLE_RATE_HZ, load_audio
    from ..sinks.mux import mux_soundtrack
    from ..talk import (
        BlinkConfig,
        TalkConfig,
        added_latency_ms,
        load_talk_model,
        motion_for_speech,
        speech_mask,
        talk_rest_row,
    )

    if bool(args.audio) == bool(args.mic):
        raise PirenderError("give exactly one of --audio FILE or --mic")
    if args.temperature < 0:
        raise PirenderError(f"--temperature must be >= 0, got {args.temperature}")
    if args.seconds is not None and args.seconds <= 0:
        raise PirenderError(f"--seconds must be > 0, got {args.seconds}")
    if args.start < 0:
        raise PirenderError(f"--start must be >= 0 s (a time into --audio's file), got {args.start:g}")
    if args.start and args.mic:
        raise PirenderError("--start is a time into --audio's file; it does not apply to --mic")
    config = TalkConfig(
        temperature=args.temperature, seed=args.seed, blinks=None if args.no_blinks else BlinkConfig()
    )
    if args.mic:
        from ..talk import run_talk_live

        live_out = check_out(args.out, SUPPORTED_EXTENSIONS, overwrite=args.overwrite) if args.out else None
        if live_out is None and not args.window:
            raise PirenderError("with --mic give --out FILE, --window, or both")
        if live_out is not None:
            make_folder(live_out)
        stats = run_talk_live(
            args.source, out=live_out, window=args.window, size_px=args.size, face_crop=args.face_crop,
            renderer_name=args.renderer,
            model_path=args.model, max_seconds=args.seconds, checkpoint=args.checkpoint, device=args.device,
            backend=args.backend, precision=args.precision, source_motion=args.source_motion,
            talk_config=config,
        )  # fmt: skip
        print(f"{stats['frames']:.0f} frames in {stats['seconds']:.1f} s; motion lags the voice by "
              f"{stats['latency_ms']:.0f} ms (model lookahead + feature window)")  # fmt: skip
        return 0
    if not args.out:
        raise PirenderError("--audio needs --out FILE")
    out = check_out(args.out, (".mp4", ".mov", ".mkv"), overwrite=args.overwrite)
    samples = load_audio(args.audio)  # the analysis copy (16 kHz mono); the video gets the original
    if args.start or args.seconds is not None:  # a part of the file: --start .. --start + --seconds
        first = round(args.start * SAMPLE_RATE_HZ)
        if first >= len(samples):
            length_s = len(samples) / SAMPLE_RATE_HZ
            raise PirenderError(f"--start {args.start:g} s: {args.audio} is {length_s:.2f} s long")
        last = len(samples) if args.seconds is None else first + round(args.seconds * SAMPLE_RATE_HZ)
        if last > len(samples):
            print(f"note: {args.audio} ends {(len(samples) - first) / SAMPLE_RATE_HZ:.2f} s after --start: "
                  "the video is that long")  # fmt: skip
        samples = samples[first:last]
    make_folder(out)
    if len(samples) < SAMPLE_RATE_HZ / config.fps:  # any length works; say why the video is so short
        print(f"note: {args.audio} holds only {1000 * len(samples) / SAMPLE_RATE_HZ:.0f} ms of sound: "
              "a one-frame video")  # fmt: skip
    renderer, size_px = _open_renderer(RendererOptions.from_args(args))
    model = load_talk_model(args.model, space=renderer.space)
    prepared = renderer.prepare(_load_source(PortraitOptions.from_args(args), size_px))
    motion = motion_for_speech(
        samples, model, talk_rest_row(renderer, prepared, model, args.source_motion), config
    )
    if not speech_mask(samples, len(motion), config.fps, config.vad).any():
        print(f"note: no speech heard in {args.audio} (voice activity detection): the mouth stays at rest")
    # the silent video and the one with the sound are made beside `out` (hidden) and moved into place
    with staged_output(out, what="the frames written so far (without the sound) are") as staged:
        silent = temporary_path(staged)
        try:
            summary = render_to_video(renderer, prepared, motion, silent, in_place=True)
            sound = mux_soundtrack(  # the part from --start on plays with the first frame (load_audio warned)
                silent, args.audio, out_path=staged, start_at_s=args.start or None, warn=False
            )
        except KeyboardInterrupt:
            if silent.exists() and not staged.exists():  # keep the frames rendered so far
                os.replace(silent, staged)
            raise
        finally:
            silent.unlink(missing_ok=True)
    parts = added_latency_ms(model)  # the VAD's frames end inside the lookahead: not added
    lookahead, window = parts["lookahead_ms"], parts["features_ms"]
    print(f"{dataclasses.replace(summary, path=out).describe()}; sound muxed in ({sound.describe()})")
    print(f"(live, with --mic, this model's motion lags the voice by {lookahead + window:.0f} ms: "
          f"{lookahead:.0f} ms of lookahead and a {window:.0f} ms feature window)")  # fmt: skip
    return 0


def run_bench(args: argparse.Namespace) -> int:
    from ..bench import main as bench_main

    return bench_main(args.options)


def run_doctor(args: argparse.Namespace) -> int:
    del args
    from ..doctor import run_checks

    for check in run_checks():
        print(check.line())
    return 0
