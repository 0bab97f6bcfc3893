"""Issue 31's crafted images: the size the guard checks is the size the decoder decodes.

The regression files under tests/runtime/hostile/ are written by
tools/make_hostile_images.py (desync.jpg: a 20000x20000 frame header behind ``FF 00``;
desync.tif: 20000x20000 in the first ImageWidth/ImageLength tags, 1x1 in later ones;
many_scans.jpg: one 31-byte progressive scan repeated to 600 scans). Each was refused only
after a 2.4 GB allocation or decoded for seconds before the fix; the refusals here must
come before decoding (cv2.imdecode made to fail the test).
"""

from __future__ import annotations

import importlib.util
import os
import struct
import subprocess
import sys
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from edgeinfer.errors import ImageDecodeError, ImageTooLargeError
from edgeinfer.runtime.image import load_image
from edgeinfer.runtime.image_probe import MAX_JPEG_SCAN_PIXELS, MAX_JPEG_SCANS, probe
from edgeinfer.serve.config import ServeConfig
from edgeinfer.serve.server import serve_in_thread

HOSTILE = Path(__file__).parent / "hostile"
REPO = Path(__file__).resolve().parents[2]


def _tool():
    spec = importlib.util.spec_from_file_location("make_hostile_images",
                                                  REPO / "tools" / "make_hostile_images.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _no_decoding(monkeypatch) -> None:
    def boom(*_a, **_k):
        raise AssertionError("cv2.imdecode was called")

    monkeypatch.setattr(cv2, "imdecode", boom)


def _scans(data: bytes) -> int:
    return sum(1 for m, _ in _tool().segments(data) if m == 0xDA)


def test_regression_files_are_what_the_tool_writes() -> None:
    tool = _tool()
    assert (HOSTILE / "desync.jpg").read_bytes() == tool.desync_jpeg()
    assert (HOSTILE / "desync.tif").read_bytes() == tool.desync_tiff()
    assert (HOSTILE / "many_scans.jpg").read_bytes() == tool.many_scans(2000, 600)


@pytest.mark.parametrize("name, fmt", [("desync.jpg", "JPEG"), ("desync.tif", "TIFF")])
def test_probe_reads_the_header_the_decoder_reads(monkeypatch, bgr_spec, name, fmt) -> None:
    """libjpeg skips ``FF 00`` and libtiff keeps the first tag: so must the probe (it read
    1x1 in both, and the decoder then allocated 20000x20000)."""
    data = (HOSTILE / name).read_bytes()
    assert probe(data) == (fmt, 20000, 20000)
    _no_decoding(monkeypatch)
    for image in (data, HOSTILE / name):
        with pytest.raises(ImageTooLargeError, match="20000x20000 pixels"):
            load_image(image, bgr_spec)


def test_ff00_and_fill_bytes_between_segments_change_nothing(jpeg_bytes, bgr_spec) -> None:
    """Stray ``FF 00``, fill bytes and garbage before a marker are skipped by libjpeg (with a
    warning) and by the probe alike: the photo still loads, with its own size."""
    ref = load_image(jpeg_bytes, bgr_spec)
    app = jpeg_bytes.index(b"\xff\xdb")  # before the first quantisation table
    for junk in (b"\xff\x00\x00\x40", b"\xff\xff\xff", b"\x12\x34", b"\xff\x00\xff\x00"):
        data = jpeg_bytes[:app] + junk + jpeg_bytes[app:]
        assert probe(data) == ("JPEG", *ref.shape[:2])
        np.testing.assert_array_equal(load_image(data, bgr_spec), ref)


def test_tiff_first_dimension_tags_win(bgr_spec) -> None:
    """A real 16x8 TIFF whose directory repeats ImageWidth/ImageLength with other values
    after the real ones: libtiff and the probe both keep the first."""
    data = cv2.imencode(".tiff", np.full((8, 16, 3), 200, np.uint8))[1].tobytes()
    assert probe(data) == ("TIFF", 8, 16)
    tool = _tool()
    lie = tool.desync_tiff(h=40, w=30, rows=8)  # 30x40 first, 1x1 after
    assert probe(lie) == ("TIFF", 40, 30)
    assert load_image(lie, bgr_spec).shape == (40, 30, 3)


def test_many_scans_are_refused_before_decoding(monkeypatch, bgr_spec) -> None:
    data = (HOSTILE / "many_scans.jpg").read_bytes()
    assert _scans(data) == 600
    _no_decoding(monkeypatch)
    with pytest.raises(ImageTooLargeError, match=f"more than {MAX_JPEG_SCANS} scans"):
        load_image(data, bgr_spec)


def test_scan_limit_scales_with_the_pixels() -> None:
    """Work is scans x pixels: 4000x4000 may have 67 scans (2**30 / 16e6), not 68."""
    tool = _tool()
    cap = MAX_JPEG_SCAN_PIXELS // (4000 * 4000)
    assert cap == 67
    assert probe(tool.many_scans(4000, cap)) == ("JPEG", 4000, 4000)
    with pytest.raises(ImageTooLargeError, match="4000x4000 JPEG with more than 67 scans"):
        probe(tool.many_scans(4000, cap + 1))


def test_real_progressive_jpegs_pass(photo, bgr_spec) -> None:
    """libjpeg's progressive script (10 scans colour, 6 gray) is far below the limits."""
    gray = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    for img, scans in ((photo, 10), (gray, 6)):
        data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
        assert _scans(data) == scans
        assert load_image(data, bgr_spec).shape[:2] == img.shape[:2]


def test_png_chunk_longer_than_the_file_is_refused_before_decoding(monkeypatch, png_bytes,
                                                                  bgr_spec) -> None:
    """Found by tools/fuzz_images.py: OpenCV allocates a chunk's declared length before
    reading it, so a 70-byte PNG whose IEND claimed 128 MiB cost 128 MiB of RSS."""
    iend = png_bytes.rindex(b"IEND") - 4
    data = png_bytes[:iend] + struct.pack(">I", 2**27) + png_bytes[iend + 4:]
    _no_decoding(monkeypatch)
    with pytest.raises(ImageDecodeError, match="truncated PNG image \\('IEND' chunk cut\\)"):
        load_image(data, bgr_spec)


def test_png_without_image_data_is_refused_before_decoding(monkeypatch, png_bytes,
                                                           bgr_spec) -> None:
    """Found by tools/fuzz_images.py: with no IDAT before IEND, OpenCV read on past IEND
    and allocated what the next chunk declared (2 GiB for a 6 KB file)."""
    ihdr, iend = png_bytes[8:33], png_bytes[-12:]
    data = png_bytes[:8] + ihdr + iend + iend + struct.pack(">I", 2**31 - 1) + iend[4:]
    _no_decoding(monkeypatch)
    with pytest.raises(ImageDecodeError, match="no image data before IEND"):
        load_image(data, bgr_spec)


def test_decoded_size_must_be_the_probed_size(png_bytes, photo, bgr_spec) -> None:
    """The last line of defence: a server passes the header it charged; a decoder that reads
    another size is refused, whatever that size."""
    with pytest.raises(ImageDecodeError, match="the decoder read"):
        load_image(png_bytes, bgr_spec, header=("PNG", 1, 1))
    h, w = photo.shape[:2]
    assert load_image(png_bytes, bgr_spec, header=("PNG", h, w)).shape == photo.shape


CHILD = r"""
import os, sys
first = sys.argv[1]
if first == "cv2":
    import cv2
import edgeinfer
import cv2, numpy as np
from edgeinfer.cv2_env import CV2_PRELOADED, DECODER_MAX_PIXELS
from edgeinfer.errors import ImageTooLargeError
from edgeinfer.runtime.image import load_image
from edgeinfer.spec import PreprocessSpec
png = cv2.imencode(".png", np.zeros((40, 40, 3), np.uint8))[1].tobytes()
try:
    direct = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
except cv2.error:  # "pixels <= CV_IO_MAX_IMAGE_PIXELS": the decoder's own refusal
    direct = None
try:
    load_image(sys.argv[2], PreprocessSpec(size=(28, 28)))
    hostile = "decoded"
except ImageTooLargeError:
    hostile = "refused"
print(os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS"), DECODER_MAX_PIXELS, CV2_PRELOADED,
      "none" if direct is None else direct.shape[0], hostile)
"""


@pytest.mark.parametrize("value, kept", [(None, False), ("", False), ("1e6", False),
                                         ("-5", False), ("0", False), (" 5", False),
                                         ("1000", True), ("1KB", True)])
def test_opencv_limit_is_set_before_cv2_loads(value, kept) -> None:
    """Set but empty (or unparsable), OpenCV aborts with SIGABRT at ``import cv2``; edgeinfer
    replaces such values before it loads cv2, keeps a valid one, and OpenCV enforces it."""
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}
    if value is not None:
        env["OPENCV_IO_MAX_IMAGE_PIXELS"] = value
    r = subprocess.run([sys.executable, "-c", CHILD, "edgeinfer", str(HOSTILE / "desync.jpg")],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-500:]
    got, limit, preloaded, direct, hostile = r.stdout.split()
    assert preloaded == "False" and hostile == "refused"
    if kept:
        assert got == value and int(limit) in (1000, 1024)
        assert direct == "none"  # 1600 pixels: OpenCV's own decoder refused them
    else:
        assert got == limit == str(2**27) and direct == "40"


