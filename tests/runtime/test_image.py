"""load_image: the input rules, every kind of bad input, truncation and decompression bombs.

Encoded inputs are made from a real photo with cv2.imencode and then cut, patched or
corrupted, so the decoder sees realistic data rather than synthetic noise.
"""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from edgeinfer.errors import (
    ConfigError,
    ImageDecodeError,
    ImageError,
    ImageFormatError,
    ImageTooLargeError,
)
from edgeinfer.runtime.image import DEFAULT_MAX_PIXELS, load_image, probe
from edgeinfer.spec import PreprocessSpec


def _encode(ext: str, img: np.ndarray, *params: int) -> bytes:
    ok, enc = cv2.imencode(ext, img, list(params))
    assert ok, ext
    return enc.tobytes()


def _no_decoding(monkeypatch) -> None:
    """Make any call to cv2.imdecode fail the test: proves a refusal came before decoding."""

    def boom(*_a, **_k):
        raise AssertionError("cv2.imdecode was called")

    monkeypatch.setattr(cv2, "imdecode", boom)


# ------------------------------------------------------------------------- arrays
def test_contiguous_bgr_array_is_returned_without_a_copy(photo, bgr_spec) -> None:
    frame = np.ascontiguousarray(photo)
    out = load_image(frame, bgr_spec)
    assert out is frame


@pytest.mark.parametrize("view", ["flip", "crop", "channel_stride"])
def test_non_contiguous_arrays_become_contiguous(photo, bgr_spec, view) -> None:
    a = {"flip": photo[:, ::-1],
         "crop": photo[10:200, 20:300],
         "channel_stride": np.dstack([photo, photo])[:, :, ::2][:, :, :3]}[view]
    out = load_image(a, bgr_spec)
    assert out.flags.c_contiguous and out.dtype == np.uint8
    np.testing.assert_array_equal(out, a)


@pytest.mark.parametrize("shape", ["hw", "hw1"])
def test_gray_array_is_replicated_for_a_colour_frame(photo, bgr_spec, rgb_spec, shape) -> None:
    gray = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    a = gray if shape == "hw" else gray[:, :, None]
    for spec in (bgr_spec, rgb_spec):
        out = load_image(a, spec)
        assert out.shape == (*gray.shape, 3)
        for c in range(3):
            np.testing.assert_array_equal(out[:, :, c], gray)


def test_colour_array_is_taken_in_frame_order(photo, rgb_spec) -> None:
    # No guessing: an H x W x 3 array is already in the spec's frame colour order.
    np.testing.assert_array_equal(load_image(photo, rgb_spec), photo)


def test_bgra_array_drops_alpha(photo, bgr_spec) -> None:
    alpha = np.full(photo.shape[:2], 7, np.uint8)
    bgra = np.dstack([photo, alpha])
    out = load_image(bgra, bgr_spec)
    assert out.shape == photo.shape
    np.testing.assert_array_equal(out, photo)


def test_gray_frame_keeps_gray_and_converts_bgr(photo, gray_spec) -> None:
    gray = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    for a in (gray, gray[:, :, None]):
        out = load_image(a, gray_spec)
        assert out.shape == (*gray.shape, 1)
        np.testing.assert_array_equal(out[:, :, 0], gray)
    np.testing.assert_array_equal(load_image(photo, gray_spec)[:, :, 0], gray)
    bgra = np.dstack([photo, np.zeros(photo.shape[:2], np.uint8)])
    np.testing.assert_array_equal(load_image(bgra, gray_spec)[:, :, 0], gray)


@pytest.mark.parametrize(("dtype", "hint"), [
    (np.float32, "float arrays are not accepted"),
    (np.float64, "float arrays are not accepted"),
    (np.float16, "float arrays are not accepted"),
    (np.uint16, "(x >> 8).astype(np.uint8)"),
    (np.int64, "np.clip(x, 0, 255).astype(np.uint8)"),
    (np.int8, "np.clip(x, 0, 255).astype(np.uint8)"),
    (bool, "x.astype(np.uint8) * 255"),
    (np.complex64, "uint8"),
    (object, "uint8"),
])
def test_wrong_dtypes_are_refused_with_a_hint(photo, bgr_spec, dtype, hint) -> None:
    a = photo.astype(dtype)
    with pytest.raises(ImageFormatError, match="not accepted") as e:
        load_image(a, bgr_spec)
    assert hint in str(e.value)


def test_nan_float_array_says_floats_are_not_accepted(bgr_spec) -> None:
    a = np.full((32, 32, 3), np.nan, np.float32)
    with pytest.raises(ImageFormatError, match="float arrays are not accepted"):
        load_image(a, bgr_spec)


