"""LogisticRegression: one C++ epoch equals the same mini-batch GD in PyTorch; API; MNIST floor."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastmnist  # noqa: E402
from fastmnist import _core  # noqa: E402

# One epoch of 2000 samples at lr 0.1 in float32: parameters agree to 2e-5 absolute (they are
# O(0.1)); the summed loss to 1e-5 relative; the count of correct forward passes exactly.
ATOL = 2e-5


def torch_epoch(X, y, perm, W, b, lr, l2, batch_size, mean=None, scale=None):
    """The same mini-batch GD in PyTorch: SGD(weight_decay=l2) on W, plain on b."""
    Xt = torch.from_numpy(X)
    if mean is not None:
        Xt = (Xt - torch.from_numpy(mean)) * torch.from_numpy(scale)
    yt = torch.from_numpy(y)
    Wt = torch.nn.Parameter(torch.from_numpy(W.copy()))
    bt = torch.nn.Parameter(torch.from_numpy(b.copy()))
    opt = torch.optim.SGD([{"params": [Wt], "weight_decay": l2}, {"params": [bt], "weight_decay": 0.0}], lr=lr)
    loss_sum, correct = 0.0, 0
    p = torch.from_numpy(perm)
    for s in range(0, len(perm), batch_size):
        idx = p[s:s + batch_size]
        logits = Xt[idx] @ Wt.T + bt
        loss = torch.nn.functional.cross_entropy(logits, yt[idx])
        loss_sum += loss.item() * len(idx)
        correct += int((logits.argmax(1) == yt[idx]).sum())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return Wt.detach().numpy(), bt.detach().numpy(), loss_sum, correct


@pytest.mark.parametrize("standardize", [False, True])
@pytest.mark.parametrize("batch_size,l2", [(64, 0.0), (50, 1e-3), (2000, 0.0), (7, 0.0)])
def test_epoch_equals_torch(mnist, rng, standardize, batch_size, l2):
    x_tr, y_tr, _, _ = mnist
    n = 2000
    X = x_tr[:n].reshape(n, -1).astype(np.float32) / 255
    y = y_tr[:n].astype(np.int64)
    W = (rng.standard_normal((10, 784)) * 0.01).astype(np.float32)
    b = (rng.standard_normal(10) * 0.1).astype(np.float32)
    perm = rng.permutation(n).astype(np.int64)
    mean = scale = None
    if standardize:
        mean = X.mean(0).astype(np.float32)
        sd = X.std(0)
        sd[sd < 1e-6] = 1
        scale = (1 / sd).astype(np.float32)
    lr = 0.1 if standardize else 0.5
    if standardize and batch_size == 7:
        lr = 0.01
    Wr, br, loss_r, correct_r = torch_epoch(X, y, perm, W, b, lr, l2, batch_size, mean, scale)
    W2, b2 = W.copy(), b.copy()
    loss, correct = _core.logreg_epoch(X, y, perm, W2, b2, mean, scale, lr, l2, batch_size, False)
    assert not np.allclose(W2, W, atol=1e-3)  # it moved
    np.testing.assert_allclose(W2, Wr, rtol=0, atol=ATOL)
    np.testing.assert_allclose(b2, br, rtol=0, atol=ATOL)
    assert loss == pytest.approx(loss_r, rel=1e-5)
    assert correct == correct_r


def test_estimator_one_epoch_equals_torch(mnist):
    """The estimator's first epoch: zero init, batch order rng(seed).permutation(N)."""
    x_tr, y_tr, _, _ = mnist
    n = 3000
    X = x_tr[:n].reshape(n, -1).astype(np.float32) / 255
    y = y_tr[:n].astype(np.int64)
    clf = fastmnist.LogisticRegression(lr=0.3, batch_size=32, epochs=1, standardize=False, seed=5).fit(X, y)
    perm = np.random.default_rng(5).permutation(n)
    Wr, br, loss_r, _ = torch_epoch(X, y, perm, np.zeros((10, 784), np.float32), np.zeros(10, np.float32), 0.3, 0.0, 32)
    np.testing.assert_allclose(clf.coef_, Wr, rtol=0, atol=ATOL)
    np.testing.assert_allclose(clf.intercept_, br, rtol=0, atol=ATOL)
    assert clf.history_["train_loss"][0] == pytest.approx(loss_r / n, rel=1e-5)


