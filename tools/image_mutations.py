"""Structure-aware mutations of JPEG, PNG, TIFF, WebP and GIF files, for the image fuzzer.

Why structure-aware: random byte flips almost never get past a format's first checks, so
they test the error path of a header parser and little else. The attacks that broke the
size guard (issue 31) were structural: a frame header hidden behind ``FF 00``, a repeated
TIFF tag, 20,000 copies of one scan. Each mutator here parses its format into its units
(JPEG segments, PNG chunks with their CRCs recomputed, TIFF directory entries, RIFF
chunks, GIF blocks), changes one unit the way an attacker would (sizes, duplicates,
lengths, order, repeats) and re-serialises, so the decoder's deeper code runs. A generic
byte-level pass (flip, cut, splice) is applied on top now and then.

Used by tests/fuzz/test_fuzz_images.py (Hypothesis draws the ``random.Random`` seed) and
tools/fuzz_images.py (the on-demand run).
"""

from __future__ import annotations

import random
import re
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
HOSTILE = REPO / "tests" / "runtime" / "hostile"
_MARKER = re.compile(rb"\xff+([^\x00\xff])")
_SIZES = [0, 1, 2, 7, 8, 9, 255, 256, 4096, 8191, 16383, 16384, 65535, 30000]


def seeds() -> dict[str, bytes]:
    """Small real encodings of a real-looking image in each format, plus the regressions."""
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8), (5, 5), 0)
    gray = cv2.cvtColor(base, cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(base, cv2.COLOR_BGR2BGRA)

    def enc(ext: str, img: np.ndarray, *params: int) -> bytes:
        ok, e = cv2.imencode(ext, img, list(params))
        assert ok, ext
        return e.tobytes()

    out = {"jpeg": enc(".jpg", base), "jpeg-gray": enc(".jpg", gray),
           "jpeg-progressive": enc(".jpg", base, cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
           "jpeg-restart": enc(".jpg", base, cv2.IMWRITE_JPEG_RST_INTERVAL, 1),
           "png": enc(".png", base), "png-gray": enc(".png", gray), "png-alpha": enc(".png", bgra),
           "png-16bit": enc(".png", base.astype(np.uint16) * 257),
           "tiff": enc(".tiff", base), "tiff-gray": enc(".tiff", gray),
           "tiff-deflate": enc(".tiff", base, cv2.IMWRITE_TIFF_COMPRESSION,
                               cv2.IMWRITE_TIFF_COMPRESSION_ADOBE_DEFLATE),
           "webp-lossy": enc(".webp", base, cv2.IMWRITE_WEBP_QUALITY, 80),
           "webp-lossless": enc(".webp", base, cv2.IMWRITE_WEBP_QUALITY, 101),
           "webp-alpha": enc(".webp", bgra, cv2.IMWRITE_WEBP_QUALITY, 101),
           "gif": enc(".gif", base)}
    for p in sorted(HOSTILE.glob("*")):
        out[f"hostile-{p.name}"] = p.read_bytes()
    return out


# ---------------------------------------------------------------------------- generic
def _bytes_level(d: bytes, r: random.Random) -> bytes:
    if not d:
        return d
    op = r.randrange(4)
    i = r.randrange(len(d))
    if op == 0:  # flip bits in a few bytes
        b = bytearray(d)
        for _ in range(r.randint(1, 4)):
            b[r.randrange(len(b))] ^= 1 << r.randrange(8)
        return bytes(b)
    if op == 1:  # cut
        return d[:i]
    if op == 2:  # splice a copy of a slice elsewhere
        j = r.randrange(len(d))
        return d[:i] + d[j:j + r.randint(1, 64)] + d[i:]
    return d[:i] + bytes([r.choice([0x00, 0xFF, 0x7F, 0x80])]) * r.randint(1, 16) + d[i:]


def _size(r: random.Random) -> int:
    return r.choice(_SIZES) if r.random() < 0.7 else r.randrange(65536)


# ---------------------------------------------------------------------------- JPEG
def jpeg_segments(d: bytes) -> list[bytes]:
    """Marker segments from after SOI to EOI (a scan keeps its entropy-coded data)."""
    out, pos = [], 2
    while True:
        m = _MARKER.search(d, pos)
        if m is None or m.group(1)[0] == 0xD9 or m.end() + 2 > len(d):
            return out
        marker = m.group(1)[0]
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            out.append(d[m.start():m.end()])
            pos = m.end()
            continue
        end = m.end() + struct.unpack_from(">H", d, m.end())[0]
        if marker == 0xDA:
            nxt = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]").search(d, end)
            end = nxt.start() if nxt else len(d)
        out.append(d[m.start():min(end, len(d))])
        pos = max(end, m.end())


def mutate_jpeg(d: bytes, r: random.Random) -> bytes:
    segs = jpeg_segments(d)
    if not segs:
        return _bytes_level(d, r)
    i = r.randrange(len(segs))
    s = segs[i]
    op = r.randrange(9)
    if op == 0:  # frame header size
        for k, seg in enumerate(segs):
            if len(seg) >= 9 and 0xC0 <= seg[1] <= 0xCF and seg[1] not in (0xC4, 0xC8, 0xCC):
                segs[k] = seg[:5] + struct.pack(">HH", _size(r), _size(r)) + seg[9:]
    elif op == 1:  # repeat a segment (a scan: many scans)
        segs[i:i + 1] = [s] * r.choice([2, 3, 50, 150, 700])
    elif op == 2:
        del segs[i]
    elif op == 3:  # FF 00 / fill bytes / RST / garbage between segments
        segs.insert(i, r.choice([b"\xff\x00", b"\xff\xff\xff", b"\xff\xd3", b"\xff\x00\x00\x20",
                                 b"\x00\x11", b"\xff\x01", b"\xff\xd8"]))
    elif op == 4:  # wrong length field
        if len(s) >= 4 and s[1] not in range(0xD0, 0xD8):
            segs[i] = s[:2] + struct.pack(">H", _size(r)) + s[4:]
    elif op == 5:  # swap two segments
        j = r.randrange(len(segs))
        segs[i], segs[j] = segs[j], segs[i]
    elif op == 6:  # damage the payload
        segs[i] = s[:2] + _bytes_level(s[2:], r)
    elif op == 7:  # a second frame header with another size
        sof = next((x for x in segs if len(x) >= 9 and x[1] in (0xC0, 0xC1, 0xC2)), None)
        if sof:
            segs.insert(i, sof[:5] + struct.pack(">HH", _size(r), _size(r)) + sof[9:])
    else:  # hide a segment behind FF 00 + length (the issue-31 desync)
        segs[i:i + 1] = [b"\xff\x00" + struct.pack(">H", len(s) + 2) + s]
    return b"\xff\xd8" + b"".join(segs) + (b"\xff\xd9" if r.random() < 0.9 else b"")


# ---------------------------------------------------------------------------- PNG
def _chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data))


