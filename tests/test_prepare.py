"""``pirender prepare``: renderer training data from real clips, resumable, split by identity; and
``PairDataset`` (the paper's sampling, windows by the one window rule, causal windows)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import av
import lmdb
import numpy as np
import pytest
import torch
from PIL import Image

from pirender.engine.errors import PirenderError
from pirender.engine.motion.space import OPEN_SPACE
from pirender.engine.motion.window import build_windows
from pirender.training import prepare as prep
from pirender.training.dataset import AUTHORS_COLUMNS, PairDataset

from conftest import shared_data

FRAMES = 40


def _manifest(tmp: Path, rows: list[tuple[Path, str]]) -> Path:
    path = tmp / "MANIFEST.tsv"
    lines = ["file\tidentity\tnote"] + [f"{file}\t{identity}\tx" for file, identity in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _keys(dataset: Path, size: int = 256) -> list[str]:
    with lmdb.open(str(dataset / str(size)), readonly=True, lock=False) as env, env.begin() as txn:
        return [bytes(k).decode() for k in txn.cursor().iternext(keys=True, values=False)]


def _read(dataset: Path, key: str) -> bytes | None:
    with lmdb.open(str(dataset / "256"), readonly=True, lock=False) as env, env.begin() as txn:
        value = txn.get(key.encode())
        return None if value is None else bytes(value)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, prep.PrepareReport]:
    """d18 and d19 as one identity (through a manifest), d20 as another, held out: 40 frames each."""
    tmp = tmp_path_factory.mktemp("prepare")
    manifest = _manifest(
        tmp,
        [
            (shared_data("driving", "d18.mp4"), "A"),
            (shared_data("driving", "d19.mp4"), "A"),
            (shared_data("driving", "d20.mp4"), "B"),
        ],
    )
    out = tmp / "dataset"
    config = prep.PrepareConfig(holdout=("B",), max_frames=FRAMES)
    report = prep.prepare_dataset(manifest, out, config, progress=False)
    return out, report


def test_prepare_stores_256px_jpeg_frames_and_one_motion_row_per_frame(
    prepared: tuple[Path, prep.PrepareReport],
) -> None:
    out, report = prepared
    assert sorted(report.prepared) == ["d18", "d19", "d20"] and not report.skipped
    meta = json.loads((out / "meta.json").read_text())
    assert meta["width"] == OPEN_SPACE.width == 17 and meta["space"]["name"] == OPEN_SPACE.name
    assert meta["size"] == 256 and meta["tool"].startswith("pirender-live")
    keys = set(_keys(out))
    assert _read(out, "length") == b"3"
    for name in ("d18", "d19", "d20"):
        clip = meta["clips"][name]
        frames = int(_read(out, f"{name}-length") or b"0")
        assert frames == clip["frames"] and 30 <= frames <= FRAMES  # the face is in (nearly) every frame
        assert clip["fps"] in (25.0, 30.0)
        motion = np.frombuffer(_read(out, f"{name}-open_motion") or b"", dtype="<f4").reshape(-1, 17)
        assert motion.shape == (frames, 17) and np.isfinite(motion).all()
        assert motion[:, OPEN_SPACE.index("jaw_open")].std() > 0  # real, moving motion
        frame_keys = sorted(k for k in keys if k.startswith(f"{name}-") and k[len(name) + 1 :].isdigit())
        assert frame_keys == [f"{name}-{i:07d}" for i in range(frames)]
        for index in (0, frames - 1):
            jpeg = _read(out, f"{name}-{index:07d}") or b""
            assert jpeg[:2] == b"\xff\xd8"
            with Image.open(io.BytesIO(jpeg)) as picture:
                assert picture.format == "JPEG" and picture.size == (256, 256)
        shots = np.frombuffer(_read(out, f"{name}-shot") or b"", dtype="<i4")
        assert shots.shape == (frames,)
    audio = meta["clips"]["d20"]["audio"]  # d20 has a sound track: cut to the 40 frames
    assert audio == "audio/d20.wav"
    with av.open(str(out / audio)) as container:
        stream = container.streams.audio[0]
        assert stream.rate == 16000 and stream.channels == 1
        samples = sum(frame.samples for frame in container.decode(stream))
    assert abs(samples / 16000 - FRAMES / 25.0) < 0.05


def test_the_crop_box_is_fixed_per_shot_around_the_face(prepared: tuple[Path, prep.PrepareReport]) -> None:
    """One box for the one shot of d18, a square inside the 480x480 frame, the face moving in it."""
    out, _ = prepared
    info = json.loads(_read(out, "d18-info") or b"{}")
    assert len(info["boxes"]) == 1
    left, top, side = info["boxes"][0]
    assert left >= 0 and top >= 0 and left + side <= 480 and top + side <= 480 and side >= 150
    first = np.asarray(Image.open(io.BytesIO(_read(out, "d18-0000000") or b"")), dtype=np.float32)
    later = np.asarray(Image.open(io.BytesIO(_read(out, "d18-0000035") or b"")), dtype=np.float32)
    assert np.abs(first - later).mean() > 1.0  # not one frame repeated


def test_split_is_by_identity_never_by_clip(prepared: tuple[Path, prep.PrepareReport]) -> None:
    out, _ = prepared
    train = (out / "train_list.txt").read_text().split()
    test = (out / "test_list.txt").read_text().split()
    assert train == ["d18", "d19"] and test == ["d20"]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["identities"] == {"train": ["A"], "test": ["B"]}
    assert {meta["clips"][n]["split"] for n in train} == {"train"}
    # the seeded fraction split: deterministic, an identity on one side only, never all held out
    ids = [f"p{i}" for i in range(10)] * 3
    config = prep.PrepareConfig(holdout_fraction=0.2, seed=3)
    train_ids, test_ids = prep.split_identities(ids, config)
    assert (train_ids, test_ids) == prep.split_identities(ids, config)
    assert len(test_ids) == 2 and not set(train_ids) & set(test_ids) and len(train_ids) == 8
    assert prep.split_identities(ids, prep.PrepareConfig(seed=4)) != (train_ids, test_ids)
    assert len(prep.split_identities(["a", "b"], config)[1]) == 1
    with pytest.raises(PirenderError, match="--holdout Z"):
        prep.split_identities(ids, prep.PrepareConfig(holdout=("Z",)))
    assert prep.identity_from_name("id10001#abc#001") == "id10001"
    assert prep.identity_from_name("LivePortrait__s18") == "LivePortrait"


def test_rerun_resumes_without_redoing_and_refuses_other_settings(
    prepared: tuple[Path, prep.PrepareReport], monkeypatch: pytest.MonkeyPatch
) -> None:
    out, _ = prepared
    manifest = out.parent / "MANIFEST.tsv"
    calls: list[str] = []
    real = prep._prepare_clip

    def counting(clip: prep.ClipInput, *args: object, **kwargs: object) -> int:
        calls.append(clip.name)
        return real(clip, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(prep, "_prepare_clip", counting)
    before = (out / "256" / "data.mdb").stat().st_mtime_ns
    report = prep.prepare_dataset(
        manifest, out, prep.PrepareConfig(holdout=("B",), max_frames=FRAMES), progress=False
    )
    assert calls == [] and sorted(report.kept) == ["d18", "d19", "d20"] and not report.prepared
    assert (out / "256" / "data.mdb").stat().st_mtime_ns == before
    with pytest.raises(PirenderError, match=r"other settings.*size 256 -> 128"):
        prep.prepare_dataset(
            manifest, out, prep.PrepareConfig(size_px=128, holdout=("B",), max_frames=FRAMES), progress=False
        )


def test_a_crash_half_way_leaves_a_valid_index_and_a_rerun_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = _manifest(
        tmp_path, [(shared_data("driving", "d18.mp4"), "A"), (shared_data("driving", "d20.mp4"), "B")]
    )
    out = tmp_path / "dataset"
    config = prep.PrepareConfig(holdout=("B",), max_frames=30)
    real = prep.encode_frame
    encoded = []

    def crashing(*args: object, **kwargs: object) -> bytes:
        encoded.append(1)
        if len(encoded) > 40:  # the first clip has at most 30 frames
            raise RuntimeError("simulated crash in the second clip")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(prep, "FRAMES_PER_COMMIT", 8)  # the second clip has frames committed when it dies
    monkeypatch.setattr(prep, "encode_frame", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        prep.prepare_dataset(manifest, out, config, progress=False)
    meta = json.loads((out / "meta.json").read_text())
    assert list(meta["clips"]) == ["d18"]  # the index names the complete clip only
    assert (out / "train_list.txt").read_text() == "d18\n" and (out / "test_list.txt").read_text() == ""
    keys = _keys(out)
    assert "d20-length" not in keys and any(k.startswith("d20-00000") for k in keys)  # half written
    assert not list(out.glob(".*.tmp"))
    monkeypatch.setattr(prep, "encode_frame", real)
    report = prep.prepare_dataset(manifest, out, config, progress=False)
    assert report.kept == ["d18"] and report.prepared == ["d20"]
    meta = json.loads((out / "meta.json").read_text())
    frames = meta["clips"]["d20"]["frames"]
    d20_frames = [k for k in _keys(out) if k.startswith("d20-") and k[4:].isdigit()]
    assert len(d20_frames) == frames == int(_read(out, "d20-length") or b"0")
    assert (out / "test_list.txt").read_text() == "d20\n"
    assert _read(out, "length") == b"2"


def _still_video(path: Path, picture: Path, frames: int = 12) -> Path:
    with Image.open(picture) as image:
        rgb = np.asarray(image.convert("RGB").resize((320, 320)))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 320, "yuv420p"
        for _ in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def test_a_clip_without_a_face_and_a_corrupt_clip_are_skipped_and_listed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    _still_video(videos / "dog__1.mp4", shared_data("portraits", "s33.jpg"))
    (videos / "broken__1.mp4").write_bytes(np.random.default_rng(0).bytes(20_000))
    out = tmp_path / "dataset"
    report = prep.prepare_dataset(videos, out, prep.PrepareConfig(holdout_fraction=0.0), progress=False)
    assert report.prepared == [] and sorted(report.skipped) == ["broken__1", "dog__1"]
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("skipped")]
    assert len(lines) == 2
    assert any("dog__1" in line and "no human face" in line for line in lines)
    assert any("broken__1" in line and "not a video file FFmpeg can read" in line for line in lines)
    meta = json.loads((out / "meta.json").read_text())
    assert sorted(meta["skipped"]) == ["broken__1", "dog__1"] and meta["clips"] == {}
    # an existing dataset of other settings needs --overwrite; a folder of other files too
    with pytest.raises(PirenderError, match="add --overwrite"):
        prep.prepare_dataset(videos, out, prep.PrepareConfig(holdout_fraction=0.5), progress=False)
    prep.prepare_dataset(
        videos, out, prep.PrepareConfig(holdout_fraction=0.5), overwrite=True, progress=False
    )
    with pytest.raises(PirenderError, match="not a prepared dataset"):
        prep.prepare_dataset(videos, videos, prep.PrepareConfig(), progress=False)


def test_pair_dataset_items_and_causal_windows(prepared: tuple[Path, prep.PrepareReport]) -> None:
    out, _ = prepared
    data = PairDataset(out, "train", radius=13, seed=5)
    assert len(data) == 100 * 1 and data.width == 17  # one training identity, repeated 100 times
    item = data[3]
    assert item["source"].shape == item["target"].shape == (3, 256, 256)
    assert (
        item["source"].dtype == torch.float32
        and -1.0 <= float(item["source"].min()) <= float(item["source"].max()) <= 1.0
    )
    assert item["source_window"].shape == item["target_window"].shape == (17, 27)
    assert item["target_window"].dtype == torch.float32
    again = data[3]
    assert torch.equal(item["target"], again["target"]) and int(item["clip"]) == int(again["clip"])
    clips = {int(data[i]["clip"]) for i in range(12)}
    assert clips == {0, 1}  # both clips of the identity are drawn
    values, _ = data.clip_motion(0)
    frames = values.shape[0]
    for frame in (0, 5, frames - 1):
        full = data.window(0, frame)
        assert np.array_equal(full, build_windows(values, frame, 13)[0])
    causal = PairDataset(out, "train", radius=13, causal=True)
    for frame in (0, 5, 20, frames - 1):
        window = causal.window(0, frame)
        # no future frame: every slot after the centre repeats the centre frame
        assert np.array_equal(window[:, 13:], np.repeat(values[frame][:, None], 14, axis=1))
        past = np.clip(np.arange(frame - 13, frame + 1), 0, None)
        assert np.array_equal(window[:, :14], values[past].T)
    test = PairDataset(out, "test")
    assert [c.name for c in test.clips] == ["d20"]
    loader = torch.utils.data.DataLoader(PairDataset(out, "train", radius=2), batch_size=2, num_workers=2)
    batch = next(iter(loader))
    assert batch["source"].shape == (2, 3, 256, 256) and batch["target_window"].shape == (2, 17, 5)


def test_pair_dataset_reads_the_authors_voxceleb_lmdb(tmp_path: Path) -> None:
    """The authors' layout: LMDB in "256", <video>-coeff_3dmm (N, 260), identity up to the first '#'."""
    rng = np.random.default_rng(0)
    coeffs = {}
    with lmdb.open(str(tmp_path / "256"), map_size=1 << 26) as env, env.begin(write=True) as txn:
        for name in ("id1#v#0#1", "id1#w#0#1", "id2#v#0#1"):
            coeffs[name] = rng.normal(size=(6, 260)).astype(np.float32)
            txn.put(f"{name}-coeff_3dmm".encode(), coeffs[name].tobytes())
            txn.put(f"{name}-length".encode(), b"0000006")
            for index in range(6):
                buffer = io.BytesIO()
                Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(buffer, "JPEG")
                txn.put(f"{name}-{index:07d}".encode(), buffer.getvalue())
        txn.put(b"length", b"3")
    (tmp_path / "train_list.txt").write_text("id1#v#0#1\nid1#w#0#1\n")
    (tmp_path / "test_list.txt").write_text("id2#v#0#1\n")
    data = PairDataset(tmp_path, "train", seed=1)
    assert data.width == 73 and data.identities == ["id1"] and len(data) == 100
    item = data[0]
    assert item["source"].shape == (3, 256, 256) and item["target_window"].shape == (73, 27)
    clip = int(item["clip"])
    values, _ = data.clip_motion(clip)
    expected = coeffs[data.clips[clip].name]
    assert np.array_equal(values[:, :64], expected[:, 80:144]) and np.array_equal(
        values[:, 70:], expected[:, 257:260]
    )
    assert len(AUTHORS_COLUMNS) == 73
    with pytest.raises(PirenderError, match="not a dataset"):
        PairDataset(tmp_path / "nothing")


