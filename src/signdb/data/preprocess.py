"""Turn one image (file bytes, a Pillow image or an npy sample) into stored pixels.

Every path ends in the same two steps, :func:`_finish`: Pillow's conversion to
``L`` (ITU-R 601-2 luma) or ``RGB``, then a resize to ``size x size``. Because
files and arrays share those steps, an image loaded from a JPEG folder and the
same pixels loaded back from an ``X.npy`` are byte-identical, and re-loading
our own stored pixels is the identity.

Images are stretched to a square, not cropped: the reference dataset is square
and the seed's 64x64 arrays were made the same way.
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from signdb.errors import ArrayError, DecompressionBomb, ImageError, InvalidArgument

#: Largest image, in pixels, that signdb decodes. Pillow warns above it and
#: refuses above twice it; both become :class:`DecompressionBomb`.
MAX_IMAGE_PIXELS = 64_000_000

# Pillow's guard reads these globals at open/load time, so they are set once,
# here, for this process and for every decoding worker (which imports us).
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
# A truncated file must fail loudly rather than load with a grey lower half.
ImageFile.LOAD_TRUNCATED_IMAGES = False

#: Formats a load accepts; anything else is "not an image" to signdb.
FORMATS = ("JPEG", "PNG")

SIZE_MIN, SIZE_MAX = 8, 1024
COLORS = ("gray", "rgb")
RESAMPLE = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "hamming": Image.Resampling.HAMMING,
    "box": Image.Resampling.BOX,
    "nearest": Image.Resampling.NEAREST,
}

# Pillow raises a zoo of exception types on corrupt data; these are the ones
# its decoders are documented or known to raise. Anything else is a bug.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError)

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_WHITE = (255, 255, 255, 255)


@dataclass(frozen=True)
class Preprocessing:
    """How files become pixels; stored with a dataset so its parameters are explicit."""

    size: int = 64
    color: Literal["gray", "rgb"] = "gray"
    resample: str = "lanczos"

    def __post_init__(self) -> None:
        self.validate()

    @property
    def channels(self) -> int:
        return 1 if self.color == "gray" else 3

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.size, self.size, self.channels)

    def validate(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise InvalidArgument(
                f"image size must be an integer, got {self.size!r}; pass e.g. --size 64"
            )
        if not SIZE_MIN <= self.size <= SIZE_MAX:
            raise InvalidArgument(
                f"image size must be between {SIZE_MIN} and {SIZE_MAX}, got {self.size}; "
                "pass e.g. --size 64"
            )
        if self.color not in COLORS:
            raise InvalidArgument(
                f"color must be one of {', '.join(COLORS)}, got {self.color!r}; "
                "pass --color gray or --color rgb"
            )
        if self.resample not in RESAMPLE:
            raise InvalidArgument(
                f"resample filter must be one of {', '.join(RESAMPLE)}, got {self.resample!r}; "
                "use lanczos unless you are reproducing another pipeline"
            )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessing:
        unknown = set(d) - {"size", "color", "resample"}
        if unknown:
            raise InvalidArgument(
                f"unknown preprocessing parameter(s) {', '.join(sorted(unknown))}; "
                "expected only size, color and resample"
            )
        return cls(**d)


def pixels_sha256(pixels: np.ndarray) -> str:
    """Hex sha256 of the row-major uint8 bytes: the image's identity in a dataset."""
    if pixels.dtype != np.uint8:
        raise ArrayError(f"pixels must be uint8 to be hashed, got {pixels.dtype}")
    return hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()


def decode_image(data: bytes, source: str, prep: Preprocessing) -> np.ndarray:
    """Decode JPEG/PNG bytes into C-contiguous uint8 pixels of ``prep.shape``.

    Raises :class:`ImageError` (or :class:`DecompressionBomb`) naming ``source``.
    """
    if len(data) == 0:
        raise ImageError(source, "file is empty (0 bytes); remove it or re-export the image")
    # Named from the magic bytes so a file cut short inside its header (which
    # fails in Image.open, before Pillow names the format) still says JPEG/PNG.
    fmt = "JPEG" if data[:2] == b"\xff\xd8" else "PNG" if data[:4] == b"\x89PNG" else "image"
    try:
        with warnings.catch_warnings():
            # Pillow only *warns* between MAX_IMAGE_PIXELS and twice that.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=FORMATS)
            if img.format == "JPEG":
                # Let libjpeg decode at 1/2, 1/4 or 1/8 scale (much faster for big
                # photos) but keep >= 2x the target so the LANCZOS resize has
                # detail to work with.
                img.draft(None, (2 * prep.size, 2 * prep.size))
            img.load()
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        raise DecompressionBomb(
            source,
            f"image is too large to decode safely ({e}); signdb decodes at most "
            f"{MAX_IMAGE_PIXELS:,} pixels, so downscale the image before loading it",
        ) from None
    except UnidentifiedImageError:
        raise ImageError(
            source,
            f"not an image Pillow can read (starts with {data[:8]!r}); only JPEG and PNG "
            "are loaded, so convert or remove it",
        ) from None
    except _DECODE_ERRORS as e:
        raise ImageError(
            source, f"truncated or corrupt {fmt} ({e}); re-export or re-download the file"
        ) from None
    return preprocess_image(img, source, prep)