def mutate_png(d: bytes, r: random.Random) -> bytes:
    chunks, pos = [], 8
    while pos + 12 <= len(d):
        n, t = struct.unpack_from(">I4s", d, pos)
        chunks.append([t, d[pos + 8:pos + 8 + n]])
        pos += 12 + n
    if not chunks:
        return _bytes_level(d, r)
    i = r.randrange(len(chunks))
    op = r.randrange(7)
    ihdr = chunks[0][1]
    if op == 0 and len(ihdr) == 13:  # size, depth, colour type, interlace
        w, h = (_size(r), _size(r)) if r.random() < 0.7 else struct.unpack(">II", ihdr[:8])
        depth, ctype = r.choice([1, 2, 4, 8, 16, 3]), r.choice([0, 2, 3, 4, 6, 5])
        chunks[0][1] = struct.pack(">IIBB", w, h, depth, ctype) + ihdr[10:12] + bytes(
            [r.choice([0, 1, 2])])
    elif op == 1:
        chunks[i:i + 1] = [chunks[i]] * r.choice([2, 3, 100])
    elif op == 2 and i:
        del chunks[i]
    elif op == 3:  # a deflate bomb as image data
        chunks.insert(max(1, i), [b"IDAT", zlib.compress(bytes(r.choice([10**5, 10**6])), 9)])
    elif op == 4:
        chunks.insert(max(1, i), [r.choice([b"IHDR", b"tEXt", b"PLTE", b"tRNS", b"eXIf",
                                            b"acTL", b"fcTL"]), r.randbytes(r.randrange(40))])
    elif op == 5:
        chunks[i][1] = _bytes_level(chunks[i][1], r)
    else:
        j = r.randrange(len(chunks))
        chunks[i], chunks[j] = chunks[j], chunks[i]
    parts = [_chunk(t, x) for t, x in chunks]
    if r.random() < 0.15:  # a chunk that claims more bytes than the file holds
        k = r.randrange(len(parts))
        parts[k] = struct.pack(">I", r.choice([2**20, 2**27, 2**31 - 1])) + parts[k][4:]
    out = d[:8] + b"".join(parts)
    return _bytes_level(out, r) if r.random() < 0.15 else out