def test_the_prepare_command_resumes_and_refuses_other_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pirender.training.cli import main

    video = shared_data("driving", "d18.mp4")
    out = tmp_path / "dataset"
    common = ["prepare", str(video), "--out", str(out), "--max-frames", "12", "--holdout-fraction", "0"]
    assert main(common) == 0
    assert "1 clips prepared (12 frames)" in capsys.readouterr().out
    assert (out / "train_list.txt").read_text() == "d18\n"
    assert main(common) == 0
    assert "0 clips prepared (0 frames), 1 already complete" in capsys.readouterr().out
    assert main([*common[:-2], "--size", "128"]) == 2
    error = capsys.readouterr().err.strip()
    assert "other settings" in error and "--overwrite" in error and len(error.splitlines()) == 1
    assert main([*common[:-2], "--size", "128", "--overwrite"]) == 0
    assert not (out / "256").exists() and (out / "128").is_dir()


def test_nothing_of_one_clip_carries_over_to_the_next(tmp_path: Path) -> None:
    """A GRID clip (360x288) after a 512x512 one: a tracker reused across clips kept MediaPipe's
    face-mesh state and stored 1 of its 25 frames; every frame has the face."""
    manifest = _manifest(
        tmp_path,
        [
            (shared_data("talking", "MimicTalk__German_20s.mp4"), "G"),
            (shared_data("talking", "LipNet__bbaf2n.mpg"), "B"),
        ],
    )
    out = tmp_path / "dataset"
    prep.prepare_dataset(
        manifest, out, prep.PrepareConfig(max_frames=25, holdout_fraction=0.0), progress=False
    )
    meta = json.loads((out / "meta.json").read_text())
    assert {name: clip["frames"] for name, clip in meta["clips"].items()} == {
        "MimicTalk__German_20s": 25,
        "LipNet__bbaf2n": 25,
    }


