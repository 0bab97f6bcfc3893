"""Write the hostile artifacts and packs of issue 31 (Why 4-5) as small regression files.

    python tools/make_hostile_files.py [--artifact out/fashion.onnx] [--out tests/fuzz/regressions]
    python tools/make_hostile_files.py --bomb /tmp/bomb.pack [--bomb-bytes 1500000000]

Why a script: the files are crafted (a metadata value that is not UTF-8, a .npy header
that lies, a NaN reference whose sha256 is right), so they are made by code that says how,
and can be made again when the pack format or the fashion artifact changes. Each pack is
built with the fashion model's spec and labels and, where the case needs verify to get past
the pack, with ``--artifact``'s own outputs as the reference (so the only thing wrong with
it is the one damage it is named after). The zip bomb (1.46 MB that unpacks to 1.5 GB) is
not committed: ``--bomb`` streams it to a path, never holding 1.5 GB in memory.

Only the ONNX tiny model needs ``onnx`` (a workstation package); packs need numpy and
onnxruntime.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgeinfer.artifact import ArtifactMetadata  # noqa: E402
from edgeinfer.spec import PreprocessSpec  # noqa: E402

MANIFEST = "manifest.json"
FASHION = REPO / "models" / "fashion"
#: Every regression file and what it holds (the docs table reads these too).
CASES: dict[str, str] = {
    "onnx_metadata_not_utf8.onnx": "an ONNX artifact whose provenance value is not UTF-8",
    "onnx_metadata_key_not_utf8.onnx": "an ONNX artifact whose metadata key is not UTF-8",
    "pack_data_is_list.pack": "manifest \"data\": [1]",
    "pack_npy_header_2p45.pack": "reference.npy header declares 2**45 bytes (sha256 right)",
    "pack_npy_header_2p45_only.pack": "the same header, the manifest declaring [8, 10]",
    "pack_truth_nan_header_only.pack": "float labels.npy with NaN, the manifest saying int64",
    "pack_reference_nan.pack": "all-NaN reference (sha256 right)",
    "pack_truth_nan.pack": "float labels.npy with NaN (sha256 right)",
    "pack_truth_fractional.pack": "float labels.npy of 0.5 (sha256 right)",
    "pack_tolerance_not_number.pack": "tolerances onnx/fp32 max_abs \"big\"",
    "pack_empty.pack": "a pack of zero frames",
    "pack_corrupt_deflate.pack": "a bit flipped in the deflated manifest (found by fuzzing)",
    "onnx_provenance_is_null.onnx": "provenance JSON null, not an object (found by fuzzing)",
    "onnx_initializer_long.onnx": "raw_data 4 bytes longer than its dims (found by fuzzing)",
    "pack_ok.pack": "the intact pack the others are made from (verify: PASS)",
}


def fashion_meta() -> ArtifactMetadata:
    spec = PreprocessSpec.from_json((FASHION / "spec.json").read_text())
    labels = tuple((FASHION / "labels.txt").read_text().split("\n")[:10])
    return ArtifactMetadata(spec=spec, labels=labels,
                            provenance={"source": "fashion", "framework": "tiny", "format": "onnx"},
                            parity={})


def tiny_onnx(props: dict[str, str]) -> bytes:
    """A 1 kB model that keeps the artifact contract (uint8 ``frame`` NHWC in, float
    ``probs`` [N, 10] out): mean over the frame, a 3x10 matrix, softmax."""
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [3, 10],
                           np.linspace(-1, 1, 30, dtype=np.float32).tolist())
    nodes = [helper.make_node("Cast", ["frame"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMean", ["f"], ["m"], axes=[1, 2], keepdims=0),
             helper.make_node("MatMul", ["m", "w"], ["z"]),
             helper.make_node("Softmax", ["z"], ["probs"], axis=-1)]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("frame", TensorProto.UINT8,
                                                      ["N", "H", "W", 3])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 10])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in props.items():
        model.metadata_props.add(key=k, value=v)
    return model.SerializeToString()


def onnx_long_initializer() -> bytes:
    """The tiny model with a constant-folded initializer whose raw_data is 4 bytes longer
    than its dims declare: onnxruntime refuses it, and its optimizer logged three lines of
    C++ detail to stderr before edgeinfer's one line (found by the fuzz harness)."""
    import onnx
    from onnx import TensorProto, helper

    m = onnx.ModelProto.FromString(tiny_onnx(fashion_meta().to_props()))
    g = m.graph
    a = helper.make_tensor("a", TensorProto.FLOAT, [1], np.float32([1]).tobytes(), raw=True)
    a.raw_data += b"\0" * 4
    g.initializer.extend([a, helper.make_tensor("b", TensorProto.FLOAT, [1], [2.0])])
    g.node[0].output[0] = "f0"
    g.node.insert(1, helper.make_node("Add", ["a", "b"], ["ab"]))
    g.node.insert(2, helper.make_node("Sub", ["f0", "ab"], ["f"]))
    return m.SerializeToString()