def test_cv2_imported_first_still_refuses_hostile_files() -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}
    for name in ("desync.jpg", "desync.tif", "many_scans.jpg"):
        r = subprocess.run([sys.executable, "-c", CHILD, "cv2", str(HOSTILE / name)], env=env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-500:]
        assert r.stdout.split()[2:] == ["True", "40", "refused"], r.stdout


def test_server_refuses_hostile_images_with_413_and_stays_small(fashion_artifact) -> None:
    with serve_in_thread([fashion_artifact], ServeConfig(port=0)) as url:
        for name in ("desync.jpg", "desync.tif", "many_scans.jpg"):
            r = httpx.post(f"{url}/predict", content=(HOSTILE / name).read_bytes(), timeout=60)
            assert r.status_code == 413, (name, r.text)
            assert "\n" not in r.json()["error"]
        ok = cv2.imencode(".png", np.full((28, 28, 3), 90, np.uint8))[1].tobytes()
        assert httpx.post(f"{url}/predict", content=ok, timeout=60).status_code == 200


def test_server_budget_is_charged_the_decoders_size(fashion_artifact) -> None:
    """With the pixel limit out of the way, the in-flight byte budget is what refuses the
    desync files: it is charged 20000x20000x3 bytes, the frame libjpeg/libtiff would make
    (it was charged 3 bytes, for the 1x1 the probe read, and the server peaked at 2.4 GB)."""
    cfg = ServeConfig(port=0, max_pixels=10**9, max_inflight_bytes=256 * 2**20)
    with serve_in_thread([fashion_artifact], cfg) as url:
        for name in ("desync.jpg", "desync.tif"):
            r = httpx.post(f"{url}/predict", content=(HOSTILE / name).read_bytes(), timeout=60)
            assert r.status_code == 413, (name, r.text)
            assert "1144.4 MiB, above the server's in-flight memory budget" in r.json()["error"]