@pytest.mark.parametrize("shape", [(0, 5, 3), (5, 0, 3), (5, 5, 0), (0, 0), (0, 7)])
def test_zero_size_arrays_are_refused(bgr_spec, shape) -> None:
    with pytest.raises(ImageFormatError, match="empty"):
        load_image(np.zeros(shape, np.uint8), bgr_spec)


@pytest.mark.parametrize("channels", [2, 5])
def test_wrong_channel_counts_are_refused(bgr_spec, channels) -> None:
    with pytest.raises(ImageFormatError, match="1, 3 or 4 channels"):
        load_image(np.zeros((8, 8, channels), np.uint8), bgr_spec)


@pytest.mark.parametrize("shape", [(8,), (1, 8, 8, 3), (2, 2, 2, 2, 2)])
def test_wrong_ndim_is_refused(bgr_spec, shape) -> None:
    with pytest.raises(ImageFormatError, match="H x W"):
        load_image(np.zeros(shape, np.uint8), bgr_spec)


@pytest.mark.parametrize("obj", [None, 3, [[1, 2], [3, 4]], {"a": 1}, 2.5])
def test_other_types_are_refused(bgr_spec, obj) -> None:
    with pytest.raises(ImageFormatError, match="file path, encoded image bytes or a uint8"):
        load_image(obj, bgr_spec)


# ------------------------------------------------------------------------- decoding
def test_bytes_decode_to_the_frame_colour(jpeg_bytes, bgr_spec, rgb_spec, gray_spec) -> None:
    buf = np.frombuffer(jpeg_bytes, np.uint8)
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(load_image(jpeg_bytes, bgr_spec), bgr)
    np.testing.assert_array_equal(load_image(jpeg_bytes, rgb_spec), bgr[:, :, ::-1])
    gray = load_image(jpeg_bytes, gray_spec)
    assert gray.shape == (*bgr.shape[:2], 1)
    np.testing.assert_array_equal(gray[:, :, 0], cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE))


def test_bytes_like_and_paths_are_all_accepted(tmp_path, png_bytes, photo, bgr_spec) -> None:
    # Non-ASCII and spaces in the name: files are read as bytes, not through cv2.imread.
    path = tmp_path / "фото €.png"
    path.write_bytes(png_bytes)
    for image in (png_bytes, bytearray(png_bytes), memoryview(png_bytes), path, str(path)):
        np.testing.assert_array_equal(load_image(image, bgr_spec), photo)


