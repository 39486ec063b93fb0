"""``fastmnist compare``: train several models with the same settings, side by side."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from .train import (
    add_common_options,
    apply_overrides,
    draw_figures,
    figure_worker,
    load_data,
    prepare_out_dir,
    settings_dict,
    train_model,
)


def add_parser(sub):
    p = sub.add_parser(
        "compare", help="train several models with the same settings and compare them",
        description="Train each model with the same recipe (default: write-up 001's side-by-side "
                    "comparison of logistic regression vs FNN vs CNN: Adam 1e-3, cross-entropy, 10 "
                    "epochs, batch 64, rotation + perspective augmentation, 30,000 train / 5,000 test "
                    "digits; --recipe full: all digits, no augmentation) and print the test accuracy and training time per "
                    "model. Writes RUN_DIR/summary.json, RUN_DIR/table.txt, RUN_DIR/<model>/ (a full "
                    "train run directory each, checkpoint model.npz included) and the side-by-side "
                    "figures.",
        epilog="examples:\n"
               "  fastmnist compare\n"
               "  fastmnist compare --recipe full\n"
               "  fastmnist compare --models fnn,cnn,cnn5 --epochs 3",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="logreg,fnn,cnn", metavar="A,B,...",
                   help="comma-separated models (default: logreg,fnn,cnn)")
    p.add_argument("--downsample", action="store_true",
                   help="30,000 training and 5,000 test images, as write-up 001 (which the default "
                        "recipe already does; same as --train-size 30000 --test-size 5000)")
    p.add_argument("--own-recipes", action="store_true",
                   help="use each model's own recipe (--recipe NAME of each) instead of the shared "
                        "comparison recipe (cnn's --recipe NAME)")
    add_common_options(p)
    p.set_defaults(func=run)


def format_table(rows):
    head = f"{'model':<12} {'params':>9} {'test acc':>9} {'train s':>9} {'epochs':>6}"
    lines = [head, "-" * len(head)]
    for name, r in rows.items():
        lines.append(f"{name:<12} {r['parameters']:>9,} {r['test_accuracy']:>9.4f} {r['train_seconds']:>9.1f} "
                     f"{r['epochs_run']:>6}")
    return "\n".join(lines)


def run(args) -> int:
    from .. import models

    names = [models._lookup(n.strip()) for n in args.models.split(",") if n.strip()]
    if not names:
        raise ValueError("--models is empty")
    if len(set(names)) != len(names):
        raise ValueError(f"--models names a model twice: {args.models}")
    if args.downsample:
        args.train_size = args.train_size or 30000
        args.test_size = args.test_size or 5000
    plan = {}
    for name in names:
        if args.own_recipes:
            base = models.recipe(name, args.recipe)
        else:
            # the shared recipe; mlp-scratch keeps its own loss/normalisation
            base = models.recipe("cnn", args.recipe)
            own = models.recipe(name)
            base.loss, base.normalize = own.loss, own.normalize
        recipe, overrides = apply_overrides(base, args)
        plan[name] = (base, recipe, overrides)
    out = Path(args.out) if args.out else Path("runs") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    prepare_out_dir(out, args.overwrite)
    worker = figure_worker(args)  # imports matplotlib in another process while the data load
    try:
        return _run(args, names, plan, out, worker)
    finally:
        if worker is not None:
            worker.close()


def _run(args, names, plan, out, worker) -> int:
    import fastmnist

    from .._io import atomic_write_json, atomic_write_text

    # one data set for all models: the first model's subsample sizes (the shared recipe has one)
    data, info = load_data(args, plan[names[0]][1])
    rows, settings, interrupted = {}, {}, False
    for name in names:
        base, recipe, overrides = plan[name]
        over = ", ".join(f"{k}={v}" for k, v in overrides.items())
        print(f"== {name}: {recipe.line()}" + (f" [overridden: {over}]" if over else ""))
        st = settings_dict(args, base, recipe, overrides, {}, info)
        results, hist, _ = train_model(name, recipe, data, args, out / name, command="train", settings=st)
        rows[name] = results
        settings[name] = recipe.to_dict()
        if not args.quiet:
            print(f"   {name}: test accuracy {results['test_accuracy']:.4f}, {results['train_seconds']:.1f} s")
        if hist.interrupted:
            interrupted = True
            break
    table = format_table(rows)
    atomic_write_text(out / "table.txt", table + "\n")
    summary = {"command": "compare", "model": ",".join(names),
               "status": "interrupted" if interrupted else "complete",
               "settings": {"recipes": settings, "recipe_name": args.recipe, "own_recipes": args.own_recipes,
                            "data": info, "val_split": args.val_split or 0.0, "seed": args.seed},
               "results": {"models": rows},
               "fastmnist_version": fastmnist.__version__, "threads": fastmnist.get_num_threads()}
    atomic_write_json(out / "summary.json", summary, default=str)
    figs = draw_figures(out, args, worker)
    print(table)
    print(f"run directory: {out}" + (f" ({len(figs)} figures)" if figs else ""))
    if interrupted:
        print("interrupted: the models trained so far are in the run directory (marked interrupted)")
        return 130
    return 0
