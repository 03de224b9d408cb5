"""``pirender``: the command line. Every command has ``--help`` with an example.

Errors caused by input (files, arguments, checkpoints) are printed as one line, without a traceback;
set ``PIRENDER_DEBUG=1`` to see tracebacks of unexpected errors. SIGTERM stops a command like Ctrl-C
(a render keeps the frames written so far in ``<name>.partial.mp4``; see ``engine.fileio``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import FrameType

from ..api import DEFAULT_OPEN_RENDERER, DEFAULT_SERVER_RENDERER, OPEN_RENDERERS
from ..errors import PirenderError
from ..logs import VERBOSE_ENV
from ..talk import DEFAULT_TEMPERATURE
from . import commands

_EXAMPLES = {
    "render": "pirender render --source portrait.jpg --driving talking.mp4 --out out.mp4\n"
    "  pirender render --source portrait.jpg --motion coeffs.mat --checkpoint result/face --out out.mp4",
    "edit": "pirender edit --source portrait.jpg --yaw 20 --set jaw_open=0.6 --out edited.png\n"
    "  pirender edit --source portrait.jpg --checkpoint ckpt.pt --yaw 20 --exp 3=1.5 --out edited.png",
    "info": "pirender info result/face/epoch_00190_iteration_000400000_checkpoint.pt",
    "demo": "pirender demo --out demo.mp4",
    "track": "pirender track talking.mp4 --out motion.npz",
    "live": "pirender live --source portrait.jpg --input camera:0 --window --out live.mp4",
    "serve": "pirender serve --port 8080   (then open http://127.0.0.1:8080/)\n"
    "  pirender serve --render ray://127.0.0.1:10001 --render-replicas 1:4   (make ray-up first)",
    "bench": "pirender bench --backend all --json bench.json --plot bench.png",
    "doctor": "pirender doctor",
    "talk": "pirender talk --source portrait.jpg --face-crop --audio speech.wav --out talking.mp4",
    "webcam": "pirender webcam --source portrait.jpg --face-crop --input camera:0 --preview preview.mp4",
}


def _add_open_renderer_option(parser: argparse.ArgumentParser, default: str = DEFAULT_OPEN_RENDERER) -> None:
    parser.add_argument(
        "--renderer",
        default=default,
        choices=list(OPEN_RENDERERS),
        help="without a checkpoint: neural (the mesh warp + an editing network trained on real people) "
        f"or mesh (weight-free); default {default}",
    )


def _add_renderer_options(parser: argparse.ArgumentParser) -> None:
    _add_open_renderer_option(parser)
    parser.add_argument(
        "--checkpoint",
        help="PIRenderer: the authors' checkpoint (.pt), their experiment folder with "
        "latest_checkpoint.txt, or a pirender-live checkpoint; or a neural renderer network of "
        "pirender train-refiner (default: --renderer, without weights to give)",
    )
    parser.add_argument(
        "--size", type=int, default=256, choices=[256, 512], help="neural / mesh output size (default 256)"
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto)")
    parser.add_argument(
        "--precision", default="fp32", choices=["fp32", "tf32", "bf16", "fp16"], help="default fp32"
    )
    parser.add_argument(
        "--mode", default="full", choices=["full", "warp"], help="full model, or the warped source only"
    )
    parser.add_argument(
        "--backend",
        default="torch",
        choices=["torch", "onnx", "openvino", "tensorrt"],
        help="with --checkpoint: how PIRenderer runs (default torch; openvino is the fastest on Intel CPUs)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch backend: torch.compile the per-frame path (CUDA graphs on GPU)",
    )


_OVERWRITE_HELP = "replace an existing output file (without it an existing file is refused, before any work)"


def add_overwrite_option(parser: argparse.ArgumentParser, help_text: str = _OVERWRITE_HELP) -> None:
    parser.add_argument("--overwrite", action="store_true", help=help_text)


_VERBOSE_HELP = "show the log lines of third-party libraries (MediaPipe, TensorFlow Lite), quiet by default"


def _add_neutral_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--neutral-frame",
        type=int,
        default=None,
        metavar="N",
        help="take the face of frame N (0-based) as the driver's neutral (default: the calmest frontal "
        "frames of each shot, found automatically)",
    )


@dataclass(frozen=True)
class CommandSet:
    """Commands another package adds to ``pirender`` (the engine never imports it: ``training.cli``
    adds the training commands and is the installed ``pirender``). ``add(command)`` makes its parsers
    with ``command(name, help)`` (examples from ``examples``, like the engine's own); ``delegated`` maps
    the commands with their own parser to a loader of their ``main(argv) -> exit code``."""

    examples: dict[str, str]
    add: Callable[[Callable[[str, str], argparse.ArgumentParser]], None]
    delegated: dict[str, Callable[[], Callable[[list[str]], int]]] = field(default_factory=dict)


def build_parser(extensions: Sequence[CommandSet] = ()) -> argparse.ArgumentParser:
    examples = {**_EXAMPLES, **{k: v for ext in extensions for k, v in ext.examples.items()}}
    parser = argparse.ArgumentParser(
        prog="pirender",
        description="Portrait avatars with PIRenderer: render motion, edit pose and expression, "
        "inspect checkpoints.",
        epilog="examples:\n  " + "\n  ".join(examples.values()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--verbose", action="store_true", help=_VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        made = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=f"example:\n  {examples[name]}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        made.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=_VERBOSE_HELP)
        return made

    render = command("render", "render a video of a portrait driven by a motion file or a driving video")
    render.add_argument(
        "--face-crop", action="store_true", help="frame the portrait around its face (like VoxCeleb crops)"
    )
    render.add_argument("--source", required=True, help="source portrait (PNG/JPEG/WebP...)")
    render.add_argument(
        "--motion",
        help="motion file: open-space .npz (pirender track) for the mesh renderer; for PIRenderer "
        ".npy (73, 70, 257, 258, 260 or 262 wide), .npz, .mat (SadTalker coeff_3dmm, PIRender coeff), .txt; "
        "70, 257 and 258 numbers per frame carry no crop: add --source-motion",
    )
    render.add_argument(
        "--driving",
        help="a video (or image folder) of a face whose motion the portrait imitates; the video's sound "
        "is muxed in, in sync (see --no-audio)",
    )
    render.add_argument(
        "--no-audio", action="store_true", help="with --driving: leave the driving clip's sound out"
    )
    render.add_argument(
        "--deep3d", help="Deep3DFaceRecon checkpoint (epoch_20.pth): --driving with PIRenderer needs it"
    )
    render.add_argument("--out", required=True, help="output video (.mp4)")
    add_overwrite_option(render)
    _add_renderer_options(render)
    render.add_argument("--batch", type=int, default=1, help="frames rendered at once (default 1)")
    render.add_argument("--fps", type=float, default=None, help="frame rate (default: the file's, else 25)")
    render.add_argument("--radius", type=int, default=13, help="window radius k: 2k+1 frames (default 13)")
    render.add_argument("--max-frames", type=int, default=None, help="render only the first N frames")
    render.add_argument(
        "--source-motion",
        help="the source portrait's own coefficients: match the driver's face scale to it (the authors' "
        "cross-identity rule; use it when the motion comes from another person); its first frame's crop "
        "completes --motion files without one (SadTalker: first_frame_dir/<image>.mat)",
    )
    _add_neutral_option(render)
    render.set_defaults(run=commands.run_render)

    edit = command("edit", "change a portrait's pose and expression (a still, or a sweep video)")
    edit.add_argument(
        "--face-crop", action="store_true", help="frame the portrait around its face (like VoxCeleb crops)"
    )
    edit.add_argument("--source", required=True, help="source portrait")
    edit.add_argument("--out", required=True, help="output .png (still) or .mp4 (with --sweep)")
    add_overwrite_option(edit)
    _add_renderer_options(edit)
    edit.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="CONTROL=V",
        help="mesh renderer: add V to a named control (jaw_open, smile_left, blink_right, gaze_x, ...)",
    )
    edit.add_argument(
        "--source-motion",
        help="the source's own coefficients (.txt/.mat/.npy/.npz; first frame used): edits are relative "
        "to them; without it a neutral pose and an estimated crop are used",
    )
    edit.add_argument("--yaw", type=float, default=0.0, help="degrees, + turns to the image's left")
    edit.add_argument("--pitch", type=float, default=0.0, help="degrees")
    edit.add_argument("--roll", type=float, default=0.0, help="degrees")
    edit.add_argument("--tx", type=float, default=0.0, help="translation change (3DMM units; mesh: IOD)")
    edit.add_argument("--ty", type=float, default=0.0, help="translation change (3DMM units; mesh: IOD)")
    edit.add_argument("--tz", type=float, default=0.0, help="translation change (3DMM units; PIRenderer)")
    edit.add_argument(
        "--exp", action="append", default=[], metavar="I=V", help="add V to expression coefficient I (0..63)"
    )
    edit.add_argument(
        "--preset",
        metavar="NAME",
        help="set the expression to a preset of --presets (the authors' center, mouth, eyebrow, eyes)",
    )
    edit.add_argument("--presets", metavar="FILE", help="the authors' expression.mat (for --preset)")
    edit.add_argument("--sweep", action="store_true", help="write a video going source -> edit -> source")
    edit.add_argument("--frames", type=int, default=40, help="sweep length in frames (default 40)")
    edit.add_argument("--fps", type=float, default=25.0, help="sweep frame rate (default 25)")
    edit.set_defaults(run=commands.run_edit)

    info = command("info", "say what a checkpoint is and whether it matches the model")
    info.add_argument("checkpoint", help="checkpoint file or experiment folder")
    info.set_defaults(run=commands.run_info)

    demo = command("demo", "render a clip of the embedded default portrait turning, blinking, talking")
    demo.add_argument("--out", default="out/demo.mp4", help="output video (default out/demo.mp4)")
    add_overwrite_option(demo)
    demo.add_argument("--source", default=None, help="portrait (default: Grace Hopper from matplotlib)")
    demo.add_argument(
        "--checkpoint", default=None, help="PIRenderer weights (default: --renderer, without weights to give)"
    )
    demo.add_argument("--size", type=int, default=256, choices=[256, 512], help="neural / mesh output size")
    _add_open_renderer_option(demo)
    demo.add_argument("--frames", type=int, default=150, help="frames (default 150, 6 s)")
    demo.add_argument("--device", default="auto", help="cpu, cuda or auto (default auto)")
    demo.add_argument("--mode", default="full", choices=["full", "warp"], help="default full")
    demo.set_defaults(run=commands.run_demo)

    track = command("track", "track a face in a video, image folder or camera into a motion file")
    track.add_argument("input", help="video file, image folder/glob, or camera:N")
    track.add_argument("--out", required=True, help="motion file (.npz)")
    add_overwrite_option(track)
    track.add_argument(
        "--space",
        default="open",
        choices=["open", "authors"],
        help="open: pose + named controls (default); authors: PIRenderer's 73 numbers (needs --deep3d)",
    )
    track.add_argument("--deep3d", help="Deep3DFaceRecon checkpoint (epoch_20.pth)")
    track.add_argument("--device", default="cpu", help="device of the Deep3DFaceRecon net (default cpu)")
    track.add_argument("--max-frames", type=int, default=None, help="stop after N frames")
    _add_neutral_option(track)
    track.set_defaults(run=commands.run_track)

    live = command("live", "drive a portrait live from a camera (or a video) into a window or a file")
    live.add_argument(
        "--face-crop", action="store_true", help="frame the portrait around its face (like VoxCeleb crops)"
    )
    live.add_argument("--source", required=True, help="source portrait")
    live.add_argument("--input", default="camera:0", help="camera:N, a video or an image folder")
    live.add_argument(
        "--out",
        help="also record the avatar to this video (at the input's frame times; Ctrl-C ends the "
        "recording and keeps it)",
    )
    add_overwrite_option(live)
    live.add_argument("--window", action="store_true", help="show the avatar in a window (q quits)")
    live.add_argument("--size", type=int, default=256, choices=[256, 512], help="output size")
    _add_open_renderer_option(live)
    live.add_argument("--max-frames", type=int, default=None, help="stop after N frames")
    _add_neutral_option(live)
    live.set_defaults(run=commands.run_live)

    talk = command("talk", "a talking avatar from speech (an audio file; offline video with the sound)")
    talk.add_argument("--source", required=True, help="source portrait")
    talk.add_argument(
        "--face-crop", action="store_true", help="frame the portrait around its face (like VoxCeleb crops)"
    )
    talk.add_argument(
        "--audio",
        help="speech: WAV, MP3 or any file FFmpeg decodes (also the sound of a video), of any length; "
        "damaged packets are skipped with a warning",
    )
    talk.add_argument("--mic", action="store_true", help="live from this machine's microphone instead")
    talk.add_argument("--window", action="store_true", help="with --mic: show the avatar in a window")
    talk.add_argument(
        "--seconds", type=float, default=None,
        help="with --mic: stop after this long; with --audio: use this much of the file (default: all)",
    )  # fmt: skip
    talk.add_argument(
        "--start", type=float, default=0.0, help="with --audio: start this many seconds into the file"
    )
    talk.add_argument(
        "--out",
        help="output video (.mp4, .mov, .mkv); with --audio the speech is muxed in at its own rate and "
        "channels (AAC)",
    )
    add_overwrite_option(talk)
    talk.add_argument("--model", help="audio-to-motion flow checkpoint (default: the shipped model)")
    talk.add_argument(
        "--temperature",
        type=float,
        default=DEFAULT_TEMPERATURE,
        help=f"variety of the head, brows and gaze (default {DEFAULT_TEMPERATURE:g}: head motion like real "
        "speakers'; 0: a still head; higher values add head motion and jitter; the shipped model's mouth "
        "does not depend on it: engine/audioflow/MODEL_CARD.md)",
    )
    talk.add_argument(
        "--no-blinks",
        action="store_true",
        help="no procedural blinks (default: a 0.2 s blink every 2-5 s, drawn from --seed; the flow's "
        "mean path itself never blinks)",
    )
    talk.add_argument("--seed", type=int, default=0, help="random seed (same seed, same motion)")
    _add_renderer_options(talk)
    talk.add_argument(
        "--source-motion",
        help="with --checkpoint: the portrait's own coefficients (73-wide file); silent frames keep its "
        "expression (default: the audio model's mean expression)",
    )
    talk.set_defaults(run=commands.run_talk)

    bench = command("bench", "time every renderer backend against the authors' eager fp32 model")
    bench.add_argument("options", nargs=argparse.REMAINDER, help="see: pirender bench --help")
    bench.set_defaults(run=commands.run_bench)

    doctor = command("doctor", "what this machine can run: GPU, kernels, ONNX Runtime, OpenVINO, TensorRT")
    doctor.set_defaults(run=commands.run_doctor)

    webcam = command("webcam", "turn your camera into an avatar webcam for video calls (virtual camera)")
    webcam.add_argument("--source", required=True, help="source portrait")
    webcam.add_argument(
        "--face-crop", action="store_true", help="frame the portrait around its face (like VoxCeleb crops)"
    )
    webcam.add_argument("--input", default="camera:0", help="camera:N, or a video file to test with")
    webcam.add_argument(
        "--preview",
        help="also write what the virtual camera shows to this video (at the input's frame times)",
    )
    add_overwrite_option(webcam)
    webcam.add_argument("--no-virtual", action="store_true", help="no virtual camera (use with --preview)")
    webcam.add_argument("--backend", help="pyvirtualcam backend: v4l2loopback, obs, unitycapture")
    webcam.add_argument("--video-device", help="virtual camera device, e.g. /dev/video2")
    webcam.add_argument("--size", type=int, default=256, choices=[256, 512], help="avatar size")
    _add_open_renderer_option(webcam)
    webcam.add_argument("--max-frames", type=int, default=None, help="stop after N frames")
    webcam.set_defaults(run=commands.run_webcam)

    serve = command("serve", "serve the live avatar to browsers over WebRTC (page + signaling on one port)")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine)"
    )
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    serve.add_argument("--source", default=None, help="portrait (default: Grace Hopper from matplotlib)")
    serve.add_argument("--size", type=int, default=256, choices=[256, 512], help="avatar size (default 256)")
    _add_open_renderer_option(serve, DEFAULT_SERVER_RENDERER)
    serve.add_argument("--fps", type=float, default=25.0, help="frames per second per stream (default 25)")
    serve.add_argument("--max-streams", type=int, default=8, help="concurrent streams (default 8)")
    serve.add_argument("--motion", help="an open-space motion file for the page's 'file' mode")
    serve.add_argument(
        "--stun", action="append", default=[], metavar="URL",
        help="STUN server for clients behind NAT, e.g. stun:stun.example.org:3478 (default: none)",
    )  # fmt: skip
    token = serve.add_mutually_exclusive_group()
    token.add_argument(
        "--token", help="the access token /ws requires (default: a random one, required exactly when "
        "--host is not loopback; giving one requires it on loopback too)",
    )  # fmt: skip
    token.add_argument(
        "--no-token", action="store_true", help="no access token even when exposed (anyone who reaches "
        "the port controls the avatar; a warning is printed)",
    )  # fmt: skip
    serve.add_argument(
        "--allow-origin", action="append", default=[], metavar="ORIGIN",
        help="another page origin allowed to open /ws, e.g. https://app.example.org (repeatable)",
    )  # fmt: skip
    serve.add_argument(
        "--allow-host", action="append", default=[], metavar="NAME",
        help="another host name the server answers to (besides IP addresses, localhost and this "
        "machine's name; others get 403 against DNS rebinding; repeatable)",
    )  # fmt: skip
    serve.add_argument(
        "--render", default="in-process", metavar="WHERE",
        help="where frames are rendered: in-process (default) or a Ray cluster running the render "
        "deployment: ray://HOST:10001 (Ray Client), HOST:6379 or auto from a machine of the cluster "
        "(README: Scale-out with Ray Serve)",
    )  # fmt: skip
    serve.add_argument(
        "--render-replicas", default="1", metavar="N|MIN:MAX",
        help="with --render on Ray, when the deployment is not running yet: its replicas, a count or "
        "autoscaling bounds on queued requests (default 1)",
    )  # fmt: skip
    serve.add_argument(
        "--render-cpus", type=float, default=1.0, help="cores per render replica (default 1)"
    )  # fmt: skip
    serve.add_argument(
        "--render-gpus", type=float, default=0.0, help="GPUs per render replica (1: one replica per GPU)"
    )  # fmt: skip
    serve.set_defaults(run=commands.run_serve)
    for extension in extensions:
        extension.add(command)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that outputs are finished the same way."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    del signum, frame
    raise Terminated


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While a command runs in the main thread, SIGTERM raises :class:`Terminated` (a KeyboardInterrupt)
    there: a render keeps its partial video, a recording is finished. The previous handler is restored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _bench_main() -> Callable[[list[str]], int]:
    from ..bench import main as bench_main

    return bench_main


#: commands with their own parser, imported only when run (they pull in benchmark code)
_DELEGATED: dict[str, Callable[[], Callable[[list[str]], int]]] = {"bench": _bench_main}


def main(argv: Sequence[str] | None = None, *, extensions: Sequence[CommandSet] = ()) -> int:
    """The engine's commands (and those of ``extensions``) on ``argv`` (default: ``sys.argv[1:]``);
    returns the exit code (0 done, 2 usage or input error, 1 internal error, 130/143 interrupted)."""
    with _sigterm_as_interrupt():
        return _main(argv, extensions)


def _main(argv: Sequence[str] | None, extensions: Sequence[CommandSet]) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    table = {**_DELEGATED, **{k: v for ext in extensions for k, v in ext.delegated.items()}}
    delegated = table.get(arguments[0]) if arguments else None
    if delegated is not None:  # these commands have their own parser (and --help)
        try:
            return delegated()(arguments[1:])
        except KeyboardInterrupt as exc:
            print("terminated" if isinstance(exc, Terminated) else "interrupted", file=sys.stderr)
            return 143 if isinstance(exc, Terminated) else 130
    parser = build_parser(extensions)
    args = parser.parse_args(arguments)
    if getattr(args, "run", None) is None:
        parser.print_help()
        return 2
    if args.verbose:
        os.environ[VERBOSE_ENV] = "1"  # read where native libraries start (engine.logs)
    warnings.simplefilter("default")
    # Ray Serve's own schemas use a Pydantic 1 idiom: 18 identical lines at every start, nothing to act on
    warnings.filterwarnings("ignore", message="Using extra keyword arguments on `Field`")
    warnings.formatwarning = lambda message, category, *rest, **kw: f"warning: {message}\n"
    try:
        return int(args.run(args) or 0)
    except PirenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        print(f"error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Terminated)
        print("terminated" if isinstance(exc, Terminated) else "interrupted", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except Exception as exc:
        if os.environ.get("PIRENDER_DEBUG"):
            raise
        print(
            f"internal error: {type(exc).__name__}: {exc} (set PIRENDER_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