def test_png_alpha_is_dropped(photo, bgr_spec) -> None:
    bgra = np.dstack([photo, np.arange(photo.size // 3, dtype=np.uint8).reshape(photo.shape[:2])])
    out = load_image(_encode(".png", bgra), bgr_spec)
    np.testing.assert_array_equal(out, photo)


@pytest.mark.parametrize(("ext", "params", "fmt", "gray"), [
    (".jpg", (cv2.IMWRITE_JPEG_PROGRESSIVE, 1), "JPEG", False),
    (".jpg", (cv2.IMWRITE_JPEG_RST_INTERVAL, 4), "JPEG", False),
    (".jpg", (cv2.IMWRITE_JPEG_OPTIMIZE, 1), "JPEG", False),
    (".jpg", (), "JPEG", True),
    (".png", (), "PNG", True),
    (".bmp", (), "BMP", False),
    (".webp", (cv2.IMWRITE_WEBP_QUALITY, 80), "WebP", False),
    (".webp", (cv2.IMWRITE_WEBP_QUALITY, 101), "WebP", False),  # lossless (VP8L)
    (".tif", (), "TIFF", False),
    (".ppm", (), "PNM", False),
    (".pgm", (), "PNM", True),
    (".pam", (), "PNM", False),
    (".gif", (), "GIF", False),
])
def test_supported_formats_probe_and_decode(photos, bgr_spec, ext, params, fmt, gray) -> None:
    img = photos["china"]  # 427 x 640: width != height catches swapped dimensions
    if gray:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    data = _encode(ext, img, *params)
    assert probe(data) == (fmt, 427, 640)
    out = load_image(data, bgr_spec)
    expected = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(out, expected)


def test_bytes_after_the_jpeg_end_are_ignored(jpeg_bytes, bgr_spec) -> None:
    # Some cameras append data after EOI; libjpeg ignores it and so must the probe.
    plain = load_image(jpeg_bytes, bgr_spec)
    np.testing.assert_array_equal(load_image(jpeg_bytes + b"\x00" * 100 + b"trailer", bgr_spec),
                                  plain)


# ------------------------------------------------------------------------- bad encoded input
def test_missing_file(tmp_path, bgr_spec) -> None:
    with pytest.raises(ImageDecodeError, match="does not exist"):
        load_image(tmp_path / "nope.jpg", bgr_spec)


def test_directory(tmp_path, bgr_spec) -> None:
    with pytest.raises(ImageDecodeError, match="is a directory"):
        load_image(tmp_path, bgr_spec)


def test_empty_file_and_bytes(tmp_path, bgr_spec) -> None:
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    for image in (p, b"", bytearray()):
        with pytest.raises(ImageDecodeError, match="empty"):
            load_image(image, bgr_spec)


def test_text_file(tmp_path, bgr_spec) -> None:
    p = tmp_path / "notes.jpg"
    p.write_text("this is not an image\n")
    with pytest.raises(ImageDecodeError, match="not a JPEG, PNG"):
        load_image(p, bgr_spec)


def test_unsupported_format_is_refused(photo, bgr_spec) -> None:
    # JPEG 2000 decodes fine in OpenCV, but its header is not parsed here: refused.
    data = _encode(".jp2", photo)
    with pytest.raises(ImageDecodeError, match="decode other formats yourself"):
        load_image(data, bgr_spec)


@pytest.mark.parametrize("keep", [2, 100, 0.1, 0.5, 0.9, 0.999, -2, -1])
def test_truncated_jpeg(jpeg_bytes, bgr_spec, keep) -> None:
    n = keep if isinstance(keep, int) and keep > 0 else (
        len(jpeg_bytes) + keep if isinstance(keep, int) else int(len(jpeg_bytes) * keep))
    with pytest.raises(ImageDecodeError, match="truncated JPEG"):
        load_image(jpeg_bytes[:n], bgr_spec)


@pytest.mark.parametrize("keep", [8, 20, 40, 0.1, 0.5, 0.9, 0.999, -12, -1])
def test_truncated_png(png_bytes, bgr_spec, keep) -> None:
    n = keep if isinstance(keep, int) and keep > 0 else (
        len(png_bytes) + keep if isinstance(keep, int) else int(len(png_bytes) * keep))
    with pytest.raises(ImageDecodeError, match="truncated PNG"):
        load_image(png_bytes[:n], bgr_spec)


def test_truncated_file_on_disk(tmp_path, jpeg_bytes, bgr_spec) -> None:
    p = tmp_path / "cut.jpg"
    p.write_bytes(jpeg_bytes[: len(jpeg_bytes) // 2])
    with pytest.raises(ImageDecodeError, match=r"image file .*cut\.jpg is a truncated JPEG"):
        load_image(p, bgr_spec)


def test_corrupted_jpeg_header(jpeg_bytes, bgr_spec) -> None:
    b = bytearray(jpeg_bytes)
    i = b.find(b"\xff\xc4")  # a Huffman table overwritten with garbage
    b[i + 4:i + 40] = b"\xff" * 36
    with pytest.raises(ImageDecodeError, match="corrupt JPEG"):
        load_image(bytes(b), bgr_spec)
    b = bytearray(jpeg_bytes)
    i = b.find(b"\xff\xc0")  # frame header claims 0 x 0 pixels
    b[i + 5:i + 9] = bytes(4)
    with pytest.raises(ImageDecodeError, match="corrupt JPEG"):
        load_image(bytes(b), bgr_spec)


def test_corrupted_png_data(png_bytes, bgr_spec) -> None:
    b = bytearray(png_bytes)
    i = b.find(b"IDAT")
    b[i + 4:i + 200] = bytes(196)  # zlib stream destroyed; structure and length intact
    with pytest.raises(ImageDecodeError, match="corrupt PNG"):
        load_image(bytes(b), bgr_spec)


@pytest.mark.parametrize("head", [b"\xff\xd8", b"\x89PNG\r\n\x1a\n", b"BM", b"GIF89a",
                                  b"RIFF\x00\x00\x00\x00WEBP", b"II*\x00", b"MM\x00*", b"P6"])
def test_magic_followed_by_junk(bgr_spec, head) -> None:
    rng = np.random.default_rng(0)
    for n in (0, 5, 40, 300):
        with pytest.raises(ImageError):
            load_image(head + rng.integers(0, 256, n, dtype=np.uint8).tobytes(), bgr_spec)


# ------------------------------------------------------------------------- limits, bombs
def _png_claiming(width: int, height: int) -> bytes:
    """A real 1x1 PNG whose IHDR is patched to claim width x height, with a valid CRC."""
    b = bytearray(_encode(".png", np.zeros((1, 1, 3), np.uint8)))
    assert b[12:16] == b"IHDR"
    b[16:24] = struct.pack(">II", width, height)
    b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])))
    return bytes(b)


def test_png_bomb_is_refused_before_decoding(monkeypatch, bgr_spec) -> None:
    bomb = _png_claiming(100_000, 100_000)
    assert len(bomb) < 100
    assert probe(bomb) == ("PNG", 100_000, 100_000)
    _no_decoding(monkeypatch)
    with pytest.raises(ImageTooLargeError, match=r"100000x100000 pixels \(10000\.0 MP\)"):
        load_image(bomb, bgr_spec)


@pytest.fixture(scope="module")
def black_jpeg() -> bytes:
    """8000 x 8000 black (64 MP, over the 50 MP default): a real, valid JPEG of 0.75 MB.

    Decoded to BGR it would take 192 MB, 256 times its file size (12000 x 12000 colour:
    2.25 MB of file for 432 MB of pixels).
    """
    data = _encode(".jpg", np.zeros((8000, 8000), np.uint8))
    assert len(data) < 1_000_000
    return data


def test_jpeg_bomb_is_refused_before_decoding(monkeypatch, black_jpeg, bgr_spec) -> None:
    assert probe(black_jpeg) == ("JPEG", 8000, 8000)
    _no_decoding(monkeypatch)
    with pytest.raises(ImageTooLargeError, match="above the limit of 50 MP"):
        load_image(black_jpeg, bgr_spec)


def test_pixel_limit_is_configurable(black_jpeg, jpeg_bytes, photo, bgr_spec) -> None:
    assert load_image(black_jpeg, bgr_spec, max_pixels=64_000_000).shape == (8000, 8000, 3)
    with pytest.raises(ImageTooLargeError, match="raise max_pixels"):
        load_image(jpeg_bytes, bgr_spec, max_pixels=1000)
    with pytest.raises(ImageTooLargeError):  # arrays obey the same limit
        load_image(photo, bgr_spec, max_pixels=photo.shape[0] * photo.shape[1] - 1)
    assert DEFAULT_MAX_PIXELS == 50_000_000


def test_extreme_aspect_ratio_with_shorter_crop_is_refused() -> None:
    spec = PreprocessSpec(size=(224, 224), resize="shorter_crop", resize_shorter=256)
    with pytest.raises(ImageTooLargeError, match="aspect ratio"):
        load_image(np.zeros((1, 300_000, 3), np.uint8), spec)  # would become 256 x 76.8M
    assert load_image(np.zeros((1, 300_000, 3), np.uint8),
                      PreprocessSpec(size=(224, 224))).shape == (1, 300_000, 3)  # stretch: fine


def test_byte_limit(tmp_path, jpeg_bytes, bgr_spec) -> None:
    p = tmp_path / "photo.jpg"
    p.write_bytes(jpeg_bytes)
    for image in (jpeg_bytes, p):
        with pytest.raises(ImageTooLargeError, match="raise max_bytes"):
            load_image(image, bgr_spec, max_bytes=len(jpeg_bytes) - 1)
        assert load_image(image, bgr_spec, max_bytes=len(jpeg_bytes)).ndim == 3


@pytest.mark.parametrize("bad", [0, -1, 1.5, "10", True, None])
def test_bad_limits_are_config_errors(photo, bgr_spec, bad) -> None:
    with pytest.raises(ConfigError):
        load_image(photo, bgr_spec, max_pixels=bad)
    with pytest.raises(ConfigError):
        load_image(photo, bgr_spec, max_bytes=bad)


def test_error_messages_are_single_lines(tmp_path, jpeg_bytes, bgr_spec) -> None:
    weird = tmp_path / "new\nline.jpg"
    cases = [weird, jpeg_bytes[:500], b"", b"hello\nworld", np.zeros((3, 3, 2), np.uint8),
             np.zeros((3, 3), np.float32), _png_claiming(99_999, 99_999)]
    for image in cases:
        with pytest.raises(ImageError) as e:
            load_image(image, bgr_spec)
        assert "\n" not in str(e.value), str(e.value)


def test_path_objects_other_than_pathlib(tmp_path, png_bytes, photo, bgr_spec) -> None:
    class MyPath:
        def __fspath__(self) -> str:
            return str(tmp_path / "x.png")

    (tmp_path / "x.png").write_bytes(png_bytes)
    np.testing.assert_array_equal(load_image(MyPath(), bgr_spec), photo)


def test_exif_orientation_is_applied(bgr_spec) -> None:
    """As cv2.imread does: a JPEG tagged 'rotate 90 CW' (orientation 6) comes out upright."""
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :10] = 255  # white left band
    jpg = _encode(".jpg", img)
    tiff = (b"II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHII", 0x0112, 3, 1, 6)
            + struct.pack("<I", 0))
    app1 = b"Exif\x00\x00" + tiff
    data = jpg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpg[2:]
    assert probe(data) == ("JPEG", 20, 40)  # the stored size
    out = load_image(data, bgr_spec)
    assert out.shape == (40, 20, 3)  # rotated: the left band is now the top
    assert out[:8].mean() > 250 and out[-20:].mean() < 5
