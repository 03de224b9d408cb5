"""Tests of the motion file readers and writers (``pirender.engine.motion.io``).

Every layout is built with a distinct known value per (frame, column): ``frame * FRAME_STRIDE + column``,
so the tests can say exactly which source column lands in which of the 73 slots.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio

from pirender.engine.errors import MotionError
from pirender.engine.motion.io import (
    AUTHORS_COEFF_COLUMNS,
    coeffs_to_authors,
    load_expression_presets,
    load_motion,
    motion_crop,
    read_lmdb_motion,
    save_motion,
)
from pirender.engine.motion.space import AUTHORS_SPACE, MotionSequence, MotionSpace

from conftest import shared_data

#: Value step between frames of the synthetic layouts (larger than any column index).
FRAME_STRIDE = 1000
#: Widths of the on-disk layouts.
COEFFS = 257
LMDB_WIDTH = 260
TEXT_WIDTH = 262
AUTHORS_WIDTH = 73
#: Source column of each of the 73 slots, written out by hand from pirender-spec.md section 5.
_SHARED_SOURCE = [*range(80, 144), 224, 225, 226, 254, 255, 256]
SOURCE_COLUMNS_260 = [*_SHARED_SOURCE, 257, 258, 259]
SOURCE_COLUMNS_262 = [*_SHARED_SOURCE, 259, 260, 261]
#: Source column of the crop (s, t0, t1) in Deep3DFaceRecon's trans_params (W0, H0, s, t0, t1).
TRANSFORM_CROP_COLUMNS = [2, 3, 4]


def known_rows(frames: int, width: int) -> np.ndarray:
    """(frames, width) float32 with value ``frame * FRAME_STRIDE + column`` (exact in float32)."""
    frame_index = np.arange(frames, dtype=np.float32)[:, None]
    column_index = np.arange(width, dtype=np.float32)[None, :]
    return frame_index * FRAME_STRIDE + column_index


def expected_from(columns: list[int], frames: int) -> np.ndarray:
    """The 73 values expected when slot j reads source column ``columns[j]`` of ``known_rows``."""
    return (
        np.arange(frames, dtype=np.float32)[:, None] * FRAME_STRIDE + np.asarray(columns, np.float32)
    ).astype(np.float32)


def random_sequence(frames: int = 7, *, fps: float = 30.0, seed: int = 0) -> MotionSequence:
    """Authors'-space motion with random values."""
    values = np.random.default_rng(seed).normal(size=(frames, AUTHORS_WIDTH)).astype(np.float32)
    return MotionSequence(space=AUTHORS_SPACE, values=values, fps=fps, meta={"take": 3, "who": "test"})


@contextmanager
def motion_error(
    match: str, *, naming: Path | str | None = None
) -> Iterator[pytest.ExceptionInfo[MotionError]]:
    """``pytest.raises(MotionError, match=...)`` that also checks the message is one line naming the file."""
    with pytest.raises(MotionError, match=match) as info:
        yield info
    message = str(info.value)
    assert "\n" not in message, message
    if naming is not None:
        assert str(naming) in message, message


def write_bytes(path: Path, payload: bytes) -> Path:
    path.write_bytes(payload)
    return path


# ---------------------------------------------------------------------------------------------------
# Layout constants and the conversion


def test_coeff_columns_document_the_257_layout() -> None:
    columns = AUTHORS_COEFF_COLUMNS
    assert columns.width == COEFFS
    assert (columns.expression.start, columns.expression.stop) == (80, 144)
    assert (columns.angles.start, columns.angles.stop) == (224, 227)
    assert (columns.translation.start, columns.translation.stop) == (254, 257)
    spans = [columns.identity, columns.expression, columns.texture, columns.angles, columns.lighting]
    spans.append(columns.translation)
    covered = [index for span in spans for index in range(span.start, span.stop)]
    assert covered == list(range(COEFFS))  # contiguous, in order, no gaps


def test_coeffs_to_authors_picks_the_right_columns() -> None:
    coeffs = known_rows(4, COEFFS)
    crop = np.array([[1.5, 110.0, 120.0]] * 4, dtype=np.float32) + np.arange(4, dtype=np.float32)[:, None]
    rows = coeffs_to_authors(coeffs, crop)
    assert rows.shape == (4, AUTHORS_WIDTH) and rows.dtype == np.float32
    np.testing.assert_array_equal(rows[:, :70], expected_from(_SHARED_SOURCE, 4))
    np.testing.assert_array_equal(rows[:, 70:], crop)


def test_coeffs_to_authors_accepts_one_frame_as_1d() -> None:
    rows = coeffs_to_authors(known_rows(1, COEFFS)[0], np.array([1.0, 2.0, 3.0]))
    assert rows.shape == (1, AUTHORS_WIDTH)
    np.testing.assert_array_equal(rows[0, 64:67], [224, 225, 226])


@pytest.mark.parametrize(
    ("coeffs", "crop", "match"),
    [
        (
            np.zeros((2, 256)),
            np.zeros((2, 3)),
            r"expected \(frames, 257\) coefficients, got shape \(2, 256\)",
        ),
        (np.zeros((2, 257)), np.zeros((2, 5)), r"expected \(frames, 3\) crop .*got shape \(2, 5\)"),
        (np.zeros((2, 257)), np.zeros((3, 3)), r"2 frames of coefficients but 3 frames of crop"),
        (np.zeros((0, 257)), np.zeros((0, 3)), r"empty"),
    ],
)
def test_coeffs_to_authors_rejects_bad_shapes(coeffs: np.ndarray, crop: np.ndarray, match: str) -> None:
    with motion_error(match, naming="my.mat"):
        coeffs_to_authors(coeffs, crop, what="my.mat")


def test_coeffs_to_authors_rejects_nan_with_frame() -> None:
    coeffs = known_rows(5, COEFFS)
    coeffs[3, 225] = np.nan  # angle y of frame 3
    with motion_error(r"non-finite value nan at frame 3, slot 'angle_y'"):
        coeffs_to_authors(coeffs, np.ones((5, 3)))


# ---------------------------------------------------------------------------------------------------
# .npy


def test_npy_authors_rows_round_trip(tmp_path: Path) -> None:
    values = random_sequence().values
    path = tmp_path / "motion.npy"
    np.save(path, values)
    sequence = load_motion(path)
    assert sequence.space is AUTHORS_SPACE
    np.testing.assert_array_equal(sequence.values, values)
    assert sequence.fps == 25.0


def test_npy_float64_is_converted_to_float32(tmp_path: Path) -> None:
    values = np.random.default_rng(1).normal(size=(3, AUTHORS_WIDTH))
    path = tmp_path / "motion64.npy"
    np.save(path, values)
    sequence = load_motion(path)
    assert sequence.values.dtype == np.float32
    np.testing.assert_allclose(sequence.values, values, rtol=1e-6)


def test_npy_single_1d_frame_is_one_frame(tmp_path: Path) -> None:
    path = tmp_path / "one.npy"
    np.save(path, np.arange(AUTHORS_WIDTH, dtype=np.float32))
    sequence = load_motion(path)
    assert len(sequence) == 1
    np.testing.assert_array_equal(sequence.frame(0).values, np.arange(AUTHORS_WIDTH))


