"""Image headers read without decoding: the decompression-bomb guard's first step.

A 100-byte PNG can claim 100000 x 100000 pixels; OpenCV would allocate tens of GB before
failing. Reading (format, height, width) from the header first lets the runtime refuse
such an image before any allocation, and walking JPEG/PNG structures to their end marker
catches truncated files with a clear message.
"""

from __future__ import annotations

import re
import struct

from edgeinfer.errors import ImageDecodeError, ImageTooLargeError

FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WebP", "TIFF", "PNM")


def probe(data: bytes, source: str = "the image data") -> tuple[str, int, int]:
    """(format, height, width) read from an encoded image's header, without decoding.

    For JPEG and PNG the whole structure is walked to its end marker, so truncated data
    raises :class:`ImageDecodeError` here. Unsupported or unrecognised formats raise it too.
    """
    head = data[:16]
    try:
        if head.startswith(b"\xff\xd8"):
            return ("JPEG", *_probe_jpeg(data, source))
        if head.startswith(b"\x89PNG\r\n\x1a\n"):
            return ("PNG", *_probe_png(data, source))
        if head.startswith(b"BM"):
            return ("BMP", *_probe_bmp(data, source))
        if head.startswith((b"GIF87a", b"GIF89a")):
            w, h = struct.unpack_from("<HH", data, 6)
            return ("GIF", *_positive(h, w, "GIF", source))
        if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
            return ("WebP", *_probe_webp(data, source))
        if head.startswith((b"II*\x00", b"MM\x00*")):
            return ("TIFF", *_probe_tiff(data, source))
        if len(head) >= 3 and head[0:1] == b"P" and head[1:2] in b"1234567":
            return ("PNM", *_probe_pnm(data, source))
    except struct.error:
        raise ImageDecodeError(f"{source} is truncated: its header is incomplete") from None
    raise ImageDecodeError(f"{source} is not a {', '.join(FORMATS[:-1])} or {FORMATS[-1]} image "
                           f"(it starts with {head[:8]!r}); decode other formats yourself and "
                           "pass a uint8 array")


def _positive(h: int, w: int, fmt: str, source: str) -> tuple[int, int]:
    if h <= 0 or w <= 0:
        raise ImageDecodeError(f"{source} is a corrupt {fmt} image: its header says {w}x{h} "
                               "pixels")
    return h, w


def _truncated(source: str, fmt: str, what: str) -> ImageDecodeError:
    return ImageDecodeError(f"{source} is a truncated {fmt} image ({what}): the file was cut "
                            "short or damaged; re-save or re-transfer it")


def _corrupt(source: str, fmt: str, what: str) -> ImageDecodeError:
    return ImageDecodeError(f"{source} is a corrupt {fmt} image ({what})")


# SOF0..SOF15 minus DHT (C4), JPG (C8) and DAC (CC): every frame header carries the size.
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7,
                       0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
# A marker as libjpeg's next_marker() finds one: a run of 0xFF followed by a byte that is
# neither 0x00 nor 0xFF. ``FF 00`` is not a marker, between segments as in entropy-coded
# data: libjpeg discards it and keeps scanning (issue 31: a probe that read ``FF 00`` as a
# segment with a length skipped a 20000x20000 frame header that libjpeg then decoded).
_JPEG_MARKER = re.compile(rb"\xff+([^\x00\xff])")

#: The most scans (SOS segments) a JPEG may have. Decoding time grows with scans x pixels
#: and a scan can cost 31 bytes of file (issue 31: 20,000 copies of one scan, 683 KB, held
#: a worker 25 s). Real files have 1 (baseline) or 6-10 (libjpeg's progressive script:
#: 6 gray, 10 colour; Pillow's optimised files too; no JPEG on the dev machine has more);
#: libjpeg-turbo's own fuzz targets decode with TJPARAM_SCANLIMIT 100 (fuzz/decompress.cc).
MAX_JPEG_SCANS = 100
#: Decoding work, scans x pixels, at most 2**30: 21 scans at 50 MP, 42 at 25 MP, all 100
#: up to 10 MP. Why a product: a scan visits every block of the image, so 100 scans of a
#: 25 MP frame took 3.6 s against 1.7 s for a natural 25 MP progressive photo (measured,
#: docs/security/hostile_images.md); under this bound the worst case stays within about
#: twice a real photo at the pixel limit, far below a request deadline.
MAX_JPEG_SCAN_PIXELS = 2**30


