"""``fastmnist train MODEL``: train one of the named models and write a run directory."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

RUN_FILES = """run directory (--out): summary.json (effective recipe, sizes, results; written last),
history.json, history.csv, predictions.npz, label_counts.json, classification_report.txt,
model_summary.txt, feature_maps.npz (CNNs), model.npz (checkpoint for `fastmnist predict`), figures/*.png.
Every file is written atomically; --out onto an existing run directory needs --overwrite.
An interrupted run (Ctrl-C) keeps its files, marks them interrupted and exits 130.
"""


def model_help():
    from .. import models

    return models.help_table() + "\n\n" + RUN_FILES


def add_common_options(p, with_model_defaults=True):
    """Options shared by ``train`` and ``compare``."""
    g = p.add_argument_group("training (defaults: the model's recipe)")
    g.add_argument("--recipe", default="default", metavar="NAME",
                   help="named recipe: 'default' (the write-up's), 'tuned' (ours, where one exists), "
                        "'full' (write-up 001's models on all digits, no augmentation)")
    g.add_argument("--epochs", type=int, help="number of epochs")
    g.add_argument("--batch-size", type=int, help="mini-batch size")
    g.add_argument("--lr", type=float, help="learning rate (the peak rate with --scheduler onecycle)")
    g.add_argument("--optimizer", choices=["adam", "sgd"], help="optimizer")
    g.add_argument("--momentum", type=float, help="SGD momentum")
    g.add_argument("--weight-decay", type=float, help="L2 weight decay")
    g.add_argument("--loss", choices=["cross_entropy", "mse"], help="loss (mse: on one-hot targets)")
    g.add_argument("--label-smoothing", type=float, metavar="F",
                   help="label smoothing of the cross-entropy in [0, 1] (torch's; 0: none)")
    g.add_argument("--scheduler", choices=["none", "onecycle", "cosine", "step"],
                   help="learning-rate schedule, stepped per batch")
    g.add_argument("--augment", metavar="SPEC",
                   help="augmentation, e.g. 'rotate:10,perspective:0.2' or 'noise:0.2,hflip:0.7'; "
                        "'none' turns off a recipe's augmentation (see fastmnist.augment.from_spec)")
    d = p.add_argument_group("data")
    d.add_argument("--data", metavar="PATH",
                   help="a directory of the MNIST IDX files, a directory holding Kaggle's train.csv "
                        "(and test.csv), or a labelled CSV file (.csv or .csv.gz); a CSV source without a "
                        "labelled test.csv holds out 10%% of its rows as the test set "
                        "(default: $FASTMNIST_DATA or the download cache)")
    d.add_argument("--train-size", type=int, metavar="N", help="train on a stratified subsample of N images")
    d.add_argument("--test-size", type=int, metavar="N", help="evaluate on a stratified subsample of N test images")
    d.add_argument("--val-split", type=float, default=0.0, metavar="F",
                   help="hold out this fraction of the training set as a validation set for the "
                        "per-epoch val_loss/val_acc columns (default 0: no validation split; the per-epoch "
                        "columns then measure the test set and are called test_loss/test_acc)")
    o = p.add_argument_group("run")
    o.add_argument("--out", metavar="DIR", help="run directory (default: runs/<model>-<time>)")
    o.add_argument("--overwrite", action="store_true",
                   help="replace the run in an existing --out directory (its run files are removed first)")
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
        epilog=model_help() + augment_help() + "\nexamples:\n  fastmnist train cnn\n"
               "  fastmnist train cnn --recipe tuned\n"
               "  fastmnist train cnn --recipe full --epochs 3\n"
               "  fastmnist train cnn-scratch --data kaggle/ --option channels=8,16,32\n"
               "  fastmnist train mlp-scratch --option activation=relu --loss cross_entropy\n"
               "  fastmnist train fast --threads 2",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    from .. import models

    p.add_argument("model", metavar="MODEL", help=", ".join(models.names()))
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="model option, e.g. dropout=0.5 (cnn5), channels=8,16,32 / hidden=128 (cnn-scratch), "
                        "activation=relu / arch=cnn / sizes=784,30,10 (mlp-scratch), hidden=512 (fnn, mlp, "
                        "fast); repeatable")
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


_OVERRIDES = ("epochs", "batch_size", "lr", "optimizer", "momentum", "weight_decay", "loss", "label_smoothing",
              "train_size", "test_size")


def apply_overrides(base, args):
    """``base`` with the command-line options applied: ``(effective recipe, {field: value} changed)``."""
    r = base.updated(**{k: getattr(args, k, None) for k in _OVERRIDES})
    aug = args.augment
    if aug is not None:
        r.augment = None if aug.strip().lower() in ("none", "off", "") else aug
    check_augment(r.augment)
    if args.scheduler is not None:
        r.scheduler = None if args.scheduler == "none" else args.scheduler
    b, e = base.to_dict(), r.to_dict()
    overrides = {k: e[k] for k in e if e[k] != b[k]}
    return r, overrides


def resolve_recipe(name, args):
    """The named recipe (``--recipe``) of model ``name`` and the effective one after the command-line
    overrides: ``(base, effective, overrides)``."""
    from .. import models

    base = models.recipe(name, getattr(args, "recipe", None) or "default")
    r, overrides = apply_overrides(base, args)
    return base, r, overrides


def check_augment(spec):
    if spec and any(t.split(":")[0].strip().lower() == "normalize" for t in spec.split(",")):
        raise ValueError(f"--augment {spec!r}: leave out 'normalize' (the trainer normalises the inputs "
                         "after augmentation)")


def load_data(args, recipe):
    """The data ``--data`` names, subsampled as ``recipe`` says: ``(data tuple, info dict)``."""
    from ..data import load_dataset, subsample

    x_train, y_train, x_test, y_test, info = load_dataset(args.data, download=True, seed=args.seed)

    def size(what, n, lo, available):
        # an explicit --train-size/--test-size must fit the data; a recipe's (write-up 001's 30,000/5,000)
        # takes everything a smaller source (a Kaggle CSV, say) holds, and says so
        if not n:
            return None
        if getattr(args, what, None):
            if not lo <= n <= available:
                raise ValueError(f"--{what.replace('_', '-')} must be in {lo}..{available}, got {n}")
            return n
        if n >= available:
            print(f"note: the recipe's {what.replace('_', ' ')} {n:,} exceeds the {available:,} images of this "
                  f"data: using all of them")
            return None
        return n

    n = size("train_size", recipe.train_size, 10, len(y_train))
    if n:
        x_train, y_train = subsample(x_train, y_train, n, seed=args.seed)
    n = size("test_size", recipe.test_size, 1, len(y_test))
    if n:
        x_test, y_test = subsample(x_test, y_test, n, seed=args.seed + 1)
    return (x_train, y_train, x_test, y_test), info


# the files a train run writes (removed from --out by --overwrite before a new run)
RUN_DIR_FILES = ("summary.json", "history.json", "history.csv", "predictions.npz", "feature_maps.npz",
                 "model.npz", "label_counts.json", "classification_report.txt", "model_summary.txt", "table.txt",
                 "report.html", "report.md")


def _is_run_dir(d: Path) -> bool:
    return any((d / f).exists() for f in RUN_DIR_FILES) or (d / "figures").is_dir()


def prepare_out_dir(out: Path, overwrite: bool) -> None:
    """Make ``out`` ready for a new run: remove the temporary files a killed run left; refuse an
    existing non-empty directory unless ``overwrite``, which removes the old run's files (those a
    run writes, and the model sub-directories of a compare run; nothing else)."""
    from .._io import remove_stale_temps

    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a directory")
    remove_stale_temps(out)
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        raise ValueError(f"--out {out} is not empty (it holds an earlier run): pass --overwrite to replace "
                         "that run, or choose another directory")
    subs = [out] + [d for d in out.iterdir() if d.is_dir() and d.name != "figures" and _is_run_dir(d)]
    for d in subs:
        for f in RUN_DIR_FILES:
            if (d / f).is_file():
                (d / f).unlink()
        figs = d / "figures"
        if figs.is_dir():
            for f in figs.glob("*.png"):
                f.unlink()


def default_out(name):
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def settings_dict(args, base, recipe, overrides, options, data_info):
    """summary.json's "settings": the effective recipe (and the named one it comes from, with the
    command-line overrides), the model options, the data and the run options."""
    return {"recipe": recipe.to_dict(), "recipe_name": base.name, "recipe_source": base.source,
            "named_recipe": base.to_dict(), "overrides": overrides, "model_options": options,
            "data": data_info, "val_split": args.val_split or 0.0, "seed": args.seed,
            "epochs": recipe.epochs}


def _label_counts(y):
    return np.bincount(np.asarray(y, np.int64), minlength=10).tolist()


def train_model(name, recipe, data, args, out_dir: Path, options=None, command="train", log=None,
                settings=None, figures=None):
    """Train ``name`` with ``recipe`` on ``data`` and write a full run directory in ``out_dir``
    (every file atomically; summary.json last). ``figures``: a ``FigureWorker`` that starts drawing
    the figures of the files written first while the others are written. Returns
    ``(results, history, trainer)``."""
    import fastmnist

    from .. import models
    from .._io import atomic_savez, atomic_write_json, atomic_write_text
    from ..checkpoint import save_checkpoint
    from ..metrics import classification_report
    from ..train import Trainer, prepare

    options = dict(options or {})
    x_train, y_train, x_test, y_test = data
    model = models.build(name, seed=args.seed, **options)
    opt = models.make_optimizer(recipe, model.parameters())
    bs = recipe.batch_size
    n_fit = len(y_train) - round(len(y_train) * (args.val_split or 0.0))
    steps = (n_fit + bs - 1) // bs
    sched = models.make_scheduler(recipe, opt, steps)
    augment = None
    if recipe.augment:
        from .. import augment as aug_mod

        augment = aug_mod.from_spec(recipe.augment)
    trainer = Trainer(model, opt, loss=models.make_loss(recipe), batch_size=bs, epochs=recipe.epochs,
                      augment=augment, scheduler=sched, seed=args.seed, normalize=recipe.normalize,
                      quiet=args.quiet, log=log)
    if args.val_split:
        hist = trainer.fit(x_train, y_train, val_split=args.val_split)
    else:
        hist = trainer.fit(x_train, y_train, x_val=x_test, y_val=y_test, eval_set="test")
    y_fit = np.asarray(y_train)[trainer.split_["train"]]
    y_val = np.asarray(y_train)[trainer.split_["val"]]
    if hist.eval_set == "test" and len(hist) and hist.val_acc[-1] is not None:
        # the last per-epoch evaluation ran on the test set with the final model: reuse its outputs
        test_loss, test_acc = hist.val_loss[-1], hist.val_acc[-1]
        proba = trainer.loss.probabilities(trainer.last_eval_outputs_)
    else:
        test_loss, test_acc, proba = trainer.evaluate(x_test, y_test, return_proba=True)  # one forward pass
    proba = np.asarray(proba, np.float32)
    y_pred = proba.argmax(1).astype(np.int64)
    report = classification_report(np.asarray(y_test, np.int64), y_pred, labels=np.arange(10), digits=4,
                                   zero_division=0)

    out_dir.mkdir(parents=True, exist_ok=True)
    hist.to_json(out_dir / "history.json")
    hist.to_csv(out_dir / "history.csv")
    counts = {"train": _label_counts(y_fit), "val": _label_counts(y_val), "test": _label_counts(y_test)}
    atomic_write_json(out_dir / "label_counts.json", counts)
    if figures is not None:
        figures.submit(out_dir, only=FIGURES_OF_HISTORY)
    atomic_savez(out_dir / "predictions.npz", y_true=np.asarray(y_test, np.int64), y_pred=y_pred,
                 proba=proba, images=np.asarray(x_test, np.uint8), interrupted=np.bool_(hist.interrupted))
    if figures is not None:
        figures.submit(out_dir, only=FIGURES_OF_PREDICTIONS)
    interrupted = " (interrupted run)" if hist.interrupted else ""
    atomic_write_text(out_dir / "classification_report.txt",
                      f"{name}: classification report on {len(y_test)} test images{interrupted}\n\n{report}")
    atomic_write_text(out_dir / "model_summary.txt", model.summary(file=False) + "\n")
    if models.is_cnn(model):
        img = prepare(x_test[:1], normalize=False)
        fmap_in = prepare(x_test[:1], normalize=recipe.normalize)
        maps = {"image": img[0, 0]}
        for key, a in model.feature_maps(fmap_in):
            if a.ndim == 4:
                maps[key] = np.asarray(a[0], np.float32)
        atomic_savez(out_dir / "feature_maps.npz", **maps)
    meta = {"normalize": recipe.normalize, "loss": recipe.loss, "recipe": recipe.to_dict(),
            "test_accuracy": test_acc, "interrupted": hist.interrupted}
    save_checkpoint(model, out_dir / "model.npz", opt, meta=meta)
    results = {"test_accuracy": test_acc, "test_loss": test_loss, "train_seconds": trainer.train_seconds,
               "epochs_run": len(hist), "interrupted": hist.interrupted,
               "final_train_loss": hist.train_loss[-1] if len(hist) else None,
               "final_train_acc": hist.train_acc[-1] if len(hist) else None,
               "parameters": model.num_parameters(), "train_size": len(y_fit),
               "val_size": len(y_val), "test_size": len(y_test),
               "per_epoch_eval": hist.eval_set if len(hist) and hist.val_acc[-1] is not None else None}
    summary = {"command": command, "model": name, "status": "interrupted" if hist.interrupted else "complete",
               "settings": settings or {}, "results": results, "fastmnist_version": fastmnist.__version__,
               "threads": fastmnist.get_num_threads()}
    atomic_write_json(out_dir / "summary.json", summary, default=str)
    return results, hist, report


# the figures train_model has drawn as soon as their files are written: those of history.json and
# label_counts.json, then those of predictions.npz (the rest when the run directory is complete)
FIGURES_OF_HISTORY = ("training_curves.png", "label_distribution.png")
FIGURES_OF_PREDICTIONS = ("confusion_matrix.png", "samples.png", "misclassified.png")


def figure_worker(args):
    """A ``FigureWorker`` to start before the data are read (None with --no-figures)."""
    if args.no_figures:
        return None
    from .._figworker import FigureWorker

    return FigureWorker()


def draw_figures(out_dir, args, worker=None):
    """Every figure of the run directory ``out_dir``: finished by ``worker`` (see ``figure_worker``)
    when given, else drawn here."""
    if args.no_figures:
        return []
    try:
        if worker is not None:
            return worker.finish(out_dir)
        from ..plots import write_run_figures

        return write_run_figures(out_dir)
    except ImportError:
        print("figures skipped: fastmnist.plots is not available")
        return []


def run(args) -> int:
    from .. import models

    name = models._lookup(args.model)
    options = parse_options(args.option)
    models.build(name, seed=0, **options)  # bad options fail before any data is read
    base, recipe, overrides = resolve_recipe(name, args)
    if recipe.epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {recipe.epochs}")
    if recipe.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {recipe.batch_size}")
    if args.val_split and not 0.0 < args.val_split < 1.0:
        raise ValueError(f"--val-split must be in (0, 1), got {args.val_split}")
    models.make_loss(recipe)  # a bad --label-smoothing (or one with --loss mse) fails before any data is read
    out = Path(args.out) if args.out else default_out(name)
    prepare_out_dir(out, args.overwrite)
    worker = figure_worker(args)  # imports matplotlib in another process while the data load
    try:
        return _run(args, name, base, recipe, overrides, options, out, worker)
    finally:
        if worker is not None:
            worker.close()


def _run(args, name, base, recipe, overrides, options, out, worker) -> int:
    data, info = load_data(args, recipe)
    n_val = round(len(data[1]) * args.val_split) if args.val_split else 0
    over = ", ".join(f"{k}={v}" for k, v in overrides.items())
    print(f"{name}: {recipe.line()}" + (f" [overridden: {over}]" if over else "") + f"  <- {base.source}")
    if not args.quiet:
        print(f"data: {len(data[1]) - n_val} train / {n_val} val / {len(data[3])} test images "
              f"({info['source']}; test set: {info['test_source']})")
    settings = settings_dict(args, base, recipe, overrides, options, info)
    results, _, report = train_model(name, recipe, data, args, out, options=options, settings=settings,
                                     figures=worker)
    figs = draw_figures(out, args, worker)
    note = " (interrupted)" if results["interrupted"] else ""
    if not args.quiet:
        print(f"classification report ({len(data[3])} test images):\n{report}", end="")
    print(f"test accuracy: {results['test_accuracy']:.4f}  test loss: {results['test_loss']:.4f}  "
          f"training time: {results['train_seconds']:.1f} s{note}")
    print(f"run directory: {out}" + (f" ({len(figs)} figures)" if figs else ""))
    if results["interrupted"]:
        print("interrupted: the run directory holds the model and metrics so far (marked interrupted)")
        return 130
    return 0
