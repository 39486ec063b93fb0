"""``fastmnist extract``: ResNet-50 features of MNIST -> mnist_train.mat / mnist_test.mat, resumable
and shardable (``--shard I/N``, or one shard per rank under ``torchrun``)."""
from __future__ import annotations

import sys


def add_parser(sub):
    p = sub.add_parser(
        "extract", help="ResNet-50 features of MNIST into mnist_train.mat / mnist_test.mat (PyTorch)",
        description="Resize every MNIST digit to SIZE x SIZE, repeat it to 3 channels, normalise with the "
                    "ImageNet mean/std and write the 2048-d global-average-pooled ResNet-50 features: "
                    "OUT/mnist_train.mat and OUT/mnist_test.mat, each with 'features' (N x 2048 single) "
                    "and 'labels' (N x 1 int64), readable by scipy.io.loadmat and MATLAB. Progress is saved "
                    "in chunks in OUT/parts: running the same command again resumes. --shard I/N (or "
                    "torchrun's RANK/WORLD_SIZE) extracts one share of the chunks; the process that finds "
                    "all chunks present writes the .mat files (or run --merge).")
    p.add_argument("--weights", default="imagenet",
                   help="'imagenet' (torchvision's pretrained ResNet-50, downloaded and cached), a "
                        "state_dict file in torchvision's layout, or 'none' (random, seeded; tests only)")
    p.add_argument("--size", type=int, default=224, help="input side the 28x28 digits are resized to (default 224)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="images per forward pass (default 32 on the CPU, 128 on CUDA)")
    p.add_argument("--chunk-size", type=int, default=None,
                   help="images per saved chunk, a multiple of the batch size (default: 1024 rounded up to one); "
                        "an interruption loses at most one chunk")
    p.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                   help="torch.compile the network (auto: on the CPU, falling back to eager if compiling "
                        "fails; on: fail instead; off: eager)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, or cuda[:N]")
    p.add_argument("--precision", choices=["auto", "fp32", "fp16"], default="auto",
                   help="auto: fp16 autocast on CUDA only if features stay within 1e-2 relative of fp32")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--stride-in-1x1", dest="stride_in_1x1", action="store_true", default=None,
                   help="ResNet v1 stride placement (stride 2 on the 1x1 conv1 of layer2..4's first block); "
                        "default: a <weights>.json sidecar, else weights named *keras*/*caffe*/*msra*")
    g.add_argument("--no-stride-in-1x1", dest="stride_in_1x1", action="store_false",
                   help="torchvision's v1.5 placement (stride on the 3x3 conv2)")
    p.add_argument("--limit", type=int, default=None, help="use a stratified subset of N training (and test) images")
    p.add_argument("--limit-test", type=int, default=None, help="test images when different from --limit")
    p.add_argument("--data", default=None, help="directory of the MNIST IDX files (default: $FASTMNIST_DATA or the cache)")
    p.add_argument("--seed", type=int, default=0, help="seed of the subset and of --weights none")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="extract only shard I of N (0-based); default: RANK/WORLD_SIZE under torchrun, else 0/1")
    p.add_argument("--merge", action="store_true",
                   help="only write the .mat files from the chunks in OUT/parts (after all shards ran)")
    p.add_argument("--overwrite", action="store_true", help="discard a partial or finished extraction in OUT")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch (default: all)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..features import CompileError, extract_mnist, merge_parts, resolve_device

    if args.merge:
        paths = merge_parts(args.out, quiet=args.quiet)
        if paths is None:
            print(f"another process is merging {args.out}", file=sys.stderr)
            return 1
        print(f"wrote {paths['train']} and {paths['test']}")
        return 0
    resolve_device(args.device)  # fail fast, before loading anything
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        r = extract_mnist(args.out, weights=args.weights, size=args.size, batch_size=args.batch_size,
                          device=args.device, limit=args.limit, limit_test=args.limit_test, data=args.data,
                          stride_in_1x1=args.stride_in_1x1, precision=args.precision, seed=args.seed,
                          quiet=args.quiet, compile=args.compile, chunk_size=args.chunk_size, shard=args.shard,
                          overwrite=args.overwrite)
    except CompileError as e:
        print(f"fastmnist extract: error: {e} (--compile auto falls back to eager)", file=sys.stderr)
        return 1
    i, n = r["shard"]
    print(f"ResNet-50 ({r['weights']}, stride in 1x1: {r['stride_in_1x1']}) at {r['size']}x{r['size']} on "
          f"{r['device']}, batch {r['batch_size']}" + (f", shard {i}/{n}" if n > 1 else ""))
    if r.get("already_complete"):
        print(f"  already complete: {r['merged']['train']}, {r['merged']['test']}")
        return 0
    if r["images"]:
        print(f"  {r['images']} images in {r['seconds']:.1f} s ({r['images_per_second']:.1f} img/s, {r['engine']})")
    else:
        print("  nothing left to extract in this shard")
    if r["merged"]:
        print(f"  wrote {r['merged']['train']} and {r['merged']['test']}")
    elif r["chunks_done"] == r["chunks_total"]:
        print("  all chunks done; another process is writing the .mat files")
    else:
        print(f"  {r['chunks_done']} of {r['chunks_total']} chunks done; the other shards (or "
              f"'fastmnist extract --merge --out {args.out}') write the .mat files")
    return 0
