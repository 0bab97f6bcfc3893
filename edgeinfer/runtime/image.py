"""Turn what a user hands the runtime (a path, encoded bytes, a numpy array) into a frame.

A *frame* is what an artifact's ``frame`` input takes for one image: a C-contiguous uint8
array ``H x W x C`` with C = ``spec.frame_channels`` (3 in the spec's ``frame_color``
order, or 1 for GRAY). See :func:`load_image` for the rules, which are also the README's.

Only numpy, OpenCV and the standard library: the runtime depends on this module.
"""

from __future__ import annotations

import os
from typing import Any

import cv2
import numpy as np

from edgeinfer.cv2_env import CV2_PRELOADED, DECODER_MAX_PIXELS
from edgeinfer.data.files import display, read_regular
from edgeinfer.errors import (
    ImageDecodeError,
    ImageFormatError,
    ImageTooLargeError,
    positive_int,
)
from edgeinfer.runtime.image_probe import probe
from edgeinfer.spec import PreprocessSpec

#: Default pixel limit (width x height) for any input: 50 megapixels, e.g. 8660 x 5773.
DEFAULT_MAX_PIXELS = 50_000_000
#: Default limit on the size of encoded input (a file or bytes): 128 MiB.
DEFAULT_MAX_BYTES = 128 * 2**20


# IMREAD_COLOR_RGB needs OpenCV >= 4.11; older ones decode BGR and convert.
_IMREAD_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)
_IMREAD = {"BGR": cv2.IMREAD_COLOR, "RGB": _IMREAD_RGB or cv2.IMREAD_COLOR,
           "GRAY": cv2.IMREAD_GRAYSCALE}

ImageInput = Any  # str | os.PathLike | bytes | bytearray | memoryview | np.ndarray


def load_image(
    image: ImageInput,
    spec: PreprocessSpec,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    *,
    header: tuple[str, int, int] | None = None,
) -> np.ndarray:
    """One image as an ``H x W x C`` uint8 frame in the spec's ``frame_color`` order.

    ``header``: what :func:`~edgeinfer.runtime.image_probe.probe` already returned for these
    same encoded bytes (a server probes every image of a request before decoding any, to
    charge its pixels); it is then not probed a second time. Ignored for arrays and paths.

    Accepted input:

    * **A path** (``str`` or ``os.PathLike``) to a JPEG, PNG, BMP, GIF, WebP, TIFF or
      PNM (PPM/PGM/PBM/PAM) file. The file is read as bytes and decoded with
      ``cv2.imdecode``, so non-ASCII paths work everywhere. ``bytes`` are never a path.
    * **Encoded bytes** (``bytes``, ``bytearray``, ``memoryview``) of such a file.
      Decoding goes straight to the frame colour: ``cv2.IMREAD_COLOR`` for BGR
      frames, ``IMREAD_COLOR_RGB`` for RGB, ``IMREAD_GRAYSCALE`` for GRAY. As with
      ``cv2.imread``, an EXIF orientation is applied, an alpha channel is dropped (not
      composited) and 16-bit images are reduced to 8 bits.
    * **A numpy uint8 array**, taken as pixels already in the spec's frame colour order
      (BGR for what OpenCV gives you):

      - ``H x W`` or ``H x W x 1``: gray. Replicated to 3 channels when the frame is
        colour; kept as is when the frame is GRAY.
      - ``H x W x 3``: colour in frame order. For a GRAY frame it is taken as BGR
        (OpenCV's order) and converted with ``cv2.cvtColor`` (BT.601 luma).
      - ``H x W x 4``: colour plus alpha, as ``cv2.imread(..., IMREAD_UNCHANGED)`` gives
        (BGRA). The alpha channel is dropped, not composited over a background.

      Non-contiguous arrays (slices, flips) are fine. A contiguous array that needs no
      conversion is returned as is, without a copy: the runtime never writes to it.
      Other dtypes are refused rather than guessed at: float (which could be 0..1 or
      0..255, and may hold NaN), uint16, bool, signed and object arrays all raise
      :class:`ImageFormatError` with a hint for converting to uint8.

    Limits (decompression-bomb guard): an image may have at most ``max_pixels`` pixels
    (default 50 MP) and encoded input at most ``max_bytes`` bytes (default 128 MiB);
    beyond either, :class:`ImageTooLargeError`. For encoded input the dimensions are read
    from the format's header (JPEG SOF, PNG IHDR, BMP/GIF/WebP/TIFF/PNM headers) *before*
    anything is decoded, so a few-kilobyte file that claims 100000 x 100000 pixels is
    refused without allocating its pixels. Formats whose header edgeinfer does not parse
    (JPEG 2000, AVIF, OpenEXR, HDR, ...) are refused for the same reason: decode them
    yourself and pass the array. The probe reads headers the way libjpeg and libtiff do,
    but a hand-written parser is a first filter, never the only guard: OpenCV's decoders
    also enforce ``OPENCV_IO_MAX_IMAGE_PIXELS`` on the size *they* read, before
    allocating (:mod:`edgeinfer.cv2_env` sets it to 2**27 pixels unless the environment
    holds a valid value; it only takes effect when edgeinfer is imported before cv2), and
    a decoded image whose size differs from the probed header is refused. A JPEG with more
    than :data:`~edgeinfer.runtime.image_probe.MAX_JPEG_SCANS` scans, or scans x pixels
    above ``MAX_JPEG_SCAN_PIXELS``, is refused too (decoding time grows with scans x
    pixels, and a scan can be 31 bytes): docs/security/hostile_images.md.
    Arrays are checked too, and so is the size a ``shorter_crop`` spec would resize to,
    which an extreme aspect ratio (say 1 x 50000) would blow up.

    Truncated JPEG and PNG data is detected by walking the file's structure (a JPEG must
    reach its end-of-image marker, a PNG its IEND chunk) and raises
    :class:`ImageDecodeError` instead of decoding a partly grey image. Bytes after the end
    of the image (some cameras append data) are ignored.

    Errors: :class:`ImageDecodeError` (missing, unreadable, empty, truncated, corrupt or
    non-image data), :class:`ImageFormatError` (wrong type, dtype, shape or channel
    count), :class:`ImageTooLargeError` (above a limit). All are ``ImageError``.
    """
    _check_limits(max_pixels, max_bytes)
    return _load(image, spec, max_pixels, max_bytes, header)