def test_npy_lmdb_rows_land_in_the_right_slots(tmp_path: Path) -> None:
    path = tmp_path / "lmdb_rows.npy"
    np.save(path, known_rows(6, LMDB_WIDTH))
    sequence = load_motion(path)
    np.testing.assert_array_equal(sequence.values, expected_from(SOURCE_COLUMNS_260, 6))
    # crop (s, t0, t1) comes from columns 257..259 right after the coefficients
    np.testing.assert_array_equal(sequence.values[2, 70:], [2257, 2258, 2259])


def test_npy_text_layout_rows_land_in_the_right_slots(tmp_path: Path) -> None:
    path = tmp_path / "text_rows.npy"
    np.save(path, known_rows(3, TEXT_WIDTH))
    sequence = load_motion(path)
    np.testing.assert_array_equal(sequence.values, expected_from(SOURCE_COLUMNS_262, 3))
    # crop skips W0, H0 (columns 257, 258) and reads 259..261
    np.testing.assert_array_equal(sequence.values[1, 70:], [1259, 1260, 1261])


def test_npy_single_262_frame(tmp_path: Path) -> None:
    path = tmp_path / "one_text_row.npy"
    np.save(path, known_rows(1, TEXT_WIDTH)[0])
    sequence = load_motion(path)
    np.testing.assert_array_equal(sequence.values, expected_from(SOURCE_COLUMNS_262, 1))


@pytest.mark.parametrize("width", [69, 71, 72, 74, 256, 259, 261, 263])
def test_npy_unknown_width_names_every_known_layout_and_what_to_pass(tmp_path: Path, width: int) -> None:
    path = tmp_path / f"w{width}.npy"
    np.save(path, np.zeros((4, width), dtype=np.float32))
    with motion_error(rf"{width} numbers per frame is not a layout this reader knows", naming=path) as info:
        load_motion(path)
    message = str(info.value)
    for phrase in (
        "73 = the authors' space, also SadTalker's coeff_3dmm of a source image (expression 64 + angles 3 "
        "+ translation 3 + crop s, t0, t1)",
        "70 = SadTalker coeff_3dmm (expression 64 + angles 3 + translation 3, no crop)",
        "257 = Deep3DFaceRecon coefficients (identity 80 + expression 64 + texture 80 + angles 3 + "
        "lighting 27 + translation 3, no crop)",
        "258 = Deep3DFaceReconstruction TF model output (the 257 coefficients + 1 unused focal-length "
        "number, no crop)",
        "260 = PIRender LMDB rows (257 coefficients + crop s, t0, t1)",
        "262 = PIRender coeff_detector rows (257 coefficients + W0, H0, s, t0, t1)",
        "pass --source-motion with the source portrait's 73-wide file (e.g. SadTalker's first_frame_dir/",
    ):
        assert phrase in message, phrase


def test_npy_nan_names_the_frame(tmp_path: Path) -> None:
    values = random_sequence(frames=9).values
    values[5, 66] = np.nan
    path = tmp_path / "nan.npy"
    np.save(path, values)
    with motion_error(r"non-finite value nan at frame 5, slot 'angle_z'", naming=path):
        load_motion(path)


def test_npy_inf_in_lmdb_crop_names_the_frame(tmp_path: Path) -> None:
    rows = known_rows(4, LMDB_WIDTH)
    rows[2, 258] = np.inf  # t0 of frame 2
    path = tmp_path / "inf.npy"
    np.save(path, rows)
    with motion_error(r"non-finite value inf at frame 2, slot 'crop_t0'", naming=path):
        load_motion(path)


@pytest.mark.parametrize("shape", [(0, AUTHORS_WIDTH), (0,), (0, LMDB_WIDTH)])
def test_npy_empty_is_refused(tmp_path: Path, shape: tuple[int, ...]) -> None:
    path = tmp_path / "empty.npy"
    np.save(path, np.zeros(shape, dtype=np.float32))
    with motion_error(r"empty", naming=path):
        load_motion(path)


def test_npy_3d_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cube.npy"
    np.save(path, np.zeros((2, 3, AUTHORS_WIDTH), dtype=np.float32))
    with motion_error(r"expected a 1-D or 2-D array .*shape \(2, 3, 73\)", naming=path):
        load_motion(path)


def test_npy_0d_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "scalar.npy"
    np.save(path, np.float32(1.0))
    with motion_error(r"expected a 1-D or 2-D array", naming=path):
        load_motion(path)


def test_npy_strings_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "text.npy"
    np.save(path, np.array([["a"] * LMDB_WIDTH]))
    with motion_error(r"real numbers", naming=path):
        load_motion(path)


def test_npy_garbage_bytes_are_refused(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "garbage.npy", b"\x00\xffnot numpy at all" * 10)
    with motion_error(r"not an \.npy file", naming=path):
        load_motion(path)


def test_npy_truncated_is_refused(tmp_path: Path) -> None:
    full = tmp_path / "full.npy"
    np.save(full, random_sequence().values)
    path = write_bytes(tmp_path / "cut.npy", full.read_bytes()[:200])
    with motion_error(r"corrupt \.npy file", naming=path):
        load_motion(path)


def test_npy_holding_an_npz_archive_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "archive.npz"
    np.savez(archive, values=np.zeros((2, AUTHORS_WIDTH)))
    path = write_bytes(tmp_path / "misnamed.npy", archive.read_bytes())
    with motion_error(r"holds an \.npz archive", naming=path):
        load_motion(path)


# ---------------------------------------------------------------------------------------------------
# .npz (this project's own format) and save_motion


def test_npz_round_trip_keeps_values_fps_meta(tmp_path: Path) -> None:
    original = random_sequence(fps=30.0)
    written = save_motion(tmp_path / "take.npz", original)
    assert written == tmp_path / "take.npz" and written.is_file()
    loaded = load_motion(written)
    assert loaded.space is AUTHORS_SPACE
    np.testing.assert_array_equal(loaded.values, original.values)
    assert loaded.fps == 30.0
    assert loaded.meta == {"take": 3, "who": "test"}


def test_npz_stored_fps_wins_over_argument(tmp_path: Path) -> None:
    path = save_motion(tmp_path / "rate.npz", random_sequence(fps=50.0))
    assert load_motion(path, fps=12.0).fps == 50.0


def test_npz_custom_space_round_trips(tmp_path: Path) -> None:
    space = MotionSpace(
        name="my-blendshapes-5", slot_names=("a", "b", "c", "d", "e"), groups=(("mouth", 0, 2),)
    )
    values = np.random.default_rng(2).normal(size=(4, 5)).astype(np.float32)
    path = save_motion(tmp_path / "custom.npz", MotionSequence(space=space, values=values, fps=60.0))
    loaded = load_motion(path)
    assert loaded.space == space
    assert loaded.space.group("mouth") == slice(0, 2)
    np.testing.assert_array_equal(loaded.values, values)
    assert loaded.fps == 60.0


def test_npz_file_arrays_follow_the_format(tmp_path: Path) -> None:
    path = save_motion(tmp_path / "format.npz", random_sequence())
    with np.load(path, allow_pickle=False) as archive:
        assert set(archive.files) == {"values", "space", "fps", "meta"}
        assert archive["values"].dtype == np.float32
        assert archive["space"].shape == () and '"pirender-3dmm-73"' in str(archive["space"])
        assert float(archive["fps"]) == 30.0