# ---------------------------------------------------------------------------- TIFF
_TIFF_TAGS = [256, 257, 258, 259, 262, 273, 277, 278, 279, 284, 317, 322, 323, 324, 325, 338,
              339, 274]


def mutate_tiff(d: bytes, r: random.Random) -> bytes:
    e = "<" if d[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack_from(e + "I", d, 4)
        (n,) = struct.unpack_from(e + "H", d, ifd)
        entries = [list(struct.unpack_from(e + "HHII", d, ifd + 2 + 12 * k)) for k in range(n)]
    except struct.error:
        return _bytes_level(d, r)
    if not entries:
        return _bytes_level(d, r)
    i = r.randrange(len(entries))
    op = r.randrange(6)
    if op == 0:  # a value (sizes, strips, compression, ...)
        entries[i][3] = _size(r) if r.random() < 0.6 else r.randrange(2**32)
    elif op == 1:  # duplicate a tag with another value, before or after
        dup = [entries[i][0], entries[i][1], 1, _size(r)]
        entries.insert(r.randrange(len(entries) + 1), dup)
    elif op == 2:  # type / count
        entries[i][1] = r.choice([1, 3, 4, 5, 16, 0, 99])
        entries[i][2] = r.choice([0, 1, 2, 2**31])
    elif op == 3:  # a tag that is not there yet (tiles, orientation, ...)
        entries.append([r.choice(_TIFF_TAGS), r.choice([3, 4]), 1, _size(r)])
    elif op == 4:
        del entries[i]
    else:
        return _bytes_level(d, r)

    def entry(t: list[int]) -> bytes:
        if t[1] == 3 and t[2] == 1:
            return struct.pack(e + "HHIHH", t[0], t[1], t[2], t[3] & 0xFFFF, 0)
        return struct.pack(e + "HHII", t[0], t[1], t[2], t[3])

    body = struct.pack(e + "H", len(entries)) + b"".join(entry(t) for t in entries)
    # The directory grew or shrank in place: what followed it keeps its offset only when
    # the new directory is written at the end instead (offset in the header patched).
    return d[:4] + struct.pack(e + "I", len(d)) + d[8:] + body + struct.pack(e + "I", 0)


# ---------------------------------------------------------------------------- WebP
def mutate_webp(d: bytes, r: random.Random) -> bytes:
    chunks, pos = [], 12
    while pos + 8 <= len(d):
        t, n = d[pos:pos + 4], struct.unpack_from("<I", d, pos + 4)[0]
        chunks.append([t, d[pos + 8:pos + 8 + n]])
        pos += 8 + n + (n & 1)
    if not chunks:
        return _bytes_level(d, r)
    i = r.randrange(len(chunks))
    t, x = chunks[i]
    op = r.randrange(5)
    if op == 0 and t == b"VP8 " and len(x) >= 10:
        chunks[i][1] = x[:6] + struct.pack("<HH", _size(r) & 0x3FFF, _size(r) & 0x3FFF) + x[10:]
    elif op == 0 and t == b"VP8L" and len(x) >= 5:
        bits = (_size(r) & 0x3FFF) | ((_size(r) & 0x3FFF) << 14) | (x[4] >> 4 << 28)
        chunks[i][1] = x[:1] + struct.pack("<I", bits) + x[5:]
    elif op == 1:  # an extended header with a canvas of any size in front
        canvas = (_size(r) - 1) % 2**24, (_size(r) - 1) % 2**24
        vp8x = bytes([r.choice([0, 0x10, 0x02])]) + bytes(3) + canvas[0].to_bytes(3, "little") \
            + canvas[1].to_bytes(3, "little")
        chunks.insert(0, [b"VP8X", vp8x])
    elif op == 2:
        chunks[i][1] = _bytes_level(x, r)
    elif op == 3:
        chunks[i:i + 1] = [chunks[i]] * r.choice([2, 50])
    else:
        chunks.insert(i, [r.choice([b"ALPH", b"ANIM", b"ANMF", b"EXIF", b"ICCP"]),
                          r.randbytes(r.randrange(32))])
    lie = r.randrange(len(chunks)) if r.random() < 0.15 else -1  # a chunk claiming more
    body = b"WEBP" + b"".join(
        t + struct.pack("<I", r.choice([2**20, 2**27, 2**31]) if k == lie else len(x)) + x
        + b"\x00" * (len(x) & 1) for k, (t, x) in enumerate(chunks))
    size = len(body) if r.random() < 0.9 else r.randrange(2**32)
    return b"RIFF" + struct.pack("<I", size) + body


# ---------------------------------------------------------------------------- GIF
def mutate_gif(d: bytes, r: random.Random) -> bytes:
    b = bytearray(d)
    if len(b) < 13:
        return _bytes_level(d, r)
    op = r.randrange(5)
    desc = b.find(b"\x2c", 13 + (3 << ((b[10] & 7) + 1) if b[10] & 0x80 else 0))
    if op == 0:  # logical screen size
        struct.pack_into("<HH", b, 6, _size(r), _size(r))
    elif op == 1 and desc > 0 and desc + 10 <= len(b):  # image position and size
        struct.pack_into("<HHHH", b, desc + 1, _size(r), _size(r), _size(r), _size(r))
    elif op == 2 and desc > 0 and desc + 11 <= len(b):  # LZW minimum code size
        b[desc + 10] = r.choice([0, 1, 2, 8, 11, 12, 255])
    elif op == 3 and desc > 0:  # many extension blocks before the image
        ext = b"\x21\xfe" + bytes([20]) + b"x" * 20 + b"\x00"
        b[desc:desc] = ext * r.choice([1, 100, 5000])
    else:
        return _bytes_level(bytes(b), r)
    return bytes(b)


MUTATORS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "jpeg": mutate_jpeg, "png": mutate_png, "tiff": mutate_tiff, "webp": mutate_webp,
    "gif": mutate_gif}


def kind(name: str, data: bytes) -> str:
    if data[:2] == b"\xff\xd8":
        return "jpeg"
    for k, magic in (("png", b"\x89PNG"), ("tiff", b"II*"), ("tiff", b"MM\x00"),
                     ("webp", b"RIFF"), ("gif", b"GIF")):
        if data.startswith(magic):
            return k
    return name.split("-")[0]


def mutate(name: str, data: bytes, r: random.Random) -> bytes:
    """1-3 structure-aware mutations of ``data`` (a seed named ``name``)."""
    k = kind(name, data)
    for _ in range(r.choice([1, 1, 2, 3])):
        data = MUTATORS.get(k, lambda x, _r: _bytes_level(x, _r))(data, r)
    return data