def _check_limits(max_pixels: int, max_bytes: int) -> None:
    positive_int("max_pixels", max_pixels)
    positive_int("max_bytes", max_bytes)


def _load(image: ImageInput, spec: PreprocessSpec, max_pixels: int, max_bytes: int,
          header: tuple[str, int, int] | None = None) -> np.ndarray:
    """load_image without re-validating the limits (the Predictor checks them once)."""
    if isinstance(image, np.ndarray):
        return _from_array(image, spec, max_pixels)
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        if len(data) > max_bytes:
            raise ImageTooLargeError(f"the image data is {len(data)} bytes, above the limit of "
                                     f"{max_bytes}; pass a smaller image or raise max_bytes")
        return _decode(data, spec, max_pixels, "the image data", header)
    if isinstance(image, (str, os.PathLike)):
        name = display(image)
        return _decode(_read_file(image, name, max_bytes), spec, max_pixels, f"image file {name}")
    raise ImageFormatError(f"cannot use a {type(image).__name__} as an image: pass a file "
                           "path, encoded image bytes or a uint8 numpy array (H x W x 3)")


# ---------------------------------------------------------------------------- arrays
def _from_array(a: np.ndarray, spec: PreprocessSpec, max_pixels: int) -> np.ndarray:
    if type(a) is not np.ndarray:  # subclasses (masked arrays, np.matrix): plain data
        a = np.asarray(a).view(np.ndarray)
    if a.dtype != np.uint8:
        raise ImageFormatError(_dtype_hint(a.dtype))
    ndim = a.ndim
    if ndim == 2:
        c = 1
    elif ndim == 3:
        c = a.shape[2]
    else:
        raise ImageFormatError(f"an image array must be H x W or H x W x C, got shape "
                               f"{a.shape}; for several images use predict_batch")
    h, w = a.shape[0], a.shape[1]
    if h == 0 or w == 0 or c == 0:
        raise ImageFormatError(f"the image array is empty (shape {a.shape}): pass at least "
                               "one pixel")
    if c not in (1, 3, 4):
        raise ImageFormatError(f"an image array must have 1, 3 or 4 channels (gray, BGR, "
                               f"BGRA), got {c} (shape {a.shape})")
    _check_size(h, w, spec, max_pixels, "the image array")
    if spec.frame_channels == 3:
        if c == 3:
            return a if a.flags.c_contiguous else np.ascontiguousarray(a)
        if c == 4:
            return cv2.cvtColor(a, cv2.COLOR_BGRA2BGR)  # drops alpha, keeps channel order
        return cv2.cvtColor(a.reshape(h, w) if ndim == 3 else a, cv2.COLOR_GRAY2BGR)
    # GRAY frame
    if c == 1:
        a = a.reshape(h, w, 1) if ndim == 2 else a
        return a if a.flags.c_contiguous else np.ascontiguousarray(a)
    code = cv2.COLOR_BGR2GRAY if c == 3 else cv2.COLOR_BGRA2GRAY
    return cv2.cvtColor(a, code).reshape(h, w, 1)