# --------------------------------------------------------------------------------------------------
# --deep3d: the authors' coefficients of every stored frame


def _write_deep3d_checkpoint(path: Path, *, seed: int = 0, epoch: int = 20) -> Path:
    """A random Deep3DFaceRecon network in the released layout (``net_recon`` + optimizer and
    scheduler entries); random head weights, so the coefficients follow the picture."""
    from pirender.engine.track.deep3d import Deep3DReconNet

    torch.manual_seed(seed)
    net = Deep3DReconNet()
    with torch.no_grad():
        for layer in net.final_layers:
            layer.weight.normal_(0.0, 0.05)
            layer.bias.normal_(0.0, 0.1)
    optimizer = {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0]}]}
    torch.save({"net_recon": net.state_dict(), "opt_00": optimizer, "sched_00": {"last_epoch": epoch}}, path)
    return path


@pytest.fixture(scope="module")
def deep3d_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_deep3d_checkpoint(tmp_path_factory.mktemp("deep3d") / "epoch_20.pth")


DEEP3D_FRAMES = 12


@pytest.fixture(scope="module")
def prepared_deep3d(tmp_path_factory: pytest.TempPathFactory, deep3d_checkpoint: Path) -> Path:
    """A GRID clip (360x288, identity B) and a 512x512 one (G, held out), 12 frames each, --deep3d."""
    tmp = tmp_path_factory.mktemp("prepare_deep3d")
    manifest = _manifest(
        tmp,
        [
            (shared_data("talking", "LipNet__bbaf2n.mpg"), "B"),
            (shared_data("talking", "MimicTalk__German_20s.mp4"), "G"),
        ],
    )
    out = tmp / "dataset"
    config = prep.PrepareConfig(holdout=("G",), max_frames=DEEP3D_FRAMES, deep3d=deep3d_checkpoint)
    report = prep.prepare_dataset(manifest, out, config, progress=False)
    assert sorted(report.prepared) == ["LipNet__bbaf2n", "MimicTalk__German_20s"] and not report.skipped
    return out


