"""The Triton ``config.pbtxt`` of an ONNX *detector* artifact: its outputs described as the
model writes them, and what Triton will not do for it said in the config's comment.

A detector artifact ends in one of two ways (``converter/detect_graph.py``):

* ``nms="graph"`` (convert's default): class-aware NonMaxSuppression + TopK and the inverse
  letterbox run inside the ONNX graph, so Triton's onnxruntime backend gives what
  ``edgeinfer serve`` gives: ``boxes [N, 4]`` in the sent frame's pixels, ``scores [N]``,
  ``classes [N]`` (INT64, lines of labels.txt). The outputs carry no batch dimension (the
  box count differs per frame), so one frame per request: ``max_batch_size: 0`` and input
  dims ``[1, -1, -1, C]`` - the shape ``edgeinfer serve``'s metadata reports for a detector.
* ``nms="runtime"``: the graph stops before suppression, at ``boxes [A, 4]`` in the model
  input's pixels and ``scores [A, C]`` per class, and edgeinfer's runtime does the NMS and the
  letterbox inverse (``runtime/detect/artifact_detector.py``). An onnxruntime-backend config
  cannot express either step: these raw outputs are exported as what they are (batched, as
  a classifier's), and the comment, a ``edgeinfer.postprocess`` parameter and the export's
  note say the client must finish the job, or reconvert with the NMS in the graph. A Triton
  Python backend or ensemble could run it, but that needs edgeinfer inside Triton's Python
  and is not written.

onnxruntime only (to read the graph's inputs and outputs), imported when called.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from edgeinfer.artifact import INPUT_NAME, ArtifactMetadata
from edgeinfer.errors import ModelError, one_line

GRAPH_OUTPUTS = ("boxes", "scores", "classes")
RUNTIME_OUTPUTS = ("boxes", "scores")
_TYPES = {"tensor(float)": "TYPE_FP32", "tensor(int64)": "TYPE_INT64",
          "tensor(uint8)": "TYPE_UINT8"}


@dataclass(frozen=True)
class DetectorConfig:
    """The config text, the labels file's lines, Triton's max_batch_size and the note the
    export prints (None when Triton serves what ``edgeinfer serve`` serves)."""

    text: str
    labels: tuple[str, ...]
    max_batch: int
    note: str | None


def _q(s: str) -> str:
    """A protobuf text-format string literal (JSON escaping is a valid subset); the one
    copy, which serve/triton.py imports (imports run triton -> triton_detect)."""
    return json.dumps(s, ensure_ascii=True)


def _dims(shape: list) -> list[int]:
    return [d if isinstance(d, int) else -1 for d in shape]


def detector_config(data: bytes, source: str, props: dict[str, str], name: str,
                    max_batch: int, instances: int, kind: str, delay_us: int
                    ) -> DetectorConfig:
    """The repository entry of the ONNX detector ``data`` (``props``: its metadata)."""
    import onnxruntime as ort

    meta = ArtifactMetadata.from_props(props, source)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 4
    try:
        session = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime's several pybind error types
        raise ModelError(f"{source} cannot be loaded as an ONNX model: {one_line(e)}") from None
    (inp,) = session.get_inputs()
    outs = {o.name: o for o in session.get_outputs()}
    names = tuple(outs)
    det = meta.detection
    assert det is not None  # detector_props said task == "detect"
    n = det.nms
    nms_words = (f"{'class-aware ' if n.class_aware else ''}NMS (IoU > {n.iou_threshold:g} "
                 f"suppressed, score > {n.score_threshold:g}, at most {n.top_k})")
    c = _dims(inp.shape)[-1]
    if names[:3] == GRAPH_OUTPUTS:
        mbs, in_dims, post = 0, [1, -1, -1, c], "none"
        out_dims = {k: _dims(outs[k].shape) for k in GRAPH_OUTPUTS}
        comment = [
            "# Outputs: the frame's detections, after",
            f"# {nms_words}",
            f"# and the inverse {det.fit}, both inside the model (ONNX NonMaxSuppression +",
            "# TopK), as in `edgeinfer serve`: 'boxes' x0, y0, x1, y1 in the sent frame's",
            "# pixels, 'scores' best first, 'classes' index the lines of labels.txt. One",
            "# frame per request: the box count differs per frame and the outputs have no",
            "# batch dimension, so Triton does not batch this model (max_batch_size 0).",
        ]
        note = None
    elif names[:2] == RUNTIME_OUTPUTS:
        mbs, in_dims, post = max_batch, [-1, -1, c], "client"
        out_dims = {k: _dims(outs[k].shape)[1:] for k in RUNTIME_OUTPUTS}
        h, w = meta.spec.size
        comment = [
            "# Outputs: the detector's RAW outputs, before suppression. 'boxes' x0, y0, x1, y1",
            f"# in the model input's pixels ({h}x{w}, the frame placed by {det.fit}); 'scores'",
            "# per anchor and class. edgeinfer's runtime then runs",
            f"# {nms_words}",
            f"# and the inverse {det.fit} (edgeinfer.detection below); this onnxruntime-",
            "# backend config cannot express those steps, so Triton does NOT run them: the",
            "# client must, or convert the detector with the NMS in its graph",
            "# (convert_detector(nms='graph')).",
        ]
        note = (f"{source}'s NMS and {det.fit} inverse run in edgeinfer's runtime, not in its "
                "graph: Triton serves the raw boxes/scores before them (see config.pbtxt); "
                "convert with nms='graph' for boxes in frame pixels")
    else:
        raise ModelError(f"{source} has outputs {list(names)}; a detector artifact writes "
                         f"{', '.join(GRAPH_OUTPUTS)} or {', '.join(RUNTIME_OUTPUTS)}")
    color = "GRAY" if c == 1 else meta.spec.frame_color
    lines = [
        f"# Written by `edgeinfer export triton` from {one_line(source, 200)}: a detector.",
        f"# Input 'frame': raw uint8 frames, NHWC, {color} channel order, any height and",
        "# width; resizing, colour conversion and normalisation run inside the model.",
        *comment,
        f"name: {_q(name)}",
        'backend: "onnxruntime"',
        f"max_batch_size: {mbs}",
        "input [",
        "  {",
        f"    name: {_q(INPUT_NAME)}",
        "    data_type: TYPE_UINT8",
        *(["    format: FORMAT_NHWC"] if mbs > 0 and len(in_dims) == 3 else []),
        f"    dims: [ {', '.join(str(d) for d in in_dims)} ]",
        "  }",
        "]",
        "output [",
    ]
    for i, k in enumerate(out_dims):
        lines += ["  {", f"    name: {_q(k)}", f"    data_type: {_TYPES[outs[k].type]}",
                  f"    dims: [ {', '.join(str(d) for d in out_dims[k])} ]",
                  "  }" + ("," if i < len(out_dims) - 1 else "")]
    lines.append("]")
    if mbs > 0:
        lines += ["# Requests whose frames have the same height and width are batched together.",
                  "dynamic_batching {", f"  max_queue_delay_microseconds: {delay_us}", "}"]
    lines += ["instance_group [", "  {", f"    count: {instances}", f"    kind: {kind}", "  }",
              "]"]
    params = {"edgeinfer.frame_color": color, "edgeinfer.spec": meta.spec.to_json(),
              "edgeinfer.task": "detect", "edgeinfer.detection": det.to_json(),
              "edgeinfer.nms": "graph" if post == "none" else "runtime",
              "edgeinfer.postprocess": post}
    for key, value in params.items():
        lines += ["parameters {", f"  key: {_q(key)}",
                  f"  value {{ string_value: {_q(value)} }}", "}"]
    lines.append("")
    return DetectorConfig("\n".join(lines), meta.labels, mbs, note)
