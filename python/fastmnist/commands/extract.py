"""``fastmnist extract``: ResNet-50 features of MNIST -> mnist_train.mat / mnist_test.mat."""
from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser(
        "extract", help="ResNet-50 features of MNIST into mnist_train.mat / mnist_test.mat (PyTorch)",
        description="Resize every MNIST digit to SIZE x SIZE, repeat it to 3 channels, normalise with the "
                    "ImageNet mean/std and write the 2048-d global-average-pooled ResNet-50 features: "
                    "OUT/mnist_train.mat and OUT/mnist_test.mat, each with 'features' (N x 2048 single) "
                    "and 'labels' (N x 1 int64), readable by scipy.io.loadmat and MATLAB.")
    p.add_argument("--weights", default="imagenet",
                   help="'imagenet' (torchvision's pretrained ResNet-50, downloaded and cached), a "
                        "state_dict file in torchvision's layout, or 'none' (random, seeded; tests only)")
    p.add_argument("--size", type=int, default=224, help="input side the 28x28 digits are resized to (default 224)")
    p.add_argument("--batch-size", type=int, default=128, help="images per forward pass (default 128)")
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
    p.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch (default: all)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..features import extract_mnist, resolve_device

    resolve_device(args.device)  # fail fast, before loading anything
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    r = extract_mnist(args.out, weights=args.weights, size=args.size, batch_size=args.batch_size,
                      device=args.device, limit=args.limit, limit_test=args.limit_test, data=args.data,
                      stride_in_1x1=args.stride_in_1x1, precision=args.precision, seed=args.seed,
                      quiet=args.quiet)
    print(f"ResNet-50 ({r['weights']}, stride in 1x1: {r['stride_in_1x1']}) at {r['size']}x{r['size']} on {r['device']}")
    for split in ("train", "test"):
        s = r[split]
        print(f"  {split}: {s['n']} images in {s['seconds']:.1f} s ({s['images_per_second']:.0f} img/s) -> {s['path']}")
    return 0
