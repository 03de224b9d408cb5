"""``pirender``, the installed command: the engine's commands (``engine.cli``) and the training
commands added here (``prepare``, ``prepare-audio``, ``train-audio``, ``train``, ``train-refiner``,
``eval``). The engine never imports this package; the training commands reach the engine through its
public modules and :class:`~pirender.engine.cli.main.CommandSet`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pirender.engine.cli.commands import check_out, make_folder, positive
from pirender.engine.cli.main import CommandSet, add_overwrite_option
from pirender.engine.cli.main import main as engine_main
from pirender.engine.errors import PirenderError

if TYPE_CHECKING:
    from pirender.training.audio_trainer import TrainConfig

# the training modules (torch, lmdb, trainers) are imported by the command that runs, not by every
# `pirender` call: `pirender demo` or `--help` start no faster or slower than without them

EXAMPLES = {
    "train": "pirender train --config small --data data/talking --out runs/small",
    "train-refiner": "pirender train-refiner --data data/talking --run runs/refiner --out refiner.pt",
    "eval": "pirender eval --data data/talking --renderer mesh --renderer runs/small --out out/eval",
    "train-audio": "pirender train-audio data/pairs --out my_flow.pt --steps 2500",
    "prepare-audio": "pirender prepare-audio data/talking --out data/talk_pairs",
    "prepare": "pirender prepare ../shared/data/talking/MANIFEST.tsv --out data/talking --holdout A,B",
}


def add_commands(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """The training commands' parsers (``command(name, help)`` makes one, as for the engine's)."""
    prepare_audio = command("prepare-audio", "make (audio, motion) training pairs from talking-head videos")
    prepare_audio.add_argument(
        "videos",
        help="a dataset of pirender prepare (its clips with a voice, split by identity into OUT/train and "
        "OUT/test, resampled to 25 frames/s), a folder of videos, or one video",
    )
    prepare_audio.add_argument("--out", required=True, help="folder for the pairs (resumable)")
    add_overwrite_option(
        prepare_audio, "make the pairs already in --out again (default: keep them, so a stopped run resumes)"
    )
    prepare_audio.add_argument(
        "--deep3d",
        help="Deep3DFaceRecon checkpoint (epoch_20.pth): pairs in PIRenderer's 73-wide space "
        "(default: the open space)",
    )
    prepare_audio.add_argument("--device", default="cpu", help="device of the regressor (cpu, cuda)")
    prepare_audio.set_defaults(run=_run_prepare_audio)

    prepare = command("prepare", "make a renderer training dataset (LMDB) from talking-head videos")
    prepare.add_argument(
        "videos", help="a MANIFEST.tsv (columns file, identity), a folder of videos, or one video"
    )
    prepare.add_argument("--out", required=True, help="dataset folder (a rerun resumes it)")
    split = prepare.add_mutually_exclusive_group()
    split.add_argument("--holdout", help="identities held out for testing, comma-separated")
    split.add_argument(
        "--holdout-fraction", type=float, default=0.2, help="else this fraction of identities (default 0.2)"
    )
    prepare.add_argument("--seed", type=int, default=0, help="seed of the fraction split (default 0)")
    prepare.add_argument("--size", type=int, default=256, help="side of the stored frames (default 256)")
    prepare.add_argument("--max-clips", type=int, default=None, help="prepare at most N clips in this run")
    prepare.add_argument("--max-frames", type=int, default=None, help="use at most N frames of each clip")
    prepare.add_argument("--deep3d", help="Deep3DFaceRecon epoch_20.pth: the authors' space too")
    prepare.add_argument("--device", default="cpu", help="device of the Deep3DFaceRecon net (default cpu)")
    add_overwrite_option(prepare, "remove the dataset in --out and make it again (default: resume it)")
    prepare.set_defaults(run=_run_prepare)

    train_audio = command("train-audio", "train the audio-to-motion flow on (audio, motion) pairs")
    train_audio.add_argument(
        "pairs", nargs="*", help="pair folders (default: make synthetic espeak-ng pairs)"
    )
    train_audio.add_argument(
        "--out",
        required=True,
        help="checkpoint to write (.pt; the best one so far, replaced as training improves); with "
        "--cross-validate the folder of the fold models and the table",
    )
    add_overwrite_option(train_audio)
    train_audio.add_argument(
        "--synthetic", type=int, default=160, help="synthetic pairs when no folder is given"
    )
    train_audio.add_argument("--steps", type=int, default=2500, help="Adam steps (default 2500)")
    train_audio.add_argument("--seed", type=int, default=1, help="seed of the data recipe and training")
    train_audio.add_argument(
        "--validation",
        help="a folder of validation pairs of other people: the flow kept is the one with the best "
        "likelihood on them (with --no-mouth-readout: whose mouth follows theirs best); default: 15%% "
        "of the training speakers held out. Not the people you measure the model on",
    )
    train_audio.add_argument(
        "--cross-validate",
        type=int,
        metavar="K",
        help="measure the recipe instead of making one model: the speakers in K folds, each held out "
        "once (a model trained and validated on the other folds' people), every clip measured as "
        "pirender eval --talk does; needs --data",
    )
    train_audio.add_argument(
        "--data", help="with --cross-validate: the prepared dataset the pairs were made from (data/talking)"
    )
    train_audio.add_argument("--lookahead", type=int, default=2, help="audio lookahead in video frames (2)")
    train_audio.add_argument("--lstm-hidden", type=int, default=64, help="LSTM width of the flow steps (64)")
    train_audio.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate (1e-3)")
    train_audio.add_argument("--eval-every", type=int, default=100, help="steps between validations (100)")
    train_audio.add_argument(
        "--feature-norm",
        action="store_true",
        help="normalise the audio features per utterance (causal CMVN with a prior of the training "
        "features; the checkpoint carries it, live and offline apply it alike)",
    )
    train_audio.add_argument(
        "--no-mouth-readout",
        action="store_true",
        help="the flow makes the mouth too (default: a ridge readout of the same audio window makes it, "
        "engine/audioflow/readout.py)",
    )
    train_audio.add_argument(
        "--no-person-norm",
        action="store_true",
        help="keep each speaker's own motion scale (default: normalised per person when pairs name one)",
    )
    train_audio.set_defaults(run=_run_train_audio)

    train = command("train", "train PIRenderer on a prepared dataset (torchrun for several processes)")
    train.add_argument("options", nargs=argparse.REMAINDER, help="see: pirender train --help")
    train.set_defaults(run=lambda args: 2)  # never reached: `pirender train` goes to its own parser

    refiner = command("train-refiner", "train the neural renderer's editing network on a prepared dataset")
    refiner.add_argument("options", nargs=argparse.REMAINDER, help="see: pirender train-refiner --help")
    refiner.set_defaults(run=lambda args: 2)  # never reached: it goes to its own parser

    evaluate = command("eval", "measure renderers on held-out people (PSNR, SSIM, AED/APD, contact sheet)")
    evaluate.add_argument("options", nargs=argparse.REMAINDER, help="see: pirender eval --help")
    evaluate.set_defaults(run=lambda args: 2)  # never reached: `pirender eval` goes to its own parser


def _run_prepare_audio(args: argparse.Namespace) -> int:
    from pirender.engine.track.deep3d import Deep3DRegressor
    from pirender.training.audio_pairs import prepare_pairs
    from pirender.training.talk_data import make_talk_pairs

    out = Path(args.out).expanduser()
    if out.is_file():
        raise PirenderError(f"{out}: is a file; --out is the folder of the pairs")
    source = Path(args.videos).expanduser()
    if (source / "meta.json").is_file():  # a dataset of pirender prepare: its clips with a voice
        if args.deep3d or args.overwrite:
            raise PirenderError("from a prepared dataset the pairs are open-space; --deep3d / --overwrite "
                                "do not apply (remove --out to make them again)")  # fmt: skip
        report = make_talk_pairs(source, out)
        silent = sum("silent" in why for why in report.skipped.values())
        print(
            f"{len(report.written)} pairs written, {len(report.kept)} already there in {out}/train and "
            f"{out}/test; skipped: {len(report.skipped) - silent} clips without a sound track, {silent} "
            "with a silent one"
        )
        return 0
    regressor = Deep3DRegressor.from_checkpoint(args.deep3d, device=args.device) if args.deep3d else None
    report = prepare_pairs(source, out, regressor=regressor, overwrite=args.overwrite)
    print(report.describe())
    return 0


def _run_prepare(args: argparse.Namespace) -> int:
    from pirender.training.prepare import PrepareConfig, prepare_dataset

    holdout = tuple(i.strip() for i in (args.holdout or "").split(",") if i.strip())
    config = PrepareConfig(
        size_px=args.size,
        holdout=holdout,
        holdout_fraction=args.holdout_fraction,
        seed=args.seed,
        max_frames=args.max_frames,
        max_clips=args.max_clips,
        deep3d=Path(args.deep3d) if args.deep3d else None,
        device=args.device,
    )
    report = prepare_dataset(args.videos, args.out, config, overwrite=args.overwrite)
    print(f"{report.describe()}; dataset in {args.out} (meta.json lists the skipped clips)")
    return 0


def _run_train_audio(args: argparse.Namespace) -> int:
    from pirender.training.audio_data import write_pairs
    from pirender.training.audio_trainer import TrainConfig, train

    positive("--steps", args.steps)
    positive("--eval-every", args.eval_every)
    positive("--lstm-hidden", args.lstm_hidden)
    if args.lookahead < 0 or args.learning_rate <= 0:
        raise PirenderError("--lookahead must be >= 0 and --learning-rate > 0")
    recipe = TrainConfig(
        steps=args.steps,
        seed=args.seed,
        audio_lookahead_frames=args.lookahead,
        lstm_hidden=args.lstm_hidden,
        learning_rate=args.learning_rate,
        eval_every=args.eval_every,
        person_norm=not args.no_person_norm,
        feature_norm=args.feature_norm,
        mouth_readout=not args.no_mouth_readout,
    )
    if args.cross_validate is not None:
        return _cross_validate_audio(args, recipe)
    if args.data:
        raise PirenderError("--data goes with --cross-validate")
    out = check_out(args.out, (".pt",), overwrite=args.overwrite)
    make_folder(out)
    folders = [Path(p) for p in args.pairs]
    if not folders:
        folder = out.parent / f"{out.stem}_synthetic_pairs"
        print(f"making {args.synthetic} synthetic espeak-ng pairs in {folder} (seed {args.seed})")
        write_pairs(folder, args.synthetic, seed=args.seed)
        folders = [folder]
    validation = [Path(args.validation)] if args.validation else None
    result = train(folders, out, config=recipe, validation_folders=validation)
    sync = result["val_sync"]
    if result["readout_ridge"] == result["readout_ridge"]:  # a mouth readout (not NaN)
        measured = f", the mouth readout's lip sync on speakers held out of its fit r = {sync:.3f}"
    elif sync == sync:
        measured = (
            f", held-out lip sync r = {sync:.3f} at temperature 0 (best temperature "
            f"{result['temperature']:g})"
        )
    else:
        measured = ""
    print(
        f"wrote {out} (step {result['step']:.0f}): validation NLL {result['val_nll']:.3f} nats/dim{measured}"
        + (f"; pirender eval --talk --model {out} measures it" if measured else "")
        + f"; {result['seconds']:.0f} s"
    )
    return 0


def _cross_validate_audio(args: argparse.Namespace, recipe: TrainConfig) -> int:
    from pirender.training.talk_cv import CrossValidationConfig, cross_validate, cross_validation_report

    config = CrossValidationConfig(folds=args.cross_validate, seed=args.seed)
    if not args.pairs or not args.data:
        raise PirenderError("--cross-validate needs the pair folders and --data (the prepared dataset)")
    if args.validation:
        raise PirenderError("--cross-validate holds its own validation people out; drop --validation")
    out = Path(args.out).expanduser()
    if out.suffix == ".pt" or out.is_file():
        raise PirenderError(f"{out}: with --cross-validate, --out is a folder")
    if args.overwrite:
        for old in out.glob("fold_*.pt"):
            old.unlink()
    metrics = cross_validate(
        [Path(p) for p in args.pairs], Path(args.data).expanduser(), out, train_config=recipe, config=config
    )
    print(cross_validation_report(metrics))
    print(f"wrote {out}/cross_validation.json and .md, and the fold models")
    return 0


def _train_main() -> Callable[[list[str]], int]:
    from pirender.training.renderer_trainer import main as train_main

    return train_main


def _eval_main() -> Callable[[list[str]], int]:
    from pirender.training.evaluate import main as eval_main

    return eval_main


def _train_refiner_main() -> Callable[[list[str]], int]:
    from pirender.training.refiner_trainer import main as train_refiner_main

    return train_refiner_main


TRAINING_COMMANDS = CommandSet(
    examples=EXAMPLES,
    add=add_commands,
    delegated={"train": _train_main, "eval": _eval_main, "train-refiner": _train_refiner_main},
)


def main(argv: Sequence[str] | None = None) -> int:
    """``pirender`` with every command (engine and training); returns the exit code."""
    return engine_main(argv, extensions=(TRAINING_COMMANDS,))


if __name__ == "__main__":
    raise SystemExit(main())
