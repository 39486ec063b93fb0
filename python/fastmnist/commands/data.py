"""``fastmnist data``: locate (or download) MNIST, verify it and print what it holds."""
from __future__ import annotations

import numpy as np


def add_parser(sub):
    p = sub.add_parser("data", help="check (and download if missing) the MNIST files",
                       description="Locate the four MNIST IDX files (in --data, else $FASTMNIST_DATA, else the "
                                   "per-user cache), download any that are missing unless --no-download, "
                                   "verify the md5 of each file's content against the genuine MNIST (exit "
                                   "status 1 on a mismatch), and print shapes and label counts.")
    p.add_argument("--data", metavar="DIR", help="directory with the MNIST files (default: $FASTMNIST_DATA or cache)")
    p.add_argument("--no-download", action="store_true", help="fail instead of downloading missing files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from ..data import FILES, find_file, default_root, load_mnist, verify_md5

    root = Path(args.data).expanduser() if args.data else default_root()
    xtr, ytr, xte, yte = load_mnist(root, download=not args.no_download, quiet=args.quiet)
    print(f"MNIST in {root}")
    for name, md5, _ in FILES.values():
        path = find_file(root, name)
        # load_mnist has verified the content's md5; a .gz may still be a re-compressed copy
        if path.suffix != ".gz":
            check = "md5 ok (raw, not gzipped)"
        else:
            check = "md5 ok" if verify_md5(path, md5) else "md5 ok (content; the .gz itself was re-compressed)"
        print(f"  {path.name:28s} {path.stat().st_size:>10,d} bytes  {check}")
    for split, x, y in (("train", xtr, ytr), ("test", xte, yte)):
        print(f"  {split:5s} images {x.shape} {x.dtype}, labels per class {np.bincount(y, minlength=10).tolist()}")
    return 0