def test_api_conventions(rng):
    n, d = 600, 20
    centers = rng.standard_normal((3, d)) * 3
    lab = rng.integers(0, 3, n)
    X = (centers[lab] + rng.standard_normal((n, d))).astype(np.float64) * 10 + 5  # float64, offset
    y = np.array([3, 7, 11])[lab]  # non-contiguous labels
    clf = fastmnist.LogisticRegression(lr=0.1, batch_size=32, epochs=4, seed=1)
    assert clf.fit(X, y, X[:100], y[:100]) is clf
    np.testing.assert_array_equal(clf.classes_, [3, 7, 11])
    assert clf.coef_.shape == (3, d) and clf.intercept_.shape == (3,)
    assert set(clf.predict(X)) <= {3, 7, 11}
    assert clf.score(X, y) > 0.95
    h = clf.history_
    assert h["epoch"] == [1, 2, 3, 4]
    for k in ("train_loss", "train_acc", "val_loss", "val_acc", "seconds"):
        assert len(h[k]) == 4
    assert h["val_acc"][-1] == pytest.approx(np.mean(clf.predict(X[:100]) == y[:100]))
    # coef_/intercept_ act on the raw features: softmax(X coef^T + b) == predict_proba
    z = X @ clf.coef_.T.astype(np.float64) + clf.intercept_
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(clf.predict_proba(X), p, atol=1e-4)
    np.testing.assert_allclose(clf.predict_proba(X).sum(1), 1, atol=1e-5)
    # same seed -> same weights; non-contiguous input -> same result
    clf2 = fastmnist.LogisticRegression(lr=0.1, batch_size=32, epochs=4, seed=1).fit(np.asfortranarray(X), y)
    np.testing.assert_array_equal(clf.coef_, clf2.coef_)
    assert clf.get_params()["lr"] == 0.1 and "LogisticRegression(" in repr(clf)


def test_pixels_accuracy_floor(mnist):
    """Raw pixels in [0, 1], 3 epochs of batch 100 at lr 0.5: >= 91% on the 10,000 test digits."""
    x_tr, y_tr, x_te, y_te = mnist
    X = x_tr.reshape(len(x_tr), -1).astype(np.float32) / 255
    Xt = x_te.reshape(len(x_te), -1).astype(np.float32) / 255
    clf = fastmnist.LogisticRegression(lr=0.5, batch_size=100, epochs=3, standardize=False).fit(X, y_tr)
    acc = clf.score(Xt, y_te)
    assert acc >= 0.91, acc