def test_npz_without_meta_loads(tmp_path: Path) -> None:
    path = tmp_path / "nometa.npz"
    values = random_sequence().values
    np.savez(path, values=values, space=np.array(json.dumps(AUTHORS_SPACE.to_dict())), fps=np.float64(24.0))
    loaded = load_motion(path)
    assert loaded.space is AUTHORS_SPACE
    assert loaded.meta == {} and loaded.fps == 24.0


def test_npz_built_in_name_with_other_layout_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "impostor.npz"
    impostor = {"name": AUTHORS_SPACE.name, "slot_names": [f"s{i}" for i in range(AUTHORS_WIDTH)]}
    np.savez(path, values=random_sequence().values, space=np.array(json.dumps(impostor)), fps=25.0)
    with motion_error(
        r"stored space 'pirender-3dmm-73' has 73 slots that differ from the built-in", naming=path
    ):
        load_motion(path)


def test_npz_malformed_space_description_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "nameless.npz"
    np.savez(path, values=random_sequence().values, space=np.array('{"slot_names": []}'), fps=25.0)
    with motion_error(r"malformed motion space description", naming=path):
        load_motion(path)


def test_npz_meta_must_be_a_json_object(tmp_path: Path) -> None:
    path = tmp_path / "listmeta.npz"
    space_json = np.array(json.dumps(AUTHORS_SPACE.to_dict()))
    np.savez(path, values=random_sequence().values, space=space_json, fps=25.0, meta=np.array("[1, 2]"))
    with motion_error(r"'meta' must be a JSON object, got list", naming=path):
        load_motion(path)


def test_npz_missing_arrays_are_named(tmp_path: Path) -> None:
    path = tmp_path / "partial.npz"
    np.savez(path, values=random_sequence().values)
    with motion_error(r"missing array\(s\) space, fps \(arrays present: values\)", naming=path):
        load_motion(path)


def test_npz_bad_space_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "badspace.npz"
    np.savez(path, values=random_sequence().values, space=np.array("{not json"), fps=25.0)
    with motion_error(r"'space' is not valid JSON", naming=path):
        load_motion(path)


def test_npz_width_not_matching_space_is_refused(tmp_path: Path) -> None:

    path = tmp_path / "mismatch.npz"
    space_json = np.array(json.dumps(AUTHORS_SPACE.to_dict()))
    np.savez(path, values=np.zeros((3, 70), np.float32), space=space_json, fps=25.0)
    with motion_error(r"70 numbers per frame, but space 'pirender-3dmm-73' has 73", naming=path):
        load_motion(path)


def test_npz_bad_stored_fps_is_refused(tmp_path: Path) -> None:

    path = tmp_path / "badfps.npz"
    space_json = np.array(json.dumps(AUTHORS_SPACE.to_dict()))
    np.savez(path, values=random_sequence().values, space=space_json, fps=-1.0)
    with motion_error(r"frame rate must be positive", naming=path):
        load_motion(path)


def test_npz_garbage_bytes_are_refused(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "garbage.npz", b"this is not a zip archive" * 20)
    with motion_error(r"not an \.npz file", naming=path):
        load_motion(path)


def test_npz_truncated_archive_is_refused(tmp_path: Path) -> None:
    full = save_motion(tmp_path / "full.npz", random_sequence(frames=50))
    path = write_bytes(tmp_path / "cut.npz", full.read_bytes()[:300])
    with motion_error(r"corrupt \.npz archive", naming=path):
        load_motion(path)


def test_npy_save_round_trip_for_authors_space(tmp_path: Path) -> None:
    original = random_sequence()
    path = save_motion(tmp_path / "plain.npy", original)
    np.testing.assert_array_equal(np.load(path), original.values)
    np.testing.assert_array_equal(load_motion(path, fps=30.0).values, original.values)
    assert load_motion(path, fps=30.0).fps == 30.0


def test_save_npy_refuses_other_spaces(tmp_path: Path) -> None:
    space = MotionSpace(name="tiny", slot_names=("a", "b"))
    sequence = MotionSequence(space=space, values=np.zeros((2, 2), np.float32))
    path = tmp_path / "tiny.npy"
    with motion_error(r"motion of space 'tiny' must be saved as \.npz", naming=path):
        save_motion(path, sequence)
    assert list(tmp_path.iterdir()) == []


def test_save_to_missing_folder_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "folder" / "take.npz"
    with motion_error(r"does not exist", naming=path):
        save_motion(path, random_sequence())
    assert list(tmp_path.iterdir()) == []


def test_save_unknown_suffix_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "take.csv"
    with motion_error(r"cannot save motion as '\.csv' \(use \.npz or \.npy\)", naming=path):
        save_motion(path, random_sequence())
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_values_that_became_invalid(tmp_path: Path) -> None:
    sequence = random_sequence()
    sequence.values[4, 0] = np.inf  # mutated after construction
    path = tmp_path / "bad.npz"
    with motion_error(r"non-finite value inf at frame 4", naming=path):
        save_motion(path, sequence)
    assert not path.exists()


def test_save_refuses_meta_that_is_not_json(tmp_path: Path) -> None:
    sequence = random_sequence()
    sequence.meta["when"] = object()
    path = tmp_path / "meta.npz"
    with motion_error(r"meta is not JSON-serialisable", naming=path):
        save_motion(path, sequence)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_motion(tmp_path / "keep.npz", random_sequence(seed=1))
    before = path.read_bytes()

    def broken_savez(handle: object, **arrays: object) -> None:
        handle.write(b"PK half an archive")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with motion_error(r"cannot write \(disk full\)", naming=path):
        save_motion(path, random_sequence(seed=2))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.npz"]


def test_interrupted_write_leaves_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(handle: object, array: object, allow_pickle: bool = False) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_motion(tmp_path / "stop.npy", random_sequence())
    assert list(tmp_path.iterdir()) == []


def test_saved_file_gets_ordinary_permissions(tmp_path: Path) -> None:
    reference = tmp_path / "reference.bin"
    reference.write_bytes(b"")  # created the ordinary way: 0o666 less the umask
    path = save_motion(tmp_path / "mode.npz", random_sequence())
    assert path.stat().st_mode == reference.stat().st_mode


def test_save_overwrites_existing_file(tmp_path: Path) -> None:
    path = save_motion(tmp_path / "again.npz", random_sequence(seed=1))
    second = random_sequence(seed=2)
    save_motion(path, second)
    np.testing.assert_array_equal(load_motion(path).values, second.values)
    assert [p.name for p in tmp_path.iterdir()] == ["again.npz"]


# ---------------------------------------------------------------------------------------------------
# .mat


def test_mat_face_recon_output_lands_in_the_right_slots(tmp_path: Path) -> None:
    frames = 5
    coeffs = known_rows(frames, COEFFS)
    params = known_rows(frames, 5) + 0.5  # (W0, H0, s, t0, t1) per frame, distinct values
    path = tmp_path / "video.mat"
    sio.savemat(path, {"coeff": coeffs, "transform_params": params})
    sequence = load_motion(path, fps=30.0)
    assert sequence.space is AUTHORS_SPACE and sequence.fps == 30.0
    np.testing.assert_array_equal(sequence.values[:, :70], expected_from(_SHARED_SOURCE, frames))
    np.testing.assert_array_equal(sequence.values[:, 70:], params[:, TRANSFORM_CROP_COLUMNS])
    np.testing.assert_array_equal(sequence.values[3, 70:], [3002.5, 3003.5, 3004.5])