def _stored_rgb(out: Path, key: str) -> np.ndarray:
    with Image.open(io.BytesIO(_read(out, key) or b"")) as picture:
        return np.asarray(picture.convert("RGB"))


def test_deep3d_stores_the_authors_260_wide_rows_of_every_stored_frame(
    prepared_deep3d: Path, deep3d_checkpoint: Path
) -> None:
    from pirender.engine.track.deep3d import Deep3DRegressor

    out = prepared_deep3d
    meta = json.loads((out / "meta.json").read_text())
    assert meta["settings"]["deep3d"] is True
    authors = meta["spaces"]["authors"]
    assert (
        authors["key"] == "{video}-coeff_3dmm" and authors["width"] == 73 and authors["stored_width"] == 260
    )
    assert authors["checkpoint_sha256"] and Path(authors["checkpoint"]).name == "epoch_20.pth"
    assert meta["spaces"]["open"] == {"space": OPEN_SPACE.name, "key": "{video}-open_motion", "width": 17}
    regressor = Deep3DRegressor.from_checkpoint(deep3d_checkpoint)
    for name in ("LipNet__bbaf2n", "MimicTalk__German_20s"):
        frames = int(_read(out, f"{name}-length") or b"0")
        assert frames == meta["clips"][name]["frames"] == DEEP3D_FRAMES
        raw = _read(out, f"{name}-coeff_3dmm") or b""
        assert len(raw) == frames * 260 * 4
        rows = np.frombuffer(raw, dtype="<f4").reshape(frames, 260)
        assert np.isfinite(rows).all() and rows[:, 80:144].std(axis=0).max() > 0  # follows the picture
        info = json.loads(_read(out, f"{name}-info") or b"{}")
        assert info["deep3d"]["held_frames"] == 0 == meta["clips"][name]["deep3d_held_frames"]
        # (s, t0, t1) of the stored 256 px frame: s of order 1, the face near the crop's centre
        s, t0, t1 = rows[:, 257], rows[:, 258], rows[:, 259]
        assert (
            np.all((s > 0.3) & (s < 3.0)) and np.all(np.abs(t0 - 128) < 64) and np.all(np.abs(t1 - 128) < 64)
        )
        # the authors' way: the 257 numbers are the network's on the stored JPEG aligned by (s, t0, t1)
        for index in (0, frames - 1):
            rgb = _stored_rgb(out, f"{name}-{index:07d}")
            scale, left_t, up_t = (float(v) for v in rows[index, 257:])
            width = height = rgb.shape[0]
            resized = Image.fromarray(rgb).resize(
                (int(width * scale), int(height * scale)), Image.Resampling.BICUBIC
            )
            left = int(resized.width / 2 - 112 + (left_t - width / 2) * scale)
            top = int(resized.height / 2 - 112 + (height / 2 - up_t) * scale)
            crop = np.array(resized.crop((left, top, left + 224, top + 224)))
            expected = regressor.coefficients_of_crops(crop)[0]
            assert np.allclose(rows[index, :257], expected, rtol=1e-3, atol=1e-4)


