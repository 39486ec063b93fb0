"""roc_curve / roc_curve_ovr / auc against scikit-learn (exact equality of every returned value)."""
from __future__ import annotations

import numpy as np
import pytest

sk = pytest.importorskip("sklearn.metrics")

import fastmnist  # noqa: E402
from fastmnist import _core  # noqa: E402


def assert_same_curve(ours, ref):
    assert len(ours) == 3
    for a, b, name in zip(ours, ref, ("fpr", "tpr", "thresholds")):
        assert a.dtype == np.float64, name
        np.testing.assert_array_equal(a, b, err_msg=name)


@pytest.mark.parametrize("n", [2, 5, 100, 5000, 120_000])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("drop", [True, False])
def test_many_ties_equal_sklearn(rng, n, dtype, drop):
    y = rng.integers(0, 2, n)
    y[0], y[-1] = 0, 1
    s = (rng.integers(0, 25, n) / 7.0 - 1.5).astype(dtype)  # heavy ties, negative and positive
    assert_same_curve(fastmnist.roc_curve(y, s, drop_intermediate=drop),
                      sk.roc_curve(y, s, drop_intermediate=drop))


@pytest.mark.parametrize("n", [50, 40_000])
def test_continuous_scores_and_signed_zero(rng, n):
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    s = rng.standard_normal(n)
    s[::5] = 0.0
    s[1::5] = -0.0  # -0.0 and +0.0 are one score
    for drop in (True, False):
        assert_same_curve(fastmnist.roc_curve(y, s, drop_intermediate=drop), sk.roc_curve(y, s, drop_intermediate=drop))


def test_pos_label_and_label_types(rng):
    n = 3000
    y = rng.choice([-1, 1], n)
    s = rng.integers(0, 40, n).astype(np.float64)
    assert_same_curve(fastmnist.roc_curve(y, s), sk.roc_curve(y, s))
    y3 = rng.integers(0, 3, n)
    assert_same_curve(fastmnist.roc_curve(y3, s, pos_label=2), sk.roc_curve(y3, s, pos_label=2))
    yb = y > 0
    assert_same_curve(fastmnist.roc_curve(yb, s), sk.roc_curve(yb, s))
    ys = np.where(y > 0, "pos", "neg")
    assert_same_curve(fastmnist.roc_curve(ys, s, pos_label="pos"), sk.roc_curve(ys, s, pos_label="pos"))
    si = rng.integers(-5, 5, n)  # integer scores -> float64 thresholds as in sklearn
    assert_same_curve(fastmnist.roc_curve(y, si), sk.roc_curve(y, si))


def test_reference_path_equals_fast_path(rng):
    y = rng.integers(0, 2, 70_000).astype(np.uint8)
    s = np.round(rng.random(70_000), 3)
    for drop in (True, False):
        fast = _core.roc_curve(s, y, drop, False)
        ref = _core.roc_curve(s, y, drop, True)
        for a, b in zip(fast, ref):
            np.testing.assert_array_equal(a, b)


def test_real_model_scores(mnist):
    x_tr, y_tr, x_te, y_te = mnist
    X = x_tr[:10000].reshape(10000, -1).astype(np.float32) / 255
    Xt = x_te.reshape(len(x_te), -1).astype(np.float32) / 255
    clf = fastmnist.LogisticRegression(lr=0.5, batch_size=100, epochs=1, standardize=False).fit(X, y_tr[:10000])
    proba = clf.predict_proba(Xt)
    for drop in (True, False):
        assert_same_curve(fastmnist.roc_curve(y_te, proba[:, 9], pos_label=9, drop_intermediate=drop),
                          sk.roc_curve(y_te, proba[:, 9], pos_label=9, drop_intermediate=drop))
    ovr = fastmnist.roc_curve_ovr(y_te, proba)
    assert len(ovr) == 10
    for c in range(10):
        ref = sk.roc_curve(y_te == c, proba[:, c])
        assert_same_curve(ovr[c], ref)
        assert fastmnist.auc(ovr[c][0], ovr[c][1]) == pytest.approx(sk.roc_auc_score(y_te == c, proba[:, c]), abs=1e-12)
    ovr64 = fastmnist.roc_curve_ovr(y_te, proba.astype(np.float64), drop_intermediate=False)
    assert_same_curve(ovr64[3], sk.roc_curve(y_te == 3, proba[:, 3].astype(np.float64), drop_intermediate=False))


def test_auc_equals_sklearn(rng):
    for _ in range(5):
        y = rng.integers(0, 2, 500)
        s = rng.integers(0, 30, 500).astype(float)
        fpr, tpr, _ = fastmnist.roc_curve(y, s)
        assert fastmnist.auc(fpr, tpr) == sk.auc(fpr, tpr)
    x = np.array([1.0, 0.5, 0.2, 0.0])  # decreasing x
    yv = np.array([1.0, 0.7, 0.3, 0.1])
    assert fastmnist.auc(x, yv) == sk.auc(x, yv)


def test_errors(rng):
    with pytest.raises(ValueError, match="same length"):
        fastmnist.roc_curve([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="one class"):
        fastmnist.roc_curve([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="one class"):
        fastmnist.roc_curve([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="NaN or infinite"):
        fastmnist.roc_curve([0, 1, 1], [0.1, np.nan, 0.3])
    with pytest.raises(ValueError, match="NaN or infinite"):
        fastmnist.roc_curve(np.r_[np.zeros(50000), np.ones(50000)], np.r_[np.zeros(99999), np.inf])
    with pytest.raises(ValueError, match="1-D"):
        fastmnist.roc_curve([0, 1], np.zeros((2, 2)))
    with pytest.raises(ValueError, match="at least one"):
        fastmnist.roc_curve([], [])
    with pytest.raises(ValueError, match="same length"):
        fastmnist.roc_curve_ovr([0, 1], np.zeros((3, 2)))
    with pytest.raises(ValueError, match="class 2"):
        fastmnist.roc_curve_ovr([0, 1, 0, 1], rng.random((4, 3)))  # class 2 has no positive
    with pytest.raises(ValueError, match="NaN"):
        fastmnist.roc_curve_ovr([0, 1, 1], np.array([[0.5, 0.5], [np.nan, 1], [0, 1]]))
    with pytest.raises(ValueError, match="neither increasing nor decreasing"):
        fastmnist.auc([0, 1, 0.5], [0, 1, 1])
    with pytest.raises(ValueError, match="At least 2 points"):
        fastmnist.auc([0.0], [1.0])