def test_mat_trans_params_name_is_accepted(tmp_path: Path) -> None:
    params = known_rows(2, 5)
    path = tmp_path / "alias.mat"
    sio.savemat(path, {"coeff": known_rows(2, COEFFS), "trans_params": params})
    np.testing.assert_array_equal(load_motion(path).values[:, 70:], params[:, TRANSFORM_CROP_COLUMNS])


def test_mat_lmdb_rows_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "rows.mat"
    sio.savemat(path, {"coeff": known_rows(4, LMDB_WIDTH)})
    np.testing.assert_array_equal(load_motion(path).values, expected_from(SOURCE_COLUMNS_260, 4))


def test_mat_tf_demo_without_transform_params_says_how_to_get_them(tmp_path: Path) -> None:
    path = tmp_path / "tf_demo.mat"
    sio.savemat(
        path, {"coeff": known_rows(1, COEFFS), "lm_5p": np.zeros((5, 2)), "cropped_img": np.zeros((4, 4))}
    )
    with motion_error(
        r"'coeff' \(1, 257\): Deep3DFaceRecon coefficients, .*no alignment numbers .*transform_params.*"
        r"--source-motion .*face_recon_videos\.py",
        naming=path,
    ):
        load_motion(path)


def test_mat_official_test_output_says_how_to_get_alignment(tmp_path: Path) -> None:
    path = tmp_path / "official.mat"
    fields = {"id": 80, "exp": 64, "tex": 80, "angle": 3, "gamma": 27, "trans": 3}
    sio.savemat(path, {name: np.zeros((1, size), np.float32) for name, size in fields.items()})
    with motion_error(
        r"official Deep3DFaceRecon test\.py .*no alignment numbers.*--source-motion.*face_recon_", naming=path
    ):
        load_motion(path)


def test_mat_without_coeff_lists_its_fields(tmp_path: Path) -> None:
    path = tmp_path / "other.mat"
    sio.savemat(path, {"landmark": np.zeros((3, 136)), "score": np.ones((1, 1))})
    with motion_error(
        r"no motion field \(fields: landmark, score\); motion is read from coeff_3dmm \(SadTalker\), coeff "
        r"\+ transform_params .*full_3dmm.*id/exp/tex/angle/gamma/trans",
        naming=path,
    ):
        load_motion(path)


def test_mat_expression_presets_are_not_motion() -> None:
    path = shared_data("vox_demo", "expression.mat")
    with motion_error(r"no motion field \(fields: expression_center, .*load_expression_presets", naming=path):
        load_motion(path)


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"coeff": np.zeros((3, 100))}, r"'coeff' \(3, 100\): 100 numbers per frame is not a layout"),
        ({"coeff": np.array(["abc"])}, r"'coeff' has shape \(1,\) and dtype <U3, expected \(frames, width\)"),
        ({"coeff_3dmm": np.zeros((3, 71))}, r"'coeff_3dmm' \(3, 71\): 71 numbers per frame is not a layout"),
        ({"coeff_3dmm": np.zeros((0, 73))}, r"'coeff_3dmm' \(0, 73\): the sequence is empty"),
        (
            {"coeff": np.zeros((3, COEFFS)), "transform_params": np.zeros((2, 5))},
            r"'transform_params' has shape \(2, 5\), expected \(3, 5\)",
        ),
        (
            {"coeff": np.zeros((3, COEFFS)), "transform_params": np.zeros((3, 3))},
            r"'transform_params' has shape \(3, 3\)",
        ),
        ({"coeff": np.zeros((0, COEFFS)), "transform_params": np.zeros((0, 5))}, r"empty"),
    ],
)
def test_mat_malformed_fields_are_refused(tmp_path: Path, arrays: dict[str, np.ndarray], match: str) -> None:
    path = tmp_path / "bad.mat"
    sio.savemat(path, arrays)
    with motion_error(match, naming=path):
        load_motion(path)


def test_mat_nan_names_the_frame(tmp_path: Path) -> None:
    coeffs = known_rows(4, COEFFS)
    coeffs[1, 80] = np.nan  # first expression number of frame 1
    path = tmp_path / "nan.mat"
    sio.savemat(path, {"coeff": coeffs, "transform_params": np.ones((4, 5))})
    with motion_error(r"non-finite value nan at frame 1, slot 'exp00'", naming=path):
        load_motion(path)


def test_mat_garbage_bytes_are_refused(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "garbage.mat", bytes(range(256)) * 4)
    with motion_error(r"not a readable \.mat file", naming=path):
        load_motion(path)


# ---------------------------------------------------------------------------------------------------
# .txt (coeff_detector)


def test_txt_one_number_per_line_lands_in_the_right_slots(tmp_path: Path) -> None:
    path = tmp_path / "image_3dmm_coeff.txt"
    np.savetxt(path, known_rows(1, TEXT_WIDTH).reshape(-1))  # how coeff_detector writes it
    sequence = load_motion(path)
    assert len(sequence) == 1 and sequence.fps == 25.0
    np.testing.assert_array_equal(sequence.values, expected_from(SOURCE_COLUMNS_262, 1))
    np.testing.assert_array_equal(sequence.values[0, 70:], [259, 260, 261])


def test_txt_whitespace_separated_numbers(tmp_path: Path) -> None:
    path = tmp_path / "one_line.txt"
    path.write_text(" ".join(str(v) for v in range(TEXT_WIDTH)) + "\n")
    np.testing.assert_array_equal(load_motion(path).values, expected_from(SOURCE_COLUMNS_262, 1))


@pytest.mark.parametrize("count", [261, 263, 524, 0])
def test_txt_wrong_count_names_the_count(tmp_path: Path, count: int) -> None:
    path = tmp_path / "short.txt"
    np.savetxt(path, np.zeros(count))
    with motion_error(rf"holds {count} numbers, expected 262", naming=path):
        load_motion(path)


def test_txt_non_number_is_named(tmp_path: Path) -> None:
    tokens = [str(v) for v in range(TEXT_WIDTH)]
    tokens[10] = "banana"
    path = tmp_path / "fruit.txt"
    path.write_text("\n".join(tokens))
    with motion_error(r"number 11 is not a number: 'banana'", naming=path):
        load_motion(path)


def test_txt_nan_names_the_frame(tmp_path: Path) -> None:
    numbers = np.arange(TEXT_WIDTH, dtype=np.float64)
    numbers[260] = np.nan  # t0
    path = tmp_path / "nan.txt"
    np.savetxt(path, numbers)
    with motion_error(r"non-finite value nan at frame 0, slot 'crop_t0'", naming=path):
        load_motion(path)


def test_txt_binary_garbage_is_refused(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "binary.txt", b"\xff\xfe\x00\x81" * 50)
    with motion_error(r"not a readable text file", naming=path):
        load_motion(path)


