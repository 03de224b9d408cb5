"""Readers and writers of motion files: every producer's layout in, :class:`MotionSequence` out.

Formats read by :func:`load_motion` (chosen by the file's suffix):

``.npy``
    A 2-D float array (a 1-D array is one frame). Its width says the layout: 73 = rows of the
    authors' space; 260 = the authors' LMDB rows (257 Deep3DFaceRecon coefficients + crop s, t0, t1 in
    columns 257..259); 262 = the ``coeff_detector`` layout (257 + W0, H0, s, t0, t1: crop in 259..261).
``.npz``
    This project's own format (:func:`save_motion`): ``values`` (frames, width) float32, ``space``
    (JSON of :meth:`MotionSpace.to_dict`), ``fps`` (scalar) and ``meta`` (JSON, optional).
``.mat``
    PIRender's ``face_recon_videos`` / ``face_recon_images`` output: ``coeff`` (N, 257) +
    ``transform_params`` (N, 5) = (W0, H0, s, t0, t1); or ``coeff`` (N, 260) = LMDB rows.
    Files without the alignment numbers (the TF demo's ``coeff`` alone, the official PyTorch
    ``test.py`` fields ``id/exp/tex/angle/gamma/trans``) are refused with a message saying how to get them.
``.txt``
    PIRender's ``coeff_detector`` output: 262 numbers (one per line or whitespace-separated) = one frame.

:func:`read_lmdb_motion` reads one video of the authors' training LMDB; :func:`load_expression_presets`
reads the four expression presets of the authors' intuitive-editing demo (``expression.mat``).

Every problem with the input raises :class:`~pirender.engine.errors.MotionError` with one line that
names the file and what is wrong. See ``pirender-spec.md`` section 5 and ``deep3d-facts.md`` 1, 3, 4.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MotionError, exception_text
from ..fileio import write_atomically
from .space import AUTHORS_SPACE, MotionSequence, MotionSpace, check_values, known_space


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

#: Frame rate assumed when neither the file nor the caller gives one.
DEFAULT_FPS = 25.0

#: Fields of the official Deep3DFaceRecon ``test.py`` per-image output (no alignment numbers).
_OFFICIAL_TEST_FIELDS = ("id", "exp", "tex", "angle", "gamma", "trans")
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


def load_motion(path: str | Path, *, fps: float | None = None) -> MotionSequence:
    """Read a motion file (``.npy``, ``.npz``, ``.mat`` or ``.txt``; see the module docstring).

    Args:
        path: the file; its suffix (case-insensitive) picks the reader.
        fps: frame rate for formats that do not store one (all but ``.npz``, whose stored rate wins);
            default 25.

    Raises:
        MotionError: missing/unreadable file, unknown suffix, wrong layout or bad numbers.
    """
    file = _existing_file(path)
    suffix = file.suffix.lower()
    reader = _READERS.get(suffix)
    if reader is None:
        known = ", ".join(_READERS)
        raise MotionError(
            f"{file}: unknown motion file type {file.suffix or '(no suffix)'!r} (known: {known})"
        )
    return reader(file, DEFAULT_FPS if fps is None else fps)


def _load_npy(file: Path, fps: float) -> MotionSequence:
    """A 2-D array of width 73, 260 or 262 (a 1-D array is one frame)."""
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
    return _sequence_from_rows(file, loaded, fps, source="npy")


def _load_npz(file: Path, fps: float) -> MotionSequence:
    """This project's own format (see :func:`save_motion`); the stored frame rate wins over ``fps``."""
    del fps  # the file stores its own frame rate
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


