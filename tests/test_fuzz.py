"""Seeded fuzz of the kernels and the public functions: every call returns a correct result or
raises a clean Python exception; none crashes the interpreter.

Each call takes a valid argument set (small random shapes) and, most of the time, spoils some
arguments: wrong dtypes (float64, int, bool, str, object), None, Python lists and scalars, 0-d
and 5-d arrays, empty dimensions, non-contiguous / negative-stride / misaligned / read-only views,
NaN and inf, ints at and beyond 2^31 and 2^63, views too large to copy. Calls whose arguments
are only re-laid out (views, misalignment) or hold NaN/inf must still equal the reference
(PyTorch, NumPy or scikit-learn, computed here) up to the NaN pattern; spoiled calls must either
return or raise ValueError, TypeError, MemoryError, OverflowError or IndexError. The exception
type for a dtype is not asserted (a float64 may be converted rather than rejected).

The calls run in a child process that logs each call before making it, so a crash fails the test
with the name and arguments of the call that killed the interpreter. Every ISA the CPU has
(generic, avx2, avx512) takes its share of the calls.

Environment: FASTMNIST_FUZZ_CALLS (default 3000) sets the number of calls, FASTMNIST_FUZZ_SEED
(default 0) the seed, e.g. ``FASTMNIST_FUZZ_CALLS=200000 pytest tests/test_fuzz.py`` for a long run.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CLEAN = (ValueError, TypeError, MemoryError, OverflowError, IndexError)
HUGE = 2**38


# ---- spoilers --------------------------------------------------------------------------------------

def _misaligned(a):
    buf = np.zeros(a.nbytes + 1, np.uint8)
    m = np.frombuffer(buf.data, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    m[...] = a
    return m


def _noncontig(a):
    big = np.zeros(tuple(2 * s for s in a.shape) or (2,), a.dtype)
    v = big[tuple(slice(None, None, 2) for _ in a.shape)] if a.ndim else big[0]
    v[...] = a
    return v


def _negstride(a):
    if a.ndim == 0:
        return a
    return np.ascontiguousarray(a[::-1])[::-1]


def _readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


# layout changes: the result must equal the plain call's
LAYOUT = [("misaligned", _misaligned), ("noncontig", _noncontig), ("negstride", _negstride), ("readonly", _readonly)]


def _poison(rng, a):
    a = a.copy()
    if a.size and a.dtype.kind == "f":
        flat = a.reshape(-1)
        for v in (np.nan, np.inf, -np.inf):
            if rng.random() < 0.5:
                flat[rng.integers(flat.size)] = v
    return a


def _bad_array(rng, a):
    """A spoiled version of array `a` (name, value)."""
    choices = [
        ("float64", lambda: a.astype(np.float64)),
        ("int32", lambda: a.astype(np.int32) if a.dtype.kind != "U" else a),
        ("bool", lambda: a.astype(bool)),
        ("uint8", lambda: np.abs(a).astype(np.uint8) if a.dtype.kind in "fiu" else a),
        ("str", lambda: a.astype("U3")),
        ("object", lambda: a.astype(object)),
        ("None", lambda: None),
        ("list", lambda: a.tolist()),
        ("scalar", lambda: 1.5),
        ("string", lambda: "abc"),
        ("0-d", lambda: np.array(1, a.dtype)),
        ("5-d", lambda: a.reshape((1,) * (5 - min(a.ndim, 4)) + a.shape[:4]) if a.ndim <= 4 else a[None]),
        ("1-d", lambda: a.reshape(-1)),
        ("empty", lambda: np.zeros(tuple(0 if i == rng.integers(max(a.ndim, 1)) else s for i, s in enumerate(a.shape)),
                                   a.dtype)),
        ("wrongshape", lambda: np.ones(tuple(s + 1 for s in a.shape), a.dtype)),
        ("huge", lambda: np.broadcast_to(np.zeros((), a.dtype), (HUGE,) + a.shape[1:]) if a.ndim else a),
        ("huge-inner", lambda: np.broadcast_to(np.zeros((), a.dtype), a.shape[:-1] + (HUGE,)) if a.ndim else a),
    ]
    name, f = choices[rng.integers(len(choices))]
    return name, f()


BAD_INTS = [0, -1, -7, 2**31 - 1, 2**31, 2**32 + 1, 2**63 - 1, 2**63, -2**63 - 1, 2**100, 2.5, None, "2", (1, 2, 3),
            (0, 0), (2**31, 1), np.int64(2), True, float("nan")]


# ---- targets: (name, valid-argument builder, call, reference or None) -----------------------------------

def _targets(fm, fastmnist, augment, _core, torch, F):
    T = []

    def tt(a):
        return torch.from_numpy(np.ascontiguousarray(a))

    def conv_args(rng):
        N, C, K = rng.integers(1, 4), rng.integers(1, 5), rng.integers(1, 6)
        R, S = rng.integers(1, 6), rng.integers(1, 6)
        st, pd = int(rng.integers(1, 3)), int(rng.integers(0, 3))
        H, W = int(rng.integers(max(R - 2 * pd, 1), 12)), int(rng.integers(max(S - 2 * pd, 1), 12))
        x = rng.standard_normal((N, C, H, W)).astype(np.float32)
        w = rng.standard_normal((K, C, R, S)).astype(np.float32)
        b = rng.standard_normal(K).astype(np.float32)
        return dict(x=x, weight=w, bias=b, stride=st, padding=pd)

    T.append(("conv2d", conv_args, lambda a: fm.conv2d(**a),
              lambda a: F.conv2d(tt(a["x"]), tt(a["weight"]), tt(a["bias"]), a["stride"], a["padding"]).numpy()))
    T.append(("conv2d_relu", conv_args, lambda a: fm.conv2d_relu(**a),
              lambda a: F.relu(F.conv2d(tt(a["x"]), tt(a["weight"]), tt(a["bias"]), a["stride"], a["padding"])).numpy()))

    def convb_args(rng):
        a = conv_args(rng)
        del a["bias"]
        N, K = a["x"].shape[0], a["weight"].shape[0]
        H, W = a["x"].shape[2:]
        R, S = a["weight"].shape[2:]
        P = (H + 2 * a["padding"] - R) // a["stride"] + 1
        Q = (W + 2 * a["padding"] - S) // a["stride"] + 1
        return dict(grad_y=rng.standard_normal((N, K, P, Q)).astype(np.float32), **a)

    def convb_ref(a):
        x = tt(a["x"]).requires_grad_(True)
        w = tt(a["weight"]).requires_grad_(True)
        b = torch.zeros(w.shape[0], requires_grad=True)
        F.conv2d(x, w, b, a["stride"], a["padding"]).backward(tt(a["grad_y"]))
        return x.grad.numpy(), w.grad.numpy(), b.grad.numpy()

    T.append(("conv2d_backward", convb_args, lambda a: fm.conv2d_backward(**a), convb_ref))

    def pool_args(rng):
        k = int(rng.integers(1, 4))
        p = int(rng.integers(0, k // 2 + 1))
        s = int(rng.integers(1, 4))
        H, W = int(rng.integers(max(k - 2 * p, 1), 10)), int(rng.integers(max(k - 2 * p, 1), 10))
        return dict(x=rng.standard_normal((int(rng.integers(1, 3)), int(rng.integers(1, 4)), H, W)).astype(np.float32),
                    kernel_size=k, stride=s, padding=p)

    def pool_ref(a):
        return F.max_pool2d(tt(a["x"]), a["kernel_size"], a["stride"], a["padding"], return_indices=True)

    T.append(("max_pool2d", pool_args, lambda a: fm.max_pool2d(**a, return_indices=True),
              lambda a: tuple(t.numpy() for t in pool_ref(a))))
    T.append(("max_pool2d_compact", pool_args, lambda a: fm.max_pool2d_compact(**a)[0],
              lambda a: pool_ref(a)[0].numpy()))

    def poolb_args(rng):
        a = pool_args(rng)
        y, idx = pool_ref(a)
        return dict(grad_y=rng.standard_normal(tuple(y.shape)).astype(np.float32), indices=idx.numpy(),
                    input_shape=a["x"].shape)

    def poolb_ref(a):
        gx = np.zeros(a["input_shape"], np.float32)
        N, C = a["input_shape"][:2]
        g = gx.reshape(N, C, -1)
        idx = a["indices"].reshape(N, C, -1)
        gy = a["grad_y"].reshape(N, C, -1)
        for n in range(N):
            for c in range(C):
                np.add.at(g[n, c], idx[n, c], gy[n, c])
        return gx

    T.append(("max_pool2d_backward", poolb_args, lambda a: fm.max_pool2d_backward(**a), poolb_ref))

    def poolcb_args(rng):
        a = pool_args(rng)
        y, code = fm.max_pool2d_compact(**a)
        x = a.pop("x")
        return dict(grad_y=rng.standard_normal(y.shape).astype(np.float32), argmax=code, input_shape=x.shape, **a,
                    _x=x)

    def poolcb_ref(a):
        x = tt(a["_x"]).requires_grad_(True)
        F.max_pool2d(x, a["kernel_size"], a["stride"], a["padding"]).backward(tt(a["grad_y"]))
        return x.grad.numpy()

    T.append(("max_pool2d_compact_backward", poolcb_args,
              lambda a: fm.max_pool2d_compact_backward(**{k: v for k, v in a.items() if k != "_x"}), poolcb_ref))

    def vec_args(rng):
        shape = tuple(int(v) for v in rng.integers(1, 6, size=rng.integers(1, 4)))
        return dict(x=rng.standard_normal(shape).astype(np.float32))

    T.append(("relu", vec_args, lambda a: fm.relu(**a), lambda a: F.relu(tt(a["x"])).numpy()))
    T.append(("sigmoid", vec_args, lambda a: fm.sigmoid(**a), lambda a: torch.sigmoid(tt(a["x"])).numpy()))

    def vec2_args(rng):
        x = vec_args(rng)["x"]
        return dict(grad_y=rng.standard_normal(x.shape).astype(np.float32), x=x)

    T.append(("relu_backward", vec2_args, lambda a: fm.relu_backward(**a),
              lambda a: np.where(a["x"] <= 0, np.float32(0), a["grad_y"])))

    def lin_args(rng):
        N, i, o = rng.integers(1, 9), rng.integers(1, 40), rng.integers(1, 20)
        return dict(x=rng.standard_normal((N, i)).astype(np.float32), weight=rng.standard_normal((o, i)).astype(np.float32),
                    bias=rng.standard_normal(o).astype(np.float32))

    T.append(("linear", lin_args, lambda a: fm.linear(**a),
              lambda a: F.linear(tt(a["x"]), tt(a["weight"]), tt(a["bias"])).numpy()))
    T.append(("linear_relu", lin_args, lambda a: fm.linear_relu(**a),
              lambda a: F.relu(F.linear(tt(a["x"]), tt(a["weight"]), tt(a["bias"]))).numpy()))

    def linb_args(rng):
        a = lin_args(rng)
        del a["bias"]
        return dict(grad_y=rng.standard_normal((a["x"].shape[0], a["weight"].shape[0])).astype(np.float32), **a)

    def linb_ref(a):
        x, w = tt(a["x"]).requires_grad_(True), tt(a["weight"]).requires_grad_(True)
        b = torch.zeros(w.shape[0], requires_grad=True)
        F.linear(x, w, b).backward(tt(a["grad_y"]))
        return x.grad.numpy(), w.grad.numpy(), b.grad.numpy()

    T.append(("linear_backward", linb_args, lambda a: fm.linear_backward(**a), linb_ref))

    def row_args(rng):
        return dict(x=(3 * rng.standard_normal((rng.integers(1, 9), rng.integers(1, 12)))).astype(np.float32))

    T.append(("softmax", row_args, lambda a: fm.softmax(**a), lambda a: F.softmax(tt(a["x"]), 1).numpy()))
    T.append(("log_softmax", row_args, lambda a: fm.log_softmax(**a), lambda a: F.log_softmax(tt(a["x"]), 1).numpy()))

    def ce_args(rng):
        x = row_args(rng)["x"]
        return dict(logits=x, labels=rng.integers(0, x.shape[1], x.shape[0]))

    def ce_ref(a):
        z = tt(a["logits"]).requires_grad_(True)
        loss = F.cross_entropy(z, torch.from_numpy(np.ascontiguousarray(a["labels"])).long())
        loss.backward()
        return np.float64(loss.item()), z.grad.numpy()

    T.append(("softmax_cross_entropy", ce_args, lambda a: fm.softmax_cross_entropy(**a), ce_ref))

    def mse_args(rng):
        x = vec_args(rng)["x"]
        return dict(pred=x, target=rng.standard_normal(x.shape).astype(np.float32))

    def mse_ref(a):
        p = tt(a["pred"]).requires_grad_(True)
        loss = F.mse_loss(p, tt(a["target"]))
        loss.backward()
        return np.float64(loss.item()), p.grad.numpy()

    T.append(("mse_loss", mse_args, lambda a: fm.mse_loss(**a), mse_ref))

    def roc_args(rng):
        n = int(rng.integers(2, 30))
        y = rng.integers(0, 2, n)
        y[0], y[1] = 0, 1
        return dict(y_true=y, y_score=rng.standard_normal(n).astype(np.float32).round(1))

    def roc_ref(a):
        from sklearn.metrics import roc_curve
        return roc_curve(a["y_true"], a["y_score"])

    T.append(("roc_curve", roc_args, lambda a: fastmnist.roc_curve(**a), roc_ref))

    def auc_ref(a):
        from sklearn.metrics import roc_auc_score
        return np.float64(roc_auc_score(a["y_true"], a["y_score"]))

    T.append(("auc", roc_args, lambda a: fastmnist.auc(*fastmnist.roc_curve(**a)[:2]), auc_ref))

    def ovr_args(rng):
        n, C = int(rng.integers(4, 30)), int(rng.integers(2, 5))
        y = rng.integers(0, C, n)
        y[:C] = np.arange(C)
        return dict(y_true=y, proba=rng.random((n, C)).astype(np.float32).round(1))

    def ovr_ref(a):
        from sklearn.metrics import roc_curve
        return [roc_curve(a["y_true"] == c, a["proba"][:, c]) for c in range(a["proba"].shape[1])]

    T.append(("roc_curve_ovr", ovr_args, lambda a: fastmnist.roc_curve_ovr(**a), ovr_ref))

    def warp_args(rng):
        N = int(rng.integers(1, 3))
        x = rng.random((N, int(rng.integers(1, 3)), int(rng.integers(1, 12)), int(rng.integers(1, 12)))).astype(np.float32)
        return dict(x=x, mats=augment.affine_matrices(x.shape[2], x.shape[3], rng.uniform(-30, 30, N)))

    T.append(("warp_affine", warp_args, lambda a: augment.warp_affine(**a), None))
    T.append(("rotate", lambda rng: dict(x=warp_args(rng)["x"], angle=float(rng.uniform(-40, 40))),
              lambda a: augment.rotate(**a), None))
    T.append(("affine", lambda rng: dict(x=warp_args(rng)["x"], angle=float(rng.uniform(-40, 40)),
                                         translate=(float(rng.uniform(-3, 3)), 1.0), scale=float(rng.uniform(0.5, 2))),
              lambda a: augment.affine(**a), None))

    def sgd_args(rng):
        shape = tuple(int(v) for v in rng.integers(1, 40, size=rng.integers(1, 3)))
        return dict(param=rng.standard_normal(shape).astype(np.float32),
                    grad=rng.standard_normal(shape).astype(np.float32), lr=float(rng.uniform(0, 1)))

    def sgd_call(a):
        p = a["param"]
        _core.sgd_step(p, a["grad"], None, a["lr"])
        return p

    def sgd_ref(a):
        return (np.asarray(a["param"], np.float32) - np.float32(a["lr"]) * np.asarray(a["grad"], np.float32))

    T.append(("sgd_step", sgd_args, sgd_call, sgd_ref))

    def adam_args(rng):
        a = sgd_args(rng)
        a["exp_avg"] = np.zeros_like(a["param"])
        a["exp_avg_sq"] = np.zeros_like(a["param"])
        a["step"] = 1
        return a

    def adam_call(a):
        p = a["param"]
        _core.adam_step(p, a["grad"], a["exp_avg"], a["exp_avg_sq"], a["step"], a["lr"])
        return p

    def adam_ref(a):
        p = torch.tensor(np.array(a["param"], np.float32), requires_grad=True)
        opt = torch.optim.Adam([p], lr=a["lr"])
        opt.state[p] = {"step": torch.tensor(float(a["step"] - 1)), "exp_avg": tt(np.array(a["exp_avg"])),
                        "exp_avg_sq": tt(np.array(a["exp_avg_sq"]))}
        p.grad = tt(np.array(a["grad"], np.float32))
        opt.step()
        return p.detach().numpy()

    T.append(("adam_step", adam_args, adam_call, adam_ref))
    return T


def _close(got, want, name):
    """Equal up to float rounding, NaN/inf in the same places (tuples/lists compared item by item)."""
    if isinstance(want, (tuple, list)):
        assert isinstance(got, (tuple, list)) and len(got) == len(want), f"{name}: {type(got)} vs {type(want)}"
        for g, w in zip(got, want):
            _close(g, w, name)
        return
    g, w = np.asarray(got), np.asarray(want)
    assert g.shape == w.shape, f"{name}: shape {g.shape} vs {w.shape}"
    if g.dtype.kind in "iu" or w.dtype.kind in "iu":
        np.testing.assert_array_equal(g, w, err_msg=name)
        return
    g, w = g.astype(np.float64), w.astype(np.float64)
    np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=f"{name}: NaN pattern")
    np.testing.assert_array_equal(np.isinf(g), np.isinf(w), err_msg=f"{name}: inf pattern")
    ok = np.isfinite(g) & np.isfinite(w)
    np.testing.assert_allclose(g[ok], w[ok], rtol=2e-4, atol=2e-4, err_msg=name)


def _short(v):
    if isinstance(v, np.ndarray):
        return f"ndarray{v.shape}:{v.dtype}:strides={v.strides}:aligned={v.flags.aligned}"
    r = repr(v)
    return r if len(r) < 60 else r[:57] + "..."


def _child(seed: int, calls: int, log_path: str) -> None:
    import torch
    import torch.nn.functional as F

    import fastmnist
    import fastmnist.functional as fm
    from fastmnist import _core, augment

    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    targets = _targets(fm, fastmnist, augment, _core, torch, F)
    isas = []
    for isa in ("generic", "avx2", "avx512"):
        try:
            _core._set_gemm_isa(isa)
            isas.append(isa)
        except ValueError:
            pass
    core_fns = sorted(n for n in dir(_core) if not n.startswith("__") and callable(getattr(_core, n))
                      and n not in ("set_num_threads", "_set_gemm_isa", "_pool_set_simd"))
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    failures, counts = [], {"calls": 0, "checked": 0, "raised": 0}
    for i in range(calls):
        isa = isas[i * len(isas) // calls]
        _core._set_gemm_isa(isa)
        kind = rng.random()
        if kind < 0.08:  # _core directly, junk positional arguments
            name = str(rng.choice(core_fns))
            pool = [None, 1, -1, 2**31, 2**64, "x", 1.5, np.zeros(3, np.float32), np.zeros((2, 2), np.float32),
                    np.zeros((1, 1, 2, 2), np.float32), np.zeros((2, 3), np.float64), np.array(["a", "b"]),
                    np.zeros((0,), np.int64), np.broadcast_to(np.float32(0), (HUGE,)), (1, 1), [1, 2]]
            args = [pool[j] for j in rng.integers(len(pool), size=rng.integers(0, 6))]
            desc = f"[{isa}] _core.{name}({', '.join(_short(a) for a in args)})"
            os.write(log, (desc + "\n").encode())
            counts["calls"] += 1
            try:
                getattr(_core, name)(*args)
            except CLEAN:
                counts["raised"] += 1
            except Exception as e:  # noqa: BLE001
                failures.append(f"{desc}: {type(e).__name__}: {e}")
            continue
        tname, build, call, ref = targets[rng.integers(len(targets))]
        args = build(rng)
        spoiled, relayout = [], []
        for k in list(args):
            v = args[k]
            if k.startswith("_"):  # kept for the reference only
                continue
            r = rng.random()
            if r < 0.12:
                if isinstance(v, np.ndarray):
                    what, args[k] = _bad_array(rng, v)
                else:
                    what, args[k] = "int", BAD_INTS[rng.integers(len(BAD_INTS))]
                spoiled.append(f"{k}={what}")
            elif r < 0.3 and isinstance(v, np.ndarray) and k not in ("param", "exp_avg", "exp_avg_sq"):
                what, f = LAYOUT[rng.integers(len(LAYOUT))]
                args[k] = f(v)
                relayout.append(f"{k}={what}")
            elif r < 0.36 and isinstance(v, np.ndarray) and v.dtype.kind == "f" and tname not in (
                    "roc_curve", "auc", "roc_curve_ovr", "max_pool2d_backward", "max_pool2d_compact_backward"):
                args[k] = _poison(rng, v)
                relayout.append(f"{k}=nonfinite")
        desc = (f"[{isa}] {tname}({', '.join(f'{k}={_short(v)}' for k, v in args.items())}) "
                f"spoiled={spoiled} layout={relayout}")
        os.write(log, (desc + "\n").encode())
        counts["calls"] += 1
        # the reference sees a plain, contiguous copy, taken before the call (in-place kernels)
        plain = None if spoiled else {k: (np.array(v) if isinstance(v, np.ndarray) else v) for k, v in args.items()}
        try:
            got = call(args)
        except CLEAN as e:
            counts["raised"] += 1
            # a valid call must not raise; a NaN/inf input may be refused (ROC scores, warp matrices)
            if not spoiled and not (isinstance(e, ValueError) and any("nonfinite" in r for r in relayout)):
                failures.append(f"{desc}: valid call raised {type(e).__name__}: {e}")
            continue
        except Exception as e:  # noqa: BLE001
            failures.append(f"{desc}: {type(e).__name__}: {e}")
            continue
        if spoiled or ref is None:
            continue
        if tname.startswith("conv2d") and any("nonfinite" in r for r in relayout):
            # which products with the zero padding PyTorch computes depends on the algorithm it picks
            # for the shape (NaN * 0 = NaN), and Winograd spreads over tiles: the NaN footprint is
            # checked on fixed shapes in test_robust_kernels.py instead
            continue
        try:
            want = ref(plain)
        except Exception:  # noqa: BLE001 - the reference refused: nothing to compare
            continue
        try:
            _close(got, want, tname)
            counts["checked"] += 1
        except AssertionError as e:
            failures.append(f"{desc}: wrong result: {str(e)[:400]}")
    os.close(log)
    print(json.dumps({"failures": failures[:50], "n_failures": len(failures), **counts}))


def test_fuzz_kernels_and_public_api():
    calls = int(os.environ.get("FASTMNIST_FUZZ_CALLS", "3000"))
    seed = int(os.environ.get("FASTMNIST_FUZZ_SEED", "0"))
    here = Path(__file__).resolve().parent
    import fastmnist
    pkg_root = Path(fastmnist.__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(pkg_root), str(here), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "calls.log")
        r = subprocess.run([sys.executable, "-c", f"import test_fuzz; test_fuzz._child({seed}, {calls}, {log!r})"],
                           capture_output=True, text=True, env=env)
        if r.returncode != 0:
            lines = Path(log).read_text().splitlines() if os.path.exists(log) else []
            last = lines[-1] if lines else "(no call logged)"
            raise AssertionError(f"the fuzz child died (exit {r.returncode}) after {len(lines)} calls; last call:\n"
                                 f"{last}\nstderr tail:\n{r.stderr[-3000:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["calls"] == calls
    assert out["n_failures"] == 0, "\n".join(out["failures"])
    assert out["checked"] > calls // 5, out  # enough calls were compared with a reference