# ---------------------------------------------------------------------------------------------------
# Dispatch and common errors


def test_unknown_suffix_lists_known_ones(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "motion.csv", b"1,2,3")
    with motion_error(r"unknown motion file type '\.csv' \(known: \.npy, \.npz, \.mat, \.txt\)", naming=path):
        load_motion(path)


def test_no_suffix_is_refused(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "motion", b"1 2 3")
    with motion_error(r"unknown motion file type '\(no suffix\)'", naming=path):
        load_motion(path)


def test_suffix_is_case_insensitive(tmp_path: Path) -> None:
    path = tmp_path / "LOUD.NPY"
    with path.open("wb") as handle:  # np.save(path) would append ".npy"
        np.save(handle, random_sequence().values)
    assert len(load_motion(path)) == 7


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "absent.npz"
    with motion_error(r"no such file", naming=path):
        load_motion(path)


def test_folder_is_not_a_file(tmp_path: Path) -> None:
    folder = tmp_path / "folder.npy"
    folder.mkdir()
    with motion_error(r"not a file", naming=folder):
        load_motion(folder)


def test_fps_argument_and_default(tmp_path: Path) -> None:
    path = tmp_path / "rate.npy"
    np.save(path, random_sequence().values)
    assert load_motion(path).fps == 25.0
    assert load_motion(str(path), fps=29.97).fps == pytest.approx(29.97)


@pytest.mark.parametrize("fps", [0.0, -5.0, float("nan")])
def test_bad_fps_argument_names_the_file(tmp_path: Path, fps: float) -> None:
    path = tmp_path / "rate.npy"
    np.save(path, random_sequence().values)
    with motion_error(r"frame rate must be positive", naming=path):
        load_motion(path, fps=fps)


def test_loaded_foreign_layout_records_its_source(tmp_path: Path) -> None:
    path = tmp_path / "rows.npy"
    np.save(path, known_rows(2, LMDB_WIDTH))
    meta = load_motion(path).meta
    assert meta == {"source": str(path), "layout": "npy-260"}


# ---------------------------------------------------------------------------------------------------
# LMDB


def write_lmdb(folder: Path, entries: dict[str, bytes]) -> Path:
    """An LMDB shaped like the authors' ``prepare_vox_lmdb`` output."""
    lmdb = pytest.importorskip("lmdb", reason="the lmdb package is needed to build a test LMDB")
    with (
        lmdb.open(str(folder), map_size=1 << 24) as environment,
        environment.begin(write=True) as transaction,
    ):
        for key, value in entries.items():
            transaction.put(key.encode(), value)
    return folder


VIDEO = "id10001#7w0IBEWc9Qw#000993#001143"


def test_lmdb_video_lands_in_the_right_slots(tmp_path: Path) -> None:
    frames = 12
    rows = known_rows(frames, LMDB_WIDTH)
    folder = write_lmdb(
        tmp_path / "256",
        {
            "length": b"0000002",
            f"{VIDEO}-length": str(frames).zfill(7).encode(),
            f"{VIDEO}-coeff_3dmm": rows.tobytes(),
            f"{VIDEO}-0000000": b"\xff\xd8jpeg bytes",
            "other-coeff_3dmm": known_rows(2, LMDB_WIDTH).tobytes(),
        },
    )
    sequence = read_lmdb_motion(folder, VIDEO, fps=30.0)
    assert sequence.space is AUTHORS_SPACE and sequence.fps == 30.0 and len(sequence) == frames
    np.testing.assert_array_equal(sequence.values, expected_from(SOURCE_COLUMNS_260, frames))
    assert sequence.meta["video"] == VIDEO
    assert len(read_lmdb_motion(str(folder), "other")) == 2  # no length entry: not checked


def test_lmdb_missing_video_is_named(tmp_path: Path) -> None:
    folder = write_lmdb(tmp_path / "db", {"a-coeff_3dmm": known_rows(1, LMDB_WIDTH).tobytes()})
    with motion_error(r"no motion for video 'nobody'", naming=folder):
        read_lmdb_motion(folder, "nobody")


def test_lmdb_length_mismatch_is_refused(tmp_path: Path) -> None:
    folder = write_lmdb(
        tmp_path / "db",
        {"v-coeff_3dmm": known_rows(3, LMDB_WIDTH).tobytes(), "v-length": b"0000004"},
    )
    with motion_error(r"holds 3 rows but the video length is 4", naming=folder):
        read_lmdb_motion(folder, "v")


def test_lmdb_bad_length_text_is_refused(tmp_path: Path) -> None:
    folder = write_lmdb(
        tmp_path / "db", {"v-coeff_3dmm": known_rows(3, LMDB_WIDTH).tobytes(), "v-length": b"x3"}
    )
    with motion_error(r"length entry 'x3' is not a 7-digit frame count", naming=folder):
        read_lmdb_motion(folder, "v")


def test_lmdb_partial_row_is_refused(tmp_path: Path) -> None:
    folder = write_lmdb(tmp_path / "db", {"v-coeff_3dmm": known_rows(1, COEFFS).tobytes()})
    with motion_error(r"1028 bytes, not a whole number of 260-number float32 rows", naming=folder):
        read_lmdb_motion(folder, "v")


def test_lmdb_nan_names_the_frame(tmp_path: Path) -> None:
    rows = known_rows(3, LMDB_WIDTH)
    rows[2, 257] = np.nan
    folder = write_lmdb(tmp_path / "db", {"v-coeff_3dmm": rows.tobytes()})
    with motion_error(r"non-finite value nan at frame 2, slot 'crop_s'", naming=folder):
        read_lmdb_motion(folder, "v")


def test_lmdb_missing_path_is_named(tmp_path: Path) -> None:
    path = tmp_path / "absent_db"
    with motion_error(r"no such LMDB", naming=path):
        read_lmdb_motion(path, VIDEO)


def test_lmdb_not_a_database_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("lmdb", reason="the lmdb package reads LMDB files")
    folder = tmp_path / "empty_folder"
    folder.mkdir()
    with motion_error(r"not a readable LMDB", naming=folder):
        read_lmdb_motion(folder, VIDEO)
    garbage = write_bytes(tmp_path / "garbage.mdb", b"\x00garbage" * 1000)
    with motion_error(r"not a readable LMDB", naming=garbage):
        read_lmdb_motion(garbage, VIDEO)


def test_lmdb_is_opened_read_only(tmp_path: Path) -> None:
    folder = write_lmdb(tmp_path / "db", {"v-coeff_3dmm": known_rows(2, LMDB_WIDTH).tobytes()})
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    read_lmdb_motion(folder, "v")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_lmdb_without_the_package_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "lmdb", None)  # makes `import lmdb` raise ImportError
    with motion_error(re.escape('pip install "pirender-live[lmdb]"')):
        read_lmdb_motion(tmp_path, VIDEO)


# ---------------------------------------------------------------------------------------------------
# Expression presets


def test_real_expression_presets() -> None:
    presets = load_expression_presets(shared_data("vox_demo", "expression.mat"))
    assert list(presets) == ["center", "mouth", "eyebrow", "eyes"]
    for preset in presets.values():
        assert preset.shape == (64,) and preset.dtype == np.float32
        assert np.isfinite(preset).all()
    assert not np.array_equal(presets["center"], presets["mouth"])


