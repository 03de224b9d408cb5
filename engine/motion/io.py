"""Readers and writers of motion files: every producer's layout in, :class:`MotionSequence` out.

Formats read by :func:`load_motion` (chosen by the file's suffix):

``.npy``
    A 2-D float array (a 1-D array is one frame). Its width says the layout (:data:`ROW_LAYOUTS`):
    73 = rows of the authors' space (also SadTalker's ``coeff_3dmm`` of a source image); 70 = SadTalker's
    generated ``coeff_3dmm`` (expression 64 + angles 3 + translation 3, no crop); 257 = Deep3DFaceRecon
    coefficients (no crop); 258 = the output of Deep3DFaceReconstruction's TensorFlow model of 2020-06
    (257 coefficients + one unused focal-length number, no crop); 260 = the authors' LMDB rows (257 +
    crop s, t0, t1 in columns 257..259); 262 = the ``coeff_detector`` layout (257 + W0, H0, s, t0, t1:
    crop in 259..261).
``.npz``
    This project's own format (:func:`save_motion`): ``values`` (frames, width) float32, ``space``
    (JSON of :meth:`MotionSpace.to_dict`), ``fps`` (scalar) and ``meta`` (JSON, optional).
``.mat``
    SadTalker's ``coeff_3dmm`` (N, 73) or (N, 70) (``full_3dmm`` (1, 257) beside it holds the first
    frame's coefficients only and is then ignored); PIRender's ``face_recon_videos`` /
    ``face_recon_images`` output ``coeff`` (N, 257) + ``transform_params`` (N, 5) = (W0, H0, s, t0, t1),
    or ``coeff`` of any row layout above (the TF demo writes ``coeff`` (1, 257) or (1, 258) alone);
    ``full_3dmm`` (N, 257) alone; the official PyTorch ``test.py`` fields ``id/exp/tex/angle/gamma/trans``.
``.txt``
    PIRender's ``coeff_detector`` output: 262 numbers (one per line or whitespace-separated) = one frame.
    (SadTalker's text copy of its coefficients, numbers cut to 7 characters, is refused: read its .mat.)

Layouts without a crop (70, 257, 258, ``coeff`` without ``transform_params``, the ``test.py`` fields) need
one: :func:`load_motion` takes it as ``crop`` (s, t0, t1), e.g. ``motion_crop`` of the source portrait's
73-wide file (SadTalker's ``first_frame_dir/<image>.mat``: it pairs the generated 70 numbers with that
frame's crop); the CLI passes the one of ``--source-motion``. Without it they are refused with a message
naming the layout and what to pass.

:func:`read_lmdb_motion` reads one video of the authors' training LMDB; :func:`load_expression_presets`
reads the four expression presets of the authors' intuitive-editing demo (``expression.mat``).

Every problem with the input raises :class:`~pirender.engine.errors.MotionError` with one line that
names the file and what is wrong. See ``pirender-spec.md`` section 5 and ``deep3d-facts.md`` 1, 3, 4;
SadTalker: ``src/utils/preprocess.py`` (coeff_3dmm = exp, angle, trans, trans_params[2:]),
``src/test_audio2coeff.py`` (70 = exp 64 + pose 6), ``src/generate_facerender_batch.py`` (the first
frame's crop columns 70:73 appended to the generated rows); the 258th TF number:
microsoft/Deep3DFaceReconstruction issue #80 (a focal-length prediction, "useless here").
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..errors import MotionError, describe_value, exception_text
from ..fileio import write_atomically
from .space import AUTHORS_SPACE, MotionFrame, MotionSequence, MotionSpace, check_values, known_space


@dataclass(frozen=True)
class CoeffColumns:
    """Column slices of the 257 Deep3DFaceRecon coefficients (``deep3d-facts.md`` section 1).

    Attributes:
        identity: 80 identity (shape) weights, columns 0..79 (not used by PIRender).
        expression: 64 expression weights, columns 80..143.
        texture: 80 albedo weights, columns 144..223 (not used).
        angles: 3 Euler angles in radians (x=pitch, y=yaw, z=roll), columns 224..226.
        lighting: 27 spherical-harmonics lighting numbers, columns 227..253 (not used).
        translation: 3 translations (tx, ty, tz), columns 254..256.
        width: number of coefficients per frame (257).
    """

    identity: slice
    expression: slice
    texture: slice
    angles: slice
    lighting: slice
    translation: slice
    width: int


#: The 257-column layout of Deep3DFaceRecon coefficients (expression 80:144, angles 224:227,
#: translation 254:257).
AUTHORS_COEFF_COLUMNS = CoeffColumns(
    identity=slice(0, 80),
    expression=slice(80, 144),
    texture=slice(144, 224),
    angles=slice(224, 227),
    lighting=slice(227, 254),
    translation=slice(254, 257),
    width=257,
)

#: Numbers per Deep3DFaceRecon coefficient row.
COEFF_WIDTH = AUTHORS_COEFF_COLUMNS.width
#: Numbers per crop (s, t0, t1).
CROP_WIDTH = 3
#: Numbers per Deep3DFaceRecon alignment result ``trans_params`` = (W0, H0, s, t0, t1).
TRANSFORM_PARAMS_WIDTH = 5
#: Columns of (s, t0, t1) inside ``trans_params``.
TRANSFORM_PARAMS_CROP = slice(2, 5)
#: Width of the authors' LMDB rows: 257 coefficients + (s, t0, t1).
LMDB_ROW_WIDTH = COEFF_WIDTH + CROP_WIDTH
#: Crop columns of an LMDB row.
LMDB_CROP_COLUMNS = slice(COEFF_WIDTH, LMDB_ROW_WIDTH)
#: Width of the ``coeff_detector`` row: 257 coefficients + (W0, H0, s, t0, t1).
TEXT_ROW_WIDTH = COEFF_WIDTH + TRANSFORM_PARAMS_WIDTH
#: Crop columns of a ``coeff_detector`` row (after W0, H0).
TEXT_CROP_COLUMNS = slice(COEFF_WIDTH + TRANSFORM_PARAMS_CROP.start, TEXT_ROW_WIDTH)
#: Width of SadTalker's generated rows: the authors' slots without the crop (expression, angles,
#: translation; ``src/test_audio2coeff.py``: exp 64 + pose 6).
POSE_ROW_WIDTH = AUTHORS_SPACE.width - CROP_WIDTH
#: Width of the output of Deep3DFaceReconstruction's TensorFlow model of 2020-06: the 257 coefficients
#: and one more number, a focal-length prediction the authors call useless (their issue #80).
TF_ROW_WIDTH = COEFF_WIDTH + 1


@dataclass(frozen=True)
class RowLayout:
    """A per-frame layout of motion numbers, recognised by its width.

    Attributes:
        width: numbers per frame.
        name: who writes it (e.g. ``"SadTalker coeff_3dmm"``).
        contents: what the numbers are, in column order.
        coeff_columns: where the 257 Deep3DFaceRecon coefficients are, or None when the row holds the
            authors' slots (expression 64, angles 3, translation 3) in its first 70 columns.
        crop_columns: where the crop (s, t0, t1) is, or None when the row has none (then the reader
            needs the crop from the caller).
    """

    width: int
    name: str
    contents: str
    coeff_columns: slice | None
    crop_columns: slice | None

    def describe(self) -> str:
        """One phrase for the list of known layouts, e.g. ``"70 = SadTalker coeff_3dmm (...)"``."""
        crop = "" if self.crop_columns is not None else ", no crop"
        return f"{self.width} = {self.name} ({self.contents}{crop})"


_ALL_COEFFS = slice(0, COEFF_WIDTH)
#: Every row layout the readers know, by width (``.npy`` arrays, ``.mat`` fields).
ROW_LAYOUTS: Mapping[int, RowLayout] = {
    layout.width: layout
    for layout in (
        RowLayout(
            AUTHORS_SPACE.width,
            "the authors' space, also SadTalker's coeff_3dmm of a source image",
            "expression 64 + angles 3 + translation 3 + crop s, t0, t1",
            None,
            AUTHORS_SPACE.group("crop"),
        ),
        RowLayout(
            POSE_ROW_WIDTH,
            "SadTalker coeff_3dmm",
            "expression 64 + angles 3 + translation 3",
            None,
            None,
        ),
        RowLayout(
            COEFF_WIDTH,
            "Deep3DFaceRecon coefficients",
            "identity 80 + expression 64 + texture 80 + angles 3 + lighting 27 + translation 3",
            _ALL_COEFFS,
            None,
        ),
        RowLayout(
            TF_ROW_WIDTH,
            "Deep3DFaceReconstruction TF model output",
            f"the {COEFF_WIDTH} coefficients + 1 unused focal-length number",
            _ALL_COEFFS,
            None,
        ),
        RowLayout(
            LMDB_ROW_WIDTH,
            "PIRender LMDB rows",
            f"{COEFF_WIDTH} coefficients + crop s, t0, t1",
            _ALL_COEFFS,
            LMDB_CROP_COLUMNS,
        ),
        RowLayout(
            TEXT_ROW_WIDTH,
            "PIRender coeff_detector rows",
            f"{COEFF_WIDTH} coefficients + W0, H0, s, t0, t1",
            _ALL_COEFFS,
            TEXT_CROP_COLUMNS,
        ),
    )
}
#: What to pass when a layout has no crop (the CLI's option and the Python argument).
CROP_HINT = (
    "pass --source-motion with the source portrait's 73-wide file (e.g. SadTalker's "
    "first_frame_dir/<image>.mat) to take the crop from its first frame "
    "(in Python: load_motion(..., crop=motion_crop(source)))"
)

#: Frame rate assumed when neither the file nor the caller gives one.
DEFAULT_FPS = 25.0

#: Fields of the official Deep3DFaceRecon ``test.py`` per-image output (no alignment numbers).
_OFFICIAL_TEST_FIELDS = ("id", "exp", "tex", "angle", "gamma", "trans")
#: The ``test.py`` fields that hold the authors' slots, in slot order, with their widths.
_OFFICIAL_MOTION_FIELDS = (("exp", 64), ("angle", 3), ("trans", 3))
#: SadTalker's fields: the authors' slots (73, or 70 without crop) and the first frame's 257 coefficients.
_SADTALKER_FIELD = "coeff_3dmm"
_SADTALKER_FULL_FIELD = "full_3dmm"
#: Characters SadTalker keeps of each number in its text copy of the coefficients (``str(x)[:7]``).
_SADTALKER_TEXT_DIGITS = 7
#: Names under which a ``.mat`` file may hold the (N, 5) alignment numbers.
_TRANSFORM_PARAMS_FIELDS = ("transform_params", "trans_params")
#: How to get coefficients with their alignment numbers.
_EXTRACTION_HINT = (
    "run PIRender's scripts/face_recon_videos.py (videos) or scripts/face_recon_images.py (images), "
    "which save transform_params next to coeff"
)
#: Expression presets of the authors' editing demo: field prefix and the fields that must be there.
_PRESET_PREFIX = "expression_"
_PRESET_NAMES = ("center", "mouth", "eyebrow", "eyes")
#: Numbers per expression preset.
_PRESET_WIDTH = AUTHORS_SPACE.group("expression").stop - AUTHORS_SPACE.group("expression").start
#: Digits of the authors' LMDB frame-count strings (``str(n).zfill(7)``).
_LMDB_LENGTH_DIGITS = 7
#: Bytes per float32.
_FLOAT32_BYTES = 4
#: Arrays of this project's .npz format (``meta`` is optional).
_NPZ_REQUIRED = ("values", "space", "fps")
_NPZ_META = "meta"
#: Random bytes in a temporary file's name, its mode before the umask, and Windows' binary flag.
#: First bytes of an .npy file and of a zip archive (.npz).
_NPY_SIGNATURE = b"\x93NUMPY"
_ZIP_SIGNATURE = b"PK"


# ---------------------------------------------------------------------------------------------------
# Conversion


def coeffs_to_authors(coeffs: np.ndarray, crop: np.ndarray, *, what: str = "coefficients") -> np.ndarray:
    """Pick the authors' 73 numbers per frame out of Deep3DFaceRecon coefficients and crops.

    Args:
        coeffs: (N, 257) coefficients (a (257,) row is one frame).
        crop: (N, 3) alignment numbers (s, t0, t1) per frame (a (3,) row is one frame).
        what: names the input in error messages (e.g. the file).

    Returns:
        (N, 73) float32: expression 64, angles 3, translation 3, crop 3 (``AUTHORS_SPACE`` order),
        validated by :func:`check_values` (finite, non-empty).
    """
    coeff_rows = np.asarray(coeffs)
    crop_rows = np.asarray(crop)
    if coeff_rows.ndim == 1:
        coeff_rows = coeff_rows[None, :]
    if crop_rows.ndim == 1:
        crop_rows = crop_rows[None, :]
    if coeff_rows.ndim != 2 or coeff_rows.shape[1] != COEFF_WIDTH:
        raise MotionError(
            f"{what}: expected (frames, {COEFF_WIDTH}) coefficients, got shape {coeff_rows.shape}"
        )
    if crop_rows.ndim != 2 or crop_rows.shape[1] != CROP_WIDTH:
        raise MotionError(
            f"{what}: expected (frames, {CROP_WIDTH}) crop (s, t0, t1), got shape {crop_rows.shape}"
        )
    if coeff_rows.shape[0] != crop_rows.shape[0]:
        raise MotionError(
            f"{what}: {coeff_rows.shape[0]} frames of coefficients but {crop_rows.shape[0]} frames of crop"
        )
    columns = AUTHORS_COEFF_COLUMNS
    rows = np.concatenate(
        [
            coeff_rows[:, columns.expression],
            coeff_rows[:, columns.angles],
            coeff_rows[:, columns.translation],
            crop_rows,
        ],
        axis=1,
    )
    return check_values(rows, AUTHORS_SPACE, what=what)


# ---------------------------------------------------------------------------------------------------
# Loading


def load_motion(
    path: str | Path, *, fps: float | None = None, crop: ArrayLike | None = None
) -> MotionSequence:
    """Read a motion file (``.npy``, ``.npz``, ``.mat`` or ``.txt``; see the module docstring).

    Args:
        path: the file; its suffix (case-insensitive) picks the reader.
        fps: frame rate for formats that do not store one (all but ``.npz``, whose stored rate wins);
            default 25.
        crop: the crop (s, t0, t1) for layouts without one (SadTalker's 70-wide ``coeff_3dmm``,
            Deep3DFaceRecon's 257/258 numbers, ``coeff`` without ``transform_params``): 3 numbers used
            for every frame (what SadTalker does with its first frame's crop), or one row of 3 per frame.
            Usually :func:`motion_crop` of the source portrait's 73-wide file. Layouts that carry their
            own crop ignore it. ``meta["layout"]`` ends in ``+crop`` when it was used.

    Raises:
        MotionError: missing/unreadable file, unknown suffix, wrong layout, a layout without crop and no
            ``crop``, or bad numbers.
    """
    file = _existing_file(path)
    suffix = file.suffix.lower()
    reader = _READERS.get(suffix)
    if reader is None:
        known = ", ".join(_READERS)
        raise MotionError(
            f"{file}: unknown motion file type {file.suffix or '(no suffix)'!r} (known: {known})"
        )
    return reader(file, DEFAULT_FPS if fps is None else fps, _check_crop(file, crop))


def motion_crop(motion: MotionFrame | MotionSequence) -> np.ndarray:
    """The crop (s, t0, t1) of an authors'-space frame (of a sequence: its first frame), as (3,) float32.

    This is what completes a layout without crop (:func:`load_motion`'s ``crop``): SadTalker pairs its
    generated 70 numbers per frame with the crop of the source image's first frame.
    """
    frame = motion.frame(0) if isinstance(motion, MotionSequence) else motion
    if frame.space != AUTHORS_SPACE:
        raise MotionError(
            f"motion of space {frame.space.name!r} has no crop (s, t0, t1); the crop comes from a "
            f"{AUTHORS_SPACE.width}-wide file of the authors' space"
        )
    return frame.values[AUTHORS_SPACE.group("crop")].copy()


def _load_npy(file: Path, fps: float, crop: np.ndarray | None) -> MotionSequence:
    """A 2-D array of one of the :data:`ROW_LAYOUTS` widths (a 1-D array is one frame)."""
    signature = _signature(file)
    if signature.startswith(_ZIP_SIGNATURE):
        raise MotionError(f"{file}: holds an .npz archive, not a single .npy array (rename it to .npz)")
    if not signature.startswith(_NPY_SIGNATURE):
        raise MotionError(
            f"{file}: not an .npy file (no NumPy signature at its start: corrupt or another format)"
        )
    try:
        loaded = np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise MotionError(f"{file}: corrupt .npy file ({exception_text(exc, with_type=False)})") from None
    return _sequence_from_rows(file, loaded, fps, crop, source="npy")


def _load_npz(file: Path, fps: float, crop: np.ndarray | None) -> MotionSequence:
    """This project's own format (see :func:`save_motion`); the stored frame rate wins over ``fps``."""
    del fps, crop  # the file stores its own frame rate, and its values are complete in their space
    signature = _signature(file)
    if signature.startswith(_NPY_SIGNATURE):
        raise MotionError(f"{file}: holds a single .npy array, not an .npz archive (rename it to .npy)")
    if not signature.startswith(_ZIP_SIGNATURE):
        raise MotionError(
            f"{file}: not an .npz file (no zip signature at its start: corrupt or another format)"
        )
    try:
        with np.load(file, allow_pickle=False) as archive:
            present = list(archive)
            stored = {name: archive[name] for name in (*_NPZ_REQUIRED, _NPZ_META) if name in archive}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise MotionError(f"{file}: corrupt .npz archive ({exception_text(exc, with_type=False)})") from None
    missing = [name for name in _NPZ_REQUIRED if name not in stored]
    if missing:
        raise MotionError(
            f"{file}: missing array(s) {', '.join(missing)} (arrays present: {', '.join(present) or 'none'})"
        )
    values, space_text, stored_fps = (stored[name] for name in _NPZ_REQUIRED)
    meta_text = stored.get(_NPZ_META)
    space = _space_from_json(file, _scalar_text(file, "space", space_text))
    meta = {} if meta_text is None else _meta_from_json(file, _scalar_text(file, "meta", meta_text))
    try:
        rate = float(np.asarray(stored_fps).reshape(()))
    except (TypeError, ValueError):
        raise MotionError(f"{file}: 'fps' must be one number, got {np.asarray(stored_fps)!r}") from None
    return _make_sequence(file, check_values(values, space, what=str(file)), space, rate, meta)


def _load_mat(file: Path, fps: float, crop: np.ndarray | None) -> MotionSequence:
    """SadTalker's ``coeff_3dmm``, PIRender's ``coeff`` (+ ``transform_params``), ``full_3dmm`` alone, or
    the official ``test.py`` fields (the first of these that the file holds)."""
    mat = _read_mat(file)
    fields = _mat_fields(mat)
    if _SADTALKER_FIELD in mat:  # beside it, full_3dmm holds the first frame only
        return _mat_field_rows(file, mat, _SADTALKER_FIELD, fps, crop, source="sadtalker-coeff_3dmm")
    if "coeff" in mat:
        return _load_mat_coeff(file, mat, fields, fps, crop)
    if _SADTALKER_FULL_FIELD in mat:
        return _mat_field_rows(file, mat, _SADTALKER_FULL_FIELD, fps, crop, source="sadtalker-full_3dmm")
    if all(name in mat for name in _OFFICIAL_TEST_FIELDS):
        return _load_mat_official(file, mat, fps, crop)
    hint = ""
    if any(name.startswith(_PRESET_PREFIX) for name in fields):
        hint = " (this looks like expression presets: read it with load_expression_presets)"
    raise MotionError(
        f"{file}: no motion field (fields: {', '.join(fields) or 'none'}); motion is read from "
        f"{_SADTALKER_FIELD} (SadTalker), coeff + transform_params (PIRender's extraction), "
        f"{_SADTALKER_FULL_FIELD}, or the test.py fields {'/'.join(_OFFICIAL_TEST_FIELDS)}{hint}"
    )


def _load_mat_coeff(
    file: Path, mat: Mapping[str, Any], fields: list[str], fps: float, crop: np.ndarray | None
) -> MotionSequence:
    """``coeff``: 257 (or the TF model's 258) coefficients with ``transform_params`` or the caller's crop;
    any other width is read as a row layout (e.g. 260 = LMDB rows)."""
    coeff = _mat_array(file, mat, "coeff")
    if coeff.shape[1] not in (COEFF_WIDTH, TF_ROW_WIDTH):
        return _sequence_from_rows(file, coeff, fps, crop, source="mat-coeff", where=f"'coeff' {coeff.shape}")
    params_field = next((name for name in _TRANSFORM_PARAMS_FIELDS if name in mat), None)
    meta: dict[str, Any] = {"source": str(file)}
    if params_field is not None:
        params = np.asarray(mat[params_field])
        if params.ndim != 2 or params.shape != (coeff.shape[0], TRANSFORM_PARAMS_WIDTH):
            raise MotionError(
                f"{file}: '{params_field}' has shape {params.shape}, expected ({coeff.shape[0]}, "
                f"{TRANSFORM_PARAMS_WIDTH}) = (W0, H0, s, t0, t1) per frame of 'coeff'"
            )
        crop_rows = params[:, TRANSFORM_PARAMS_CROP]
        meta["layout"] = f"deep3d-{coeff.shape[1]}+transform_params"
    elif crop is not None:
        crop_rows = _crop_rows(file, crop, coeff.shape[0])
        meta["layout"] = f"deep3d-{coeff.shape[1]}+crop"
    else:
        layout = ROW_LAYOUTS[coeff.shape[1]]
        raise MotionError(
            f"{file}: 'coeff' {coeff.shape}: {layout.name}, {layout.contents}, and no alignment numbers (no "
            f"transform_params field; fields: {', '.join(fields)}), so the crop (s, t0, t1) PIRender needs "
            f"is missing; {CROP_HINT}, or {_EXTRACTION_HINT}"
        )
    rows = coeffs_to_authors(coeff[:, :COEFF_WIDTH], crop_rows, what=str(file))
    return _make_sequence(file, rows, AUTHORS_SPACE, fps, meta)


def _load_mat_official(
    file: Path, mat: Mapping[str, Any], fps: float, crop: np.ndarray | None
) -> MotionSequence:
    """The official ``test.py`` fields: expression, angles and translation, completed by the caller's crop."""
    if crop is None:
        raise MotionError(
            f"{file}: official Deep3DFaceRecon test.py output (fields {', '.join(_OFFICIAL_TEST_FIELDS)}) "
            f"holds no alignment numbers (trans_params: s, t0, t1) that PIRender needs; {CROP_HINT}, or "
            f"{_EXTRACTION_HINT}"
        )
    parts: list[np.ndarray] = []
    for name, width in _OFFICIAL_MOTION_FIELDS:
        part = _mat_array(file, mat, name)
        if part.shape[1] != width or (parts and part.shape[0] != parts[0].shape[0]):
            frames = f"{parts[0].shape[0]}" if parts else "frames"
            raise MotionError(f"{file}: '{name}' has shape {part.shape}, expected ({frames}, {width})")
        parts.append(part)
    rows = np.concatenate(parts, axis=1)
    return _sequence_from_rows(file, rows, fps, crop, source="deep3d-test.py")


def _mat_field_rows(
    file: Path, mat: Mapping[str, Any], name: str, fps: float, crop: np.ndarray | None, *, source: str
) -> MotionSequence:
    """A .mat field of motion rows in one of the :data:`ROW_LAYOUTS`."""
    rows = _mat_array(file, mat, name)
    return _sequence_from_rows(file, rows, fps, crop, source=source, where=f"'{name}' {rows.shape}")


def _load_txt(file: Path, fps: float, crop: np.ndarray | None) -> MotionSequence:
    """PIRender's ``coeff_detector`` file: 262 numbers = one frame (it has its own crop)."""
    del crop
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MotionError(
            f"{file}: not a readable text file ({exception_text(exc, with_type=False)})"
        ) from None
    lines = [line.split() for line in text.splitlines() if line.strip()]
    widths = {len(line) for line in lines}
    if len(widths) == 1 and widths <= {AUTHORS_SPACE.width, POSE_ROW_WIDTH}:
        raise MotionError(
            f"{file}: {len(lines)} line(s) of {widths.pop()} numbers, like SadTalker's text copy of its "
            f"coefficients, which keeps only {_SADTALKER_TEXT_DIGITS} characters of each number "
            f"(1.23456e-05 becomes 1.23456), so it is not read; use the .mat file of the same name"
        )
    tokens = text.split()
    numbers = np.empty(len(tokens), dtype=np.float64)
    for position, token in enumerate(tokens):
        try:
            numbers[position] = float(token)
        except ValueError:
            raise MotionError(f"{file}: number {position + 1} is not a number: {token[:40]!r}") from None
    if numbers.size != TEXT_ROW_WIDTH:
        raise MotionError(
            f"{file}: holds {numbers.size} numbers, expected {TEXT_ROW_WIDTH} "
            f"({COEFF_WIDTH} coefficients + W0, H0, s, t0, t1)"
        )
    return _sequence_from_rows(file, numbers, fps, None, source="txt")


#: Suffix -> reader(file, fps, crop or None).
_READERS: Mapping[str, Callable[[Path, float, np.ndarray | None], MotionSequence]] = {
    ".npy": _load_npy,
    ".npz": _load_npz,
    ".mat": _load_mat,
    ".txt": _load_txt,
}


def read_lmdb_motion(lmdb_path: str | Path, video: str, *, fps: float = DEFAULT_FPS) -> MotionSequence:
    """Motion of one video of the authors' LMDB (``prepare_vox_lmdb``: key ``<video>-coeff_3dmm``).

    The entry holds float32 bytes of (N, 260) rows; ``<video>-length`` (7-digit text) gives N and is
    checked against the row count when present. The database is opened read-only without locking.

    Args:
        lmdb_path: the LMDB folder (or the data file of a single-file LMDB).
        video: the video's name, e.g. ``"id10001#7w0IBEWc9Qw#000993#001143"``.
        fps: frame rate of the video (not stored in the LMDB).
    """
    location = Path(lmdb_path).expanduser()
    if not location.exists():
        raise MotionError(f"{location}: no such LMDB (file or folder not found)")
    try:
        import lmdb  # optional dependency
    except ImportError:
        raise MotionError(
            'reading an LMDB needs the lmdb package: pip install "pirender-live[lmdb]"'
        ) from None
    if not video:
        raise MotionError(f"{location}: no video name given")
    label = f"{location} (video {video!r})"
    try:
        environment = lmdb.open(
            str(location), readonly=True, lock=False, readahead=False, subdir=location.is_dir()
        )
    except lmdb.Error as exc:
        raise MotionError(
            f"{location}: not a readable LMDB ({exception_text(exc, with_type=False)})"
        ) from None
    try:
        with environment.begin(write=False) as transaction:
            payload = transaction.get(f"{video}-coeff_3dmm".encode())
            length_text = transaction.get(f"{video}-length".encode())
    except lmdb.Error as exc:
        raise MotionError(f"{label}: cannot read the LMDB ({exception_text(exc, with_type=False)})") from None
    finally:
        environment.close()
    if payload is None:
        raise MotionError(f"{location}: no motion for video {video!r} (key '{video}-coeff_3dmm' not found)")
    row_bytes = LMDB_ROW_WIDTH * _FLOAT32_BYTES
    if len(payload) % row_bytes:
        raise MotionError(
            f"{label}: coeff_3dmm holds {len(payload)} bytes, not a whole number of "
            f"{LMDB_ROW_WIDTH}-number float32 rows ({row_bytes} bytes each)"
        )
    rows = np.frombuffer(payload, dtype=np.float32).reshape(-1, LMDB_ROW_WIDTH)
    if length_text is not None:
        expected = _lmdb_length(label, bytes(length_text))
        if expected != rows.shape[0]:
            raise MotionError(
                f"{label}: coeff_3dmm holds {rows.shape[0]} rows but the video length is {expected}"
            )
    meta = {"source": str(location), "video": video, "layout": "lmdb-260"}
    values = coeffs_to_authors(rows[:, :COEFF_WIDTH], rows[:, LMDB_CROP_COLUMNS], what=label)
    return _make_sequence(label, values, AUTHORS_SPACE, fps, meta)


def load_expression_presets(path: str | Path) -> dict[str, np.ndarray]:
    """The expression presets of the authors' editing demo (``expression.mat``).

    Reads the fields ``expression_center``, ``expression_mouth``, ``expression_eyebrow`` and
    ``expression_eyes`` (each 64 numbers, stored (1, 64)); any further ``expression_*`` field is read too.

    Returns:
        preset name without the ``expression_`` prefix -> (64,) float32 (new arrays).
    """
    file = _existing_file(path)
    mat = _read_mat(file)
    fields = _mat_fields(mat)
    missing = [_PRESET_PREFIX + name for name in _PRESET_NAMES if _PRESET_PREFIX + name not in mat]
    if missing:
        raise MotionError(
            f"{file}: missing expression preset field(s) {', '.join(missing)} "
            f"(fields: {', '.join(fields) or 'none'})"
        )
    presets: dict[str, np.ndarray] = {}
    for field_name in fields:
        if not field_name.startswith(_PRESET_PREFIX):
            continue
        raw = np.asarray(mat[field_name])
        if raw.size != _PRESET_WIDTH or raw.ndim > 2 or not np.issubdtype(raw.dtype, np.number):
            raise MotionError(
                f"{file}: field {field_name!r} has shape {raw.shape} and dtype {raw.dtype}, "
                f"expected (1, {_PRESET_WIDTH}) numbers"
            )
        preset = raw.reshape(_PRESET_WIDTH).astype(np.float32)
        if not np.isfinite(preset).all():
            position = int(np.flatnonzero(~np.isfinite(preset))[0])
            raise MotionError(f"{file}: field {field_name!r} holds a non-finite value at position {position}")
        presets[field_name.removeprefix(_PRESET_PREFIX)] = preset
    return presets


# ---------------------------------------------------------------------------------------------------
# Saving


def save_motion(path: str | Path, sequence: MotionSequence) -> Path:
    """Write ``sequence`` atomically (temporary file in the same folder, then ``os.replace``).

    ``.npz`` keeps everything (values, space, fps, meta) and suits any space; ``.npy`` keeps only the
    values and is allowed for the authors' space only (its width is how readers recognise it).
    ``meta`` must be JSON-serialisable. Returns the written path.
    """
    target = Path(path).expanduser()
    suffix = target.suffix.lower()
    if suffix not in (".npz", ".npy"):
        raise MotionError(
            f"{target}: cannot save motion as {target.suffix or '(no suffix)'!r} (use .npz or .npy)"
        )
    space = sequence.space
    if suffix == ".npy" and (space.name, space.slot_names) != (AUTHORS_SPACE.name, AUTHORS_SPACE.slot_names):
        raise MotionError(
            f"{target}: .npy holds only the authors' space {AUTHORS_SPACE.name!r}; motion of space "
            f"{space.name!r} must be saved as .npz (which records its space)"
        )
    values = check_values(sequence.values, space, what=str(target))
    if not target.parent.is_dir():
        raise MotionError(f"{target}: the folder {target.parent} does not exist")
    if suffix == ".npz":
        try:
            meta_text = json.dumps(sequence.meta)
        except (TypeError, ValueError) as exc:
            raise MotionError(
                f"{target}: meta is not JSON-serialisable ({exception_text(exc, with_type=False)})"
            ) from None
        space_array = np.array(json.dumps(space.to_dict()))
        fps_array = np.array(float(sequence.fps), dtype=np.float64)
        meta_array = np.array(meta_text)
        write_atomically(
            target,
            error=MotionError,
            write=lambda handle: np.savez(
                handle, values=values, space=space_array, fps=fps_array, meta=meta_array
            ),
        )
    else:
        write_atomically(
            target, error=MotionError, write=lambda handle: np.save(handle, values, allow_pickle=False)
        )
    return target


# ---------------------------------------------------------------------------------------------------
# Helpers


def _existing_file(path: str | Path) -> Path:
    """``path`` as a Path, or a MotionError if it is not an existing file."""
    file = Path(path).expanduser()
    if not file.exists():
        raise MotionError(f"{file}: no such file")
    if not file.is_file():
        raise MotionError(f"{file}: not a file")
    return file


def _signature(file: Path) -> bytes:
    """The first bytes of a file (to tell .npy, .npz and garbage apart before parsing)."""
    try:
        with file.open("rb") as handle:
            return handle.read(len(_NPY_SIGNATURE))
    except OSError as exc:
        raise MotionError(f"{file}: cannot read ({exception_text(exc, with_type=False)})") from None


def _read_mat(file: Path) -> dict[str, Any]:
    """``scipy.io.loadmat`` with every failure turned into a MotionError."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        return loadmat(file, appendmat=False)
    except NotImplementedError:  # MATLAB v7.3 files are HDF5
        raise MotionError(
            f"{file}: MATLAB v7.3 (HDF5) files are not supported; save with -v7 or older"
        ) from None
    except (OSError, ValueError, TypeError, EOFError, MatReadError) as exc:
        raise MotionError(
            f"{file}: not a readable .mat file ({exception_text(exc, with_type=False)})"
        ) from None


def _mat_fields(mat: Mapping[str, Any]) -> list[str]:
    """The data fields of a loaded .mat (without ``__header__`` and friends)."""
    return [name for name in mat if not name.startswith("__")]


def _mat_array(file: Path, mat: Mapping[str, Any], name: str) -> np.ndarray:
    """A .mat field that must be a 2-D array of numbers (how ``savemat`` stores any array)."""
    array = np.asarray(mat[name])
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise MotionError(
            f"{file}: '{name}' has shape {array.shape} and dtype {array.dtype}, expected (frames, width) "
            f"real numbers"
        )
    return array


def _check_crop(file: Path, crop: ArrayLike | None) -> np.ndarray | None:
    """The caller's crop as (1, 3) or (frames, 3) finite float32, or None."""
    if crop is None:
        return None
    try:
        array = np.array(crop, dtype=np.float32)
    except (TypeError, ValueError):
        raise MotionError(
            f"{file}: the crop must be 3 numbers (s, t0, t1), got {describe_value(crop)}"
        ) from None
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != CROP_WIDTH or array.shape[0] == 0:
        raise MotionError(
            f"{file}: the crop must be 3 numbers (s, t0, t1) or one such row per frame, got shape "
            f"{np.shape(crop)}"
        )
    if not np.isfinite(array).all():
        raise MotionError(f"{file}: the crop (s, t0, t1) holds a non-finite value: {array[0].tolist()}")
    return array


def _crop_rows(file: Path, crop: np.ndarray, frames: int) -> np.ndarray:
    """The checked crop as one row per frame (one row is repeated, as SadTalker does)."""
    if crop.shape[0] == 1:
        return np.repeat(crop, frames, axis=0)
    if crop.shape[0] != frames:
        raise MotionError(
            f"{file}: the crop has {crop.shape[0]} rows but the motion has {frames} frames "
            f"(give one row for all frames, or one per frame)"
        )
    return crop


def _unknown_width(label: str, width: int) -> str:
    """The message for rows of a width no layout has: every known layout, and what to pass."""
    known = "; ".join(layout.describe() for layout in ROW_LAYOUTS.values())
    return (
        f"{label}: {width} numbers per frame is not a layout this reader knows; known: {known}; "
        f"convert to one of these, and for one without crop {CROP_HINT}"
    )


def _sequence_from_rows(
    file: Path,
    array: np.ndarray,
    fps: float,
    crop: np.ndarray | None,
    *,
    source: str,
    where: str | None = None,
) -> MotionSequence:
    """Rows of one of the :data:`ROW_LAYOUTS` (1-D = one frame) -> authors' sequence.

    ``source`` starts ``meta["layout"]`` (``"<source>-<width>"``, ``+crop`` when ``crop`` completed it);
    ``where`` names the part of the file in messages (e.g. a .mat field and its shape).
    """
    label = f"{file}: {where}" if where else str(file)
    rows = array[None, :] if array.ndim == 1 else array
    if rows.ndim != 2:
        raise MotionError(f"{label}: expected a 1-D or 2-D array of motion rows, got shape {array.shape}")
    if rows.size == 0:
        raise MotionError(f"{label}: the sequence is empty (shape {array.shape})")
    if not np.issubdtype(rows.dtype, np.number) or np.iscomplexobj(rows):
        raise MotionError(f"{label}: values must be real numbers, got dtype {rows.dtype}")
    width = rows.shape[1]
    layout = ROW_LAYOUTS.get(width)
    if layout is None:
        raise MotionError(_unknown_width(label, width))
    meta: dict[str, Any] = {"source": str(file), "layout": f"{source}-{width}"}
    if layout.crop_columns is not None:
        crop_rows = rows[:, layout.crop_columns]
    elif crop is None:
        raise MotionError(
            f"{label}: {layout.name}, {width} numbers = {layout.contents}, no crop (s, t0, t1); {CROP_HINT}"
        )
    else:
        crop_rows = _crop_rows(file, crop, rows.shape[0])
        meta["layout"] += "+crop"
    if layout.coeff_columns is not None:
        values = coeffs_to_authors(rows[:, layout.coeff_columns], crop_rows, what=str(file))
    else:
        slots = np.concatenate([rows[:, :POSE_ROW_WIDTH], crop_rows], axis=1)
        values = check_values(slots, AUTHORS_SPACE, what=str(file))
    return _make_sequence(file, values, AUTHORS_SPACE, fps, meta)


def _make_sequence(
    label: Path | str, values: np.ndarray, space: MotionSpace, fps: float, meta: dict[str, Any]
) -> MotionSequence:
    """Build the sequence, prefixing its own errors (e.g. a bad frame rate) with the file's name."""
    try:
        return MotionSequence(space=space, values=values, fps=float(fps), meta=meta)
    except (MotionError, TypeError, ValueError) as exc:
        raise MotionError(f"{label}: {exception_text(exc, with_type=False)}") from None


def _scalar_text(file: Path, name: str, array: np.ndarray) -> str:
    """A 0-d string array stored in an .npz (how :func:`save_motion` stores JSON)."""
    if array.shape != () or array.dtype.kind not in "US":
        raise MotionError(
            f"{file}: {name!r} must be a JSON string, got an array of shape {array.shape} ({array.dtype})"
        )
    item = array.item()
    return item.decode("utf-8", errors="replace") if isinstance(item, bytes) else str(item)


def _space_from_json(file: Path, text: str) -> MotionSpace:
    """The stored space description; a built-in space is returned as the built-in object."""
    try:
        description = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MotionError(
            f"{file}: 'space' is not valid JSON ({exception_text(exc, with_type=False)})"
        ) from None
    if not isinstance(description, dict):
        raise MotionError(f"{file}: 'space' must describe a motion space (a JSON object), got {text[:60]!r}")
    try:
        stored = MotionSpace.from_dict(description)
    except MotionError as exc:
        raise MotionError(f"{file}: {exception_text(exc, with_type=False)}") from None
    try:
        built_in = known_space(stored.name)
    except MotionError:
        return stored  # not a built-in space: the stored description is the space
    if built_in.slot_names != stored.slot_names:
        raise MotionError(
            f"{file}: stored space {stored.name!r} has {stored.width} slots that differ from the built-in "
            f"space of that name ({built_in.width} slots)"
        )
    return built_in


def _meta_from_json(file: Path, text: str) -> dict[str, Any]:
    """The stored ``meta`` dictionary."""
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MotionError(
            f"{file}: 'meta' is not valid JSON ({exception_text(exc, with_type=False)})"
        ) from None
    if not isinstance(meta, dict):
        raise MotionError(f"{file}: 'meta' must be a JSON object, got {type(meta).__name__}")
    return meta


def _lmdb_length(label: str, text: bytes) -> int:
    """The frame count stored by ``prepare_vox_lmdb`` (``str(n).zfill(7)``)."""
    decoded = text.decode("ascii", errors="replace").strip()
    if not decoded.isdigit():
        raise MotionError(
            f"{label}: the length entry {decoded[:20]!r} is not a {_LMDB_LENGTH_DIGITS}-digit frame count"
        )
    return int(decoded)