def _dtype_hint(dtype: np.dtype) -> str:
    kind = dtype.kind
    if kind == "f":
        return (f"float arrays are not accepted (got {dtype}): pass uint8 pixels 0..255, e.g. "
                "np.clip(x * 255, 0, 255).astype(np.uint8) for values in 0..1")
    if kind == "b":
        return "bool arrays are not accepted: pass uint8 pixels, e.g. x.astype(np.uint8) * 255"
    if kind == "u" and dtype.itemsize == 2:
        return ("uint16 arrays are not accepted: pass uint8 pixels, e.g. (x >> 8).astype(np.uint8) "
                "for 16-bit images")
    if kind in "iu":
        return (f"{dtype} arrays are not accepted: pass uint8 pixels 0..255, e.g. "
                "np.clip(x, 0, 255).astype(np.uint8)")
    return f"arrays of dtype {dtype} are not accepted: pass a uint8 array (H x W x 3)"


def _check_size(h: int, w: int, spec: PreprocessSpec, max_pixels: int, source: str) -> None:
    if h * w > max_pixels:
        raise ImageTooLargeError(f"{source} is {w}x{h} pixels ({h * w / 1e6:.1f} MP), above the "
                                 f"limit of {max_pixels / 1e6:g} MP: downscale it first or "
                                 "raise max_pixels (predict and serve: --max-megapixels)")
    if spec.crops:
        nh, nw = spec.resized_size(h, w)
        if nh * nw > max_pixels:
            raise ImageTooLargeError(f"{source} is {w}x{h} pixels; the spec would resize it to "
                                     f"{nw}x{nh} before cropping, above the limit of "
                                     f"{max_pixels / 1e6:g} MP: crop it to a less extreme "
                                     "aspect ratio first")


# ---------------------------------------------------------------------------- files, bytes
def _read_file(path: Any, name: str, max_bytes: int) -> bytes:
    data = read_regular(path, "image file", ImageDecodeError, max_bytes, ImageTooLargeError)
    if len(data) > max_bytes:  # grew between stat and read
        raise ImageTooLargeError(f"image file {name} holds more than {max_bytes} bytes, the "
                                 "limit; pass a smaller file or raise max_bytes")
    return data


def _decode(data: bytes, spec: PreprocessSpec, max_pixels: int, source: str,
            header: tuple[str, int, int] | None = None) -> np.ndarray:
    if not data:
        raise ImageDecodeError(f"{source} is empty (0 bytes): pass a JPEG or PNG image")
    fmt, h, w = header if header is not None else probe(data, source)
    _check_size(h, w, spec, max_pixels, source)
    if h * w > DECODER_MAX_PIXELS and not CV2_PRELOADED:
        raise ImageTooLargeError(f"{source} is {w}x{h} pixels, above OpenCV's decoder limit "
                                 f"of {DECODER_MAX_PIXELS / 1e6:g} MP: set "
                                 "OPENCV_IO_MAX_IMAGE_PIXELS higher before starting")
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), _IMREAD[spec.frame_color])
    except cv2.error as e:
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else "decoder error"
        if "CV_IO_MAX_IMAGE_PIXELS" in msg:  # the decoder's own size check (cv2_env)
            raise ImageTooLargeError(f"{source} is a {fmt} image larger than OpenCV's decoder "
                                     f"limit of {DECODER_MAX_PIXELS / 1e6:g} MP (the size its "
                                     "decoder read from the header)") from None
        raise ImageDecodeError(f"{source} is a corrupt {fmt} image ({msg})") from None
    if img is None or img.size == 0:
        raise ImageDecodeError(f"{source} is a corrupt {fmt} image: OpenCV cannot decode it; "
                               "check the file or re-encode it")
    if img.dtype != np.uint8:  # cannot happen with these flags; do not trust it blindly
        raise ImageDecodeError(f"{source} decoded to {img.dtype}, not uint8")
    if img.shape[:2] not in ((h, w), (w, h)):  # EXIF rotation may swap h and w
        # The probe and the decoder read different headers: what was charged and checked
        # is not what was decoded. Refused whatever the size (fuzz target: must not happen).
        raise ImageDecodeError(f"{source} is a corrupt {fmt} image: its header says {w}x{h} "
                               f"pixels, the decoder read {img.shape[1]}x{img.shape[0]}")
    h, w = img.shape[:2]
    _check_size(h, w, spec, max_pixels, source)
    if spec.frame_color == "RGB" and _IMREAD_RGB is None:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if img.ndim == 2:
        img = img.reshape(h, w, 1)
    if img.shape[2] != spec.frame_channels:
        raise ImageDecodeError(f"{source} decoded to {img.shape[2]} channels, the frame "
                               f"needs {spec.frame_channels}")
    return img if img.flags.c_contiguous else np.ascontiguousarray(img)


# ---------------------------------------------------------------------------- header probes