def test_deep3d_settings_are_kept_on_a_rerun(
    prepared_deep3d: Path,
    prepared: tuple[Path, prep.PrepareReport],
    deep3d_checkpoint: Path,
    tmp_path: Path,
) -> None:
    manifest = prepared_deep3d.parent / "MANIFEST.tsv"
    config = prep.PrepareConfig(holdout=("G",), max_frames=DEEP3D_FRAMES, deep3d=deep3d_checkpoint)
    report = prep.prepare_dataset(manifest, prepared_deep3d, config, progress=False)
    assert sorted(report.kept) == ["LipNet__bbaf2n", "MimicTalk__German_20s"] and not report.prepared
    without = prep.PrepareConfig(holdout=("G",), max_frames=DEEP3D_FRAMES)
    with pytest.raises(PirenderError, match=r"was prepared with --deep3d.*give the same --deep3d"):
        prep.prepare_dataset(manifest, prepared_deep3d, without, progress=False)
    other = _write_deep3d_checkpoint(tmp_path / "epoch_21.pth", epoch=21)
    with pytest.raises(PirenderError, match="another Deep3DFaceRecon checkpoint"):
        prep.prepare_dataset(
            manifest,
            prepared_deep3d,
            prep.PrepareConfig(holdout=("G",), max_frames=DEEP3D_FRAMES, deep3d=other),
            progress=False,
        )
    plain, _ = prepared  # made without --deep3d: refused in one line, nothing added
    plain_manifest = plain.parent / "MANIFEST.tsv"
    before = (plain / "meta.json").read_bytes()
    with pytest.raises(PirenderError, match=r"prepared without --deep3d.*--overwrite") as error:
        prep.prepare_dataset(
            plain_manifest,
            plain,
            prep.PrepareConfig(holdout=("B",), max_frames=FRAMES, deep3d=deep3d_checkpoint),
            progress=False,
        )
    assert len(str(error.value).splitlines()) == 1
    assert (plain / "meta.json").read_bytes() == before