def test_synthetic_expression_presets(tmp_path: Path) -> None:
    names = ("center", "mouth", "eyebrow", "eyes")
    arrays = {f"expression_{name}": np.full((1, 64), index, np.float32) for index, name in enumerate(names)}
    path = tmp_path / "expression.mat"
    sio.savemat(path, arrays)
    presets = load_expression_presets(path)
    assert set(presets) == set(names)
    for index, name in enumerate(names):
        np.testing.assert_array_equal(presets[name], np.full(64, index, np.float32))


def test_expression_presets_missing_field_is_named(tmp_path: Path) -> None:
    path = tmp_path / "partial.mat"
    sio.savemat(path, {"expression_center": np.zeros((1, 64)), "expression_mouth": np.zeros((1, 64))})
    with motion_error(
        r"missing expression preset field\(s\) expression_eyebrow, expression_eyes", naming=path
    ):
        load_expression_presets(path)


def test_expression_presets_wrong_shape_is_named(tmp_path: Path) -> None:
    path = tmp_path / "shape.mat"
    arrays = {f"expression_{name}": np.zeros((1, 64)) for name in ("center", "mouth", "eyebrow", "eyes")}
    arrays["expression_mouth"] = np.zeros((1, 63))
    sio.savemat(path, arrays)
    with motion_error(r"field 'expression_mouth' has shape \(1, 63\).*expected \(1, 64\)", naming=path):
        load_expression_presets(path)


def test_expression_presets_nan_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "nan.mat"
    arrays = {f"expression_{name}": np.zeros((1, 64)) for name in ("center", "mouth", "eyebrow", "eyes")}
    arrays["expression_eyes"][0, 7] = np.nan
    sio.savemat(path, arrays)
    with motion_error(r"'expression_eyes' holds a non-finite value at position 7", naming=path):
        load_expression_presets(path)


def test_expression_presets_from_motion_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "video.mat"
    sio.savemat(path, {"coeff": np.zeros((2, COEFFS)), "transform_params": np.zeros((2, 5))})
    with motion_error(
        r"missing expression preset field\(s\) .*\(fields: coeff, transform_params\)", naming=path
    ):
        load_expression_presets(path)


def test_expression_presets_missing_or_corrupt_file(tmp_path: Path) -> None:
    with motion_error(r"no such file"):
        load_expression_presets(tmp_path / "absent.mat")
    garbage = write_bytes(tmp_path / "garbage.mat", b"\x00" * 300)
    with motion_error(r"not a readable \.mat file", naming=garbage):
        load_expression_presets(garbage)


# ---------------------------------------------------------------------------------------------------
# SadTalker and Deep3DFaceReconstruction (TF) files; crops from the caller (case 10_sadtalker_coeff_3dmm)

#: Frames of SadTalker's generated motion in case 10.
SADTALKER_FRAMES = 30
#: Width of SadTalker's generated coeff_3dmm rows and of the TF model's output rows.
POSE_WIDTH = 70
TF_WIDTH = 258
#: The case's crop of the source image's first frame (s, t0, t1).
CASE_CROP = [0.95, 0.5, -0.3]


def sadtalker_files(folder: Path, gen: np.ndarray, first73: np.ndarray, full: np.ndarray) -> dict[str, Path]:
    """The files of case 10 with SadTalker's field names and shapes, from the given values.

    gen.mat {'coeff_3dmm': (N, 70)}; first.mat {'coeff_3dmm': (1, 73), 'full_3dmm': (1, 257)};
    gen73.mat {'coeff_3dmm': (N, 73)} = gen + first's crop columns 70:73 (what SadTalker's renderer feeds);
    w70.npy, w73.npy the same numbers as .npy, w258.npy (N, 258).
    """
    frames = gen.shape[0]
    gen73 = np.concatenate([gen, np.repeat(first73[:, POSE_WIDTH:], frames, axis=0)], axis=1)
    paths = {name: folder / name for name in ("gen.mat", "first.mat", "gen73.mat", "w70.npy", "w73.npy")}
    sio.savemat(paths["gen.mat"], {"coeff_3dmm": gen})
    sio.savemat(paths["first.mat"], {"coeff_3dmm": first73, "full_3dmm": full})
    sio.savemat(paths["gen73.mat"], {"coeff_3dmm": gen73})
    np.save(paths["w70.npy"], gen)
    np.save(paths["w73.npy"], gen73)
    paths["w258.npy"] = folder / "w258.npy"
    np.save(paths["w258.npy"], known_rows(frames, TF_WIDTH))
    return paths


@pytest.fixture
def sadtalker(tmp_path: Path) -> dict[str, Path]:
    """Case 10's files with traceable values: gen = known rows, first = known rows + 0.25, full negative."""
    first73 = known_rows(1, AUTHORS_WIDTH) + 0.25
    return sadtalker_files(
        tmp_path, known_rows(SADTALKER_FRAMES, POSE_WIDTH), first73, -known_rows(1, COEFFS) - 1
    )


def gen73_values() -> np.ndarray:
    """What gen.mat completed with first.mat's crop must be (the fixture's gen73.mat)."""
    crop = np.array([[70.25, 71.25, 72.25]], np.float32)
    return np.concatenate(
        [known_rows(SADTALKER_FRAMES, POSE_WIDTH), np.repeat(crop, SADTALKER_FRAMES, axis=0)], axis=1
    )


def test_sadtalker_73_wide_coeff_3dmm_is_the_authors_space(sadtalker: dict[str, Path]) -> None:
    sequence = load_motion(sadtalker["gen73.mat"])
    assert sequence.space is AUTHORS_SPACE and sequence.values.shape == (SADTALKER_FRAMES, AUTHORS_WIDTH)
    np.testing.assert_array_equal(sequence.values, gen73_values())
    assert sequence.meta == {"source": str(sadtalker["gen73.mat"]), "layout": "sadtalker-coeff_3dmm-73"}
    # the same 73 numbers as w73.npy, which was always accepted
    np.testing.assert_array_equal(load_motion(sadtalker["w73.npy"]).values, sequence.values)


def test_sadtalker_first_frame_file_is_readable_and_gives_its_crop(sadtalker: dict[str, Path]) -> None:
    first = load_motion(sadtalker["first.mat"])
    assert len(first) == 1
    # coeff_3dmm is read; full_3dmm beside it (the first frame's 257 coefficients) is not
    np.testing.assert_array_equal(first.values, known_rows(1, AUTHORS_WIDTH) + 0.25)
    np.testing.assert_array_equal(motion_crop(first), [70.25, 71.25, 72.25])
    np.testing.assert_array_equal(motion_crop(first.frame(0)), [70.25, 71.25, 72.25])


@pytest.mark.parametrize(
    ("name", "layout"), [("gen.mat", "sadtalker-coeff_3dmm-70+crop"), ("w70.npy", "npy-70+crop")]
)
def test_sadtalker_70_wide_is_completed_with_the_given_crop(
    sadtalker: dict[str, Path], name: str, layout: str
) -> None:
    crop = motion_crop(load_motion(sadtalker["first.mat"]))
    sequence = load_motion(sadtalker[name], crop=crop, fps=25.0)
    np.testing.assert_array_equal(sequence.values, gen73_values())  # SadTalker's own completion
    assert sequence.meta == {"source": str(sadtalker[name]), "layout": layout}


