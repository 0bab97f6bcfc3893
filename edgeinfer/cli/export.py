"""``edgeinfer export triton``: a Triton Inference Server model repository."""

from __future__ import annotations

import argparse

from edgeinfer.cli.common import positive, progress


def run_export(args: argparse.Namespace) -> int:
    from edgeinfer.serve.triton import export_triton

    out = export_triton(args.artifact, args.repo, name=args.name, max_batch=args.max_batch,
                        instances=args.instances, kind=args.kind,
                        queue_delay_us=args.queue_delay_us, overwrite=args.force)
    print(out.model_dir)
    if out.note:
        progress(f"note: {out.note}")
    progress(f"Triton model repository: {args.repo} (model {out.model_dir.name}, "
             f"max_batch_size {out.max_batch}); run: tritonserver --model-repository={args.repo}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("export", help="export an artifact for another serving engine")
    esub = e.add_subparsers(dest="target", required=True)
    t = esub.add_parser(
        "triton", help="a Triton Inference Server model repository",
        description="Writes REPO/NAME/config.pbtxt (onnxruntime backend, uint8 frame input "
        "with dynamic height/width, dynamic batching), REPO/NAME/labels.txt and "
        "REPO/NAME/1/model.onnx. A detector artifact: its boxes/scores/classes outputs, one "
        "frame per request (a note when its NMS runs in edgeinfer's runtime, not its graph).")
    t.add_argument("artifact", help="an .onnx artifact (classifier or detector)")
    t.add_argument("repo", help="model repository folder (created if missing)")
    t.add_argument("--name", help="model name (default: the artifact's file stem)")
    t.add_argument("--max-batch", type=positive, default=8, help="Triton max_batch_size")
    t.add_argument("--instances", type=positive, default=1, help="model instances")
    t.add_argument("--kind", choices=["cpu", "gpu"], default="cpu", help="instance kind")
    t.add_argument("--queue-delay-us", type=int, default=500,
                   help="dynamic batcher: longest wait for a fuller batch, microseconds")
    t.add_argument("--force", action="store_true", help="overwrite an existing model")
    t.set_defaults(handler=run_export)
