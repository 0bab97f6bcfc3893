"""Export an artifact as a Triton Inference Server model repository (scale-out).

    REPO/NAME/config.pbtxt     onnxruntime backend, uint8 frame input with dynamic H/W,
                               dynamic batching, instance groups
    REPO/NAME/labels.txt       one label per line: Triton's classification extension
                               (a detector: what its 'classes' output indexes)
    REPO/NAME/1/model.onnx     the artifact, byte for byte (preprocessing inside)

Why this is enough for Triton: the artifact already takes raw uint8 frames and does all
preprocessing in its graph, so Triton needs no Python backend, ensemble or DALI stage; the
same ``tritonclient`` code that talks to ``edgeinfer serve`` talks to Triton. Triton's
dynamic batcher only batches requests whose input shapes match, which is exactly the
"frames of equal size" rule of ``edgeinfer serve --max-batch``.

A detector artifact (boxes, not probabilities) gets its own config, written by
:mod:`.triton_detect`: its outputs as its graph writes them, one frame per request when
the NMS is in the graph, and a note when that NMS runs in edgeinfer's runtime (Triton's
onnxruntime backend cannot run it; the config says so instead of pretending).

Standard library only (the config is written as protobuf text); tests parse it with
Triton's own ``ModelConfig`` schema from ``tritonclient``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from edgeinfer.artifact import INPUT_NAME, OUTPUT_NAME, ArtifactMetadata, sniff_format
from edgeinfer.data.files import display, load_model_bytes
from edgeinfer.errors import ConfigError, positive_int
from edgeinfer.runtime.loader import open_backend
from edgeinfer.serve.triton_detect import _q

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
KINDS = {"cpu": "KIND_CPU", "gpu": "KIND_GPU"}


@dataclass(frozen=True)
class TritonExport:
    """Where the export went: the model folder, its config, labels and model file."""

    model_dir: Path
    config: Path
    labels: Path
    model: Path
    max_batch: int
    #: what Triton will not do that ``edgeinfer serve`` does (a detector whose NMS runs in
    #: edgeinfer's runtime), in one line; None when it serves the same outputs
    note: str | None = None


def export_triton(artifact: str | os.PathLike, repo_dir: str | os.PathLike, *,
                  name: str | None = None, max_batch: int = 8, instances: int = 1,
                  kind: str = "cpu", queue_delay_us: int = 500,
                  overwrite: bool = False) -> TritonExport:
    """Write ``artifact`` into the Triton model repository ``repo_dir`` as model ``name``.

    ``max_batch``: Triton's ``max_batch_size`` (frames per model call its dynamic batcher
    may form); ``instances``: model instances (``instance_group.count``) on ``kind``
    ("cpu" or "gpu"); ``queue_delay_us``: how long the batcher may hold a request waiting
    for company. Raises ``ConfigError`` for a TFLite artifact (Triton's onnxruntime backend
    runs ONNX; export the .onnx twin), a bad name, or an existing model without
    ``overwrite``; ``ModelError`` for a file that is not an edgeinfer artifact. A detector
    is exported with one frame per request when its NMS is in the graph (``max_batch`` is
    then not Triton's to use); ``TritonExport.note`` says when it is not.
    """
    max_batch = positive_int("max_batch", max_batch)
    instances = positive_int("instances", instances)
    if isinstance(queue_delay_us, bool) or not isinstance(queue_delay_us, int) \
            or queue_delay_us < 0:
        raise ConfigError(f"queue_delay_us must be an integer >= 0, got {queue_delay_us!r}")
    if kind not in KINDS:
        raise ConfigError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    data, source = load_model_bytes(artifact)
    if sniff_format(data) != "onnx":
        raise ConfigError(f"{source} is a TFLite model; Triton's onnxruntime backend runs the "
                          "ONNX artifact: export the .onnx version of this model")
    name = name or Path(os.fspath(artifact)).stem
    if not _NAME.match(name):
        raise ConfigError(f"model name {name!r} is not usable as a Triton model folder: use "
                          "letters, digits, '_', '-' and '.'")
    from edgeinfer.runtime.detect.artifact_detector import detector_props

    props = detector_props(data, source)
    if props is not None:  # boxes, not probabilities: its outputs as the graph writes them
        from edgeinfer.serve.triton_detect import detector_config

        d = detector_config(data, source, props, name, max_batch, instances, KINDS[kind],
                            queue_delay_us)
        text, labels, mbs, note = d.text, d.labels, d.max_batch, d.note
    else:
        text, labels, mbs = _classifier(data, source, name, max_batch, instances, kind,
                                        queue_delay_us)
        note = None

    repo = Path(os.fspath(repo_dir))
    model_dir = repo / name
    version_dir = model_dir / "1"
    model_path = version_dir / "model.onnx"
    if model_path.exists() and not overwrite:
        raise ConfigError(f"{display(model_path)} already exists: choose another name or "
                          "overwrite it")
    try:
        version_dir.mkdir(parents=True, exist_ok=True)
        model_path.write_bytes(data)
        labels_path = model_dir / "labels.txt"
        labels_path.write_text("".join(f"{_one_line(lab)}\n" for lab in labels))
        config_path = model_dir / "config.pbtxt"
        config_path.write_text(text)
    except OSError as e:
        raise ConfigError(f"cannot write the Triton repository {display(repo)}: "
                          f"{e.strerror or e}") from None
    return TritonExport(model_dir, config_path, labels_path, model_path, mbs, note)


def _classifier(data: bytes, source: str, name: str, max_batch: int, instances: int,
                kind: str, queue_delay_us: int) -> tuple[str, tuple[str, ...], int]:
    """(config text, labels, max_batch_size) of a classifier artifact."""
    backend = open_backend(data, threads=1, source=source)
    meta = ArtifactMetadata.from_props(backend.metadata_props(), source)
    in_shape, out_shape = tuple(backend.input_shape), tuple(backend.output_shape)
    k = out_shape[-1] if isinstance(out_shape[-1], int) else len(meta.labels)
    labels = meta.labels or tuple(str(i) for i in range(k))
    if len(labels) != k:
        raise ConfigError(f"{source} has {len(labels)} labels for {k} outputs")

    batch_dynamic = not isinstance(in_shape[0], int)
    dims = [d if isinstance(d, int) else -1 for d in in_shape]
    if batch_dynamic:
        mbs, dims = max_batch, dims[1:]
    else:  # a fixed batch dimension: Triton must not batch, the dims carry it
        mbs = 0
    text = _config_text(name, source, mbs, dims, k, instances, KINDS[kind], queue_delay_us,
                        meta.spec.frame_color, meta.spec.to_json())
    return text, labels, mbs


def _one_line(label: str) -> str:
    return " ".join(label.split()) or "?"


def _config_text(name: str, source: str, max_batch: int, dims: list[int], k: int,
                 instances: int, kind: str, delay_us: int, frame_color: str,
                 spec_json: str) -> str:
    channels = dims[-1]
    color = "GRAY" if channels == 1 else frame_color
    lines = [
        f"# Written by `edgeinfer export triton` from {_one_line(source)}.",
        f"# Input 'frame': raw uint8 frames, NHWC, {color} channel order, any height and",
        "# width; resizing, colour conversion and normalisation run inside the model.",
        "# Output 'probs': softmax probabilities; labels.txt serves the classification",
        "# extension (an output with \"parameters\": {\"classification\": K}).",
        f"name: {_q(name)}",
        'backend: "onnxruntime"',
        f"max_batch_size: {max_batch}",
        "input [",
        "  {",
        f"    name: {_q(INPUT_NAME)}",
        "    data_type: TYPE_UINT8",
    ]
    if max_batch > 0 and len(dims) == 3:
        lines.append("    format: FORMAT_NHWC")
    lines += [
        f"    dims: [ {', '.join(str(d) for d in dims)} ]",
        "  }",
        "]",
        "output [",
        "  {",
        f"    name: {_q(OUTPUT_NAME)}",
        "    data_type: TYPE_FP32",
        f"    dims: [ {k} ]" if max_batch > 0 else f"    dims: [ -1, {k} ]",
        '    label_filename: "labels.txt"',
        "  }",
        "]",
    ]
    if max_batch > 0:
        lines += [
            "# Requests whose frames have the same height and width are batched together.",
            "dynamic_batching {",
            f"  max_queue_delay_microseconds: {delay_us}",
            "}",
        ]
    lines += [
        "instance_group [",
        "  {",
        f"    count: {instances}",
        f"    kind: {kind}",
        "  }",
        "]",
        "parameters {",
        '  key: "edgeinfer.frame_color"',
        f"  value {{ string_value: {_q(color)} }}",
        "}",
        "parameters {",
        '  key: "edgeinfer.spec"',
        f"  value {{ string_value: {_q(spec_json)} }}",
        "}",
        "",
    ]
    return "\n".join(lines)
