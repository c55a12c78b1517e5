"""Decoding and conversion of single images and arrays."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from signdb.data.preprocess import (
    Preprocessing,
    decode_image,
    pixels_sha256,
    preprocess_array,
    preprocess_image,
)
from signdb.errors import ArrayError, DecompressionBomb, ImageError, InvalidArgument

P8 = Preprocessing(size=8)  # test images are 8x8, so no resize blurs the values checked


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def gray(data: bytes, prep: Preprocessing = P8) -> np.ndarray:
    out = decode_image(data, "t.png", prep)
    assert out.dtype == np.uint8 and out.shape == prep.shape and out.flags.c_contiguous
    return out[:, :, 0]


# --- modes ---------------------------------------------------------------------


def test_rgb_to_gray_uses_pillow_luma():
    img = Image.new("RGB", (8, 8), (255, 0, 0))
    assert gray(encode(img)).tolist() == [[76] * 8] * 8  # 0.299 * 255


def test_l_to_rgb_replicates_the_channel():
    img = Image.new("L", (8, 8), 77)
    out = decode_image(encode(img), "t.png", Preprocessing(size=8, color="rgb"))
    assert out.shape == (8, 8, 3) and (out == 77).all()


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_composites_on_white(mode):
    a = np.zeros((8, 8, 4), np.uint8)
    a[:, :4] = (0, 0, 0, 255)  # opaque black on the left
    a[:, 4:] = (0, 0, 0, 0)  # transparent black on the right: must become white
    img = Image.fromarray(a).convert(mode)
    out = gray(encode(img))
    assert (out[:, :4] == 0).all()
    assert (out[:, 4:] == 255).all()


def test_half_transparent_blends_with_white():
    img = Image.new("RGBA", (8, 8), (0, 0, 0, 128))
    assert np.abs(gray(encode(img)).astype(int) - 127).max() <= 1


def test_palette_with_transparency_composites_on_white():
    img = Image.new("P", (8, 8), 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)  # 0 red, 1 blue
    img.paste(1, (0, 0, 4, 8))
    data = encode(img, transparency=0)  # red is the transparent colour
    out = gray(data)
    assert (out[:, :4] == 29).all()  # blue: 0.114 * 255
    assert (out[:, 4:] == 255).all()


def test_palette_without_transparency_uses_palette_colours():
    img = Image.new("P", (8, 8), 0)
    img.putpalette([0, 255, 0] + [0] * 765)
    out = decode_image(encode(img), "t.png", Preprocessing(size=8, color="rgb"))
    assert (out == np.array([0, 255, 0], np.uint8)).all()


def test_16bit_gray_is_scaled_not_clipped():
    a = np.array([[0, 257 * 100, 1000, 65535] * 2] * 8, dtype=np.uint16)
    img = Image.fromarray(a)
    data = encode(img)
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    out = gray(data)
    assert out[0, :4].tolist() == [0, 100, 4, 255]  # clipping would give 255 for 1000


def test_mode_i_and_f_via_preprocess_image():
    i_img = Image.fromarray(np.full((8, 8), 257 * 200, np.int32))
    assert i_img.mode == "I"
    assert (preprocess_image(i_img, "i", P8) == 200).all()
    f_img = Image.fromarray(np.full((8, 8), 128.4, np.float32))
    assert f_img.mode == "F"
    assert (preprocess_image(f_img, "f", P8) == 128).all()


def test_bilevel_image():
    img = Image.new("1", (8, 8), 0)
    img.paste(1, (4, 0, 8, 8))
    out = gray(encode(img))
    assert (out[:, :4] == 0).all() and (out[:, 4:] == 255).all()


def test_cmyk_jpeg():
    img = Image.new("CMYK", (8, 8), (0, 0, 0, 0))  # no ink: white
    img.paste((0, 0, 0, 255), (0, 0, 4, 8))  # full black ink
    data = encode(img, "JPEG", quality=100)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = gray(data).astype(int)
    assert (out[:, :3] < 10).all() and (out[:, 5:] > 245).all()


def test_exif_orientation_is_honoured():
    a = np.full((16, 32), 255, np.uint8)
    a[:, :16] = 0  # stored: dark left half, 32 wide x 16 high
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    data = encode(Image.fromarray(a), "JPEG", quality=95, exif=exif)
    out = gray(data, Preprocessing(size=16)).astype(int)
    # Rotating clockwise puts the stored left half on top.
    assert out[:6].mean() < 30 and out[10:].mean() > 225
    assert abs(out[:, :8].mean() - out[:, 8:].mean()) < 10


def test_large_jpeg_is_drafted_and_resized():
    a = np.zeros((1000, 1000), np.uint8)
    a[:, 500:] = 255
    out = gray(encode(Image.fromarray(a), "JPEG"), Preprocessing(size=64)).astype(int)
    assert out[:, :28].max() < 10 and out[:, 36:].min() > 245


# --- bad files -----------------------------------------------------------------


def test_empty_file():
    with pytest.raises(ImageError, match=r"empty \(0 bytes\)") as e:
        decode_image(b"", "a/empty.jpg", P8)
    assert e.value.path == "a/empty.jpg"


def test_not_an_image():
    with pytest.raises(ImageError, match="not an image Pillow can read.*only JPEG and PNG"):
        decode_image(b"hello, this is text\n" * 10, "notes.jpg", P8)


def test_other_formats_are_refused():
    with pytest.raises(ImageError, match="not an image"):
        decode_image(encode(Image.new("L", (8, 8)), "BMP"), "x.png", P8)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9])
def test_truncated_jpeg(dataset_dir, keep):
    data = next((dataset_dir / "0").iterdir()).read_bytes()
    with pytest.raises(ImageError, match="truncated or corrupt JPEG.*re-export"):
        decode_image(data[: int(len(data) * keep)], "cut.jpg", P8)


def test_truncated_png():
    data = encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)))
    with pytest.raises(ImageError, match="truncated or corrupt PNG"):
        decode_image(data[: len(data) * 3 // 4], "cut.png", P8)


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG file that claims huge dimensions."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("side", [9_000, 20_000])  # Pillow warns at 81 MP, refuses at 400 MP
def test_decompression_bomb(side):
    data = png_header_only(side, side)
    assert len(data) < 100
    with pytest.raises(DecompressionBomb, match="too large to decode safely.*downscale") as e:
        decode_image(data, "bomb.png", P8)
    assert e.value.path == "bomb.png"


# --- arrays --------------------------------------------------------------------


def test_stored_pixels_round_trip_is_identity():
    rng = np.random.default_rng(0)
    stored = rng.integers(0, 256, (64, 64, 1), dtype=np.uint8)
    prep = Preprocessing()
    assert np.array_equal(preprocess_array(stored, "x", prep), stored)
    assert np.array_equal(preprocess_array(stored[:, :, 0], "x", prep), stored)
    as_float = stored.astype(np.float32) / 255
    assert np.array_equal(preprocess_array(as_float, "x", prep), stored)
    rgb = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert np.array_equal(preprocess_array(rgb, "x", Preprocessing(color="rgb")), rgb)


def test_array_and_png_of_same_pixels_agree_after_conversion_and_resize():
    rgb = np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    prep = Preprocessing(size=16)
    from_file = decode_image(encode(Image.fromarray(rgb)), "a.png", prep)
    assert np.array_equal(preprocess_array(rgb, "a", prep), from_file)


@pytest.mark.parametrize(
    "value, word", [(np.nan, "nan"), (np.inf, "inf"), (1.5, "1.5"), (-0.25, "-0.25")]
)
def test_bad_float_pixels_name_index_and_value(value, word):
    a = np.zeros((8, 8), np.float32)
    a[2, 3] = value
    with pytest.raises(ArrayError, match=r"X\.npy\[5\]: pixel \(2, 3\) is .*" + word) as e:
        preprocess_array(a, "X.npy[5]", P8)
    assert "[0, 1]" in str(e.value)


def test_integer_pixels_out_of_range():
    with pytest.raises(ArrayError, match=r"pixel \(0, 0\) is .*300.*0\.\.255"):
        preprocess_array(np.full((8, 8), 300, np.int64), "s", P8)


def test_sample_with_bad_shape():
    with pytest.raises(ArrayError, match=r"shape \(8, 8, 5\)"):
        preprocess_array(np.zeros((8, 8, 5), np.uint8), "s", P8)


def test_pixels_sha256_is_of_the_stored_bytes():
    import hashlib

    a = np.arange(64, dtype=np.uint8).reshape(8, 8, 1)
    assert pixels_sha256(a) == hashlib.sha256(bytes(range(64))).hexdigest()
    assert pixels_sha256(np.asfortranarray(a[:, :, 0])) == pixels_sha256(a)


# --- parameters ----------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"size": 4}, ["4", "--size 64"]),
        ({"size": 2048}, ["2048", "--size"]),
        ({"color": "blue"}, ["'blue'", "--color gray"]),
        ({"resample": "magic"}, ["'magic'", "lanczos"]),
    ],
)
def test_invalid_preprocessing(kwargs, words):
    with pytest.raises(InvalidArgument) as e:
        Preprocessing(**kwargs)
    for w in words:
        assert w in str(e.value)


def test_preprocessing_dict_round_trip():
    p = Preprocessing(size=32, color="rgb")
    assert p.channels == 3 and Preprocessing().channels == 1
    assert p.as_dict() == {"size": 32, "color": "rgb", "resample": "lanczos"}
    assert Preprocessing.from_dict(p.as_dict()) == p
    with pytest.raises(InvalidArgument, match="unknown preprocessing parameter.*crop"):
        Preprocessing.from_dict({"size": 32, "crop": True})