def preprocess_image(img: Image.Image, source: str, prep: Preprocessing) -> np.ndarray:
    """Orient, convert and resize a decoded Pillow image (any mode)."""
    try:
        img = ImageOps.exif_transpose(img)
    except _DECODE_ERRORS:
        # A malformed EXIF block must not cost us an otherwise fine image.
        pass
    return _finish(_to_8bit(img), prep)


def preprocess_array(arr: np.ndarray, source: str, prep: Preprocessing) -> np.ndarray:
    """One npy sample, ``(h, w)`` or ``(h, w, c)``, uint8 or float in [0, 1], to stored pixels.

    Integer arrays must hold 0..255. Raises :class:`ArrayError` naming ``source``
    and the first bad value.
    """
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (2, 3, 4)):
        raise ArrayError(
            f"{source}: sample shape {arr.shape} is not (h, w) or (h, w, c) with c in 1..4"
        )
    if arr.dtype != np.uint8:
        arr = _to_uint8(arr, source)
    img = Image.fromarray(np.ascontiguousarray(arr))  # infers L, LA, RGB or RGBA
    if img.mode in _ALPHA_MODES:
        img = _composite_on_white(img)
    return _finish(img, prep)


def _to_uint8(arr: np.ndarray, source: str) -> np.ndarray:
    kind = arr.dtype.kind
    if kind == "f":
        bad = ~np.isfinite(arr) | (arr < 0.0) | (arr > 1.0)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ArrayError(
                f"{source}: pixel {where} is {arr[where].item()!r}; float pixels must be finite "
                "and within [0, 1] (or store uint8 0..255)"
            )
        # x*255 rounds back exactly for pixels that were k/255, so our own
        # stored pixels survive a float round trip.
        return np.rint(arr.astype(np.float64) * 255.0).astype(np.uint8)
    if kind in "ui":
        bad = (arr < 0) | (arr > 255)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ArrayError(
                f"{source}: pixel {where} is {arr[where].item()!r}; integer pixels must be within "
                "0..255 (or store floats in [0, 1])"
            )
        return arr.astype(np.uint8)
    raise ArrayError(f"{source}: pixel dtype {arr.dtype} is not numeric; use uint8 or float")


def _composite_on_white(img: Image.Image) -> Image.Image:
    # Transparent pixels have arbitrary colour underneath; white is what a
    # viewer shows and what the reference photos' background looks like.
    rgba = img.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, _WHITE), rgba).convert("RGB")


def _to_8bit(img: Image.Image) -> Image.Image:
    """Any Pillow mode to L or RGB (8 bits, no alpha)."""
    mode = img.mode
    if mode in ("L", "RGB"):
        if "transparency" in img.info:  # a tRNS colour key on a gray/RGB PNG
            return _composite_on_white(img)
        return img
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in img.info):
        return _composite_on_white(img)
    if mode.startswith("I;16") or mode == "I":
        # 16-bit samples: map 0..65535 onto 0..255 (65535/257 == 255) rather
        # than clipping, which would turn almost every pixel white. Mode I from
        # a PNG/TIFF decoder carries the same 16-bit range.
        a = np.asarray(img).astype(np.float64)
        return Image.fromarray(np.rint(np.clip(a, 0, 65535) / 257.0).astype(np.uint8))
    if mode == "F":
        # Pillow's convention for float images is the 0..255 scale.
        a = np.asarray(img).astype(np.float64)
        a = np.rint(np.clip(np.nan_to_num(a, nan=0.0), 0, 255))
        return Image.fromarray(a.astype(np.uint8))
    if mode == "1":
        return img.convert("L")
    # P without transparency, CMYK (Pillow undoes Adobe inversion on decode),
    # YCbCr, LAB, HSV: Pillow's own conversion to RGB.
    return img.convert("RGB")


def _finish(img: Image.Image, prep: Preprocessing) -> np.ndarray:
    target = "L" if prep.color == "gray" else "RGB"
    if img.mode != target:
        img = img.convert(target)
    if img.size != (prep.size, prep.size):
        img = img.resize((prep.size, prep.size), RESAMPLE[prep.resample])
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return np.ascontiguousarray(arr)
