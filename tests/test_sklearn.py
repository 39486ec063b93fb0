"""fastmnist.LogisticRegression as a scikit-learn estimator: scikit-learn's own check_estimator,
clone, cross_val_score, GridSearchCV, Pipeline, the C / max_iter mapping against
sklearn.linear_model.LogisticRegression, and divergence detection (issue 14, item 8)."""
from __future__ import annotations

import pickle
import sys
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
from sklearn.base import clone, is_classifier  # noqa: E402
from sklearn.datasets import load_digits, load_iris  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.linear_model import LogisticRegression as SkLR  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from fastmnist import LogisticRegression  # noqa: E402
from fastmnist.train import TrainingDiverged  # noqa: E402

# Checks that cannot run here (none fails): array-API input needs SCIPY_ARRAY_API=1 and an array
# library, the pandas check needs pandas (not a dependency). check_estimator also warns that we do
# not inherit from sklearn.base.BaseEstimator: fastmnist must import without scikit-learn, so the
# estimator protocol (get_params/set_params, __sklearn_tags__ and _more_tags) is implemented here.


with warnings.catch_warnings():  # the BaseEstimator notice explained above, raised at collection
    warnings.filterwarnings("ignore", "Estimator LogisticRegression does not inherit")
    _ALL_CHECKS = parametrize_with_checks([LogisticRegression()])


@_ALL_CHECKS
def test_sklearn_check_estimator(estimator, check):
    check(estimator)


def test_tags_new_and_old_api():
    from sklearn.utils import get_tags

    est = LogisticRegression()
    assert is_classifier(est)
    tags = get_tags(est)
    assert tags.estimator_type == "classifier" and tags.target_tags.required and not tags.input_tags.sparse
    old = est._more_tags()  # what scikit-learn < 1.6 reads
    assert old["requires_y"] and old["X_types"] == ["2darray"] and not old["allow_nan"]


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X, y


def test_clone_cross_val_score_and_grid_search(digits):
    X, y = digits
    est = LogisticRegression(lr=0.1, epochs=15, batch_size=64, C=10.0)
    c = clone(est)
    assert c.get_params() == est.get_params() and c is not est
    ours = cross_val_score(est, X, y, cv=3)
    theirs = cross_val_score(make_pipeline(StandardScaler(), SkLR(C=10.0, max_iter=2000)), X, y, cv=3)
    assert ours.mean() > theirs.mean() - 0.03, (ours, theirs)
    gs = GridSearchCV(LogisticRegression(epochs=5, batch_size=64), {"lr": [1e-4, 0.1], "max_iter": [2, 10]}, cv=2)
    gs.fit(X, y)
    assert gs.best_params_["lr"] == 0.1
    assert gs.best_estimator_.n_iter_ == gs.best_params_["max_iter"]
    assert gs.score(X, y) > 0.9


def test_pipeline_and_pickle(digits):
    X, y = digits
    pipe = make_pipeline(StandardScaler(), LogisticRegression(standardize=False, epochs=10, batch_size=64))
    pipe.fit(X[:1200], y[:1200])
    assert pipe.score(X[1200:], y[1200:]) > 0.9
    clf = pickle.loads(pickle.dumps(pipe[-1]))
    np.testing.assert_array_equal(clf.predict(pipe[0].transform(X[1200:])), pipe.predict(X[1200:]))


def test_C_and_max_iter_reach_sklearn_solution():
    # sklearn minimises C * sum(loss) + ||W||^2 / 2 (no intercept penalty): with l2 = 1 / (C N) our
    # mean-loss objective is the same one divided by C N; full-batch gradient descent converges to it
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    sk = SkLR(C=0.5, tol=1e-10, max_iter=10000).fit(X, y)
    ours = LogisticRegression(C=0.5, max_iter=3000, lr=0.5, batch_size=len(y), standardize=False).fit(X, y)
    assert ours.n_iter_ == 3000 and len(ours.history_["epoch"]) == 3000
    np.testing.assert_allclose(ours.coef_, sk.coef_, atol=2e-3)
    np.testing.assert_allclose(ours.intercept_, sk.intercept_, atol=2e-3)
    np.testing.assert_allclose(ours.predict_proba(X), sk.predict_proba(X), atol=1e-3)
    np.testing.assert_allclose(ours.predict_log_proba(X), sk.predict_log_proba(X), atol=1e-2)
    with pytest.raises(ValueError, match="give C .* or l2, not both"):
        LogisticRegression(C=1.0, l2=0.1).fit(X, y)
    with pytest.raises(ValueError, match="C must be a positive number"):
        LogisticRegression(C=0).fit(X, y)
    with pytest.raises(ValueError, match="max_iter must be a positive integer"):
        LogisticRegression(max_iter=0).fit(X, y)


def test_binary_decision_function_follows_sklearn():
    X, y = load_iris(return_X_y=True)
    keep = y < 2
    X, y = StandardScaler().fit_transform(X[keep]), np.where(y[keep] == 1, "yes", "no")
    clf = LogisticRegression(epochs=5, batch_size=16).fit(X, y)
    d = clf.decision_function(X)
    assert d.shape == (len(y),)
    assert list(clf.classes_) == ["no", "yes"]
    np.testing.assert_array_equal(clf.predict(X), np.where(d > 0, "yes", "no"))


def test_divergence_is_detected_with_a_clear_error():
    # issue 14, item 8: lr=1e30 left 1e29-sized (or inf) weights and no error
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((7, 3)), np.arange(7) % 3
    clf = LogisticRegression(lr=1e30, l2=0.01, batch_size=7, epochs=1)
    with pytest.raises(TrainingDiverged, match=r"diverged at epoch 1.*lower lr \(now 1e\+30\)"):
        clf.fit(X, y)
    assert isinstance(TrainingDiverged("x"), ValueError)
    with pytest.raises(NotFittedError):  # no half-trained model left behind
        clf.predict(X)
    X, y = rng.standard_normal((300, 5)), rng.integers(0, 3, 300)
    with pytest.raises(TrainingDiverged, match="lower lr"):
        LogisticRegression(lr=1e5, epochs=3, standardize=False).fit(X, y)
    LogisticRegression(lr=1.0, epochs=3).fit(X, y)  # a high but sane rate trains


def test_not_fitted_error_without_sklearn_loaded():
    import subprocess

    code = ("import sys, numpy as np; from fastmnist import LogisticRegression as L; from fastmnist.logreg "
            "import NotFittedError as E\ntry: L().predict(np.zeros((1, 2)))\nexcept E as e: "
            "print(type(e).__mro__[1].__module__, 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["builtins", "False"]
