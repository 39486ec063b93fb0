"""Write the five example notebooks (one per write-up) from the cell sources below.

    python examples/make_notebooks.py            # (re)write examples/*.ipynb, without outputs
    python examples/make_notebooks.py --execute  # also run them (full mode unless FASTMNIST_QUICK=1)

Every notebook reads one parameter in its first cell: the environment variable FASTMNIST_QUICK=1
runs small subsets in seconds (the test suite does this); unset, it runs the full study. Data come
from fastmnist.load_mnist() ($FASTMNIST_DATA, else the per-user cache, downloaded once).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = '''\
%matplotlib inline
# Parameter: FASTMNIST_QUICK=1 (set by the test suite) runs small subsets in seconds;
# unset, the notebook runs the full study.
import os
QUICK = os.environ.get("FASTMNIST_QUICK", "") not in ("", "0")

import numpy as np
import fastmnist
from fastmnist import models, nn, optim, plots, metrics
from fastmnist.train import Trainer

# the four MNIST files: $FASTMNIST_DATA, else the per-user cache (downloaded and md5-checked once)
x_train, y_train, x_test, y_test = fastmnist.load_mnist()
if QUICK:
    x_test, y_test = x_test[:2000], y_test[:2000]
print(f"QUICK={QUICK}; train {x_train.shape}, test {x_test.shape}; {fastmnist.get_num_threads()} threads")'''


def nb(cells):
    out = []
    for c in cells:
        if c.startswith("# %% md\n"):
            out.append(new_markdown_cell(c[len("# %% md\n"):].strip()))
        else:
            out.append(new_code_cell(c.strip()))
    for i, c in enumerate(out):  # stable cell ids: regenerating an unchanged notebook changes nothing
        c.id = f"cell-{i:02d}"
    book = new_notebook(cells=out)
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    book.metadata["language_info"] = {"name": "python"}
    return book


NOTEBOOKS = {
    # ------------------------------------------------------------------------------------------
    "01_resnet50_features_logreg.ipynb": [
        """# %% md
# ResNet-50 features + logistic regression, and the ROC curve of class 9

