"""Typed options between argument parsing and the engine: each command's ``run_*`` turns its
``argparse.Namespace`` into these dataclasses once (``from_args``), and everything below it takes them,
never the namespace. Defaults are the parser's (``engine.cli.main``)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from ..api import DEFAULT_OPEN_RENDERER


@dataclass(frozen=True)
class RendererOptions:
    """Which renderer draws (``--renderer``, or ``--checkpoint``: PIRenderer or a network of
    ``pirender train-refiner``) and how it runs (``--size``, ``--device``, ``--precision``, ``--mode``,
    ``--backend``, ``--compile``)."""

    renderer: str = DEFAULT_OPEN_RENDERER
    checkpoint: str | None = None
    size_px: int = 256
    device: str = "auto"
    precision: str = "fp32"
    mode: str = "full"
    backend: str = "torch"
    compile: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RendererOptions:
        return cls(
            renderer=args.renderer,
            checkpoint=args.checkpoint,
            size_px=args.size,
            device=args.device,
            precision=getattr(args, "precision", "fp32"),
            mode=getattr(args, "mode", "full"),
            backend=getattr(args, "backend", "torch"),
            compile=getattr(args, "compile", False),
        )


@dataclass(frozen=True)
class PortraitOptions:
    """The source portrait (``--source``) and whether to frame it around its face (``--face-crop``)."""

    path: str
    face_crop: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> PortraitOptions:
        return cls(path=args.source, face_crop=args.face_crop)


@dataclass(frozen=True)
class DrivingOptions:
    """A driving video (``--driving``): its frames (``--max-frames``), the tracker's neutral
    (``--neutral-frame``), PIRenderer's regressor (``--deep3d``) and the portrait's own coefficients
    (``--source-motion``)."""

    path: str
    max_frames: int | None = None
    neutral_frame: int | None = None
    deep3d: str | None = None
    source_motion: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DrivingOptions:
        return cls(
            path=args.driving,
            max_frames=args.max_frames,
            neutral_frame=getattr(args, "neutral_frame", None),
            deep3d=getattr(args, "deep3d", None),
            source_motion=getattr(args, "source_motion", None),
        )
