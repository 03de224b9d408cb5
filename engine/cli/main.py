"""``pirender``: the command line. Every command has ``--help`` with an example.

Errors caused by input (files, arguments, checkpoints) are printed as one line, without a traceback;
set ``PIRENDER_DEBUG=1`` to see tracebacks of unexpected errors.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence

from ..errors import PirenderError
from . import commands

_EXAMPLES = {
    "render": "pirender render --source portrait.jpg --motion coeffs.mat --checkpoint result/face "
    "--out out.mp4",
    "edit": "pirender edit --source portrait.jpg --checkpoint ckpt.pt --yaw 20 --pitch -5 --exp 3=1.5 "
    "--out edited.png",
    "info": "pirender info result/face/epoch_00190_iteration_000400000_checkpoint.pt",
    "demo": "pirender demo --out demo.mp4",
}


def _add_renderer_options(parser: argparse.ArgumentParser, *, checkpoint_required: bool) -> None:
    parser.add_argument(
        "--checkpoint",
        required=checkpoint_required,
        help="the authors' checkpoint (.pt), their experiment folder with latest_checkpoint.txt, "
        "or a pirender-live checkpoint",
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto)")
    parser.add_argument(
        "--precision", default="fp32", choices=["fp32", "tf32", "bf16", "fp16"], help="default fp32"
    )
    parser.add_argument(
        "--mode", default="full", choices=["full", "warp"], help="full model, or the warped source only"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pirender",
        description="Portrait avatars with PIRenderer: render motion, edit pose and expression, "
        "inspect checkpoints.",
        epilog="examples:\n  " + "\n  ".join(_EXAMPLES.values()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=f"example:\n  {_EXAMPLES[name]}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    render = command("render", "render a video of a portrait driven by a motion file")
    render.add_argument("--source", required=True, help="source portrait (PNG/JPEG/WebP...)")
    render.add_argument(
        "--motion", required=True, help="motion file: .npy/.npz (73, 260 or 262 wide), .mat, .txt"
    )
    render.add_argument("--out", required=True, help="output video (.mp4)")
    _add_renderer_options(render, checkpoint_required=True)
    render.add_argument("--batch", type=int, default=1, help="frames rendered at once (default 1)")
    render.add_argument("--fps", type=float, default=None, help="frame rate (default: the file's, else 25)")
    render.add_argument("--radius", type=int, default=13, help="window radius k: 2k+1 frames (default 13)")
    render.add_argument("--max-frames", type=int, default=None, help="render only the first N frames")
    render.add_argument(
        "--source-motion",
        help="the source portrait's own coefficients: match the driver's face scale to it (the authors' "
        "cross-identity rule; use it when the motion comes from another person)",
    )
    render.set_defaults(run=commands.run_render)

    edit = command("edit", "change a portrait's pose and expression (a still, or a sweep video)")
    edit.add_argument("--source", required=True, help="source portrait")
    edit.add_argument("--out", required=True, help="output .png (still) or .mp4 (with --sweep)")
    _add_renderer_options(edit, checkpoint_required=True)
    edit.add_argument(
        "--source-motion",
        help="the source's own coefficients (.txt/.mat/.npy/.npz; first frame used): edits are relative "
        "to them; without it a neutral pose and an estimated crop are used",
    )
    edit.add_argument("--yaw", type=float, default=0.0, help="degrees, + turns to the image's left")
    edit.add_argument("--pitch", type=float, default=0.0, help="degrees")
    edit.add_argument("--roll", type=float, default=0.0, help="degrees")
    edit.add_argument("--tx", type=float, default=0.0, help="translation change (3DMM units)")
    edit.add_argument("--ty", type=float, default=0.0, help="translation change (3DMM units)")
    edit.add_argument("--tz", type=float, default=0.0, help="translation change (3DMM units)")
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

    demo = command("demo", "render a short clip of the embedded default portrait turning its head")
    demo.add_argument("--out", default="out/demo.mp4", help="output video (default out/demo.mp4)")
    demo.add_argument("--source", default=None, help="portrait (default: Grace Hopper from matplotlib)")
    demo.add_argument(
        "--checkpoint", default=None, help="a trained checkpoint (default: a random one, said plainly)"
    )
    demo.add_argument("--frames", type=int, default=50, help="frames (default 50)")
    demo.add_argument("--device", default="auto", help="cpu, cuda or auto (default auto)")
    demo.add_argument("--mode", default="full", choices=["full", "warp"], help="default full")
    demo.set_defaults(run=commands.run_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.print_help()
        return 2
    warnings.simplefilter("default")
    warnings.formatwarning = lambda message, category, *rest, **kw: f"warning: {message}\n"
    try:
        return int(args.run(args) or 0)
    except PirenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        print(f"error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
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