@pytest.mark.parametrize(("name", "where"), [("gen.mat", "'coeff_3dmm' (30, 70): "), ("w70.npy", "")])
def test_sadtalker_70_wide_without_crop_names_the_layout_and_what_to_pass(
    sadtalker: dict[str, Path], name: str, where: str
) -> None:
    expected = (
        f"{sadtalker[name]}: {where}SadTalker coeff_3dmm, 70 numbers = expression 64 + angles 3 + "
        "translation 3, no crop (s, t0, t1); pass --source-motion with the source portrait's 73-wide file "
        "(e.g. SadTalker's first_frame_dir/<image>.mat) to take the crop from its first frame"
    )
    with motion_error(re.escape(expected), naming=sadtalker[name]):
        load_motion(sadtalker[name])


@pytest.mark.parametrize("width", [COEFFS, TF_WIDTH])
def test_npy_257_and_258_rows_take_the_right_columns_and_the_given_crop(tmp_path: Path, width: int) -> None:
    rows = known_rows(4, width)
    if width == TF_WIDTH:
        rows[:, COEFFS] = np.nan  # the TF model's unused focal-length number is never read
    path = tmp_path / f"w{width}.npy"
    np.save(path, rows)
    sequence = load_motion(path, crop=[0.9, 120.0, 130.0])
    np.testing.assert_array_equal(sequence.values[:, :70], expected_from(_SHARED_SOURCE, 4))
    np.testing.assert_array_equal(sequence.values[:, 70:], np.tile(np.float32([0.9, 120.0, 130.0]), (4, 1)))
    assert sequence.meta["layout"] == f"npy-{width}+crop"


@pytest.mark.parametrize(
    ("width", "phrase"),
    [
        (
            COEFFS,
            "Deep3DFaceRecon coefficients, 257 numbers = identity 80 + expression 64 + texture 80 + "
            "angles 3 + lighting 27 + translation 3, no crop (s, t0, t1); pass --source-motion",
        ),
        (
            TF_WIDTH,
            "Deep3DFaceReconstruction TF model output, 258 numbers = the 257 coefficients + 1 unused "
            "focal-length number, no crop (s, t0, t1); pass --source-motion",
        ),
    ],
)
def test_npy_257_and_258_without_crop_name_the_layout(tmp_path: Path, width: int, phrase: str) -> None:
    path = tmp_path / f"w{width}.npy"
    np.save(path, known_rows(3, width))
    with motion_error(re.escape(phrase), naming=path):
        load_motion(path)


def test_case_w258_is_refused_without_and_read_with_a_crop(sadtalker: dict[str, Path]) -> None:
    with motion_error(r"258 numbers = .*no crop .*--source-motion", naming=sadtalker["w258.npy"]):
        load_motion(sadtalker["w258.npy"])
    sequence = load_motion(sadtalker["w258.npy"], crop=CASE_CROP)
    assert sequence.values.shape == (SADTALKER_FRAMES, AUTHORS_WIDTH)
    np.testing.assert_array_equal(
        sequence.values[:, 70:], np.tile(np.float32(CASE_CROP), (SADTALKER_FRAMES, 1))
    )


def test_mat_tf_demo_coeff_of_258_is_read_with_transform_params_or_a_crop(tmp_path: Path) -> None:
    coeff = known_rows(2, TF_WIDTH)
    params = known_rows(2, 5) + 0.5
    with_params, alone = tmp_path / "params.mat", tmp_path / "alone.mat"
    sio.savemat(with_params, {"coeff": coeff, "transform_params": params})
    sio.savemat(alone, {"coeff": coeff, "lm_5p": np.zeros((5, 2))})
    sequence = load_motion(with_params)
    np.testing.assert_array_equal(sequence.values[:, :70], expected_from(_SHARED_SOURCE, 2))
    np.testing.assert_array_equal(sequence.values[:, 70:], params[:, TRANSFORM_CROP_COLUMNS])
    assert sequence.meta["layout"] == "deep3d-258+transform_params"
    completed = load_motion(alone, crop=CASE_CROP)
    np.testing.assert_array_equal(completed.values[:, :70], expected_from(_SHARED_SOURCE, 2))
    assert completed.meta["layout"] == "deep3d-258+crop"
    with motion_error(r"'coeff' \(2, 258\): Deep3DFaceReconstruction TF model output, .*--source-motion"):
        load_motion(alone)


