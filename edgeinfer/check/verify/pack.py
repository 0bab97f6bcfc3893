"""Making a parity pack on the workstation: run the framework source once on real frames.

This is the half of ``verify`` that needs the framework (torch, or onnx for an ONNX
source); the device later reads the pack with :mod:`edgeinfer.data.packfile` alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.data.files import read_regular
from edgeinfer.data.frames import FrameSet, builtin_name, load_frames
from edgeinfer.data.packfile import ParityPack, make_pack
from edgeinfer.errors import ConfigError, EdgeInferError
from edgeinfer.parity.tolerances import pack_entries
from edgeinfer.probs import are_probabilities
from edgeinfer.probs import softmax as softmax_fn
from edgeinfer.progress import Progress

DEFAULT_LIMIT = 200
def encoded_files(data: str, fs: FrameSet) -> list[bytes] | None:
    """The original encoded files behind an image-folder FrameSet, in frame order.

    Only folders map ids back to files (flat: ``name``; labelled: ``class/name``); bundled
    sets and CSVs get None (no encoded bytes in the pack, no decode check on the device).
    """
    root = Path(data)
    if builtin_name(data) is not None or not root.is_dir() or not fs.ids:
        return None
    return [read_regular(root / i, "parity image", EdgeInferError) for i in fs.ids]


def shrink(fs: FrameSet, blobs: list[bytes] | None, max_side: int) -> int:
    """Downscale frames whose longer side exceeds ``max_side`` (INTER_AREA), in place.

    Photos dominate a pack's size (a 2400x1600 photo is 11.5 MB of lossless pixels); a
    smaller frame is still a real frame, and the framework then runs on exactly it. A
    downscaled frame's encoded entry becomes a lossless PNG of it, so the decode check
    still compares like with like. Returns how many frames were downscaled.
    """
    import cv2

    n = 0
    for i, f in enumerate(fs.frames):
        h, w = f.shape[:2]
        if max(h, w) <= max_side:
            continue
        s = max_side / max(h, w)
        small = cv2.resize(f, (max(1, round(w * s)), max(1, round(h * s))),
                           interpolation=cv2.INTER_AREA)
        fs.frames[i] = small.reshape(small.shape[:2] + f.shape[2:])
        if blobs is not None:
            blobs[i] = cv2.imencode(".png", fs.frames[i])[1].tobytes()
        n += 1
    return n


def open_artifact(artifact: Any, spec: Any) -> tuple[bytes, str, str, Any]:
    """(bytes, name, dtype, prefix runner) of ``pack --artifact``, refused in one line
    (ConfigError) before any framework work when it cannot give its own pixels."""
    from edgeinfer.artifact import ArtifactMetadata
    from edgeinfer.data.files import load_model_bytes
    from edgeinfer.parity.prefix import prefix_runner
    from edgeinfer.runtime.loader import open_backend

    data, name = load_model_bytes(artifact)
    meta = ArtifactMetadata.from_props(open_backend(data, 1, source=name).metadata_props(),
                                       name)
    if meta.spec != spec:
        raise ConfigError(f"--artifact {name} was converted with another preprocessing spec "
                          "than this pack's: pass the same --spec (or none for a bundled model)")
    prefix = prefix_runner(data)
    if prefix is None:
        raise ConfigError(f"--artifact {name} exposes no preprocessing output (an int8 ONNX "
                          "file renames it; a file from elsewhere has none): pack without "
                          "--artifact")
    return data, name, meta.provenance.get("quantize") or "fp32", prefix


def artifact_reference(opened: tuple[bytes, str, str, Any], src: Any,
                       frames: list[np.ndarray], softmax: bool,
                       say: Progress) -> tuple[dict[str, Any], np.ndarray]:
    """(the manifest's ``artifact`` entry, the framework fed that artifact's own pixels).

    Why: on a network whose outputs move with the rounding of the pixels, the artifact vs
    the framework on the reference pixels exceeds the fp32 bound although the conversion is
    right (convert judges it stage by stage for that reason). Packing the framework's answer
    on the artifact's own prefix output lets the device judge the same model stage.
    """
    import hashlib

    from edgeinfer.artifact import sniff_format
    from edgeinfer.parity.stages import framework_on

    data, name, dtype, prefix = opened
    runner = src.make_runner(False)
    if src.spec is not None or not hasattr(runner, "model"):
        raise ConfigError(f"--artifact: the {src.framework} source's model does not take the "
                          "artifact's pixels (its preprocessing layers were lifted into the "
                          "spec); pack without --artifact")
    say(f"running {src.name} on the pixels of {name}'s own preprocessing")
    pixels, _ = prefix.run(frames)
    ref = framework_on(runner, pixels)
    entry = {"name": Path(name).name, "sha256": hashlib.sha256(data).hexdigest(),
             "format": sniff_format(data), "dtype": dtype}
    return entry, softmax_fn(ref) if softmax else ref


def build_pack(source: Any, data: str, *, spec: Any = None, weights: str | None = None,
               labels: Any = None, limit: int | None = DEFAULT_LIMIT, encoded: bool = True,
               max_side: int | None = None, artifact: Any = None,
               progress: Progress | None = None, skip_bad: bool = False) -> ParityPack:
    """Run the framework source in inference mode on ``data`` and pack its probabilities.

    ``max_side``: frames larger than this are downscaled first (see :func:`shrink`).
    ``artifact``: also pack the framework fed this artifact's own pixels
    (:func:`artifact_reference`), which ``verify`` of that file judges its model stage by.
    ``skip_bad``: leave undecodable files out (named, and counted in the data's name).
    """
    from edgeinfer.converter.sources.load import resolve_labels, resolve_source
    from edgeinfer.converter.spec_resolve import resolve
    from edgeinfer.runtime.image_probe import probe

    say = progress or (lambda _m: None)
    spec_ = resolve(source, spec).spec
    opened = open_artifact(artifact, spec_) if artifact is not None else None
    src = resolve_source(source, spec_, weights, progress=say)
    names = resolve_labels(labels, src.reference) or src.labels
    fs = load_frames(data, spec_, limit=limit, class_names=names, skip_bad=skip_bad,
                     probe=probe)
    blobs = encoded_files(data, fs) if encoded else None
    resized = shrink(fs, blobs, max_side) if max_side else 0
    if resized:
        say(f"{resized} frames downscaled to a longer side of {max_side}")
    for bad in fs.skipped:
        say(f"skipped (--skip-bad): {bad}")
    say(f"running {src.name} on {len(fs.frames)} frames ({fs.description})")
    raw = src.make_runner(False).run(fs.frames)
    softmax = not are_probabilities(raw)
    if softmax:

        raw = softmax_fn(raw)
    k = raw.shape[1]
    names = names or tuple(str(i) for i in range(k))
    if len(names) != k:
        raise ConfigError(f"{len(names)} labels for a model with {k} outputs")
    truth = fs.labels
    if truth is not None and fs.class_names and tuple(fs.class_names) != tuple(names):
        raise ConfigError(f"{data}: its classes are not the model's labels")
    prov = dict(src.provenance) | {"softmax_applied": softmax, "runner": src.name,
                                   "max_side": max_side, "downscaled_frames": resized}
    pack = make_pack(spec_, names, fs.frames, raw, source=prov, data_name=fs.description,
                     ids=fs.ids,
                     truth=truth, class_names=fs.class_names, encoded=blobs,
                     tolerances=pack_entries())
    if opened is not None:
        pack.artifact, pack.artifact_reference = artifact_reference(
            opened, src, fs.frames, softmax, say)
    return pack
