"""Hostile ONNX and TFLite artifacts: one line and exit 2, or a right answer, never a traceback.

Structure-aware mutations of real artifacts (the session's converted fashion model):
ONNX through its protobuf fields (metadata_props keys and values, values that are not
UTF-8, opset and IR version, initializer dims / data type / raw_data, graph inputs and
outputs, plus cut or flipped bytes of the serialized file); TFLite through its flatbuffer
bytes (vtable and offset words, cuts) and the edgeinfer metadata JSON inside it (other
JSON types, truncated JSON, non-UTF-8 bytes). Each mutant goes through ``edgeinfer info``
(the CLI's ``main``, in process, so a traceback fails the test), the backend and one frame
(what ``predict`` does), and the metadata reader. The budget here is small (a few seconds
a format); ``tools/fuzz_artifacts.py --budget`` runs the same strategies through the CLI in
subprocesses for as long as it is given, checking peak RSS and signals too.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeinfer.cli import main
from edgeinfer.errors import EdgeInferError

REGRESSIONS = Path(__file__).parent / "regressions"
REPO = Path(__file__).resolve().parents[2]
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large])
#: Integers a field is set to: edges of int32/int64, zero, negatives, a few sane values.
WILD_INTS = st.one_of(st.sampled_from([0, -1, 1, 2, 3, 7, 10, 28, 2**31 - 1, 2**31, 2**32 + 1,
                                       2**45, 2**62, -2**63]), st.integers(-5, 300))
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                  max_size=3), max_leaves=6)


def check_cli(args: list[str], capfd: pytest.CaptureFixture) -> int:
    """``edgeinfer ARGS`` in process: exit 0, or 2 with exactly one line; anything else
    (an exception that is not an EdgeInferError) fails the test with its traceback.
    ``capfd``, not capsys: what onnxruntime or LiteRT write to fd 2 counts as lines too."""
    capfd.readouterr()
    rc = main(args)
    err = [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()
           and not ln.startswith("[edgeinfer]")]
    assert rc in (0, 2), (rc, err)
    if rc == 2:
        assert len(err) == 1, err
    return rc


def check_backend(data: bytes) -> None:
    """What ``predict`` does: open the artifact, read its metadata, run one frame."""
    from edgeinfer.runtime.loader import open_backend
    from edgeinfer.runtime.metadata import read_metadata

    for step in (lambda: read_metadata(data), lambda: _run_one(open_backend(data, 1))):
        try:
            step()
        except EdgeInferError as e:
            assert "\n" not in str(e)


def _run_one(backend) -> None:
    from edgeinfer.artifact import ArtifactMetadata

    meta = ArtifactMetadata.from_props(backend.metadata_props(), "mutant")
    frame = np.full((1, 28, 28, meta.spec.frame_channels), 100, np.uint8)
    probs = backend.run(frame)
    assert probs.ndim == 2 and probs.shape[0] == 1


# ------------------------------------------------------------------------------- ONNX
@st.composite
def onnx_mutants(draw: st.DrawFn, seed: bytes) -> bytes:
    """One structure-aware mutation of an ONNX ModelProto, serialized (needs onnx)."""
    import onnx

    m = onnx.ModelProto.FromString(seed)
    g = m.graph
    kind = draw(st.sampled_from(["meta_value", "meta_not_utf8", "meta_key", "opset", "ir",
                                 "init_dims", "init_raw", "init_type", "input", "output",
                                 "bytes"]))
    if kind == "meta_value" and m.metadata_props:
        p = draw(st.sampled_from(list(m.metadata_props)))
        p.value = draw(st.one_of(JSON_VALUES.map(json.dumps), st.text(max_size=30),
                                 st.just(p.value[: len(p.value) // 2])))
    elif kind == "meta_key" and m.metadata_props:
        i = draw(st.integers(0, len(m.metadata_props) - 1))
        if draw(st.booleans()):
            del m.metadata_props[i]
        else:
            m.metadata_props[i].key = draw(st.text(max_size=20))
    elif kind == "opset":
        o = m.opset_import[0]
        o.version = draw(WILD_INTS)
        if draw(st.booleans()):
            o.domain = draw(st.sampled_from(["", "ai.onnx.ml", "com.example", "\x00"]))
    elif kind == "ir":
        m.ir_version = draw(WILD_INTS)
    elif kind.startswith("init") and g.initializer:
        t = draw(st.sampled_from(list(g.initializer)))
        if kind == "init_dims":
            n = draw(st.integers(0, 4))
            del t.dims[:]
            t.dims.extend(draw(st.lists(WILD_INTS, min_size=n, max_size=n)))
        elif kind == "init_raw":
            cut = draw(st.integers(0, len(t.raw_data) + 8))
            t.raw_data = t.raw_data[:cut] + draw(st.binary(max_size=8))
        else:
            t.data_type = draw(st.integers(0, 25))
    elif kind in ("input", "output"):
        v = (g.input if kind == "input" else g.output)[0]
        what = draw(st.sampled_from(["elem", "dim", "name", "drop_dim"]))
        tt = v.type.tensor_type
        if what == "elem":
            tt.elem_type = draw(st.integers(0, 25))
        elif what == "dim" and tt.shape.dim:
            d = draw(st.sampled_from(list(tt.shape.dim)))
            d.dim_value = draw(WILD_INTS.filter(lambda x: x >= 0))
        elif what == "name":
            v.name = draw(st.sampled_from(["", "image", "frame\x00", "probs", "frame"]))
        elif tt.shape.dim:
            del tt.shape.dim[-1]
    raw = m.SerializeToString()
    if kind == "meta_not_utf8" and m.metadata_props:  # same length: the protobuf stays whole
        value = draw(st.sampled_from(list(m.metadata_props))).value.encode()
        at = raw.find(value)
        k = draw(st.integers(0, max(0, len(value) - 2)))
        bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80\x80"]))
        raw = raw[:at + k] + bad[: len(value) - k] + raw[at + k + len(bad[: len(value) - k]):]
    if kind == "bytes":
        b = bytearray(raw)
        for _ in range(draw(st.integers(1, 4))):
            b[draw(st.integers(0, len(b) - 1))] ^= 1 << draw(st.integers(0, 7))
        raw = bytes(b[: draw(st.integers(len(b) // 2, len(b)))])
    return raw


@pytest.fixture(scope="module")
def onnx_seed(fashion_artifact) -> bytes:
    return Path(fashion_artifact).read_bytes()


@SETTINGS
@given(data=st.data())
def test_onnx_mutants_are_one_line_or_an_answer(onnx_seed, tmp_path, capfd, data) -> None:
    raw = data.draw(onnx_mutants(onnx_seed))
    path = tmp_path / "mutant.onnx"
    path.write_bytes(raw)
    check_cli(["info", str(path)], capfd)
    check_backend(raw)


#: What each regression artifact must be refused for.
REFUSED = {
    "onnx_metadata_not_utf8.onnx": "damaged metadata: a key or value is not UTF-8",
    "onnx_metadata_key_not_utf8.onnx": "damaged metadata: a key or value is not UTF-8",
    "onnx_initializer_long.onnx": "as an ONNX model: Exception during initialization",
    "onnx_provenance_is_null.onnx": "edgeinfer.provenance is NoneType, not a JSON object",
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_regression_artifacts_are_one_line_exit_2(name, tmp_path, capfd) -> None:
    """Issue 31 Why 4: a metadata key or value that is not UTF-8 was a UnicodeDecodeError
    traceback (exit 1) in info and predict; an initializer of the wrong size was exit 2
    after three lines of onnxruntime's log; a provenance of JSON null was an AttributeError
    in info. Now one line naming the damage, exit 2."""
    import cv2

    from edgeinfer.errors import ModelError
    from edgeinfer.runtime.loader import open_backend
    from edgeinfer.runtime.metadata import read_metadata

    path = str(REGRESSIONS / name)
    photo = tmp_path / "gray.png"
    cv2.imwrite(str(photo), np.full((28, 28, 3), 128, np.uint8))
    assert check_cli(["info", path], capfd) == 2
    assert check_cli(["predict", path, str(photo)], capfd) == 2
    calls = ([lambda p: open_backend(p, 1)] if "provenance" not in name else []) + (
        [read_metadata] if "initializer" not in name else [])
    for call in calls:
        with pytest.raises(ModelError, match=REFUSED[name]):
            call(path)


def test_cli_subprocess_prints_one_line(tmp_path) -> None:
    """The real console path (a fresh process, as a user runs it): exit 2, one line."""
    bad = REGRESSIONS / "onnx_metadata_not_utf8.onnx"
    r = subprocess.run([sys.executable, "-m", "edgeinfer", "info", str(bad)], cwd=REPO,
                       capture_output=True, text=True, env=dict(os.environ), timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "not UTF-8" in r.stderr


# ----------------------------------------------------------------------------- TFLite
def _metadata_span(data: bytes) -> tuple[int, int]:
    """Where the edgeinfer metadata JSON lies in a .tflite file (start, end)."""
    at = data.find(b'{"edgeinfer.')
    depth, i = 0, at
    for i in range(at, len(data)):  # the JSON object's closing brace (strings hold none)
        depth += {0x7B: 1, 0x7D: -1}.get(data[i], 0)
        if depth == 0:
            break
    return at, i + 1


@st.composite
def tflite_mutants(draw: st.DrawFn, seed: bytes) -> bytes:
    """One mutation of a .tflite: its metadata JSON (same length, so the flatbuffer's
    offsets stay right and only the JSON is wrong) or its flatbuffer words and bytes."""
    b = bytearray(seed)
    start, end = _metadata_span(seed)
    kind = draw(st.sampled_from(["json_value", "json_bytes", "word", "bytes", "cut"]))
    if kind == "json_value" and start >= 0:
        props = json.loads(seed[start:end])
        key = draw(st.sampled_from(sorted(props)))
        props[key] = draw(JSON_VALUES.map(json.dumps) | JSON_VALUES)
        if draw(st.booleans()):
            del props[key]
        new = json.dumps(props).encode()[: end - start]
        b[start:end] = new + b" " * (end - start - len(new))
    elif kind == "json_bytes" and start >= 0:
        at = draw(st.integers(start, end - 1))
        b[at] = draw(st.sampled_from([0xFF, 0x80, 0x00, 0x22, 0x5C, 0x7B]))
    elif kind == "word":  # a uoffset/vtable word in the first 4 kB: where the tables are
        at = draw(st.integers(0, min(len(b), 4096) // 4 - 1)) * 4
        b[at:at + 4] = draw(WILD_INTS).to_bytes(8, "little", signed=True)[:4]
    elif kind == "bytes":
        for _ in range(draw(st.integers(1, 4))):
            b[draw(st.integers(0, len(b) - 1))] ^= 1 << draw(st.integers(0, 7))
    else:
        del b[draw(st.integers(8, len(b) - 1)):]
    return bytes(b)


@pytest.fixture(scope="module")
def tflite_seed(fashion_tflite) -> bytes:
    return Path(fashion_tflite.path).read_bytes()


@settings(SETTINGS, max_examples=30)
@given(data=st.data())
def test_tflite_mutants_are_one_line_or_an_answer(tflite_seed, tmp_path, capfd,
                                                  data) -> None:
    raw = data.draw(tflite_mutants(tflite_seed))
    path = tmp_path / "mutant.tflite"
    path.write_bytes(raw)
    check_cli(["info", str(path)], capfd)
    check_backend(raw)


def test_tflite_metadata_span_is_found(tflite_seed) -> None:
    """The JSON mutations only mean something if they hit the metadata: check they do."""
    start, end = _metadata_span(tflite_seed)
    props = json.loads(tflite_seed[start:end])
    assert start > 0 and re.match(r"edgeinfer\.", next(iter(props)))


def _signature_damage(seed: bytes, case: str) -> bytes:
    """The signature-table mutations the fuzzer found (issue 31, beyond its list): a
    SignatureDef's subgraph index past the subgraphs (LiteRT: SIGSEGV), an output's tensor
    index past the tensor count (ValueError), an input's name in the 'resized' signature
    changed (KeyError); the last two were tracebacks in info, the first killed it."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(seed, 0)
    sigs = {model.SignatureDefs(i).SignatureKey(): model.SignatureDefs(i)
            for i in range(model.SignatureDefsLength())}
    b = bytearray(seed)
    if case == "subgraph_index":  # SignatureDef field 4 (vtable slot 12): one bit flipped
        sd = sigs[b"resized"]
        at = sd._tab.Pos + sd._tab.Offset(12)
        assert int.from_bytes(seed[at:at + 4], "little") == sd.SubgraphIndex()
        b[at + 2] ^= 1
    elif case == "tensor_index":  # TensorMap field 1 (vtable slot 6): the tensor's index
        t = sigs[b"frame"].Outputs(0)
        at = t._tab.Pos + t._tab.Offset(6)
        b[at:at + 4] = (55).to_bytes(4, "little")
    else:  # TensorMap field 0 (vtable slot 4): its name, a uoffset to length + bytes
        t = sigs[b"resized"].Inputs(0)
        p = t._tab.Pos + t._tab.Offset(4)
        at = p + int.from_bytes(seed[p:p + 4], "little") + 4
        b[at:at + 4] = b"+\0\0\0"
    return bytes(b)


@pytest.mark.parametrize("case", ["subgraph_index", "tensor_index", "input_name"])
def test_damaged_tflite_signatures_are_one_line(tflite_seed, tmp_path, capfd, case) -> None:
    from edgeinfer.errors import ModelError
    from edgeinfer.runtime.tflite_backend import TFLiteBackend

    raw = _signature_damage(tflite_seed, case)
    with pytest.raises(ModelError, match="damaged TFLite file: signature|not usable signature"):
        TFLiteBackend(raw)
    path = tmp_path / "sig.tflite"
    path.write_bytes(raw)
    assert check_cli(["info", str(path)], capfd) == 2
