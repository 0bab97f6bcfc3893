"""OpenCV's own image-size limit, set before OpenCV is loaded: the decoder's guard.

Why here, and why first: OpenCV checks every image it decodes against
``OPENCV_IO_MAX_IMAGE_PIXELS`` using the size *its own* decoder read from the header,
before allocating the pixels. That is the one check a crafted header cannot slip past
(issue 31: a JPEG or TIFF that shows edgeinfer's hand-written probe 1x1 pixels and libjpeg
or libtiff 20000x20000 made ``predict`` allocate 2.4 GB). OpenCV reads the variable once,
when the ``cv2`` extension is loaded, so it has to be in the environment before the first
``import cv2``; ``edgeinfer/__init__.py`` imports this module before anything else, and
every edgeinfer module is imported through that package, so the order holds inside
edgeinfer.

The variable must also hold something OpenCV can parse: set but empty, or ``1e6``, or
``-5``, and OpenCV throws from a static initialiser and the process dies with SIGABRT at
``import cv2`` (measured, OpenCV 5.1). So an unset, empty or unparsable value (and ``0``,
which would refuse every image) is replaced by :data:`DEFAULT_DECODER_MAX_PIXELS`; a
valid value the user set is kept (they may need bigger images than our default allows).
The width and height limits OpenCV reads the same way are repaired the same way.

If ``cv2`` was imported before edgeinfer (user code doing ``import cv2`` first), nothing
set here reaches the decoder: :data:`CV2_PRELOADED` says so and the limit in force is
whatever the environment held then (OpenCV's default 2**30 pixels if unset). The runtime
still refuses oversize images with its header probe (which now reads the header the way
libjpeg and libtiff do) and checks the decoded size after decoding; only the allocation
bound of a probe/decoder disagreement is lost in that case.
"""

from __future__ import annotations

import os
import re
import sys

#: OpenCV's limit when edgeinfer sets it: 2**27 pixels (134 MP; 403 MB as a BGR frame).
#: Above every --max-megapixels default (serve 25 MP, predict 50 MP) and above the
#: largest camera sensors in use (100-150 MP medium format), so a legitimate image is never
#: refused by the decoder first, yet a lying header cannot make OpenCV allocate more than
#: ~0.4 GB per decode (OpenCV's own default, 2**30, allows 3.2 GB).
DEFAULT_DECODER_MAX_PIXELS = 2**27
_DEFAULTS = {"OPENCV_IO_MAX_IMAGE_PIXELS": DEFAULT_DECODER_MAX_PIXELS,
             "OPENCV_IO_MAX_IMAGE_WIDTH": 1 << 20,  # OpenCV's defaults for these two
             "OPENCV_IO_MAX_IMAGE_HEIGHT": 1 << 20}
# What OpenCV's parser accepts (utils::getConfigurationParameterSizeT): digits, optionally
# followed by a KB or MB suffix; anything else aborts the process.
_VALID = re.compile(r"([0-9]{1,18})(KB|Kb|kb|MB|Mb|mb)?")
_SUFFIX = {"": 1, "k": 1024, "m": 1024 * 1024}

#: True when cv2 was already loaded before edgeinfer: the limits below did not reach it.
CV2_PRELOADED = "cv2" in sys.modules


def parse_size(text: str | None) -> int | None:
    """The number OpenCV would read from ``text``, or None where it would abort (or 0)."""
    if text is None:
        return None
    m = _VALID.fullmatch(text)
    if m is None:
        return None
    value = int(m.group(1)) * _SUFFIX[(m.group(2) or "")[:1].lower()]
    return value if 0 < value < 2**63 else None


def _repair(environ: os._Environ[str] | dict[str, str]) -> dict[str, int]:
    """Give each limit a value OpenCV can parse; the limits in force afterwards."""
    out = {}
    for name, default in _DEFAULTS.items():
        value = parse_size(environ.get(name))
        if value is None:
            environ[name] = str(default)
            value = default
        out[name] = value
    return out


if CV2_PRELOADED:  # too late to change what cv2 read; report what it most likely holds
    _LIMITS = {name: parse_size(os.environ.get(name)) or (1 << 30 if "PIXELS" in name else d)
               for name, d in _DEFAULTS.items()}
else:
    _LIMITS = _repair(os.environ)

#: The pixel limit OpenCV's decoders enforce in this process (width x height).
DECODER_MAX_PIXELS: int = _LIMITS["OPENCV_IO_MAX_IMAGE_PIXELS"]
