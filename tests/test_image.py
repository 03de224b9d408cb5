"""Tests of engine/image.py: source-portrait loading and the image <-> tensor conventions."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pirender.engine.errors import ImageError, PirenderError
from pirender.engine.image import (
    MAX_DECODE_SIDE_PX,
    MAX_FULL_DECODE_PIXELS,
    MAX_JPEG_PIXELS,
    MIN_SOURCE_SIDE_PX,
    DecodedImage,
    SourceImage,
    image_to_tensor,
    load_source_image,
    read_image,
    save_png,
    tensor_to_images,
)

from conftest import SHARED_DATA, needs_shared_data

needs_data = needs_shared_data
DATA_DIR = SHARED_DATA

RED = (255, 0, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)


def _bicubic_short_side_then_crop(image: Image.Image, size_px: int) -> np.ndarray:
    """Independent reference: torchvision-style Resize(int, BICUBIC) + CenterCrop."""
    width_px, height_px = image.size
    short_px, long_px = min(width_px, height_px), max(width_px, height_px)
    new_long_px = int(size_px * long_px / short_px)
    new_size = (size_px, new_long_px) if width_px <= height_px else (new_long_px, size_px)
    resized = image.resize(new_size, Image.Resampling.BICUBIC)
    left_px = round((resized.width - size_px) / 2.0)
    top_px = round((resized.height - size_px) / 2.0)
    return np.asarray(resized.crop((left_px, top_px, left_px + size_px, top_px + size_px)))


def _load_quietly(source: object, **kwargs: int) -> SourceImage:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return load_source_image(source, **kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------
# real portraits


@needs_data
def test_real_grayscale_portrait_is_resized_by_short_side_and_centre_cropped() -> None:
    path = DATA_DIR / "portraits" / "s12.jpg"
    source = load_source_image(path)
    assert source.rgb.shape == (256, 256, 3)
    assert source.rgb.dtype == np.uint8
    assert source.rgb.flags["C_CONTIGUOUS"]
    assert source.path == str(path)
    assert source.original_size_px == (375, 500)
    with Image.open(path) as original:
        expected = _bicubic_short_side_then_crop(original.convert("RGB"), 256)
    np.testing.assert_array_equal(source.rgb, expected)
    # a (slightly tinted) black-and-white photograph: real content, channels almost perfectly correlated
    channels = source.rgb.reshape(-1, 3).astype(np.float64).T
    assert channels.std(axis=1).min() > 20
    assert np.corrcoef(channels).min() > 0.95


@needs_data
def test_vox_demo_images_already_at_model_size_are_unchanged() -> None:
    paths = sorted((DATA_DIR / "vox_demo").glob("*.jpg"))
    if not paths:
        pytest.skip(f"no vox_demo images in {DATA_DIR / 'vox_demo'}")
    for path in paths:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # 256x256 must not warn
            source = load_source_image(path)
        with Image.open(path) as original:
            np.testing.assert_array_equal(source.rgb, np.asarray(original.convert("RGB")))
        assert source.original_size_px == (256, 256)


# ------------------------------------------------------------------------------------------------
# geometry


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_exif_orientation_6_rotates_the_picture(tmp_path: Path, suffix: str) -> None:
    # stored 120 wide x 80 high: top half red, bottom half blue; Orientation 6 = rotate 90 deg clockwise
    stored = np.zeros((80, 120, 3), np.uint8)
    stored[:40] = RED
    stored[40:] = BLUE
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / f"rotated{suffix}"
    Image.fromarray(stored).save(path, exif=exif)

    source = _load_quietly(path)
    assert source.original_size_px == (80, 120)  # transposed: now tall
    rgb = source.rgb.astype(np.int16)
    # the stored top (red) is displayed on the right, the bottom (blue) on the left
    assert np.abs(rgb[:, -20:] - RED).max() <= 8
    assert np.abs(rgb[:, :20] - BLUE).max() <= 8


def test_wide_image_keeps_the_centre(tmp_path: Path) -> None:
    wide = np.zeros((256, 512, 3), np.uint8)
    wide[:, :128] = RED
    wide[:, 128:384] = (0, 255, 0)
    wide[:, 384:] = BLUE
    Image.fromarray(wide).save(tmp_path / "wide.png")
    source = load_source_image(tmp_path / "wide.png")
    assert source.original_size_px == (512, 256)
    np.testing.assert_array_equal(source.rgb, wide[:, 128:384])


def test_tall_image_is_resized_then_centre_cropped(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    tall = rng.integers(0, 256, size=(600, 300, 3), dtype=np.uint8)
    source = load_source_image(tall)
    assert source.path is None
    assert source.original_size_px == (300, 600)
    np.testing.assert_array_equal(source.rgb, _bicubic_short_side_then_crop(Image.fromarray(tall), 256))


def test_other_model_size() -> None:
    rgb = np.full((300, 200, 3), 77, np.uint8)
    source = load_source_image(rgb, size_px=128)
    assert source.rgb.shape == (128, 128, 3)
    assert source.size_px == 128
    assert (source.rgb == 77).all()


# ------------------------------------------------------------------------------------------------
# colour modes


def test_rgba_is_composited_over_white(tmp_path: Path) -> None:
    rgba = np.zeros((256, 256, 4), np.uint8)
    rgba[:, :128] = (255, 0, 0, 255)  # opaque red
    rgba[:, 128:192] = (0, 0, 0, 0)  # fully transparent black
    rgba[:, 192:] = (0, 0, 0, 128)  # half-transparent black
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    for source in (load_source_image(tmp_path / "rgba.png"), load_source_image(rgba)):
        np.testing.assert_array_equal(source.rgb[:, :128], np.broadcast_to(RED, (256, 128, 3)))
        np.testing.assert_array_equal(source.rgb[:, 128:192], np.broadcast_to(WHITE, (256, 64, 3)))
        assert np.abs(source.rgb[:, 192:].astype(int) - 127).max() <= 1


def test_la_is_composited_over_white(tmp_path: Path) -> None:
    levels = np.zeros((256, 256), np.uint8)
    alpha = np.zeros((256, 256), np.uint8)
    alpha[128:] = 255
    Image.fromarray(np.dstack([levels, alpha]), mode="LA").save(tmp_path / "la.png")
    source = load_source_image(tmp_path / "la.png")
    assert (source.rgb[:128] == 255).all()  # transparent -> white
    assert (source.rgb[128:] == 0).all()  # opaque black


def test_palette_with_transparency(tmp_path: Path) -> None:
    palette_image = Image.new("P", (256, 256), 0)
    palette_image.putpalette([0, 0, 0, 255, 0, 0] + [0] * (254 * 3))
    palette_image.paste(1, (0, 0, 128, 256))
    palette_image.save(tmp_path / "p.png", transparency=0)
    with Image.open(tmp_path / "p.png") as check:
        assert check.mode == "P"
    source = load_source_image(tmp_path / "p.png")
    np.testing.assert_array_equal(source.rgb[:, :128], np.broadcast_to(RED, (256, 128, 3)))
    np.testing.assert_array_equal(source.rgb[:, 128:], np.broadcast_to(WHITE, (256, 128, 3)))


def test_cmyk_jpeg(tmp_path: Path) -> None:
    Image.new("CMYK", (256, 256), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=95)
    with Image.open(tmp_path / "cmyk.jpg") as check:
        assert check.mode == "CMYK"
    source = load_source_image(tmp_path / "cmyk.jpg")
    assert np.abs(source.rgb.astype(int) - RED).max() <= 4


def test_16_bit_grey_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    levels = np.zeros((256, 256), np.uint16)
    levels[:, :64] = 65535
    levels[:, 64:128] = 257 * 100
    levels[:, 128:192] = 128  # would become 128 if clipped; scaled it is 0
    levels[:, 192:] = 0
    Image.fromarray(levels).save(tmp_path / "grey16.png")
    with Image.open(tmp_path / "grey16.png") as check:
        assert check.mode.startswith("I;16")
    source = load_source_image(tmp_path / "grey16.png")
    assert (source.rgb[:, :64] == 255).all()
    assert (source.rgb[:, 64:128] == 100).all()
    assert (source.rgb[:, 128:] == 0).all()


def test_float_grey_in_unit_range() -> None:
    image = Image.fromarray(np.full((256, 256), 0.5, np.float32), mode="F")
    assert (load_source_image(image).rgb == 128).all()


def test_webp(tmp_path: Path) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, size=(256, 256, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "x.webp", lossless=True)
    np.testing.assert_array_equal(load_source_image(tmp_path / "x.webp").rgb, rgb)


def test_animated_gif_uses_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (256, 256), colour) for colour in (RED, BLUE)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    np.testing.assert_array_equal(load_source_image(tmp_path / "a.gif").rgb[128, 128], RED)


def test_pil_image_input_is_not_modified() -> None:
    image = Image.new("RGBA", (300, 256), (10, 20, 30, 255))
    source = load_source_image(image)
    assert image.mode == "RGBA" and image.size == (300, 256)
    assert source.path is None and source.original_size_px == (300, 256)
    assert (source.rgb == (10, 20, 30)).all()


def test_numpy_grey_and_rgba_inputs() -> None:
    assert (load_source_image(np.full((256, 256), 9, np.uint8)).rgb == 9).all()
    assert (load_source_image(np.full((256, 256, 1), 9, np.uint8)).rgb == 9).all()
    assert (load_source_image(np.zeros((256, 256, 4), np.uint8)).rgb == 255).all()  # transparent


def test_source_image_is_frozen() -> None:
    source = load_source_image(np.zeros((256, 256, 3), np.uint8))
    with pytest.raises(AttributeError):
        source.path = "x"  # type: ignore[misc]


# ------------------------------------------------------------------------------------------------
# size limits and errors


def test_tiny_image_is_refused_with_its_size() -> None:
    with pytest.raises(ImageError, match=r"300x50 px.*at least 64 px"):
        load_source_image(np.zeros((50, 300, 3), np.uint8))
    assert MIN_SOURCE_SIDE_PX == 64


def test_image_between_minimum_and_model_size_warns(tmp_path: Path) -> None:
    Image.new("RGB", (100, 120), RED).save(tmp_path / "small.png")
    with pytest.warns(UserWarning, match=r"small\.png.*100x120 px.*upscaled"):
        source = load_source_image(tmp_path / "small.png")
    assert source.rgb.shape == (256, 256, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_source_image(np.zeros((64, 64, 3), np.uint8), size_px=64)  # exactly the minimum: no warning
        load_source_image(np.zeros((240, 300, 3), np.uint8))  # 7 % larger for 256 px: no one sees it


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"just some text, not a picture\n", "not an image"),
        (b"\xff\xd8\xff\xe0" + os.urandom(64), "not an image|truncated or corrupt"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "not an image|truncated or corrupt"),
    ],
    ids=["empty", "text", "broken-jpeg-header", "broken-png"],
)
def test_bad_files_give_one_line_image_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "face.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=message) as info:
        load_source_image(path)
    text = str(info.value)
    assert str(path) in text and "\n" not in text


@needs_data
def test_truncated_jpeg(tmp_path: Path) -> None:
    data = (DATA_DIR / "portraits" / "s12.jpg").read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageError, match="truncated or corrupt"):
        load_source_image(path)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="file not found"):
        load_source_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="folder"):
        load_source_image(tmp_path)


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((256, 256, 3), np.float32),
        np.zeros((256, 256, 2), np.uint8),
        np.zeros((2, 256, 256, 3), np.uint8),
    ],
    ids=["float32", "two-channels", "4d"],
)
def test_bad_arrays(array: np.ndarray) -> None:
    with pytest.raises(ImageError, match="numpy array"):
        load_source_image(array)


def test_bad_argument_types() -> None:
    with pytest.raises(ImageError):
        load_source_image(42)  # type: ignore[arg-type]
    with pytest.raises(ImageError, match="size_px"):
        load_source_image(np.zeros((256, 256, 3), np.uint8), size_px=0)
    assert issubclass(ImageError, PirenderError)


# ------------------------------------------------------------------------------------------------
# tensors


def _all_levels() -> np.ndarray:
    return np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)  # (1, 256, 3)


def test_image_to_tensor_values_and_shape() -> None:
    rgb = _all_levels()
    tensor = image_to_tensor(rgb)
    assert tensor.shape == (1, 3, 1, 256) and tensor.dtype == torch.float32
    levels = np.arange(256, dtype=np.float32)
    expected = torch.from_numpy((levels / np.float32(255) - np.float32(0.5)) / np.float32(0.5))  # IEEE
    assert torch.equal(expected, (torch.arange(256, dtype=torch.float32) / 255.0 - 0.5) / 0.5)  # torch CPU
    for channel in range(3):
        assert torch.equal(tensor[0, channel, 0], expected)
    assert tensor[0, 0, 0, 0].item() == -1.0 and tensor[0, 0, 0, 255].item() == 1.0
    half = image_to_tensor(rgb, dtype=torch.float16)
    assert half.dtype == torch.float16 and torch.equal(half, tensor.half())


def test_image_to_tensor_channel_order() -> None:
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0] = 255
    tensor = image_to_tensor(rgb)
    assert (tensor[0, 0] == 1).all() and (tensor[0, 1] == -1).all() and (tensor[0, 2] == -1).all()


def test_round_trip_is_exact_except_levels_1_to_63_lose_one() -> None:
    # The authors' truncating conversion gives x - 1 for 1..63 (float32 rounding lands just below
    # the integer); 0 and 64..255 come back exactly. This pins that behaviour down.
    rgb = _all_levels()
    back = tensor_to_images(image_to_tensor(rgb))
    assert back.shape == (1, 1, 256, 3) and back.dtype == np.uint8
    levels = np.arange(256)
    expected = np.where((levels >= 1) & (levels <= 63), levels - 1, levels).astype(np.uint8)
    for channel in range(3):
        np.testing.assert_array_equal(back[0, 0, :, channel], expected)


def test_tensor_to_images_clamps_truncates_and_handles_nan() -> None:
    values = torch.tensor([-2.0, -1.0, 0.0, 0.999, 1.0, 2.0, float("nan")])
    frames = values.view(1, 1, 1, 7).expand(2, 3, 1, 7).contiguous()
    images = tensor_to_images(frames)
    assert images.shape == (2, 1, 7, 3)
    np.testing.assert_array_equal(images[1, 0, :, 2], [0, 0, 127, 254, 255, 255, 127])


def test_tensor_to_images_layout_and_half_precision() -> None:
    frames = torch.rand(2, 3, 5, 7) * 2 - 1
    reference = tensor_to_images(frames)
    expected = ((frames.clamp(-1, 1) + 1) / 2 * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(reference, expected)
    for dtype in (torch.float16, torch.bfloat16):
        low = frames.to(dtype)
        np.testing.assert_array_equal(tensor_to_images(low), tensor_to_images(low.float()))
    assert tensor_to_images(frames[0]).shape == (1, 5, 7, 3)  # (3, H, W) is a batch of one


def test_tensor_conversion_errors() -> None:
    with pytest.raises(ImageError):
        image_to_tensor(np.zeros((4, 4), np.uint8))
    with pytest.raises(ImageError):
        image_to_tensor(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ImageError):
        tensor_to_images(torch.zeros(1, 4, 2, 2))
    with pytest.raises(ImageError):
        tensor_to_images(torch.zeros(1, 3, 2, 2, dtype=torch.uint8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_tensors_match_cpu() -> None:
    # CUDA divides by a scalar via its reciprocal; the table lookup keeps the CPU values bit for bit
    rgb = np.random.default_rng(3).integers(0, 256, size=(64, 48, 3), dtype=np.uint8)
    rgb[0, :, 0] = np.arange(48)
    on_gpu = image_to_tensor(rgb, device="cuda")
    assert on_gpu.is_cuda and on_gpu.shape == (1, 3, 64, 48)
    assert torch.equal(on_gpu.cpu(), image_to_tensor(rgb))
    frames = torch.cat([on_gpu, torch.rand(2, 3, 64, 48, device="cuda") * 2.4 - 1.2])
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        low = frames.to(dtype)
        np.testing.assert_array_equal(tensor_to_images(low), tensor_to_images(low.cpu()))


# ------------------------------------------------------------------------------------------------
# save_png


def test_save_png_round_trip_and_no_leftovers(tmp_path: Path) -> None:
    rgb = np.random.default_rng(2).integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    path = tmp_path / "out.png"
    save_png(path, np.zeros_like(rgb))
    save_png(path, rgb)  # replaces the existing file
    with Image.open(path) as written:
        assert written.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(written), rgb)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_save_png_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="does not exist"):
        save_png(tmp_path / "missing" / "out.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ImageError, match="uint8"):
        save_png(tmp_path / "out.png", np.zeros((4, 4, 3), np.float32))
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------------
# the one loader (read_image): the size rule, large photos, bytes, formats


def _gradient(width_px: int, height_px: int, mode: str = "RGB") -> Image.Image:
    """A smooth picture (fast to make and encode, survives a reduced decode) with a white mark at the
    top left: grey from black (top) to white (bottom); RGB adds a left-to-right gradient as green."""
    vertical = Image.linear_gradient("L").resize((width_px, height_px), Image.Resampling.BILINEAR)
    vertical.paste(255, (0, 0, width_px // 8, height_px // 8))
    if mode == "L":
        return vertical
    horizontal = Image.linear_gradient("L").transpose(Image.Transpose.TRANSPOSE)
    return Image.merge("RGB", (vertical, horizontal.resize((width_px, height_px)), vertical))


def test_pictures_up_to_the_size_rule_are_decoded_as_they_are(tmp_path: Path) -> None:
    path = tmp_path / "edge.png"
    _gradient(MAX_DECODE_SIDE_PX, 300).save(path)
    decoded = read_image(path)
    with Image.open(path) as original:
        np.testing.assert_array_equal(decoded.rgb, np.asarray(original.convert("RGB")))
    assert decoded.original_size_px == (MAX_DECODE_SIDE_PX, 300) and decoded.path == str(path)


def test_larger_pictures_are_scaled_to_the_size_rule(tmp_path: Path) -> None:
    path = tmp_path / "long.png"
    _gradient(6000, 400).save(path)
    decoded = read_image(path)
    assert decoded.rgb.shape == (273, MAX_DECODE_SIDE_PX, 3) and decoded.original_size_px == (6000, 400)
    with Image.open(path) as original:
        reference = np.asarray(original.resize((MAX_DECODE_SIDE_PX, 273), Image.Resampling.BICUBIC))
    assert np.abs(decoded.rgb.astype(int) - reference).mean() < 1.0


def test_a_108_megapixel_jpeg_is_decoded_reduced_without_a_warning(tmp_path: Path) -> None:
    """12000 x 9000 (case 12's big108): decoded at 1/2 DCT scale, then scaled to 4096 x 3072; Pillow's
    decompression-bomb warning (it starts at 89 megapixels) is not printed."""
    path = tmp_path / "big108.jpg"
    _gradient(12000, 9000, "L").save(path, quality=80)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decoded = read_image(path)
        source = load_source_image(path)
    assert decoded.rgb.shape == (3072, 4096, 3) and decoded.original_size_px == (12000, 9000)
    assert source.original_size_px == (12000, 9000)
    # the same picture as a full-size decode would give, scaled the same way
    reference = np.asarray(_gradient(4096, 3072, "L"))
    assert np.abs(decoded.rgb[..., 0].astype(int) - reference).mean() < 2.0


def test_a_reduced_decode_keeps_the_exif_rotation(tmp_path: Path) -> None:
    path = tmp_path / "sideways.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise
    _gradient(8400, 4200).save(path, quality=80, exif=exif.tobytes())
    decoded = read_image(path)
    assert decoded.original_size_px == (4200, 8400)  # upright
    assert decoded.rgb.shape == (MAX_DECODE_SIDE_PX, 2048, 3)
    assert decoded.rgb[:100, -100:, 0].min() > 240  # the bright mark (stored top left) is now top right


def _png_header(width_px: int, height_px: int) -> bytes:
    """A PNG claiming a size: signature, IHDR, and a few bytes of (unusable) pixel data."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width_px, height_px, 8, 2, 0, 0, 0)
    pixels = zlib.compress(bytes(64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def _jpeg_claiming(width_px: int, height_px: int) -> bytes:
    """A small real JPEG whose frame header (SOF0) claims another size."""
    import io
    import struct

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), RED).save(buffer, format="JPEG")
    data = bytearray(buffer.getvalue())
    at = data.index(b"\xff\xc0")
    data[at + 5 : at + 9] = struct.pack(">HH", height_px, width_px)
    return bytes(data)


def test_absurd_sizes_are_refused_clearly(tmp_path: Path) -> None:
    message = r"huge\.png: more than the 179 megapixels a picture in this format may have \(JPEG"
    with pytest.raises(ImageError, match=message):
        read_image(_write(tmp_path / "huge.png", _png_header(20000, 10000)))
    assert MAX_FULL_DECODE_PIXELS < 20000 * 10000
    message = r"huge\.jpg: 40000x40000 px \(1600 megapixels\) is more than the 1074 megapixels a JPEG"
    with pytest.raises(ImageError, match=message):
        read_image(_write(tmp_path / "huge.jpg", _jpeg_claiming(40000, 40000)))
    assert MAX_JPEG_PIXELS < 40000 * 40000
    # between Pillow's warning (89 MP) and its refusal: no warning; this header has no pixels behind it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageError, match="truncated or corrupt"):
            read_image(_write(tmp_path / "big.png", _png_header(12000, 9000)))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_bytes_decode_like_the_file_and_formats_can_be_limited(tmp_path: Path) -> None:
    path = tmp_path / "face.webp"
    _gradient(400, 300).save(path, lossless=True)
    raw = path.read_bytes()
    from_bytes = read_image(raw, label="uploaded image")
    np.testing.assert_array_equal(from_bytes.rgb, read_image(path).rgb)
    assert from_bytes.path is None and from_bytes.label == "uploaded image"
    assert read_image(from_bytes) is from_bytes  # a decoded picture passes through
    np.testing.assert_array_equal(load_source_image(from_bytes).rgb, load_source_image(path).rgb)
    assert isinstance(from_bytes, DecodedImage)
    message = r"uploaded image: WebP pictures are not accepted here \(accepted: PNG, JPEG\)"
    with pytest.raises(ImageError, match=message):
        read_image(raw, label="uploaded image", formats=("PNG", "JPEG"))
    with pytest.raises(ImageError, match=r"image \(0 bytes\): is empty"):
        read_image(b"")
    with pytest.raises(ImageError, match="must be a path, encoded bytes"):
        read_image(3.5)  # type: ignore[arg-type]
