"""``fastmnist export CHECKPOINT --onnx model.onnx``: a trained model for onnxruntime and friends."""
from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("export", help="export a checkpoint to ONNX",
                       description="Write the model of a checkpoint (model.npz from `fastmnist train`) as an "
                                   "ONNX file through PyTorch's exporter (needs torch and onnx). The graph "
                                   "takes `input`, float32 (N, 1, 28, 28) prepared as in training (pixels / 255, "
                                   "then (x - 0.1307) / 0.3081 unless the recipe turned normalisation off), "
                                   "and returns `logits` (N, 10).")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="model.npz written by `fastmnist train`")
    p.add_argument("--onnx", required=True, metavar="PATH", help="ONNX file to write")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version (default 17)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=run)


def run(args) -> int:
    import importlib.util

    from ..checkpoint import load_checkpoint

    for mod in ("torch", "onnx"):
        if importlib.util.find_spec(mod) is None:
            raise ValueError(f"ONNX export needs {mod}: pip install torch onnx")
    model, info = load_checkpoint(args.checkpoint)
    out = model.to_onnx(args.onnx, opset=args.opset)
    meta = info.get("meta") or {}
    norm = meta.get("normalize", (meta.get("recipe") or {}).get("normalize", True))
    spec = info.get("spec") or {}
    print(f"wrote {out}: model {spec.get('name', '?')}, input float32 (N, 1, 28, 28) = pixels / 255"
          + (", then (x - 0.1307) / 0.3081" if norm else " (no normalisation)") + ", output logits (N, 10)")
    return 0
