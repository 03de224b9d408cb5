"""Reading and writing generator checkpoints: the authors' release and this project's own files.

Accepted inputs (always a local path; weights are never downloaded):

- the authors' checkpoint, e.g. ``epoch_00190_iteration_000400000_checkpoint.pt``: a ``torch.save``
  dict with ``net_G_ema`` (used), ``net_G`` (fallback, with a warning), ``current_epoch``,
  ``current_iteration``; a leading ``module.`` on keys is stripped;
- the authors' experiment folder holding ``latest_checkpoint.txt`` ("latest_checkpoint: <file>");
- this project's checkpoints (:func:`save_checkpoint`): the same key layout under ``net_G_ema`` plus
  ``format``, ``version``, ``config``, ``motion_space``, ``image_size_px`` and free ``meta``.

Every mismatch is reported by name: missing keys, unexpected keys, shape mismatches.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from ..errors import CheckpointError, exception_text
from ..fileio import write_atomically
from ..motion.space import AUTHORS_SPACE, MotionSpace
from .pirender.config import GeneratorConfig
from .pirender.generator import FaceGenerator, init_weights

FORMAT_NAME = "pirender-live"
FORMAT_VERSION = 1
#: The resolution the authors' released weights were trained at.
AUTHORS_IMAGE_SIZE_PX = 256
_POINTER_FILE = "latest_checkpoint.txt"
_MAX_LISTED = 8


@dataclass
class CheckpointInfo:
    """What a checkpoint file holds, before any model is built."""

    path: Path
    kind: str  # "authors" | "pirender-live" | "state_dict"
    dict_key: str | None  # which entry the weights came from ("net_G_ema", "net_G"), None for a bare dict
    state_dict: dict[str, torch.Tensor]
    config: GeneratorConfig
    space: MotionSpace
    image_size_px: int
    epoch: int | None = None
    iteration: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def parameter_count(self) -> int:
        return sum(int(t.numel()) for t in self.state_dict.values())


@dataclass(frozen=True)
class KeyReport:
    """Differences between a state dict and a model."""

    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]  # (key, in file, in model)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self) -> str:
        """One line naming every problem (long lists are shortened with a count)."""

        def listed(items: list[str]) -> str:
            shown = ", ".join(items[:_MAX_LISTED])
            more = len(items) - _MAX_LISTED
            return shown + (f" and {more} more" if more > 0 else "")

        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing key(s): {listed(list(self.missing))}")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected key(s): {listed(list(self.unexpected))}")
        if self.mismatched:
            shapes = [
                f"{k} is {list(a)} in the file but {list(b)} in the model" for k, a, b in self.mismatched
            ]
            parts.append(f"{len(self.mismatched)} shape mismatch(es): {listed(shapes)}")
        return "; ".join(parts) if parts else "all keys match"


def compare_keys(state_dict: dict[str, torch.Tensor], model: nn.Module) -> KeyReport:
    expected = model.state_dict()
    missing = tuple(k for k in expected if k not in state_dict)
    unexpected = tuple(k for k in state_dict if k not in expected)
    mismatched = tuple(
        (k, tuple(state_dict[k].shape), tuple(expected[k].shape))
        for k in expected
        if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k].shape)
    )
    return KeyReport(missing, unexpected, mismatched)


ModuleT = TypeVar("ModuleT", bound=nn.Module)


def load_strictly(model: ModuleT, state_dict: dict[str, torch.Tensor], *, where: Path, what: str) -> ModuleT:
    """Load ``state_dict`` into ``model`` with every mismatch named; returns it in eval mode without
    gradients. ``what`` names the network in the error (e.g. "the PIRenderer generator")."""
    report = compare_keys(state_dict, model)
    if not report.ok:
        raise CheckpointError(f"{where}: does not match {what}: {report.describe()}")
    model.load_state_dict(state_dict, strict=True)
    return model.eval().requires_grad_(False)


def resolve_checkpoint_path(path: str | Path) -> Path:
    """A checkpoint file, or the file named by ``latest_checkpoint.txt`` in an experiment folder."""
    target = Path(path).expanduser()
    if not target.exists():
        raise CheckpointError(f"{target}: no such file or folder")
    if target.is_file():
        return target
    pointer = target / _POINTER_FILE
    if pointer.is_file():
        text = pointer.read_text(encoding="utf-8", errors="replace").strip()
        name = text.split(":", 1)[1].strip() if ":" in text else text
        chosen = target / name
        if not chosen.is_file():
            raise CheckpointError(f"{pointer} names {name!r}, which is not in {target}")
        return chosen
    candidates = sorted(p.name for p in target.glob("*.pt")) + sorted(p.name for p in target.glob("*.pth"))
    hint = f" (found: {', '.join(candidates[:_MAX_LISTED])})" if candidates else " (no .pt files in it)"
    raise CheckpointError(f"{target} is a folder without {_POINTER_FILE}; pass the checkpoint file{hint}")


def _strip_module_prefix(state_dict: dict[str, Any]) -> dict[str, Any]:
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module.") :]: v for k, v in state_dict.items()}
    return state_dict


def _as_state_dict(obj: Any, path: Path, key: str) -> dict[str, torch.Tensor]:
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path}: entry {key!r} is not a state dict")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entry {key!r} holds non-tensor items, e.g. {bad[0]!r}")
    return _strip_module_prefix(obj)


_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since PyTorch 1.6
_PICKLE_MAGIC = b"\x80"  # the legacy torch.save format starts with a pickle (protocol >= 2)


def load_weights_file(path: Path, *, resave_hint: str = "the state_dict alone") -> Any:
    """``torch.load`` (CPU, weights only: no code in the file runs) with one-line errors for files
    that are not checkpoints. ``resave_hint`` says how to re-save a file the safe load refuses."""
    try:
        with path.open("rb") as handle:
            head = handle.read(len(_ZIP_MAGIC))
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not head:
        raise CheckpointError(f"{path}: empty file, not a checkpoint")
    if not (head.startswith(_ZIP_MAGIC) or head.startswith(_PICKLE_MAGIC)):
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither a torch.save zip nor a pickle)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{path}: holds Python objects other than tensors, numbers and strings, which a safe "
            f"weights-only load refuses (re-save {resave_hint})"
        ) from None
    except (EOFError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({type(exc).__name__})") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except Exception as exc:  # torch.load fails in many ways on foreign bytes (KeyError, RuntimeError...)
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({exception_text(exc)})") from None


def read_checkpoint(path: str | Path) -> CheckpointInfo:
    """Open a checkpoint (file or experiment folder) and say what it is. Nothing is built yet."""
    file = resolve_checkpoint_path(path)
    obj = load_weights_file(file, resave_hint="the generator's state_dict alone")
    if not isinstance(obj, dict):
        raise CheckpointError(f"{file}: holds a {type(obj).__name__}, not a checkpoint dict")

    if obj.get("format") == FORMAT_NAME:
        version = obj.get("version")
        if version != FORMAT_VERSION:
            raise CheckpointError(f"{file}: {FORMAT_NAME} checkpoint version {version} is not supported")
        try:
            config = GeneratorConfig.from_dict(dict(obj["config"]))
            space = MotionSpace.from_dict(dict(obj["motion_space"]))
            size_px = int(obj["image_size_px"])
        except KeyError as exc:
            raise CheckpointError(f"{file}: {FORMAT_NAME} checkpoint lacks {exc}") from None
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{file}: malformed metadata ({exception_text(exc)})") from None
        _check_image_size(file, size_px, config)
        return CheckpointInfo(
            path=file,
            kind=FORMAT_NAME,
            dict_key="net_G_ema",
            state_dict=_as_state_dict(obj.get("net_G_ema"), file, "net_G_ema"),
            config=config,
            space=space,
            image_size_px=size_px,
            epoch=obj.get("current_epoch"),
            iteration=obj.get("current_iteration"),
            meta=dict(obj.get("meta") or {}),
        )

    if "net_G_ema" in obj or "net_G" in obj:
        key = "net_G_ema" if "net_G_ema" in obj else "net_G"
        if key == "net_G":
            warnings.warn(
                f"{file}: no net_G_ema (the EMA weights inference should use); falling back to net_G",
                stacklevel=2,
            )
        kind = "authors"
        state_dict = _as_state_dict(obj[key], file, key)
    elif all(isinstance(v, torch.Tensor) for v in obj.values()):
        kind, key, state_dict = "state_dict", None, _as_state_dict(obj, file, "state dict")
    else:
        names = ", ".join(sorted(map(str, obj))[:_MAX_LISTED])
        raise CheckpointError(f"{file}: no generator weights found (no net_G_ema / net_G; keys: {names})")

    return CheckpointInfo(
        path=file,
        kind=kind,
        dict_key=key,
        state_dict=state_dict,
        config=GeneratorConfig(),
        space=AUTHORS_SPACE,
        image_size_px=AUTHORS_IMAGE_SIZE_PX,
        epoch=obj.get("current_epoch"),
        iteration=obj.get("current_iteration"),
    )


def _check_image_size(where: Path | str, size_px: int, config: GeneratorConfig) -> None:
    multiple = config.size_multiple_px
    if size_px <= 0 or size_px % multiple:
        raise CheckpointError(f"{where}: image size {size_px} px is not a positive multiple of {multiple}")


def build_generator(info: CheckpointInfo) -> FaceGenerator:
    """A FaceGenerator of the checkpoint's config with its weights loaded strictly, in eval mode."""
    if info.config.coeff_nc != info.space.width:
        raise CheckpointError(
            f"{info.path}: the generator reads {info.config.coeff_nc} numbers per frame but the motion "
            f"space {info.space.name!r} has {info.space.width}"
        )
    return load_strictly(
        FaceGenerator(info.config), info.state_dict, where=info.path, what="the PIRenderer generator"
    )