def _probe_jpeg(d: bytes, source: str) -> tuple[int, int]:
    """Walk JPEG markers from SOI to EOI as libjpeg reads them: the first frame's size.

    Markers are found the way libjpeg finds them (``FF 00``, fill bytes and data between
    segments skipped; RSTn and TEM carry no length), so the frame header read here is the
    one the decoder will use; a second SOI, a scan before the frame header, more than
    :data:`MAX_JPEG_SCANS` scans (or scans x pixels above :data:`MAX_JPEG_SCAN_PIXELS`)
    or a missing end-of-image marker are refused.
    """
    n = len(d)
    pos = 2
    size: tuple[int, int] | None = None
    scans = 0
    while True:
        m = _JPEG_MARKER.search(d, pos)
        if m is None:
            raise _truncated(source, "JPEG", "no end-of-image marker")
        marker = m.group(1)[0]
        pos = m.end()
        if marker == 0xD9:  # EOI
            if size is None:
                raise _corrupt(source, "JPEG", "no frame header")
            return size
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # RSTn / TEM: no payload
            continue
        if marker == 0xD8:
            raise _corrupt(source, "JPEG", "a second start-of-image marker")
        if pos + 2 > n:
            raise _truncated(source, "JPEG", "segment header cut")
        length = (d[pos] << 8) | d[pos + 1]
        if length < 2:
            raise _corrupt(source, "JPEG", f"segment length {length}")
        end = pos + length
        if end > n:
            raise _truncated(source, "JPEG", "segment cut")
        if marker in _JPEG_SOF and size is None:
            if length < 8:
                raise _corrupt(source, "JPEG", "short frame header")
            h, w = struct.unpack_from(">HH", d, pos + 3)
            size = _positive(h, w, "JPEG", source)
        elif marker == 0xDA:  # SOS: entropy-coded data follows, skipped by the search
            if size is None:
                raise _corrupt(source, "JPEG", "scan before the frame header")
            scans += 1
            if scans > MAX_JPEG_SCANS or scans * size[0] * size[1] > MAX_JPEG_SCAN_PIXELS:
                raise ImageTooLargeError(
                    f"{source} is a {size[1]}x{size[0]} JPEG with more than {scans - 1} scans, "
                    "the limit for its size (real progressive files have about 10; each "
                    "scan costs a pass over the image): re-encode it")
        pos = end


def _probe_png(d: bytes, source: str) -> tuple[int, int]:
    """IHDR's size after walking the chunk list to IEND (CRCs are left to libpng).

    OpenCV reads chunks itself and allocates each one's declared length before reading it;
    found by tools/fuzz_images.py: an IEND declaring 128 MiB cost 128 MiB, and a PNG with
    no IDAT before IEND made OpenCV read on past IEND, into a chunk declaring 2 GiB (2 GB,
    7 s). So every chunk up to IEND must fit in the data, and image data must come first.
    """
    n = len(d)
    if n < 33:
        raise _truncated(source, "PNG", "no complete IHDR chunk")
    length, ctype = struct.unpack_from(">I4s", d, 8)
    if ctype != b"IHDR" or length != 13:
        raise _corrupt(source, "PNG", "the first chunk is not IHDR")
    w, h = struct.unpack_from(">II", d, 16)
    size = _positive(h, w, "PNG", source)
    pos, idat = 8, False
    while True:
        if pos + 12 > n:
            raise _truncated(source, "PNG", "no IEND chunk")
        length, ctype = struct.unpack_from(">I4s", d, pos)
        if length > 0x7FFFFFFF:
            raise _corrupt(source, "PNG", f"chunk length {length}")
        if pos + 12 + length > n:  # IEND too
            raise _truncated(source, "PNG", f"{ctype.decode('latin-1')!r} chunk cut")
        if ctype == b"IEND":
            if not idat:
                raise _corrupt(source, "PNG", "no image data before IEND")
            return size
        idat = idat or ctype == b"IDAT"
        pos += 12 + length


def _probe_bmp(d: bytes, source: str) -> tuple[int, int]:
    (hdr,) = struct.unpack_from("<I", d, 14)
    if hdr == 12:  # BITMAPCOREHEADER
        w, h = struct.unpack_from("<HH", d, 18)
    elif hdr >= 16:
        w, h = struct.unpack_from("<ii", d, 18)
        h = abs(h)  # negative height: top-down rows
    else:
        raise _corrupt(source, "BMP", f"info header size {hdr}")
    return _positive(h, w, "BMP", source)