def pack_corrupt_deflate(ok: bytes) -> bytes:
    """One bit flipped inside the deflated manifest (the zip headers intact): zlib.error
    was a traceback (found by the fuzz harness)."""
    z = zipfile.ZipFile(io.BytesIO(ok))
    info = z.getinfo(MANIFEST)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    b = bytearray(ok)
    b[start + 40] ^= 0x10
    return bytes(b)


def onnx_not_utf8(key: bool) -> bytes:
    """The tiny model with a metadata key or value's bytes replaced in place by bytes that
    are not UTF-8 (same length, so the protobuf stays well formed)."""
    props = fashion_meta().to_props()
    mark = "PLACEHOLDER-NOT-UTF8"
    if key:
        props[mark] = "x"
    else:
        props["edgeinfer.provenance"] = json.dumps({"source": mark})
    raw = tiny_onnx(props)
    assert raw.count(mark.encode()) == 1
    return raw.replace(mark.encode(), b"\xff\xfe" + b"\x80" * (len(mark) - 2))


# ------------------------------------------------------------------------------ packs
def fashion_frames(n: int = 8) -> list[np.ndarray]:
    import cv2

    from edgeinfer.data import datasets

    images, _ = datasets.load_fashion_mnist("test")
    return [cv2.cvtColor(images[i], cv2.COLOR_GRAY2BGR) for i in range(n)]