# Peak RSS from VmHWM: getrusage's ru_maxrss is preserved across execve, so a child of a
# pytest worker that had grown to 1.5 GB reported 1.5 GB whatever it did itself.
BACKSTOP = r"""
import re, sys
import edgeinfer
from edgeinfer.errors import ImageTooLargeError
from edgeinfer.runtime.image import load_image
from edgeinfer.spec import PreprocessSpec
data = open(sys.argv[1], "rb").read()
try:  # a probe that read 1x1, as the old one did: only OpenCV's own limit stands
    load_image(data, PreprocessSpec(size=(28, 28)), 10**12, header=(sys.argv[2], 1, 1))
    print("decoded")
except ImageTooLargeError as e:
    hwm = re.search(r"VmHWM:\s+(\d+) kB", open("/proc/self/status").read()).group(1)
    print("refused", int(hwm) // 1024, str(e))
"""


@pytest.mark.parametrize("name, fmt", [("desync.jpg", "JPEG"), ("desync.tif", "TIFF")])
def test_decoder_limit_stands_when_the_probe_is_fooled(name, fmt) -> None:
    """Defence in depth: with a header check that a crafted file fooled and no per-call
    limit, OpenCV's decoder still refuses 20000x20000 before allocating (it was 2.4 GB)."""
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}
    r = subprocess.run([sys.executable, "-c", BACKSTOP, str(HOSTILE / name), fmt], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-500:]
    verdict, peak_mb, message = r.stdout.split(maxsplit=2)
    assert verdict == "refused" and "OpenCV's decoder limit of 134.218 MP" in message
    assert int(peak_mb) < 600  # the frame alone would be 1144 MiB
