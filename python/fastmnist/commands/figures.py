"""``fastmnist figures RUN_DIR``: draw every figure a run directory allows into RUN_DIR/figures."""
from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("figures", help="draw every figure of a run directory into RUN_DIR/figures",
                       description="Draw the training curves, confusion matrix, label distribution, sample "
                                   "and misclassified grids, feature maps (and, for compare runs, the "
                                   "side-by-side curves) that the files of RUN_DIR allow.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--dpi", type=int, default=100, help="resolution of the PNGs (default 100)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..plots import write_run_figures

    if args.dpi < 20 or args.dpi > 600:
        raise ValueError(f"--dpi must lie in [20, 600], got {args.dpi}")
    paths = write_run_figures(args.run_dir, dpi=args.dpi)
    for p in paths:
        print(p)
    if not paths:
        print(f"no figures: {args.run_dir} holds none of history.json, predictions.npz, feature_maps.npz")
    return 0
