"""``fastmnist train MODEL``: train one of the named models and write a run directory."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

MODEL_HELP = """models (default recipe in brackets):
  logreg       flatten + linear                                  [Adam 1e-3, 10 epochs, batch 64]
  fnn          784-256-10 ReLU                                   [Adam 1e-3, 10 epochs, batch 64]
  cnn          conv3x3(16)-pool-conv3x3(32)-pool-fc128-fc10      [Adam 1e-3, 10 epochs, batch 64]
  cnn5         conv5x5(16)-pool-conv5x5(32)-pool-dense64-dense10 [Adam 1e-3, 5 epochs, batch 128]
  mlp-scratch  784-100-10 sigmoid, MSE on one-hot                [SGD 0.5, 10 epochs, batch 32]
               (--option arch=cnn gives the from-scratch CNN; activation=relu; loss via --loss)
  mlp          784-100-10 ReLU, noise + hflip 0.7 augmentation   [Adam 0.01, 30 epochs, batch 512]
  fast         conv5x5(24)-pool-relu-conv3x3(32)-pool-relu-fc256-fc10, one-cycle
                                                                 [Adam 0.01 betas .7/.9, 1 epoch, batch 256]

run directory (--out): summary.json, history.json, history.csv, predictions.npz,
feature_maps.npz (CNNs), model.npz (checkpoint for `fastmnist predict`), figures/*.png
"""


def add_common_options(p, with_model_defaults=True):
    """Options shared by ``train`` and ``compare``."""
    g = p.add_argument_group("training (defaults: the model's recipe)")
    g.add_argument("--epochs", type=int, help="number of epochs")
    g.add_argument("--batch-size", type=int, help="mini-batch size")
    g.add_argument("--lr", type=float, help="learning rate (the peak rate with --scheduler onecycle)")
    g.add_argument("--optimizer", choices=["adam", "sgd"], help="optimizer")
    g.add_argument("--momentum", type=float, help="SGD momentum")
    g.add_argument("--weight-decay", type=float, help="L2 weight decay")
    g.add_argument("--loss", choices=["cross_entropy", "mse"], help="loss (mse: on one-hot targets)")
    g.add_argument("--scheduler", choices=["none", "onecycle", "cosine", "step"],
                   help="learning-rate schedule, stepped per batch")
    g.add_argument("--augment", metavar="SPEC",
                   help="augmentation, e.g. 'rotate:10,perspective:0.2' or 'noise:0.2,hflip:0.7'; "
                        "'none' turns off a recipe's augmentation (see fastmnist.augment.from_spec)")
    d = p.add_argument_group("data")
    d.add_argument("--data", metavar="DIR", help="directory with the MNIST IDX files "
                                                 "(default: $FASTMNIST_DATA or the download cache)")
    d.add_argument("--train-size", type=int, metavar="N", help="train on a stratified subsample of N images")
    d.add_argument("--test-size", type=int, metavar="N", help="evaluate on a stratified subsample of N test images")
    d.add_argument("--val-split", type=float, default=0.0, metavar="F",
                   help="hold out this fraction of the training set for the per-epoch validation "
                        "columns (default 0: the per-epoch validation columns use the test set)")
    o = p.add_argument_group("run")
    o.add_argument("--out", metavar="DIR", help="run directory (default: runs/<model>-<time>)")
    o.add_argument("--seed", type=int, default=0, help="seed for weights, shuffling and augmentation (default 0)")
    o.add_argument("--threads", type=int, help="OpenMP threads (default: OMP_NUM_THREADS or all cores)")
    o.add_argument("--quiet", action="store_true", help="no progress bar and no per-epoch lines")
    o.add_argument("--no-figures", action="store_true", help="do not draw figures")
    o.add_argument("--debug", action="store_true", help="show tracebacks")


def augment_help():
    try:
        from ..augment import SPEC_HELP
    except ImportError:  # pragma: no cover
        return ""
    text = "\n".join(l for l in SPEC_HELP.splitlines() if not l.startswith("example"))
    return ("\n--augment " + text.replace("\n", "\n  ") +
            "\n  (the trainer normalises after augmentation: leave 'normalize' out)\n")


def add_parser(sub):
    p = sub.add_parser(
        "train", help="train a named model and write a run directory",
        description="Train one of the classic MNIST models with the fastmnist kernels, print the "
                    "per-epoch metrics and the final test accuracy, and write a run directory.",
        epilog=MODEL_HELP + augment_help() + "\nexamples:\n  fastmnist train cnn\n"
               "  fastmnist train cnn --augment rotate:10,perspective:0.2 --epochs 3\n"
               "  fastmnist train mlp-scratch --option arch=cnn --option activation=relu --loss cross_entropy\n"
               "  fastmnist train fast --threads 2",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL", help="logreg, fnn, cnn, cnn5, mlp-scratch, mlp or fast")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="model option, e.g. dropout=0.5 (cnn5), activation=relu / arch=cnn / "
                        "sizes=784,30,10 (mlp-scratch), hidden=512 (fnn, mlp, fast); repeatable")
    add_common_options(p)
    p.set_defaults(func=run)


def parse_options(items):
    out = {}
    for it in items:
        if "=" not in it:
            raise ValueError(f"--option must be KEY=VALUE, got {it!r}")
        k, v = it.split("=", 1)
        if "," in v:
            out[k] = [int(s) for s in v.split(",")]
            continue
        for conv in (int, float):
            try:
                v2 = conv(v)
                break
            except ValueError:
                continue
        else:
            v2 = v
        out[k] = v2
    return out


def resolve_recipe(name, args):
    from .. import models

    r = models.recipe(name)
    aug = args.augment
    if aug is not None and aug.lower() in ("none", "off", ""):
        aug = ""
    sched = args.scheduler
    if sched == "none":
        sched = ""
    r = r.updated(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
                  momentum=args.momentum, weight_decay=args.weight_decay, loss=args.loss)
    if aug is not None:
        r.augment = aug or None
    check_augment(r.augment)
    if sched is not None:
        r.scheduler = sched or None
    return r


def check_augment(spec):
    if spec and any(t.split(":")[0].strip().lower() == "normalize" for t in spec.split(",")):
        raise ValueError(f"--augment {spec!r}: leave out 'normalize' (the trainer normalises the inputs "
                         "after augmentation)")


def load_data(args):
    from ..data import load_mnist, subsample

    x_train, y_train, x_test, y_test = load_mnist(args.data, download=True)
    if args.train_size:
        if args.train_size < 10:
            raise ValueError(f"--train-size must be >= 10, got {args.train_size}")
        x_train, y_train = subsample(x_train, y_train, args.train_size, seed=args.seed)
    if args.test_size:
        if args.test_size < 1:
            raise ValueError(f"--test-size must be >= 1, got {args.test_size}")
        x_test, y_test = subsample(x_test, y_test, args.test_size, seed=args.seed + 1)
    return x_train, y_train, x_test, y_test


def default_out(name):
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _settings(args, recipe, options):
    s = {k: v for k, v in vars(args).items() if k not in ("func",) and not callable(v)}
    s["recipe"] = recipe.to_dict()
    s["model_options"] = options
    return s


def train_model(name, recipe, data, args, out_dir: Path, options=None, command="train", log=None):
    """Train ``name`` with ``recipe`` on ``data`` and write a full run directory in ``out_dir``.
    Returns the results dict."""
    import fastmnist

    from .. import models
    from ..checkpoint import save_checkpoint
    from ..train import Trainer, prepare

    options = dict(options or {})
    x_train, y_train, x_test, y_test = data
    model = models.build(name, seed=args.seed, **options)
    opt = models.make_optimizer(recipe, model.parameters())
    bs = recipe.batch_size
    n_fit = len(y_train) - int(round(len(y_train) * (args.val_split or 0.0)))
    steps = (n_fit + bs - 1) // bs
    sched = models.make_scheduler(recipe, opt, steps)
    augment = None
    if recipe.augment:
        from .. import augment as aug_mod

        augment = aug_mod.from_spec(recipe.augment)
    trainer = Trainer(model, opt, loss=recipe.loss, batch_size=bs, epochs=recipe.epochs, augment=augment,
                      scheduler=sched, seed=args.seed, normalize=recipe.normalize, quiet=args.quiet,
                      log=log)
    if args.val_split:
        hist = trainer.fit(x_train, y_train, val_split=args.val_split)
    else:
        hist = trainer.fit(x_train, y_train, x_val=x_test, y_val=y_test)
    test_loss, test_acc = trainer.evaluate(x_test, y_test)
    proba = trainer.predict_proba(x_test).astype(np.float32)
    y_pred = proba.argmax(1).astype(np.int64)

    out_dir.mkdir(parents=True, exist_ok=True)
    hist.to_json(out_dir / "history.json")
    hist.to_csv(out_dir / "history.csv")
    np.savez_compressed(out_dir / "predictions.npz", y_true=np.asarray(y_test, np.int64), y_pred=y_pred,
                        proba=proba, images=np.asarray(x_test, np.uint8))
    if models.is_cnn(model):
        img = prepare(x_test[:1], normalize=False)
        fmap_in = prepare(x_test[:1], normalize=recipe.normalize)
        maps = {"image": img[0, 0]}
        for key, a in model.feature_maps(fmap_in):
            if a.ndim == 4:
                maps[key] = np.asarray(a[0], np.float32)
        np.savez_compressed(out_dir / "feature_maps.npz", **maps)
    meta = {"normalize": recipe.normalize, "loss": recipe.loss, "recipe": recipe.to_dict(),
            "test_accuracy": test_acc}
    if command == "train":
        save_checkpoint(out_dir / "model.npz", model, opt, meta=meta)
    results = {"test_accuracy": test_acc, "test_loss": test_loss, "train_seconds": trainer.train_seconds,
               "epochs_run": len(hist), "interrupted": hist.interrupted,
               "final_train_loss": hist.train_loss[-1] if len(hist) else None,
               "final_train_acc": hist.train_acc[-1] if len(hist) else None,
               "parameters": model.num_parameters(), "train_size": int(len(y_train)),
               "test_size": int(len(y_test))}
    summary = {"command": "train", "model": name, "settings": _settings(args, recipe, options),
               "results": results, "fastmnist_version": fastmnist.__version__,
               "threads": fastmnist.get_num_threads()}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return results, hist


def draw_figures(out_dir, args):
    if args.no_figures:
        return []
    try:
        from ..plots import write_run_figures
    except ImportError:
        print("figures skipped: fastmnist.plots is not available")
        return []
    return write_run_figures(out_dir)


def run(args) -> int:
    from .. import models

    name = models._lookup(args.model)
    options = parse_options(args.option)
    recipe = resolve_recipe(name, args)
    if recipe.epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {recipe.epochs}")
    if recipe.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {recipe.batch_size}")
    if args.val_split and not 0.0 < args.val_split < 1.0:
        raise ValueError(f"--val-split must be in (0, 1), got {args.val_split}")
    out = Path(args.out) if args.out else default_out(name)
    data = load_data(args)
    if not args.quiet:
        aug = recipe.augment or "none"
        print(f"{name}: {recipe.optimizer} lr {recipe.lr}, {recipe.epochs} epochs, batch {recipe.batch_size}, "
              f"loss {recipe.loss}, augment {aug}, schedule {recipe.scheduler or 'none'}; "
              f"{len(data[1])} train / {len(data[3])} test images")
    results, hist = train_model(name, recipe, data, args, out, options=options)
    figs = draw_figures(out, args)
    note = " (interrupted)" if results["interrupted"] else ""
    print(f"test accuracy: {results['test_accuracy']:.4f}  test loss: {results['test_loss']:.4f}  "
          f"training time: {results['train_seconds']:.1f} s{note}")
    print(f"run directory: {out}" + (f" ({len(figs)} figures)" if figs else ""))
    return 0