The write-up: push every MNIST digit through an ImageNet ResNet-50 (resized, three channels), keep the
2048 pooled features, fit a multinomial logistic regression on them by mini-batch gradient descent, and
look at the ROC curve of one class (9) against the rest. Feature extraction runs in PyTorch (CUDA when
present); the logistic regression and the ROC sweep run on fastmnist's C++ kernels.""",
        SETUP,
        """\
from pathlib import Path
from fastmnist.features import build_resnet50, extract_features, resolve_device

# Weights: $FASTMNIST_WEIGHTS, else the Keras ImageNet ResNet-50 in ../../shared/weights beside the
# checkout, else torchvision's ImageNet weights (downloaded on first use).
shared = Path("../../shared/weights/resnet50_keras_imagenet_tv.pth")
WEIGHTS = os.environ.get("FASTMNIST_WEIGHTS") or (str(shared) if shared.exists() else "imagenet")
SIZE = 32                                  # the write-up used 224 px (a GPU job); 32 px runs on a CPU
N_TRAIN, N_TEST = (300, 200) if QUICK else (60000, 10000)
device = resolve_device("auto")
resnet, info = build_resnet50(WEIGHTS)
print(info, "device:", device)""",
        """\
F_train = extract_features(resnet, x_train[:N_TRAIN], size=SIZE, device=device, desc="train")
F_test = extract_features(resnet, x_test[:N_TEST], size=SIZE, device=device, desc="test")
yf_train, yf_test = y_train[:N_TRAIN], y_test[:N_TEST]
F_train.shape, F_test.shape""",
        """# %% md
Multinomial logistic regression, batch 128, learning rate 0.1, 10 epochs (one C++ call per epoch). The
validation set here is the test set, as in the write-up.""",
        """\
clf = fastmnist.LogisticRegression(batch_size=128, lr=0.1, epochs=10, seed=0)
clf.fit(F_train, yf_train, X_val=F_test, y_val=yf_test)
print(f"test accuracy {clf.score(F_test, yf_test):.4f}")
plots.plot_logreg_accuracy(clf.history_, title="logistic regression on ResNet-50 features")""",
        """\
scores = clf.predict_proba(F_test)[:, list(clf.classes_).index(9)]
fpr, tpr, thresholds = fastmnist.roc_curve(yf_test == 9, scores)
print(f"class 9: AUC = {fastmnist.auc(fpr, tpr):.4f}")
plots.plot_roc((fpr, tpr), title="ROC of class 9 vs the rest")""",
    ],
    # ------------------------------------------------------------------------------------------
    "02_logreg_fnn_cnn.ipynb": [
        """# %% md
# Logistic regression vs a feed-forward network vs a CNN

The write-up's side-by-side comparison: the same data (a 30,000-image training subsample, 5,000 test
digits), the same rotation + perspective augmentation, optimizer (Adam 1e-3), batch (64) and epochs for
three models of growing capacity, with the training curves and the test accuracy / training time of each.""",
        SETUP,
        """\
from fastmnist import augment
from fastmnist.data import subsample

r = models.recipe("cnn")                 # write-up 001: the same recipe for the three models
print(r.line())
N_TRAIN, N_TEST, EPOCHS = (2000, 1000, 2) if QUICK else (r.train_size, r.test_size, r.epochs)
xs, ys = subsample(x_train, y_train, N_TRAIN, seed=0)
xt, yt = subsample(x_test, y_test, N_TEST, seed=1)
results, histories = {}, {}
for name in ["logreg", "fnn", "cnn"]:
    model = models.build(name, seed=0)
    model.summary((1, 1, 28, 28)) if name == "cnn" else None
    trainer = Trainer(model, models.make_optimizer(r, model.parameters()), batch_size=r.batch_size,
                      epochs=EPOCHS, augment=augment.from_spec(r.augment), seed=0, quiet=True)
    histories[name] = trainer.fit(xs, ys, x_val=xt, y_val=yt)
    loss, acc = trainer.evaluate(xt, yt)
    results[name] = {"test_accuracy": acc, "train_seconds": trainer.train_seconds,
                     "parameters": model.num_parameters()}
    print(f"{name:7s} {model.num_parameters():>8,} parameters  test accuracy {acc:.4f}  "
          f"{trainer.train_seconds:.1f} s")""",
        """plots.plot_training_curves(histories, title="validation = test set")""",
        """plots.plot_model_comparison(results, title=f"{N_TRAIN} training images, {EPOCHS} epochs")""",
    ],
    # ------------------------------------------------------------------------------------------
    "03_convolution_cnn5_feature_maps.ipynb": [
        """# %% md
# Convolution by hand, a 5x5 CNN, and what its filters see

First one 5x5 filter slides over one digit by hand (plain Python loops) and is checked against
`fastmnist.conv2d`; then 2x2 max-pooling the same way. Then the Keras-tutorial CNN (two 5x5
convolutions) is trained, and the feature maps of one digit are drawn layer by layer.""",
        SETUP,
        """\
image = x_train[0].astype(np.float32) / 255
kernel = np.array([[-1, -1, 0, 1, 1]] * 5, np.float32) / 10          # a vertical-edge filter

def conv_by_hand(img, k):
    R, S = k.shape
    out = np.zeros((img.shape[0] - R + 1, img.shape[1] - S + 1), np.float32)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = np.sum(img[i:i + R, j:j + S] * k)
    return out

def max_pool_by_hand(a, k=2):
    return np.array([[a[i:i + k, j:j + k].max() for j in range(0, a.shape[1] - k + 1, k)]
                     for i in range(0, a.shape[0] - k + 1, k)], np.float32)

by_hand = conv_by_hand(image, kernel)
ours = fastmnist.conv2d(image[None, None], kernel[None, None])[0, 0]   # (N, C, H, W) as in torch
print("max |difference|:", np.abs(by_hand - ours).max())
pooled = max_pool_by_hand(by_hand)
assert np.array_equal(pooled, fastmnist.max_pool2d(by_hand[None, None], 2)[0, 0])
plots.plot_conv_demo(image, kernel, by_hand, pooled, filter_name="vertical edge")""",
        """\
N_TRAIN, EPOCHS = (3000, 1) if QUICK else (60000, 5)
model = models.build("cnn5", seed=0)
r = models.recipe("cnn5")                       # write-up 002: Adam 1e-3, batch 128, 5 epochs
opt = models.make_optimizer(r, model.parameters())
steps = -(-N_TRAIN // r.batch_size)
trainer = Trainer(model, opt, batch_size=r.batch_size, epochs=EPOCHS, seed=0,
                  scheduler=models.make_scheduler(r.updated(epochs=EPOCHS), opt, steps))
hist = trainer.fit(x_train[:N_TRAIN], y_train[:N_TRAIN], x_val=x_test, y_val=y_test)
print(f"test accuracy {trainer.evaluate(x_test, y_test)[1]:.4f} in {trainer.train_seconds:.1f} s")
plots.plot_training_curves(hist)""",
        """\
maps = [(name, a[0]) for name, a in model.feature_maps(x_test[:1]) if a.ndim == 4]
plots.plot_feature_maps(x_test[0] / 255, maps, title=f"feature maps of a test digit ({y_test[0]})")""",
        """plots.plot_confusion_matrix(y_test, trainer.predict(x_test))""",
    ],
    # ------------------------------------------------------------------------------------------
    "04_cnn_kaggle_csv.ipynb": [
        """# %% md
# A CNN from scratch on the Kaggle CSV: precision, recall, F1 and the digits it gets wrong

The Kaggle "Digit Recognizer" data is a CSV: a `label` column and 784 pixel columns. We write that
file from MNIST (the Kaggle file holds the same digits), read it back with `fastmnist.load_mnist_csv`,
train the from-scratch CNN (one 5x5 convolution, max-pool, a dense layer) on 90% of it, and study the
errors on the held-out 10%.""",
        SETUP,
        """\
import tempfile
from pathlib import Path

N = 3000 if QUICK else 42000                     # Kaggle's train.csv has 42,000 rows
rows = np.concatenate([y_train[:N, None], x_train[:N].reshape(N, 784)], axis=1)
csv = Path(tempfile.mkdtemp()) / "train.csv"
header = "label," + ",".join(f"pixel{i}" for i in range(784))
np.savetxt(csv, rows, fmt="%d", delimiter=",", header=header, comments="")
x, y = fastmnist.load_mnist_csv(csv)
print(csv.name, x.shape, y.shape, np.bincount(y))""",
        """\
perm = np.random.default_rng(0).permutation(len(y))
val, tr = perm[:len(y) // 10], perm[len(y) // 10:]
model = models.build("mlp-scratch", arch="cnn", activation="relu", seed=0)
trainer = Trainer(model, optim.Adam(model.parameters(), lr=1e-3), batch_size=64, epochs=2 if QUICK else 10,
                  seed=0)
hist = trainer.fit(x[tr], y[tr].astype(np.int64), x_val=x[val], y_val=y[val].astype(np.int64))
plots.plot_training_curves(hist)""",
        """\
y_val = y[val].astype(np.int64)
proba = trainer.predict_proba(x[val])
y_pred = proba.argmax(1)
print(metrics.classification_report(y_val, y_pred, digits=4))
p, r, f1, support = metrics.precision_recall_fscore_support(y_val, y_pred, average="macro")
print(f"macro precision {p:.4f}  recall {r:.4f}  F1 {f1:.4f}")""",
        """plots.plot_confusion_matrix(y_val, y_pred)""",
        """plots.plot_misclassified(x[val], y_val, y_pred, proba, n=24, title="the most confident mistakes")""",
    ],
    # ------------------------------------------------------------------------------------------
    "05_mlp_noise_flips.ipynb": [
        """# %% md
# An MLP trained on noisy, flipped digits

The write-up trains one hidden layer of 100 ReLU units (Adam 0.01, batch 512) on inputs with Gaussian
noise and random horizontal flips. Flipped digits are harder to tell apart (a flipped 2 looks like a 5),
which costs accuracy: here the same MLP is trained with and without the augmentation.""",
        SETUP,
        """\
from fastmnist import augment

r = models.recipe("mlp")
print("recipe:", r.augment, f"lr {r.lr}, batch {r.batch_size}, {r.epochs} epochs")
aug = augment.from_spec(r.augment)
plots.plot_augmentation_preview(x_train[:6], [("noise + flip", lambda b, rng: aug(b[:, None], rng))])""",
        """\
N_TRAIN, EPOCHS = (4000, 3) if QUICK else (60000, r.epochs)
histories, acc = {}, {}
for label, transform in [("noise + flips", aug), ("clean", None)]:
    model = models.build("mlp", seed=0)
    trainer = Trainer(model, optim.Adam(model.parameters(), lr=r.lr), batch_size=r.batch_size, epochs=EPOCHS,
                      augment=transform, seed=0, quiet=True)
    histories[label] = trainer.fit(x_train[:N_TRAIN], y_train[:N_TRAIN], x_val=x_test, y_val=y_test)
    acc[label] = trainer.evaluate(x_test, y_test)[1]
    print(f"{label:13s} test accuracy {acc[label]:.4f}")
plots.plot_training_curves(histories)""",
    ],
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--execute", action="store_true", help="run each notebook and store its outputs")
    args = ap.parse_args(argv)
    for name, cells in NOTEBOOKS.items():
        book = nb(cells)
        if args.execute:
            from nbclient import NotebookClient

            NotebookClient(book, timeout=None, kernel_name="python3",
                           resources={"metadata": {"path": str(HERE)}}).execute()
        nbformat.write(book, HERE / name)
        print("wrote", HERE / name)


if __name__ == "__main__":
    main()