def save_checkpoint(
    path: str | Path,
    model: FaceGenerator,
    *,
    space: MotionSpace = AUTHORS_SPACE,
    image_size_px: int = AUTHORS_IMAGE_SIZE_PX,
    meta: dict[str, Any] | None = None,
    epoch: int | None = None,
    iteration: int | None = None,
) -> Path:
    """Write a checkpoint of this project's format atomically (temp file, then rename)."""
    target = Path(path).expanduser()
    if space.width != model.config.coeff_nc:
        raise CheckpointError(
            f"{target}: motion space {space.name!r} has {space.width} slots, the model reads "
            f"{model.config.coeff_nc} per frame"
        )
    _check_image_size(target, image_size_px, model.config)
    payload = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "motion_space": space.to_dict(),
        "image_size_px": int(image_size_px),
        "net_G_ema": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "current_epoch": epoch,
        "current_iteration": iteration,
        "meta": dict(meta or {}),
    }
    return write_atomically(target, lambda handle: torch.save(payload, handle), error=CheckpointError)


def random_generator(config: GeneratorConfig | None = None, *, seed: int = 0) -> FaceGenerator:
    """A generator with the authors' random initialisation (for tests, demos and smoke runs)."""
    model = FaceGenerator(config)
    init_weights(model, generator=torch.Generator().manual_seed(seed))
    return model.eval().requires_grad_(False)