def _load_mat(file: Path, fps: float) -> MotionSequence:
    """PIRender's ``coeff`` + ``transform_params`` (or ``coeff`` of LMDB rows)."""
    mat = _read_mat(file)
    fields = _mat_fields(mat)
    if "coeff" not in mat:
        if all(name in mat for name in _OFFICIAL_TEST_FIELDS):
            raise MotionError(
                f"{file}: official Deep3DFaceRecon test.py output (fields "
                f"{', '.join(_OFFICIAL_TEST_FIELDS)}) holds no alignment numbers (trans_params: s, t0, t1) "
                f"that PIRender needs; {_EXTRACTION_HINT}"
            )
        hint = ""
        if any(name.startswith(_PRESET_PREFIX) for name in fields):
            hint = " (this looks like expression presets: read it with load_expression_presets)"
        raise MotionError(f"{file}: no 'coeff' field (fields: {', '.join(fields) or 'none'}){hint}")
    coeff = np.asarray(mat["coeff"])
    if coeff.ndim != 2 or coeff.shape[1] not in (COEFF_WIDTH, LMDB_ROW_WIDTH):
        raise MotionError(
            f"{file}: 'coeff' has shape {coeff.shape}, expected (frames, {COEFF_WIDTH}) with "
            f"transform_params or (frames, {LMDB_ROW_WIDTH}) LMDB rows"
        )
    meta = {"source": str(file)}
    if coeff.shape[1] == LMDB_ROW_WIDTH:
        crop = coeff[:, LMDB_CROP_COLUMNS]
        meta["layout"] = "lmdb-260"
    else:
        params_field = next((name for name in _TRANSFORM_PARAMS_FIELDS if name in mat), None)
        if params_field is None:
            raise MotionError(
                f"{file}: 'coeff' {coeff.shape} has no alignment numbers (no transform_params field; fields: "
                f"{', '.join(fields)}), so the crop (s, t0, t1) PIRender needs is missing; {_EXTRACTION_HINT}"
            )
        params = np.asarray(mat[params_field])
        if params.ndim != 2 or params.shape != (coeff.shape[0], TRANSFORM_PARAMS_WIDTH):
            raise MotionError(
                f"{file}: '{params_field}' has shape {params.shape}, expected ({coeff.shape[0]}, "
                f"{TRANSFORM_PARAMS_WIDTH}) = (W0, H0, s, t0, t1) per frame of 'coeff'"
            )
        crop = params[:, TRANSFORM_PARAMS_CROP]
        meta["layout"] = "deep3d-257+transform_params"
    rows = coeffs_to_authors(coeff[:, :COEFF_WIDTH], crop, what=str(file))
    return _make_sequence(file, rows, AUTHORS_SPACE, fps, meta)


def _load_txt(file: Path, fps: float) -> MotionSequence:
    """PIRender's ``coeff_detector`` file: 262 numbers = one frame."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MotionError(
            f"{file}: not a readable text file ({exception_text(exc, with_type=False)})"
        ) from None
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
    return _sequence_from_rows(file, numbers, fps, source="txt")


#: Suffix -> reader(file, fps).
_READERS: Mapping[str, Callable[[Path, float], MotionSequence]] = {
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
        arrays = {
            "values": values,
            "space": np.array(json.dumps(space.to_dict())),
            "fps": np.array(float(sequence.fps), dtype=np.float64),
            "meta": np.array(meta_text),
        }
        write_atomically(target, error=MotionError, write=lambda handle: np.savez(handle, **arrays))
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


def _sequence_from_rows(file: Path, array: np.ndarray, fps: float, *, source: str) -> MotionSequence:
    """Rows of width 73 (authors' space), 260 (LMDB) or 262 (coeff_detector) -> authors' sequence."""
    rows = array[None, :] if array.ndim == 1 else array
    if rows.ndim != 2:
        raise MotionError(f"{file}: expected a 1-D or 2-D array of motion rows, got shape {array.shape}")
    if rows.size == 0:
        raise MotionError(f"{file}: the sequence is empty (shape {array.shape})")
    width = rows.shape[1]
    meta: dict[str, Any] = {"source": str(file)}
    if width == AUTHORS_SPACE.width:
        values = check_values(rows, AUTHORS_SPACE, what=str(file))
        meta["layout"] = f"{source}-{AUTHORS_SPACE.width}"
    elif width in (LMDB_ROW_WIDTH, TEXT_ROW_WIDTH):
        crop_columns = LMDB_CROP_COLUMNS if width == LMDB_ROW_WIDTH else TEXT_CROP_COLUMNS
        values = coeffs_to_authors(rows[:, :COEFF_WIDTH], rows[:, crop_columns], what=str(file))
        meta["layout"] = f"{source}-{width}"
    else:
        raise MotionError(
            f"{file}: {width} numbers per frame; accepted widths are {AUTHORS_SPACE.width} (authors' space), "
            f"{LMDB_ROW_WIDTH} (LMDB rows: {COEFF_WIDTH} + s, t0, t1) and {TEXT_ROW_WIDTH} "
            f"(coeff_detector: {COEFF_WIDTH} + W0, H0, s, t0, t1)"
        )
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
