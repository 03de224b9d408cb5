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
    from pirender.engine.cli.main import main

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