def test_errors(rng):
    X = rng.standard_normal((20, 5)).astype(np.float32)
    y = np.arange(20) % 2
    LR = fastmnist.LogisticRegression
    with pytest.raises(ValueError, match="one label per row"):
        LR().fit(X, y[:10])
    with pytest.raises(ValueError, match="2-D"):
        LR().fit(X[0], y)
    with pytest.raises(ValueError, match="two classes"):
        LR().fit(X, np.zeros(20))
    Xn = X.copy()
    Xn[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        LR().fit(Xn, y)
    with pytest.raises(ValueError, match="batch_size"):
        LR(batch_size=0).fit(X, y)
    with pytest.raises(ValueError, match="lr"):
        LR(lr=-1).fit(X, y)
    with pytest.raises(ValueError, match="not fitted"):
        LR().predict(X)
    clf = LR(epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="expecting 5 features"):
        clf.predict(X[:, :4])
    with pytest.raises(ValueError, match="unseen"):
        LR(epochs=1).fit(X, y, X, y + 5)
    with pytest.raises(TypeError):
        LR().fit(np.array([["a"] * 5] * 20), y)
    # kernel-level checks
    W = np.zeros((2, 5), np.float32)
    b = np.zeros(2, np.float32)
    perm = np.arange(20)
    with pytest.raises(ValueError, match=r"class indices in \[0, 2\)"):
        _core.logreg_epoch(X, y + 1, perm, W, b, None, None, 0.1, 0.0, 4, False)
    with pytest.raises(ValueError, match="row indices"):
        _core.logreg_epoch(X, y, perm + 1, W, b, None, None, 0.1, 0.0, 4, False)
    with pytest.raises(ValueError, match="W must have shape"):
        _core.logreg_epoch(X, y, perm, np.zeros((2, 4), np.float32), b, None, None, 0.1, 0.0, 4, False)
    with pytest.raises(TypeError, match="float32"):
        _core.logreg_epoch(X, y, perm, W.astype(np.float64), b, None, None, 0.1, 0.0, 4, False)
    with pytest.raises(ValueError, match="writeable"):
        Wr = W.copy()
        Wr.flags.writeable = False
        _core.logreg_epoch(X, y, perm, Wr, b, None, None, 0.1, 0.0, 4, False)
    with pytest.raises(TypeError, match="float32"):
        _core.logreg_epoch(X.astype(np.float64), y, perm, W, b, None, None, 0.1, 0.0, 4, False)


@pytest.mark.parametrize("isa", [lv for lv in ("generic", "neon", "avx2", "avx512")
                                 if lv in fastmnist.build_info()["isa_levels"]])
def test_epoch_independent_of_thread_count(rng, isa):
    """The same bits (W, b, loss, count) with 1, 2, 3 and 5 threads on every level, and equal to torch."""
    N, D, C = 700, 123, 10
    X = rng.standard_normal((N, D), dtype=np.float32)
    y = rng.integers(0, C, N).astype(np.int64)
    perm = rng.permutation(N).astype(np.int64)
    W0 = (0.01 * rng.standard_normal((C, D))).astype(np.float32)
    prev_isa, prev_t = _core._set_gemm_isa(isa), fastmnist.get_num_threads()
    try:
        runs = []
        for t in (1, 2, 3, 5):
            fastmnist.set_num_threads(t)
            W, b = W0.copy(), np.zeros(C, np.float32)
            loss, correct = _core.logreg_epoch(X, y, perm, W, b, None, None, 0.1, 1e-3, 64, False)
            runs.append((W, b, loss, correct))
    finally:
        _core._set_gemm_isa(prev_isa)
        fastmnist.set_num_threads(prev_t)
    for W, b, loss, correct in runs[1:]:
        assert np.array_equal(W, runs[0][0]) and np.array_equal(b, runs[0][1])
        assert loss == runs[0][2] and correct == runs[0][3]
    Wt, bt, _, _ = torch_epoch(X, y, perm, W0, np.zeros(C, np.float32), 0.1, 1e-3, 64)
    np.testing.assert_allclose(runs[0][0], Wt, atol=ATOL)
    np.testing.assert_allclose(runs[0][1], bt, atol=ATOL)


def test_logreg_command_calls_its_per_epoch_test_columns_test(tmp_path, mnist_dir, capsys):
    # the command evaluates on the test set after each epoch: its lines and history.csv say "test",
    # never "val" (which is kept for a real validation split)
    from fastmnist.cli import main

    out = tmp_path / "lr"
    assert main(["logreg", "--pixels", "--data", str(mnist_dir), "--epochs", "1", "--batch-size", "128",
                 "--lr", "0.1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "test acc" in printed and "val acc" not in printed
    header = (out / "history.csv").read_text().splitlines()[0].split(",")
    assert "test_acc" in header and "val_acc" not in header
