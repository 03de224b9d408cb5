"""Source-portrait preparation and the image <-> tensor conventions of the PIRenderer model.

Conventions (design card ``pirender-spec.md`` section 6.1):

* A source portrait is resized with PIL bicubic so that its *shorter* side becomes the model size
  (aspect kept, longer side truncated to an int exactly as torchvision's ``Resize(int)`` does), then
  centre-cropped to a square of ``size_px`` x ``size_px`` (crop offset rounded as torchvision's
  ``CenterCrop``).
* Model input: uint8 RGB -> float in [-1, 1] as ``(x / 255 - 0.5) / 0.5`` (``ToTensor`` followed by
  ``Normalize(0.5, 0.5)``), channel-first.
* Model output to video: clamp to [-1, 1], ``(x + 1) / 2 * 255``, truncate to uint8.

Every error caused by the input is an :class:`~pirender.engine.errors.ImageError` with a one-line
message that names the file (or says that the image came from memory) and the problem.

One loader (:func:`read_image`) decodes every picture the engine takes (``--source``, ``edit``, the
server's uploads and ``serve --source``, the live and talk portraits, image sequences, the face
crop): EXIF orientation, any colour mode to RGB (transparency over white, 16-bit scaled), and one
size rule, :data:`MAX_DECODE_SIDE_PX` on the longer side. JPEG files are decoded directly at a
reduced scale (libjpeg's DCT scaling by 1/2, 1/4 or 1/8, Pillow's ``draft``), so a 200-megapixel
phone photo never exists in memory at full size; other formats are decoded in full first.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, JpegImagePlugin, UnidentifiedImageError

from .errors import ImageError, describe_value, exception_text
from .fileio import write_atomically

__all__ = [
    "DEFAULT_SIZE_PX",
    "MAX_DECODE_SIDE_PX",
    "MAX_FULL_DECODE_PIXELS",
    "MAX_JPEG_PIXELS",
    "MIN_SOURCE_SIDE_PX",
    "DecodedImage",
    "SourceImage",
    "image_to_tensor",
    "load_source_image",
    "read_image",
    "save_png",
    "tensor_to_images",
]

#: Pictures (or face crops) enlarged by more than this factor to the model size are warned about as
#: blurry; a few per cent more pixels cannot be seen.
BLURRY_UPSCALE = 1.1

#: Side of the square image the released PIRenderer weights were trained on, in pixels.
DEFAULT_SIZE_PX = 256

#: Images whose shorter side (after EXIF rotation) is smaller than this many pixels are refused: a
#: face in them is too small to carry any detail. Images whose shorter side lies between this value
#: and the model size divided by :data:`BLURRY_UPSCALE` are accepted with a warning (``warnings.warn``)
#: that says the picture will be upscaled and therefore look blurry.
MIN_SOURCE_SIDE_PX = 64

#: The one size rule: every picture is decoded (or, from memory, scaled) so that its longer side is at
#: most this many pixels (bicubic, antialiased; smaller pictures are untouched). 4096 px keeps a face
#: that fills a tenth of a photo's width at about 400 px, more than the model's 256, while the
#: decoded picture stays under 50 MB.
MAX_DECODE_SIDE_PX = 4096

#: JPEG files with more pixels than this (about 1.07 gigapixels) are refused. Below it the reduced
#: decode keeps memory bounded: at most (2 x MAX_DECODE_SIDE_PX)^2 pixels are ever decoded.
MAX_JPEG_PIXELS = 1 << 30

#: Other formats are decoded in full before they are scaled down, so their size stays bounded by
#: Pillow's own decompression-bomb limit (its default, twice ``PIL.Image.MAX_IMAGE_PIXELS``,
#: about 179 megapixels: up to about 0.7 GB while decoding); larger files are refused.
MAX_FULL_DECODE_PIXELS = 178_956_970

# JPEG files start with an SOI marker followed by another marker.
_JPEG_SIGNATURE = b"\xff\xd8\xff"

# Background that transparent pixels are composited over (white, as an RGB triple of uint8 levels).
_BACKGROUND_RGB = (255, 255, 255)

# What Pillow raises for files it recognises but cannot decode (truncated, corrupt, inconsistent).
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    IndexError,
    MemoryError,
)

# Pillow modes that carry an alpha channel (straight or premultiplied).
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})


@dataclass(frozen=True)
class SourceImage:
    """A source portrait ready for the model.

    Attributes:
        rgb: (S, S, 3) uint8 RGB pixels at the model size S = ``size_px``, C-contiguous.
        path: the file it was read from, or ``None`` when it came from memory (PIL image / array).
        original_size_px: (width, height) of the image as given, after EXIF rotation, in pixels.
    """

    rgb: np.ndarray
    path: str | None
    original_size_px: tuple[int, int]

    @property
    def size_px(self) -> int:
        """Side of the square ``rgb`` in pixels."""
        return int(self.rgb.shape[0])


@dataclass(frozen=True)
class DecodedImage:
    """A picture decoded by the one loader (:func:`read_image`).

    Attributes:
        rgb: (H, W, 3) uint8 RGB pixels, C-contiguous, longer side <= :data:`MAX_DECODE_SIDE_PX`.
        path: the file it was read from, or ``None`` when it came from memory.
        label: how messages name it (e.g. ``source image face.jpg``, ``uploaded image``).
        original_size_px: (width, height) of the picture as stored, after EXIF rotation, in pixels
            (larger than ``rgb``'s when it was decoded at a reduced size).
    """

    rgb: np.ndarray
    path: str | None
    label: str
    original_size_px: tuple[int, int]


def read_image(
    source: str | os.PathLike[str] | bytes | Image.Image | np.ndarray | DecodedImage,
    *,
    label: str | None = None,
    formats: Sequence[str] | None = None,
    max_pixels: int = MAX_FULL_DECODE_PIXELS,
) -> DecodedImage:
    """Decode a picture the one way the engine does (module docstring).

    Args:
        source: a path to any file Pillow reads (animated files: the first frame); the encoded
            bytes of such a file; a ``PIL.Image.Image`` in any mode (current frame; not modified);
            a uint8 numpy array: (H, W) or (H, W, 1) grey, (H, W, 3) RGB, (H, W, 4) RGBA; or a
            :class:`DecodedImage` (returned as it is).
        label: how error messages and warnings name the picture (default: ``image <path>``,
            ``image (N bytes)``, ``image (PIL image)``, ``image (numpy array)``).
        formats: Pillow format names accepted (e.g. ``("PNG", "JPEG", "WEBP")``); ``None``: any.
        max_pixels: the pixel budget of encoded pictures decoded in full (every format but JPEG),
            checked from the header before anything is decoded; at most
            :data:`MAX_FULL_DECODE_PIXELS` (the server's uploads pass a smaller one).

    Returns:
        A :class:`DecodedImage`.

    Processing: EXIF orientation (an unreadable EXIF block is ignored with a warning); any mode to
    RGB as :func:`load_source_image` documents; the size rule. JPEG: decoded at the smallest DCT
    scale whose result still has a longer side >= :data:`MAX_DECODE_SIDE_PX`, then scaled to it.

    Raises:
        ImageError: file missing / empty / a folder / not an image / truncated or corrupt / a format
            not in ``formats`` / more pixels than :data:`MAX_JPEG_PIXELS` (JPEG) or
            ``max_pixels`` (other formats) / an unsupported mode; arrays of the wrong dtype or shape.
    """
    if isinstance(source, DecodedImage):
        return source
    path: str | None = None
    if isinstance(source, np.ndarray):
        label = label or "image (numpy array)"
        image = _image_from_array(source, label)
        stored_size = image.size  # arrays carry no EXIF
    elif isinstance(source, Image.Image):
        label = label or "image (PIL image)"
        try:
            source.load()
        except _DECODE_ERRORS as exc:
            raise ImageError(f"{label}: cannot decode its pixels ({exception_text(exc)})") from None
        image = _apply_exif_orientation(source, label, copy=True)
        stored_size = image.size
    elif isinstance(source, bytes | bytearray | memoryview):
        label = label or f"image ({len(source)} bytes)"
        if len(source) == 0:
            raise ImageError(f"{label}: is empty (0 bytes)")
        image, stored_size = _decode(io.BytesIO(source), label, formats, max_pixels)  # EXIF applied
    elif isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        label = label or f"image {path}"
        image, stored_size = _decode_file(path, label, formats, max_pixels)
    else:
        raise ImageError(
            "an image must be a path, encoded bytes, a PIL.Image.Image or a uint8 numpy array, "
            f"got {type(source).__name__}"
        )
    if image.mode in ("L", "RGB") and "transparency" not in image.info:
        image = _bounded(image)  # the same pixels as after the conversion, with less to convert
    rgb = np.ascontiguousarray(np.asarray(_bounded(_to_rgb(image, label)), dtype=np.uint8))
    original_size_px = (int(stored_size[0]), int(stored_size[1]))
    return DecodedImage(rgb=rgb, path=path, label=label, original_size_px=original_size_px)


def load_source_image(
    path_or_image: str | os.PathLike[str] | bytes | Image.Image | np.ndarray | DecodedImage,
    *,
    size_px: int = DEFAULT_SIZE_PX,
) -> SourceImage:
    """Read a portrait and bring it to the model's (size_px, size_px, 3) uint8 RGB convention.

    Args:
        path_or_image: one of
            * a path to any file Pillow reads (PNG, JPEG, WebP, BMP, GIF, TIFF ...); animated files
              use their first frame;
            * a ``PIL.Image.Image`` in any mode (its current frame is used; it is not modified);
            * a uint8 numpy array in RGB order: (H, W) grey, (H, W, 1) grey, (H, W, 3) RGB or
              (H, W, 4) RGBA;
            * the encoded bytes of an image file, or a picture :func:`read_image` decoded.
        size_px: side of the square output in pixels (the model size, 256 for the released weights).

    Returns:
        A :class:`SourceImage` whose ``rgb`` is (size_px, size_px, 3) uint8.

    Processing, in order (1, 2 and the size rule are :func:`read_image`'s, the one loader):
        1. EXIF orientation is applied (``ImageOps.exif_transpose``); an unreadable EXIF block is
           ignored with a warning. Pictures larger than :data:`MAX_DECODE_SIDE_PX` are decoded at
           that size (JPEG at a reduced DCT scale); smaller ones are used as they are.
        2. Any mode becomes RGB: grey (1, L, I;16*, I, F) is replicated to three channels; palette
           (P) is expanded; alpha modes (RGBA, LA, PA, premultiplied) and palette/grey/RGB images
           with a transparency key are composited over white; CMYK, YCbCr, LAB, HSV use Pillow's
           conversion. 16-bit grey (I;16*) is scaled by 255/65535 (rounded). 32-bit ``I`` is taken
           as 8-bit if its maximum is <= 255, else as 16-bit if <= 65535, else scaled by its maximum;
           negatives clip to 0. Float ``F`` is taken as [0, 1] if its maximum is <= 1, else as
           [0, 255] (clipped); NaN becomes 0. ICC profiles are not applied.
        3. Size check on the original's shorter side: below :data:`MIN_SOURCE_SIDE_PX` -> ``ImageError``;
           below ``size_px / BLURRY_UPSCALE`` -> ``UserWarning`` (upscaled, blurry).
        4. PIL bicubic resize so the shorter side becomes ``size_px`` (the longer side is
           ``int(size_px * long / short)``), then a centre crop to ``size_px`` x ``size_px``.

    Raises:
        ImageError: file missing / empty / a folder / not an image / truncated or corrupt / more
            pixels than :data:`MAX_JPEG_PIXELS` (JPEG) or :data:`MAX_FULL_DECODE_PIXELS` (other
            formats) / unsupported mode / too small; arrays of the wrong dtype or shape;
            ``size_px`` not a positive int.
    """
    if isinstance(size_px, bool) or not isinstance(size_px, int | np.integer) or size_px < 1:
        raise ImageError(f"size_px must be a positive int (pixels), got {size_px!r}")
    size_px = int(size_px)
    if isinstance(path_or_image, np.ndarray):
        label = "source image (numpy array)"
    elif isinstance(path_or_image, Image.Image):
        label = "source image (PIL image)"
    elif isinstance(path_or_image, str | os.PathLike):
        label = f"source image {os.fspath(path_or_image)}"
    elif isinstance(path_or_image, bytes | bytearray | memoryview):
        label = f"source image ({len(path_or_image)} bytes)"
    elif isinstance(path_or_image, DecodedImage):
        label = path_or_image.label
    else:
        raise ImageError(
            "source image must be a path, encoded bytes, a PIL.Image.Image or a uint8 numpy array, "
            f"got {type(path_or_image).__name__}"
        )
    picture = read_image(path_or_image, label=label)
    width_px, height_px = picture.original_size_px
    _check_size(width_px, height_px, size_px, label)
    rgb = _resize_and_centre_crop(Image.fromarray(picture.rgb, mode="RGB"), size_px)
    return SourceImage(rgb=rgb, path=picture.path, original_size_px=(width_px, height_px))


def image_to_tensor(
    rgb: np.ndarray,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Convert RGB pixels to the model's input tensor.

    Args:
        rgb: (H, W, 3) uint8 RGB (H = W = S for a source image from :func:`load_source_image`).
        device: where the tensor lives; the uint8 pixels are moved first (4x fewer bytes).
        dtype: floating dtype of the result; the values are the float32 ones, rounded once to
            ``dtype`` at the end (fp16/bf16).

    Returns:
        (1, 3, H, W) contiguous tensor of ``dtype`` on ``device``, values ``(x / 255 - 0.5) / 0.5`` in
        [-1, 1], bit-identical to torchvision's ``ToTensor`` + ``Normalize(0.5, 0.5)`` in float32 on
        the CPU, whatever the device (a 256-entry table is looked up, see :func:`_level_values`).

    Note:
        With float32 the map back by :func:`tensor_to_images` (truncating, as the authors do) is NOT
        the identity: levels 1..63 come back one lower (x - 1) because ``(x / 255 - 0.5) / 0.5``
        rounds slightly below the exact value and ``(y + 1) / 2 * 255`` lands just under the
        integer; 0 and 64..255 come back exactly. With fp16/bf16 more levels lose one or more.

    Raises:
        ImageError: ``rgb`` is not an (H, W, 3) uint8 array, or ``dtype`` is not floating point.
    """
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageError(f"image_to_tensor needs an (H, W, 3) uint8 array, got {describe_value(rgb)}")
    if not dtype.is_floating_point:
        raise ImageError(f"image_to_tensor needs a floating dtype, got {dtype}")
    pixels = torch.from_numpy(np.array(rgb, copy=True)).to(device=device)  # (H, W, 3) uint8, writable copy
    levels = _level_values().to(device=device)  # (256,) float32, the CPU/torchvision values
    x = levels[pixels.to(torch.int64)]  # (H, W, 3) float32
    return x.permute(2, 0, 1).unsqueeze(0).to(dtype).contiguous()


def _level_values() -> torch.Tensor:
    """(256,) float32: ``(x / 255 - 0.5) / 0.5`` for every uint8 level x, with IEEE float32 division.

    Looked up rather than computed on the target device because CUDA divides by a scalar as a
    multiplication by its reciprocal, which differs from the CPU (and torchvision) result in the
    last bit for many levels (measured on an H100).
    """
    levels = np.arange(256, dtype=np.float32)
    values = (levels / np.float32(255.0) - np.float32(0.5)) / np.float32(0.5)
    return torch.from_numpy(values)


def tensor_to_images(frames: torch.Tensor) -> np.ndarray:
    """Convert model output to RGB pixels exactly as the authors write their videos.

    Args:
        frames: (B, 3, H, W) floating tensor (float32/fp16/bf16/float64, any device), nominally in
            [-1, 1]; (3, H, W) is accepted as a batch of one.

    Returns:
        (B, H, W, 3) uint8 C-contiguous numpy array (on the CPU): ``trunc((clamp(x, -1, 1) + 1) / 2 * 255)``
        computed in float32 on the tensor's device (only uint8 crosses to the CPU). NaN becomes 0
        before the clamp (mid grey, 127) so the result never depends on undefined float->int casts.

    Raises:
        ImageError: ``frames`` is not a floating tensor of shape (B, 3, H, W) or (3, H, W).
    """
    if not isinstance(frames, torch.Tensor) or not frames.dtype.is_floating_point:
        raise ImageError(f"tensor_to_images needs a floating tensor, got {describe_value(frames)}")
    if frames.ndim == 3:
        frames = frames.unsqueeze(0)
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ImageError(f"tensor_to_images needs a (B, 3, H, W) tensor, got shape {tuple(frames.shape)}")
    with torch.no_grad():
        x = frames.detach().to(torch.float32)
        x = torch.nan_to_num(x, nan=0.0).clamp(-1.0, 1.0)
        levels = ((x + 1.0) / 2.0 * 255.0).to(torch.uint8)  # float -> uint8 truncates toward zero
        levels = levels.permute(0, 2, 3, 1).contiguous()
        return levels.cpu().numpy()


def save_png(path: str | os.PathLike[str], rgb: np.ndarray) -> None:
    """Write (H, W, 3) uint8 RGB pixels to a PNG file atomically.

    The PNG is written to a temporary file in the same folder and moved over ``path`` with
    ``os.replace``, so readers never see a half-written file and an existing file is only replaced
    by a complete one.

    Raises:
        ImageError: ``rgb`` is not (H, W, 3) uint8, or the file cannot be written (missing folder,
            permissions, full disk).
    """
    target = os.fspath(path)
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageError(f"PNG {target}: pixels must be an (H, W, 3) uint8 array, got {describe_value(rgb)}")
    folder = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(folder):
        raise ImageError(f"PNG {target}: folder {folder} does not exist")
    image = Image.fromarray(np.ascontiguousarray(rgb), mode="RGB")
    write_atomically(target, lambda handle: image.save(handle, format="PNG"), error=ImageError)


# --------------------------------------------------------------------------------------------------
# helpers


def _decode_file(
    path: str, label: str, formats: Sequence[str] | None, max_pixels: int
) -> tuple[Image.Image, tuple[int, int]]:
    """Decode an image file (see :func:`_decode`); the file is closed on return."""
    p = Path(path)
    if not p.exists():
        raise ImageError(f"{label}: file not found")
    if p.is_dir():
        raise ImageError(f"{label}: is a folder, not an image file")
    try:
        if p.stat().st_size == 0:
            raise ImageError(f"{label}: file is empty (0 bytes)")
        with open(p, "rb") as handle:
            return _decode(handle, label, formats, max_pixels)
    except PermissionError:
        raise ImageError(f"{label}: permission denied") from None


def _decode(
    handle: BinaryIO, label: str, formats: Sequence[str] | None, max_pixels: int
) -> tuple[Image.Image, tuple[int, int]]:
    """Decode the first frame of an encoded picture, EXIF orientation applied, JPEG at a reduced
    scale; returns the image and the picture's full (width, height) after EXIF rotation."""
    try:
        is_jpeg = handle.read(3) == _JPEG_SIGNATURE
        handle.seek(0)
        if is_jpeg:
            # Pillow's JPEG opener itself: ``Image.open`` would apply its decompression-bomb guard to
            # the full size, which this reduced decode never allocates (MAX_JPEG_PIXELS applies)
            image: Image.Image = JpegImagePlugin.jpeg_factory(handle)
        else:
            with warnings.catch_warnings():  # the limit is MAX_FULL_DECODE_PIXELS, below
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(handle)
        kind = "JPEG" if image.format == "MPO" else str(image.format)
        if formats is not None and kind not in formats:
            accepted = ", ".join(_format_name(f) for f in formats)
            raise ImageError(
                f"{label}: {_format_name(kind)} pictures are not accepted here (accepted: {accepted})"
            )
        width_px, height_px = image.size
        pixels = width_px * height_px
        limit = MAX_JPEG_PIXELS if is_jpeg else min(max_pixels, MAX_FULL_DECODE_PIXELS)
        if pixels > limit:
            advice = "" if is_jpeg else " (JPEG files may be larger: they are decoded at a reduced scale)"
            raise ImageError(
                f"{label}: {width_px}x{height_px} px ({pixels / 1e6:.0f} megapixels) is more than the "
                f"{limit / 1e6:.0f} megapixels a {_format_name(kind)} picture may have{advice}; "
                "make it smaller"
            )
        if is_jpeg:
            scale = MAX_DECODE_SIDE_PX / max(width_px, height_px)
            if scale < 1.0:
                image.draft(None, (max(1, int(width_px * scale)), max(1, int(height_px * scale))))
        image.load()  # the first frame of animated files: opening starts there
        decoded_size = image.size
        image = _apply_exif_orientation(image, label, copy=False)
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageError(
            f"{label}: more than the {MAX_FULL_DECODE_PIXELS / 1e6:.0f} megapixels a picture in this format "
            "may have (JPEG files may be larger: they are decoded at a reduced scale); make it smaller"
        ) from None
    except UnidentifiedImageError:
        raise ImageError(f"{label}: not an image file Pillow can read") from None
    except _DECODE_ERRORS as exc:
        raise ImageError(f"{label}: truncated or corrupt image ({exception_text(exc)})") from None
    turned = image.size == decoded_size[::-1] and decoded_size[0] != decoded_size[1]
    return image, ((height_px, width_px) if turned else (width_px, height_px))


def _format_name(pillow_format: str) -> str:
    """A format as people write it (Pillow says WEBP)."""
    return "WebP" if pillow_format == "WEBP" else pillow_format


def _bounded(image: Image.Image) -> Image.Image:
    """The image scaled (bicubic, antialiased) so that its longer side is <= MAX_DECODE_SIDE_PX."""
    width_px, height_px = image.size
    scale = MAX_DECODE_SIDE_PX / max(width_px, height_px)
    if scale >= 1.0:
        return image
    size = (max(1, round(width_px * scale)), max(1, round(height_px * scale)))
    return image.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)


def _image_from_array(array: np.ndarray, label: str) -> Image.Image:
    """Wrap a uint8 (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array as a PIL image (copying it)."""
    if array.dtype != np.uint8:
        raise ImageError(
            f"{label}: dtype must be uint8 (0..255 RGB levels), got {array.dtype}; "
            "convert with np.clip(x, 0, 255).astype(np.uint8)"
        )
    shape = array.shape
    if array.ndim == 3 and shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        mode = "L"
    elif array.ndim == 3 and shape[2] == 3:
        mode = "RGB"
    elif array.ndim == 3 and shape[2] == 4:
        mode = "RGBA"
    else:
        raise ImageError(f"{label}: shape must be (H, W), (H, W, 3) or (H, W, 4), got {shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageError(f"{label}: image is empty, shape {shape}")
    return Image.fromarray(np.ascontiguousarray(array), mode=mode)


def _apply_exif_orientation(image: Image.Image, label: str, *, copy: bool) -> Image.Image:
    """Rotate/flip as the EXIF Orientation tag says; a broken EXIF block is ignored with a warning.
    With ``copy`` the result never shares pixels with ``image`` (a caller's image stays unmodified)."""
    try:
        transposed = ImageOps.exif_transpose(image)
    except Exception as exc:  # any failure of Pillow's EXIF parser means "no usable tag"
        warnings.warn(
            f"{label}: EXIF orientation unreadable, image used as stored ({exception_text(exc)})",
            UserWarning,
            stacklevel=4,
        )
        transposed = None
    if transposed is None:
        return image.copy() if copy else image
    return transposed


def _check_size(width_px: int, height_px: int, size_px: int, label: str) -> None:
    shorter_px = min(width_px, height_px)
    if shorter_px < MIN_SOURCE_SIDE_PX:
        raise ImageError(
            f"{label}: image is {width_px}x{height_px} px, too small; "
            f"the shorter side must be at least {MIN_SOURCE_SIDE_PX} px"
        )
    if shorter_px * BLURRY_UPSCALE < size_px:
        warnings.warn(
            f"{label}: image is {width_px}x{height_px} px, smaller than the model size {size_px} px; "
            "it will be upscaled and look blurry",
            UserWarning,
            stacklevel=3,
        )


def _to_rgb(image: Image.Image, label: str) -> Image.Image:
    """Convert a PIL image of any mode to mode RGB (alpha composited over white)."""
    mode = image.mode
    has_alpha = mode in _ALPHA_MODES or (mode in ("P", "L", "RGB") and "transparency" in image.info)
    try:
        if has_alpha:
            if mode == "La":
                image = image.convert("LA")
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (*_BACKGROUND_RGB, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        if mode == "RGB":
            return image
        if mode.startswith("I;16") or mode in ("I", "F"):
            return Image.fromarray(_high_depth_grey_to_uint8(image), mode="L").convert("RGB")
        return image.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageError(
            f"{label}: colour mode {mode} cannot be converted to RGB ({exception_text(exc)})"
        ) from None


def _high_depth_grey_to_uint8(image: Image.Image) -> np.ndarray:
    """(H, W) uint8 levels from a 16-bit, 32-bit int or float grey image (rules in load_source_image)."""
    values = np.asarray(image)
    if image.mode.startswith("I;16"):
        wide = values.astype(np.uint32)
        return ((wide * 255 + 32767) // 65535).astype(np.uint8)
    if image.mode == "I":
        wide64 = np.clip(values.astype(np.int64), 0, None)
        peak = int(wide64.max()) if wide64.size else 0
        if peak <= 255:
            return wide64.astype(np.uint8)
        full_scale = 65535 if peak <= 65535 else peak
        return ((wide64 * 255 + full_scale // 2) // full_scale).astype(np.uint8)
    floats = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    scale = 255.0 if floats.size and float(floats.max()) <= 1.0 else 1.0
    return np.clip(np.rint(floats * scale), 0, 255).astype(np.uint8)


def _resize_and_centre_crop(image: Image.Image, size_px: int) -> np.ndarray:
    """Bicubic resize (shorter side -> size_px, aspect kept) then centre crop; returns (S, S, 3) uint8."""
    width_px, height_px = image.size
    if width_px <= height_px:
        new_size = (size_px, int(size_px * height_px / width_px))
    else:
        new_size = (int(size_px * width_px / height_px), size_px)
    if new_size != image.size:
        image = image.resize(new_size, Image.Resampling.BICUBIC)
    new_width_px, new_height_px = image.size
    left_px = round((new_width_px - size_px) / 2.0)
    top_px = round((new_height_px - size_px) / 2.0)
    cropped = image.crop((left_px, top_px, left_px + size_px, top_px + size_px))
    return np.ascontiguousarray(np.asarray(cropped, dtype=np.uint8))