def _probe_webp(d: bytes, source: str) -> tuple[int, int]:
    chunk = d[12:16]
    if chunk == b"VP8 ":  # lossy: frame tag (3), start code 9d 01 2a, 14-bit sizes
        if d[23:26] != b"\x9d\x01\x2a":
            raise _corrupt(source, "WebP", "bad VP8 start code")
        w, h = struct.unpack_from("<HH", d, 26)
        return _positive(h & 0x3FFF, w & 0x3FFF, "WebP", source)
    if chunk == b"VP8L":  # lossless: signature 0x2f, then 14-bit width-1 and height-1
        if d[20:21] != b"\x2f":
            raise _corrupt(source, "WebP", "bad VP8L signature")
        (bits,) = struct.unpack_from("<I", d, 21)
        return _positive(((bits >> 14) & 0x3FFF) + 1, (bits & 0x3FFF) + 1, "WebP", source)
    if chunk == b"VP8X":  # extended: 24-bit canvas width-1 and height-1
        w = int.from_bytes(struct.unpack_from("3s", d, 24)[0], "little") + 1
        h = int.from_bytes(struct.unpack_from("3s", d, 27)[0], "little") + 1
        return _positive(h, w, "WebP", source)
    raise _corrupt(source, "WebP", f"unknown first chunk {chunk!r}")


# Tiles this large (pixels) are allowed even above the image's own size.
_MAX_TIFF_TILE = 1024 * 1024


def _probe_tiff(d: bytes, source: str) -> tuple[int, int]:
    """ImageWidth (256) and ImageLength (257) from the first IFD, as libtiff reads them.

    libtiff uses the *first* entry of a tag and ignores later duplicates (issue 31: keeping
    the last one let a TIFF show 1x1 here and 20000x20000 to the decoder). A value that
    libtiff would not read as one SHORT or LONG is refused rather than guessed at.
    """
    e = "<" if d[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(e + "I", d, 4)
    (count,) = struct.unpack_from(e + "H", d, ifd)
    dims: dict[int, int | None] = {}
    for i in range(count):
        tag, typ, n = struct.unpack_from(e + "HHI", d, ifd + 2 + 12 * i)
        if tag in (256, 257, 278, 322, 323) and tag not in dims:
            fmt = {3: "H", 4: "I"}.get(typ)  # SHORT, LONG: inline in a classic TIFF entry
            if fmt is None or n != 1:
                if tag in (256, 257):
                    raise _corrupt(source, "TIFF", f"tag {tag} has type {typ} and count {n}")
                dims[tag] = None  # libtiff may ignore it or not: assume the worst below
                continue
            (dims[tag],) = struct.unpack_from(e + fmt, d, ifd + 2 + 12 * i + 8)
    if 256 not in dims or 257 not in dims:
        raise _corrupt(source, "TIFF", "no ImageWidth/ImageLength in the first directory")
    h, w = _positive(dims[257] or 0, dims[256] or 0, "TIFF", source)
    if 322 in dims or 323 in dims:  # tiled: OpenCV allocates one RGBA tile, any size
        # Found by tools/fuzz_images.py: a 27726x24 image declaring 7538-row tiles made
        # OpenCV allocate 0.8 GB for one tile, and a tile width without a tile length
        # took RowsPerStrip (16383) as the length. Real tiles are 16..1024 on a side.
        rows = dims.get(278) or 0
        tw, th = dims.get(322) or max(w, rows), dims.get(323) or max(h, rows)
        if dims.get(278, 0) is None or tw * th > max(h * w, _MAX_TIFF_TILE):
            raise _corrupt(source, "TIFF", f"{tw}x{th} tiles for a {w}x{h} image")
    return h, w


_PNM_COMMENT = re.compile(rb"#[^\r\n]*")


def _probe_pnm(d: bytes, source: str) -> tuple[int, int]:
    head = d[:4096]
    if head[1:2] == b"7":  # PAM: "WIDTH w" / "HEIGHT h" lines before ENDHDR
        fields = dict(re.findall(rb"^(WIDTH|HEIGHT)[ \t]+(\d+)", head, re.MULTILINE))
        if b"WIDTH" not in fields or b"HEIGHT" not in fields:
            raise _corrupt(source, "PNM", "no WIDTH/HEIGHT in the PAM header")
        return _positive(int(fields[b"HEIGHT"]), int(fields[b"WIDTH"]), "PNM", source)
    tokens = _PNM_COMMENT.sub(b" ", head[2:]).split(maxsplit=2)
    if len(tokens) < 2 or not (tokens[0].isdigit() and tokens[1].isdigit()):
        raise _corrupt(source, "PNM", "no width and height in the header")
    return _positive(int(tokens[1]), int(tokens[0]), "PNM", source)