def artifact_probs(artifact: Path, frames: list[np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    s = ort.InferenceSession(str(artifact), providers=["CPUExecutionProvider"])
    return np.concatenate([s.run(["probs"], {"frame": f[None]})[0] for f in frames])


def npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, allow_pickle=False)
    return buf.getvalue()


def base_pack(artifact: Path | None, n: int = 8) -> bytes:
    """An intact pack of ``n`` fashion frames; the reference is the artifact's own output
    (so verify of that artifact says PASS) or a uniform 0.1 without one."""
    from edgeinfer.data.packfile import make_pack, write_pack
    from edgeinfer.parity.tolerances import pack_entries

    meta = fashion_meta()
    frames = fashion_frames(n)
    ref = artifact_probs(artifact, frames) if artifact else np.full((n, 10), 0.1, np.float32)
    from edgeinfer.data import datasets

    truth = datasets.load_fashion_mnist("test")[1][:n]
    pack = make_pack(meta.spec, meta.labels, frames, ref, source={"framework": "onnx"},
                     data_name="fashion-test", ids=[str(i) for i in range(n)], truth=truth,
                     tolerances=pack_entries())
    out = Path("/tmp") / f"hostile_base_{n}.pack"
    write_pack(pack, out)
    return out.read_bytes()


def rewrite(raw: bytes, members: dict[str, bytes | None] | None = None,
            manifest: Callable[[dict[str, Any]], None] | None = None,
            declare: bool = True) -> bytes:
    """The pack with members replaced (None drops one), the manifest edited, and every
    member's sha256 made right again: the damage must be found by the deeper checks.
    ``declare=False`` leaves the manifest's dtype and shape as they were (only the
    member's header tells)."""
    members = members or {}
    src = zipfile.ZipFile(io.BytesIO(raw))
    m = json.loads(src.read(MANIFEST))
    blobs = {i.filename: src.read(i.filename) for i in src.infolist() if i.filename != MANIFEST}
    for k, v in members.items():
        if v is None:
            blobs.pop(k, None)
            m["members"].pop(k, None)
        else:
            blobs[k] = v
            if not declare:
                continue
            f = io.BytesIO(v)  # the header only: a lying one must not allocate here either
            np.lib.format.read_magic(f)
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            m["members"].setdefault(k, {}).update(dtype=str(dtype), shape=list(shape))
    for k, v in blobs.items():
        m["members"][k]["sha256"] = hashlib.sha256(v).hexdigest()
    if manifest:
        manifest(m)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(MANIFEST, json.dumps(m, indent=1, sort_keys=True))
        for k, v in blobs.items():
            z.writestr(k, v)
    return buf.getvalue()


def lying_header(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    """A .npy file whose header declares ``shape`` but holds 16 bytes of data."""
    head = {"descr": dtype, "fortran_order": False, "shape": shape}
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, head)
    return buf.getvalue() + b"\0" * 16


def hostile_packs(ok: bytes) -> dict[str, bytes]:
    n = json.loads(zipfile.ZipFile(io.BytesIO(ok)).read(MANIFEST))["data"]["n"]

    def set_shape(name: str, shape: list[int], dtype: str | None = None) -> Callable:
        def edit(m: dict[str, Any]) -> None:
            m["members"][name]["shape"] = shape
            if dtype:
                m["members"][name]["dtype"] = dtype
        return edit

    def tol(m: dict[str, Any]) -> None:
        m["tolerances"]["onnx/fp32"]["max_abs"] = "big"

    empty = rewrite(ok, {"frames.npy": npy(np.zeros(0, np.uint8)),
                         "frame_shapes.npy": npy(np.zeros((0, 3), np.int64)),
                         "reference.npy": npy(np.zeros((0, 10), np.float32)),
                         "labels.npy": None},
                    lambda m: m["data"].update(n=0, ids=[], labelled=False))
    return {
        "pack_ok.pack": ok,
        "pack_data_is_list.pack": rewrite(ok, manifest=lambda m: m.update(data=[1])),
        "pack_npy_header_2p45.pack": rewrite(
            ok, {"reference.npy": lying_header((2**40, 8))},
            set_shape("reference.npy", [2**40, 8], "float32")),
        "pack_npy_header_2p45_only.pack": rewrite(
            ok, {"reference.npy": lying_header((2**40, 8))}, declare=False),
        "pack_truth_nan_header_only.pack": rewrite(
            ok, {"labels.npy": npy(np.array([np.nan] + [0.0] * (n - 1)))}, declare=False),
        "pack_reference_nan.pack": rewrite(
            ok, {"reference.npy": npy(np.full((n, 10), np.nan, np.float32))}),
        "pack_truth_nan.pack": rewrite(
            ok, {"labels.npy": npy(np.array([np.nan] + [0.0] * (n - 1)))}),
        "pack_truth_fractional.pack": rewrite(ok, {"labels.npy": npy(np.full(n, 0.5))}),
        "pack_tolerance_not_number.pack": rewrite(ok, manifest=tol),
        "pack_empty.pack": empty,
        "pack_corrupt_deflate.pack": pack_corrupt_deflate(ok),
    }


def write_bomb(path: Path, total: int, ok: bytes) -> Path:
    """A pack whose one frame unpacks to ``total`` bytes of zeros (deflate: ~1000:1),
    streamed to disk with its sha256 computed on the way: a 'valid' pack that is all size."""
    side = int((total // 3) ** 0.5)
    shape = (side, side, 3)
    size = side * side * 3
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "|u1", "fortran_order": False,
                                                "shape": (size,)})
    src = zipfile.ZipFile(io.BytesIO(ok))
    m = json.loads(src.read(MANIFEST))
    members = {"frame_shapes.npy": npy(np.array([shape], np.int64)),
               "reference.npy": npy(np.full((1, 10), 0.1, np.float32))}
    sha = hashlib.sha256(head.getvalue())
    chunk = bytes(2**24)
    left = size
    while left:  # the hash of the zeros, without holding them
        sha.update(chunk[:min(left, len(chunk))])
        left -= min(left, len(chunk))
    m["members"] = {k: {"sha256": hashlib.sha256(v).hexdigest(), "dtype": d, "shape": s}
                    for (k, v), d, s in zip(members.items(), ("int64", "float32"),
                                            ([1, 3], [1, 10]), strict=True)}
    m["members"]["frames.npy"] = {"sha256": sha.hexdigest(), "dtype": "uint8", "shape": [size]}
    m["data"].update(n=1, ids=None, labelled=False)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr(MANIFEST, json.dumps(m))
        for k, v in members.items():
            z.writestr(k, v)
        with z.open("frames.npy", "w", force_zip64=True) as f:
            f.write(head.getvalue())
            left = size
            while left:
                f.write(chunk[:min(left, len(chunk))])
                left -= min(left, len(chunk))
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--artifact", type=Path, default=REPO / "out" / "fashion.onnx",
                    help="the fashion ONNX artifact whose outputs are the packs' reference")
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "fuzz" / "regressions")
    ap.add_argument("--bomb", type=Path, help="write only the zip bomb, to this path")
    ap.add_argument("--bomb-bytes", type=int, default=1_500_000_000)
    a = ap.parse_args(argv)
    artifact = a.artifact if a.artifact.exists() else None
    if a.bomb:
        write_bomb(a.bomb, a.bomb_bytes, base_pack(None, 1))
        print(f"{a.bomb}: {a.bomb.stat().st_size} bytes, unpacks to {a.bomb_bytes}")
        return 0
    a.out.mkdir(parents=True, exist_ok=True)
    files = {"onnx_metadata_not_utf8.onnx": onnx_not_utf8(key=False),
             "onnx_metadata_key_not_utf8.onnx": onnx_not_utf8(key=True),
             "onnx_initializer_long.onnx": onnx_long_initializer(),
             "onnx_provenance_is_null.onnx": tiny_onnx(
                 fashion_meta().to_props() | {"edgeinfer.provenance": "null"}),
             **hostile_packs(base_pack(artifact))}
    for name, data in files.items():
        (a.out / name).write_bytes(data)
        print(f"{a.out / name}: {len(data)} bytes - {CASES[name]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
