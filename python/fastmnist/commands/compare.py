"""``fastmnist compare``: train several models with the same settings, side by side."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from .train import add_common_options, check_augment, load_data, train_model


def add_parser(sub):
    p = sub.add_parser(
        "compare", help="train several models with the same settings and compare them",
        description="Train each model with the same recipe (default: the side-by-side comparison "
                    "recipe of logistic regression vs FNN vs CNN: Adam 1e-3, cross-entropy, 10 "
                    "epochs, batch 64) and print the test accuracy and training time per model. "
                    "Writes RUN_DIR/summary.json, RUN_DIR/<model>/ (a full train run directory each) "
                    "and the side-by-side figures.",
        epilog="examples:\n"
               "  fastmnist compare\n"
               "  fastmnist compare --downsample --augment rotate:10,perspective:0.2\n"
               "  fastmnist compare --models fnn,cnn,cnn5 --epochs 3",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="logreg,fnn,cnn", metavar="A,B,...",
                   help="comma-separated models (default: logreg,fnn,cnn)")
    p.add_argument("--downsample", action="store_true",
                   help="the write-up's downsampling: 30,000 training and 5,000 test images "
                        "(same as --train-size 30000 --test-size 5000)")
    p.add_argument("--own-recipes", action="store_true",
                   help="use each model's own default recipe instead of the shared comparison recipe")
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
    import fastmnist

    from .. import models

    names = [models._lookup(n.strip()) for n in args.models.split(",") if n.strip()]
    if not names:
        raise ValueError("--models is empty")
    if len(set(names)) != len(names):
        raise ValueError(f"--models names a model twice: {args.models}")
    if args.downsample:
        args.train_size = args.train_size or 30000
        args.test_size = args.test_size or 5000
    out = Path(args.out) if args.out else Path("runs") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    data = load_data(args)
    rows, settings = {}, {}
    for name in names:
        base = models.recipe(name) if args.own_recipes else models.recipe("cnn")
        if not args.own_recipes:
            # the shared recipe; mlp-scratch keeps its own loss/normalisation
            own = models.recipe(name)
            base.loss, base.normalize = own.loss, own.normalize
        recipe = resolve_recipe_from(base, args)
        if not args.quiet:
            print(f"== {name}: {recipe.optimizer} lr {recipe.lr}, {recipe.epochs} epochs, batch "
                  f"{recipe.batch_size}, augment {recipe.augment or 'none'}")
        results, _ = train_model(name, recipe, data, args, out / name, command="compare")
        rows[name] = results
        settings[name] = recipe.to_dict()
        if not args.quiet:
            print(f"   {name}: test accuracy {results['test_accuracy']:.4f}, {results['train_seconds']:.1f} s")
    summary = {"command": "compare", "model": ",".join(names),
               "settings": {**{k: v for k, v in vars(args).items() if k != "func" and not callable(v)},
                            "recipes": settings},
               "results": {"models": rows},
               "fastmnist_version": fastmnist.__version__, "threads": fastmnist.get_num_threads()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    table = format_table(rows)
    (out / "table.txt").write_text(table + "\n")
    figs = []
    if not args.no_figures:
        try:
            from ..plots import write_run_figures

            figs = write_run_figures(out)
        except ImportError:
            print("figures skipped: fastmnist.plots is not available")
    print(table)
    print(f"run directory: {out}" + (f" ({len(figs)} figures)" if figs else ""))
    return 0


def resolve_recipe_from(base, args):
    """Apply the command-line overrides to ``base``."""
    r = base.updated(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
                     momentum=args.momentum, weight_decay=args.weight_decay, loss=args.loss)
    if args.augment is not None:
        r.augment = None if args.augment.lower() in ("none", "off", "") else args.augment
        check_augment(r.augment)
    if args.scheduler is not None:
        r.scheduler = None if args.scheduler == "none" else args.scheduler
    return r