def test_pair_dataset_reads_either_space_and_names_deep3d_when_one_is_missing(
    prepared_deep3d: Path, prepared: tuple[Path, prep.PrepareReport]
) -> None:
    # read before the dataset opens the LMDB (py-lmdb opens an environment once per process)
    rows = np.frombuffer(_read(prepared_deep3d, "LipNet__bbaf2n-coeff_3dmm") or b"", dtype="<f4").reshape(
        -1, 260
    )
    open_data = PairDataset(prepared_deep3d, "train", radius=2, seed=1)
    assert open_data.width == 17 and open_data.space.name == OPEN_SPACE.name  # the default
    assert PairDataset(prepared_deep3d, "train", radius=2, space="open").width == 17
    data = PairDataset(prepared_deep3d, "train", radius=2, seed=1, space="authors")
    assert data.width == 73 and data.space.name == "pirender-3dmm-73"
    item = data[0]
    assert item["source_window"].shape == item["target_window"].shape == (73, 5)
    assert item["source"].shape == (3, 256, 256)
    values, _ = data.clip_motion(0)
    assert np.array_equal(values, rows[:, AUTHORS_COLUMNS])
    frame = int(item["target_frame"])
    assert np.array_equal(item["target_window"].numpy(), build_windows(values, frame, 2)[0])
    assert PairDataset(prepared_deep3d, "test", space="authors").clips[0].name == "MimicTalk__German_20s"
    plain, _ = prepared
    with pytest.raises(PirenderError, match="--deep3d") as error:
        PairDataset(plain, "train", space="authors")
    assert len(str(error.value).splitlines()) == 1 and "open" in str(error.value)
    with pytest.raises(PirenderError, match="space must be one of open, authors"):
        PairDataset(plain, "train", space="3dmm")


