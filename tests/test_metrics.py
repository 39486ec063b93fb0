"""fastmnist.metrics against scikit-learn on real predictions: a nearest-centroid classifier and a
NumPy softmax regression fitted here on real MNIST, plus edge cases (a class never predicted, a
class absent from the truth, explicit label subsets, string labels, sample weights)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

skm = pytest.importorskip("sklearn.metrics")

import fastmnist  # noqa: E402
from fastmnist import metrics as fm  # noqa: E402


@pytest.fixture(scope="module")
def preds(mnist):
    """Real predictions: nearest class centroid (on 6000 training images) over 2000 test images."""
    x_train, y_train, x_test, y_test = mnist
    xtr = x_train[:6000].reshape(6000, -1).astype(np.float32) / 255
    xte = x_test[:2000].reshape(2000, -1).astype(np.float32) / 255
    ytr = y_train[:6000].astype(np.int64)
    centroids = np.stack([xtr[ytr == c].mean(0) for c in range(10)])
    d = (xte ** 2).sum(1)[:, None] - 2 * xte @ centroids.T + (centroids ** 2).sum(1)[None]
    y_pred = d.argmin(1).astype(np.int64)
    y_true = y_test[:2000].astype(np.int64)
    acc = (y_pred == y_true).mean()
    assert 0.75 < acc < 0.9  # a real, imperfect classifier (nearest centroid gets ~82%)
    return y_true, y_pred


def assert_prfs_equal(got, want):
    for g, w in zip(got, want):
        if w is None:
            assert g is None
        else:
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=0, equal_nan=True)


def test_confusion_matrix_and_accuracy(preds):
    yt, yp = preds
    cm = fm.confusion_matrix(yt, yp)
    np.testing.assert_array_equal(cm, skm.confusion_matrix(yt, yp))
    assert cm.dtype == np.int64 and cm.sum() == yt.size
    for norm in ("true", "pred", "all"):
        np.testing.assert_allclose(fm.confusion_matrix(yt, yp, normalize=norm),
                                   skm.confusion_matrix(yt, yp, normalize=norm), rtol=1e-12)
    labels = [9, 3, 1]
    np.testing.assert_array_equal(fm.confusion_matrix(yt, yp, labels=labels),
                                  skm.confusion_matrix(yt, yp, labels=labels))
    w = np.random.default_rng(1).random(yt.size)
    np.testing.assert_allclose(fm.confusion_matrix(yt, yp, sample_weight=w),
                               skm.confusion_matrix(yt, yp, sample_weight=w), rtol=1e-12)
    assert fm.accuracy_score(yt, yp) == pytest.approx(skm.accuracy_score(yt, yp), abs=0)
    assert fm.accuracy(yt, yp) == skm.accuracy_score(yt, yp)
    assert fm.accuracy_score(yt, yp, normalize=False) == skm.accuracy_score(yt, yp, normalize=False)
    assert fm.accuracy_score(yt, yp, sample_weight=w) == pytest.approx(
        skm.accuracy_score(yt, yp, sample_weight=w), rel=1e-12)
    # the lazy top-level names
    assert fastmnist.confusion_matrix is fm.confusion_matrix
    assert fastmnist.classification_report is fm.classification_report


@pytest.mark.parametrize("average", [None, "macro", "weighted", "micro"])
@pytest.mark.parametrize("beta", [1.0, 0.5, 2.0])
def test_prfs_matches_sklearn(preds, average, beta):
    yt, yp = preds
    assert_prfs_equal(fm.precision_recall_fscore_support(yt, yp, average=average, beta=beta),
                      skm.precision_recall_fscore_support(yt, yp, average=average, beta=beta))


@pytest.mark.parametrize("zero_division", ["warn", 0, 1, np.nan])
@pytest.mark.parametrize("average", [None, "macro", "weighted", "micro"])
def test_class_never_predicted(preds, average, zero_division):
    yt, yp = preds
    yp = yp.copy()
    yp[yp == 5] = 3          # class 5 is never predicted: its precision is 0/0
    yt2 = yt.copy()
    yt2[yt2 == 8] = 2        # class 8 never occurs in the truth but is predicted: recall 0/0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for a, b in ((yt, yp), (yt2, yp)):
            got = fm.precision_recall_fscore_support(a, b, average=average, zero_division=zero_division)
            want = skm.precision_recall_fscore_support(a, b, average=average, zero_division=zero_division)
            assert_prfs_equal(got, want)
            # labels that appear nowhere at all
            got = fm.precision_recall_fscore_support(a, b, labels=[0, 5, 11], average=average,
                                                     zero_division=zero_division)
            want = skm.precision_recall_fscore_support(a, b, labels=[0, 5, 11], average=average,
                                                       zero_division=zero_division)
            assert_prfs_equal(got, want)
    if zero_division == "warn" and average != "micro":  # micro pools the counts: nothing is 0/0
        with pytest.warns(fm.UndefinedMetricWarning, match="Precision is ill-defined"):
            fm.precision_recall_fscore_support(yt, yp, average=average)


@pytest.mark.parametrize("digits", [2, 4])
def test_classification_report_text_and_dict(preds, digits):
    yt, yp = preds
    assert fm.classification_report(yt, yp, digits=digits) == skm.classification_report(yt, yp, digits=digits)
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    assert (fm.classification_report(yt, yp, target_names=names, digits=digits)
            == skm.classification_report(yt, yp, target_names=names, digits=digits))
    got, want = fm.classification_report(yt, yp, output_dict=True), skm.classification_report(yt, yp, output_dict=True)
    assert list(got) == list(want)
    for k in want:
        if isinstance(want[k], dict):
            assert list(got[k]) == list(want[k])
            np.testing.assert_allclose([got[k][m] for m in want[k]], [want[k][m] for m in want[k]], rtol=1e-12)
        else:
            assert got[k] == pytest.approx(want[k], rel=1e-12)


def test_classification_report_edge_cases(preds):
    yt, yp = preds
    yp = yp.copy()
    yp[yp == 5] = 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert fm.classification_report(yt, yp) == skm.classification_report(yt, yp)
        # a label subset: the accuracy line becomes "micro avg"
        assert fm.classification_report(yt, yp, labels=[1, 5, 7]) == skm.classification_report(yt, yp, labels=[1, 5, 7])
        for zd in (0, 1):
            assert (fm.classification_report(yt, yp, zero_division=zd, digits=3)
                    == skm.classification_report(yt, yp, zero_division=zd, digits=3))
        w = np.random.default_rng(2).random(yt.size)
        assert fm.classification_report(yt, yp, sample_weight=w) == skm.classification_report(yt, yp, sample_weight=w)
    # string labels, binary
    a = np.array(["cat", "dog", "dog", "cat", "bird", "dog"])
    b = np.array(["cat", "dog", "cat", "cat", "dog", "dog"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert fm.classification_report(a, b) == skm.classification_report(a, b)
        np.testing.assert_array_equal(fm.confusion_matrix(a, b), skm.confusion_matrix(a, b))
    bt, bp = (yt[:300] % 2), (yp[:300] % 2)
    assert_prfs_equal(fm.precision_recall_fscore_support(bt, bp, average="binary"),
                      skm.precision_recall_fscore_support(bt, bp, average="binary"))


def test_bad_input(preds):
    yt, yp = preds
    with pytest.raises(ValueError, match="different lengths: 2000 and 1999"):
        fm.confusion_matrix(yt, yp[:-1])
    with pytest.raises(ValueError, match=r"y_true must be a 1-D array.*\(2000, 1\)"):
        fm.accuracy_score(yt[:, None], yp)
    with pytest.raises(ValueError, match="average"):
        fm.precision_recall_fscore_support(yt, yp, average="samples")
    with pytest.raises(ValueError, match="zero_division"):
        fm.precision_recall_fscore_support(yt, yp, zero_division=2)
    with pytest.raises(ValueError, match="non-integer floats"):
        fm.confusion_matrix(yt, np.full(yt.shape, 0.5))
    with pytest.raises(ValueError, match="NaN"):
        fm.confusion_matrix(np.array([1.0, np.nan]), np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="normalize"):
        fm.confusion_matrix(yt, yp, normalize="rows")
    with pytest.raises(ValueError, match="target_names"):
        fm.classification_report(yt, yp, target_names=["a", "b"])
    with pytest.raises(ValueError, match="binary"):
        fm.precision_recall_fscore_support(yt, yp, average="binary")