def test_mat_coeff_without_transform_params_takes_the_given_crop(tmp_path: Path) -> None:
    path = tmp_path / "tf_demo.mat"
    sio.savemat(path, {"coeff": known_rows(3, COEFFS), "cropped_img": np.zeros((4, 4))})
    sequence = load_motion(path, crop=[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])  # one per frame
    np.testing.assert_array_equal(sequence.values[:, :70], expected_from(_SHARED_SOURCE, 3))
    np.testing.assert_array_equal(sequence.values[:, 70:], [[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    assert sequence.meta["layout"] == "deep3d-257+crop"


def test_mat_full_3dmm_alone_takes_the_given_crop(tmp_path: Path) -> None:
    path = tmp_path / "full.mat"
    sio.savemat(path, {"full_3dmm": known_rows(2, COEFFS)})
    with motion_error(r"'full_3dmm' \(2, 257\): Deep3DFaceRecon coefficients, .*no crop", naming=path):
        load_motion(path)
    sequence = load_motion(path, crop=CASE_CROP)
    np.testing.assert_array_equal(sequence.values[:, :70], expected_from(_SHARED_SOURCE, 2))
    assert sequence.meta["layout"] == "sadtalker-full_3dmm-257+crop"


def test_mat_coeff_3dmm_of_lmdb_rows_is_read(tmp_path: Path) -> None:
    path = tmp_path / "lmdb_dump.mat"  # the authors' LMDB key is named coeff_3dmm too
    sio.savemat(path, {"coeff_3dmm": known_rows(3, LMDB_WIDTH)})
    np.testing.assert_array_equal(load_motion(path).values, expected_from(SOURCE_COLUMNS_260, 3))


def test_mat_official_test_fields_take_the_given_crop(tmp_path: Path) -> None:
    path = tmp_path / "official.mat"
    widths = {"id": 80, "exp": 64, "tex": 80, "angle": 3, "gamma": 27, "trans": 3}
    fields = {
        name: np.full((1, width), float(index), np.float32)
        for index, (name, width) in enumerate(widths.items())
    }
    sio.savemat(path, fields)
    sequence = load_motion(path, crop=CASE_CROP)
    np.testing.assert_array_equal(sequence.values[0, :64], np.full(64, 1.0))  # exp
    np.testing.assert_array_equal(sequence.values[0, 64:67], np.full(3, 3.0))  # angle
    np.testing.assert_array_equal(sequence.values[0, 67:70], np.full(3, 5.0))  # trans
    np.testing.assert_array_equal(sequence.values[0, 70:], np.float32(CASE_CROP))
    assert sequence.meta["layout"] == "deep3d-test.py-70+crop"
    sio.savemat(path, {**fields, "angle": np.zeros((2, 3))})
    with motion_error(r"'angle' has shape \(2, 3\), expected \(1, 3\)", naming=path):
        load_motion(path, crop=CASE_CROP)


@pytest.mark.parametrize(
    ("crop", "match"),
    [
        ([1.0, 2.0], r"the crop must be 3 numbers \(s, t0, t1\) or one such row per frame, got shape \(2,\)"),
        (np.zeros((2, 2, 3)), r"got shape \(2, 2, 3\)"),
        (np.zeros((0, 3)), r"got shape \(0, 3\)"),
        ([1.0, float("nan"), 3.0], r"the crop \(s, t0, t1\) holds a non-finite value"),
        (["a", "b", "c"], r"the crop must be 3 numbers \(s, t0, t1\), got"),
        (np.ones((4, 3)), r"the crop has 4 rows but the motion has 30 frames"),
    ],
)
def test_bad_crops_are_refused(sadtalker: dict[str, Path], crop: object, match: str) -> None:
    with motion_error(match, naming=sadtalker["gen.mat"]):
        load_motion(sadtalker["gen.mat"], crop=crop)  # type: ignore[arg-type]


def test_files_with_their_own_crop_ignore_the_given_one(tmp_path: Path, sadtalker: dict[str, Path]) -> None:
    lmdb_rows, text_row = tmp_path / "rows.npy", tmp_path / "one.txt"
    np.save(lmdb_rows, known_rows(2, LMDB_WIDTH))
    np.savetxt(text_row, known_rows(1, TEXT_WIDTH).reshape(-1))
    archive = save_motion(tmp_path / "own.npz", random_sequence())
    for path in (sadtalker["gen73.mat"], sadtalker["w73.npy"], lmdb_rows, text_row, archive):
        plain, given = load_motion(path), load_motion(path, crop=[-1.0, -2.0, -3.0])
        np.testing.assert_array_equal(given.values, plain.values)
        assert given.meta == plain.meta and "+crop" not in str(given.meta.get("layout"))


def test_motion_crop_needs_the_authors_space() -> None:
    from pirender.engine.motion.space import OPEN_SPACE, MotionFrame

    with motion_error(r"space 'pirender-open-v1' has no crop \(s, t0, t1\)"):
        motion_crop(MotionFrame(OPEN_SPACE, np.zeros(OPEN_SPACE.width, np.float32)))


@pytest.mark.parametrize("width", [POSE_WIDTH, AUTHORS_WIDTH])
def test_txt_sadtalker_text_copy_is_refused_with_the_mat_to_use(tmp_path: Path, width: int) -> None:
    rows = np.random.default_rng(0).normal(0, 1e-4, (3, width)).astype(np.float32)
    path = tmp_path / "portrait##speech.txt"
    # SadTalker's generate_facerender_batch: str(x)[:7] + two spaces + tab per number, one line per frame
    path.write_text("".join("".join(str(v)[:7] + "  \t" for v in row) + "\n" for row in rows))
    with motion_error(
        rf"3 line\(s\) of {width} numbers, like SadTalker's text copy .*7 characters .*use the \.mat file",
        naming=path,
    ):
        load_motion(path)


# ---------------------------------------------------------------------------------------------------
# The case through the command line (case 10's recipe, on a random portrait and a tiny checkpoint)


@pytest.fixture
def cli_case(tmp_path: Path) -> dict[str, Path]:
    """Case 10's files with its value ranges (random, SadTalker's shapes), a tiny checkpoint, a portrait."""
    from pirender.engine.image import save_png
    from pirender.engine.renderer.checkpoint import random_generator, save_checkpoint
    from pirender.engine.renderer.pirender.config import TINY_CONFIG

    rng = np.random.default_rng(0)
    gen = rng.normal(0, 0.1, (SADTALKER_FRAMES, POSE_WIDTH)).astype(np.float32)
    first73 = np.concatenate([rng.normal(0, 0.1, (1, POSE_WIDTH)), [CASE_CROP]], axis=1).astype(np.float32)
    paths = sadtalker_files(tmp_path, gen, first73, rng.normal(0, 0.1, (1, COEFFS)).astype(np.float32))
    paths["tiny.pt"] = save_checkpoint(
        tmp_path / "tiny.pt", random_generator(TINY_CONFIG, seed=2), image_size_px=64
    )
    paths["p.png"] = tmp_path / "p.png"
    save_png(paths["p.png"], rng.integers(0, 256, (80, 80, 3), dtype=np.uint8))
    return paths


def render_case(files: dict[str, Path], out: str, *motion: str) -> int:
    from pirender.training.cli import main

    args = ["render", "--source", str(files["p.png"]), "--checkpoint", str(files["tiny.pt"])]
    for item in motion:
        args.append(str(files[item]) if item in files else item)
    return main([*args, "--out", str(files["tiny.pt"].parent / out), "--max-frames", "5"])


def decoded(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def test_cli_renders_70_wide_coeff_3dmm_with_the_crop_of_source_motion(
    cli_case: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert render_case(cli_case, "gen.mp4", "--motion", "gen.mat", "--source-motion", "first.mat") == 0
    printed = capsys.readouterr().out
    assert "crop (s, t0, t1) = (0.95, 0.5, -0.3) from --source-motion" in printed
    assert "wrote 5 frames" in printed
    # the same picture as SadTalker's own 73-wide completion (gen73.mat) with the same source motion
    assert render_case(cli_case, "gen73.mp4", "--motion", "gen73.mat", "--source-motion", "first.mat") == 0
    ours, theirs = (
        decoded(cli_case["tiny.pt"].parent / "gen.mp4"),
        decoded(cli_case["tiny.pt"].parent / "gen73.mp4"),
    )
    assert len(ours) == len(theirs) == 5
    assert all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))


@pytest.mark.parametrize(
    "motion",
    [
        ("--motion", "gen73.mat"),
        ("--motion", "w70.npy", "--source-motion", "first.mat"),
        ("--motion", "w258.npy", "--source-motion", "first.mat"),
        ("--motion", "w73.npy", "--source-motion", "first.mat"),
        ("--motion", "w73.npy"),
    ],
)
def test_cli_renders_the_other_case_files(cli_case: dict[str, Path], motion: tuple[str, ...]) -> None:
    assert render_case(cli_case, "o.mp4", *motion) == 0
    assert len(decoded(cli_case["tiny.pt"].parent / "o.mp4")) == 5


@pytest.mark.parametrize(
    ("name", "phrase"),
    [
        ("gen.mat", "'coeff_3dmm' (30, 70): SadTalker coeff_3dmm, 70 numbers = expression 64 + angles 3"),
        ("w258.npy", "Deep3DFaceReconstruction TF model output, 258 numbers ="),
    ],
)
def test_cli_refuses_a_file_without_crop_saying_to_pass_source_motion(
    cli_case: dict[str, Path], capsys: pytest.CaptureFixture[str], name: str, phrase: str
) -> None:
    assert render_case(cli_case, "o.mp4", "--motion", name) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {cli_case[name]}: ") and phrase in err, err
    assert "no crop (s, t0, t1); pass --source-motion with the source portrait's 73-wide file" in err
    assert "\n" not in err and "Traceback" not in err
    assert not (cli_case["tiny.pt"].parent / "o.mp4").exists()