def test_the_trainer_takes_the_space_and_names_deep3d_when_missing(
    prepared: tuple[Path, prep.PrepareReport], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pirender.training.renderer_trainer import main as train_main

    plain, _ = prepared
    args = ["--data", str(plain), "--out", str(tmp_path / "run"), "--steps", "1"]
    assert train_main([*args, "--space", "authors"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "--deep3d" in error


def test_unaligned_frames_hold_the_nearest_and_a_clip_without_any_is_skipped(
    tmp_path: Path, deep3d_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pirender.engine.errors import LandmarkError

    video = shared_data("talking", "LipNet__bbaf2n.mpg")
    real = prep.align_face
    calls: list[int] = []

    def every_third_fails(image: np.ndarray, points: np.ndarray) -> object:
        calls.append(1)
        if len(calls) % 3 == 2:
            raise LandmarkError("degenerate face points")
        return real(image, points)

    monkeypatch.setattr(prep, "align_face", every_third_fails)
    config = prep.PrepareConfig(holdout_fraction=0.0, max_frames=9, deep3d=deep3d_checkpoint)
    prep.prepare_dataset(video, tmp_path / "held", config, progress=False)
    out = tmp_path / "held"
    info = json.loads(_read(out, "LipNet__bbaf2n-info") or b"{}")
    assert info["deep3d"]["held_frames"] == 3  # frames 1, 4, 7
    rows = np.frombuffer(_read(out, "LipNet__bbaf2n-coeff_3dmm") or b"", dtype="<f4").reshape(9, 260)
    for failed in (1, 4, 7):  # the nearest aligned frame; on a tie the earlier one
        assert np.array_equal(rows[failed], rows[failed - 1])
    assert not np.array_equal(rows[0], rows[2])

    def always_fails(image: np.ndarray, points: np.ndarray) -> object:
        raise LandmarkError("degenerate face points")

    monkeypatch.setattr(prep, "align_face", always_fails)
    report = prep.prepare_dataset(video, tmp_path / "none", config, progress=False)
    assert (
        list(report.skipped) == ["LipNet__bbaf2n"] and "Deep3DFaceRecon" in report.skipped["LipNet__bbaf2n"]
    )
    meta = json.loads((tmp_path / "none" / "meta.json").read_text())
    assert list(meta["skipped"]) == ["LipNet__bbaf2n"] and meta["clips"] == {}
    assert [k for k in _keys(tmp_path / "none") if k.startswith("LipNet")] == []  # nothing of it left


def test_hold_nearest_stays_inside_the_shot() -> None:
    rows = np.arange(6, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    found = np.array([True, False, False, False, True, False])
    shots = np.array([0, 0, 1, 1, 1, 2])
    filled = prep.hold_nearest(rows, found, shots)
    # frame 1: shot 0 has frame 0; frames 2, 3: shot 1 has frame 4; frame 5: shot 2 has none -> nearest (4)
    assert filled[:, 0].tolist() == [0, 0, 4, 4, 4, 4]


def test_the_prepare_command_with_deep3d_and_a_bad_checkpoint(
    tmp_path: Path, deep3d_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pirender.training.cli import main

    video = shared_data("talking", "LipNet__bbaf2n.mpg")
    out = tmp_path / "dataset"
    common = ["prepare", str(video), "--out", str(out), "--max-frames", "4", "--holdout-fraction", "0"]
    not_a_checkpoint = tmp_path / "notes.pth"
    not_a_checkpoint.write_text("not weights")
    for bad in (tmp_path / "missing.pth", not_a_checkpoint):
        assert main([*common, "--deep3d", str(bad)]) == 2
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and "--deep3d" in error and str(bad) in error
        assert not out.exists()  # refused before any work
    assert main([*common, "--deep3d", str(deep3d_checkpoint), "--device", "cpu"]) == 0
    assert "1 clips prepared (4 frames)" in capsys.readouterr().out
    assert len(_read(out, "LipNet__bbaf2n-coeff_3dmm") or b"") == 4 * 260 * 4
