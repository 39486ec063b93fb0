"""``fastmnist logreg``: multinomial logistic regression (mini-batch GD in C++) on ResNet features
(.mat from ``fastmnist extract``) or on raw MNIST pixels; writes a run directory with the
accuracy-per-epoch plot, the ROC curve of one class with its AUC, per-class AUCs and a summary."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .._io import atomic_savez, atomic_write, atomic_write_json


def add_parser(sub):
    p = sub.add_parser(
        "logreg", help="logistic regression on ResNet features (.mat) or pixels; accuracy, ROC, AUC",
        description="Fit multinomial logistic regression by mini-batch gradient descent (one C++ call per "
                    "epoch) and write OUT/summary.json, history.json/.csv, predictions.npz, roc.json and "
                    "figures/ (accuracy per epoch, ROC of --roc-class, ROC of all classes).")
    src = p.add_argument_group("data (either .mat features or --pixels)")
    src.add_argument("--train", help="training features .mat ('features' N x D, 'labels' N x 1)")
    src.add_argument("--test", help="test features .mat")
    src.add_argument("--pixels", action="store_true", help="train on raw MNIST pixels (scaled to [0, 1]) instead")
    src.add_argument("--data", default=None, help="MNIST directory for --pixels (default: $FASTMNIST_DATA or the cache)")
    p.add_argument("--batch-size", type=int, default=128, help="samples per gradient step (default 128)")
    p.add_argument("--lr", type=float, default=0.1, help="learning rate (default 0.1)")
    p.add_argument("--epochs", type=int, default=10, help="epochs (default 10)")
    p.add_argument("--l2", type=float, default=0.0, help="L2 penalty on the weights (PyTorch weight_decay)")
    p.add_argument("--standardize", choices=["auto", "on", "off"], default="auto",
                   help="standardise features with the training mean/std (auto: on for .mat features, off for pixels)")
    p.add_argument("--seed", type=int, default=0, help="seed of the batch order")
    p.add_argument("--roc-class", type=int, default=9, help="class whose ROC curve is drawn on its own (default 9)")
    p.add_argument("--threads", type=int, default=None, help="OpenMP threads (default: OMP_NUM_THREADS or all)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    p.add_argument("--out", required=True, help="run directory to write")
    p.set_defaults(func=run)


def _load(args):
    if args.pixels:
        if args.train or args.test:
            raise ValueError("give either --pixels or --train/--test, not both")
        from ..data import (
            load_dataset,  # IDX directory, Kaggle CSV directory or CSV file
        )

        x_tr, y_tr, x_te, y_te, _ = load_dataset(args.data, download=True, seed=args.seed, quiet=args.quiet)
        f = lambda x: x.reshape(len(x), -1).astype(np.float32) / 255.0  # noqa: E731
        return f(x_tr), y_tr.astype(np.int64), f(x_te), y_te.astype(np.int64), x_te, "logreg-pixels"
    if not (args.train and args.test):
        raise ValueError("give --train and --test feature files (.mat from 'fastmnist extract'), or --pixels")
    from ..features import check_same_extraction, load_features_mat

    X, y, meta = load_features_mat(args.train, meta=True)
    Xt, yt, meta_t = load_features_mat(args.test, meta=True)
    check_same_extraction(meta, meta_t, f"--train {args.train}", f"--test {args.test}")
    if X.shape[1] != Xt.shape[1]:
        raise ValueError(f"{args.train} has {X.shape[1]} features per row but {args.test} has {Xt.shape[1]}")
    return X, y, Xt, yt, None, "logreg-features"


def run(args) -> int:
    import fastmnist

    from ..logreg import LogisticRegression, auc, roc_curve_ovr
    from ..plots import plot_logreg_accuracy, plot_roc
    from ..train import History

    X, y, Xt, yt, images, model_name = _load(args)
    out = Path(args.out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    standardize = (not args.pixels) if args.standardize == "auto" else args.standardize == "on"
    if not args.quiet:
        print(f"{model_name}: train {X.shape}, test {Xt.shape}, batch {args.batch_size}, lr {args.lr}, "
              f"epochs {args.epochs}, standardize {standardize}, threads {fastmnist.get_num_threads()}")
    clf = LogisticRegression(lr=args.lr, batch_size=args.batch_size, epochs=args.epochs, l2=args.l2,
                             standardize=standardize, seed=args.seed, verbose=not args.quiet)
    t0 = time.perf_counter()
    clf.fit(X, y, Xt, yt, eval_name="test")  # per-epoch columns measure the test set
    fit_seconds = time.perf_counter() - t0
    proba = clf.predict_proba(Xt)
    y_pred = clf.classes_[proba.argmax(axis=1)].astype(np.int64)
    acc = float(np.mean(y_pred == yt))
    # one-vs-rest ROC: columns of proba follow classes_
    y_idx = np.searchsorted(clf.classes_, yt).astype(np.int64)
    curves = roc_curve_ovr(y_idx, proba)
    aucs = {str(int(c)): auc(f, t) for c, (f, t, _) in zip(clf.classes_, curves)}
    roc_json = {"classes": {str(int(c)): {"fpr": f.tolist(), "tpr": t.tolist(), "auc": aucs[str(int(c))]}
                            for c, (f, t, _) in zip(clf.classes_, curves)}}
    rc = str(args.roc_class)
    if rc not in aucs:
        raise ValueError(f"--roc-class {args.roc_class} is not one of the classes {sorted(aucs, key=int)}")

    h = dict(clf.history_, eval_set="test")
    hist = History.from_dict(h)
    hist.to_json(out / "history.json")
    hist.to_csv(out / "history.csv")
    atomic_write_json(out / "roc.json", roc_json, indent=None)
    pred = {"y_true": yt.astype(np.int64), "y_pred": y_pred, "proba": proba.astype(np.float32)}
    if images is not None:
        pred["images"] = images
    atomic_savez(out / "predictions.npz", **pred)
    settings = {k: v for k, v in vars(args).items() if k != "func" and not callable(v)}
    settings["standardize"] = standardize
    summary = {
        "command": "logreg",
        "model": model_name,
        "settings": settings,
        "results": {
            "test_accuracy": acc,
            "train_seconds": float(sum(h["seconds"])),
            "fit_seconds": fit_seconds,
            "roc_class": args.roc_class,
            "auc_roc_class": aucs[rc],
            "auc_per_class": aucs,
            "auc_macro": float(np.mean(list(aucs.values()))),
            "n_train": int(X.shape[0]),
            "n_test": int(Xt.shape[0]),
            "n_features": int(X.shape[1]),
            "final_train_loss": h["train_loss"][-1],
            "final_train_acc": h["train_acc"][-1],
        },
        "fastmnist_version": fastmnist.__version__,
        "threads": fastmnist.get_num_threads(),
    }
    atomic_write_json(out / "summary.json", summary)

    what = "ResNet-50 features" if model_name == "logreg-features" else "pixels"
    figs = {
        "accuracy.png": plot_logreg_accuracy(h, title=f"Logistic regression on {what}: accuracy per epoch"),
        f"roc_class{rc}.png": plot_roc({f"class {rc}": curves[list(aucs).index(rc)]},
                                       title=f"ROC of class {rc} vs rest ({what})"),
        "roc_all.png": plot_roc({f"class {c}": cv for c, cv in zip(aucs, curves)},
                                title=f"ROC, one vs rest ({what})"),
    }
    for name, fig in figs.items():
        atomic_write(out / "figures" / name, lambda f, fig=fig: fig.savefig(f, format="png"), "wb")

    print(f"test accuracy: {100 * acc:.2f}%  (fit {fit_seconds:.1f} s)")
    print(f"AUC class {rc}: {aucs[rc]:.5f}")
    print("AUC per class: " + "  ".join(f"{c}:{a:.4f}" for c, a in aucs.items()))
    print(f"wrote {out}/summary.json, history.json, history.csv, predictions.npz, roc.json, "
          f"figures/{', figures/'.join(figs)}")
    return 0
