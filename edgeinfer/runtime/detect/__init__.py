"""Detection in the lean runtime (issue 28): a uint8 frame of any size in, boxes in that
frame's own pixels out. geometry (letterbox / pad_resize / stretch / crop and the exact
inverse), pixels (Pillow's antialiased resize on uint8, bit for bit), decode (MediaPipe's
SSD anchors), nms (class-aware and MediaPipe's weighted), blazeface (the bundled
description of a third-party detector), detector (``Detector``, ``Detection``).
numpy, OpenCV and LiteRT only."""
