"""Optimizers and schedules against torch.optim (computed here, from the same params and grads).

Tolerances: SGD rtol 1e-5 / atol 1e-6 and Adam rtol 1e-5 / atol 2e-6 after several steps (float32;
the C++ loop may fuse multiply-adds where torch rounds twice); learning rates and momenta 1e-12
relative (the same double-precision recurrences as torch).
"""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

import fastmnist
from fastmnist import _core
from fastmnist.optim import SGD, Adam, AdamW, CosineAnnealingLR, OneCycleLR, StepLR
from fastmnist.parameter import Parameter

# odd sizes, a bias, and one tensor big enough for the OpenMP path (> 32768 floats)
SHAPES = [(7,), (5, 3, 3, 3), (33, 17), (300, 401)]


def make(rng, shapes=SHAPES):
    init = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    ours = [Parameter(a, name=f"p{i}") for i, a in enumerate(init)]
    theirs = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in init]
    return ours, theirs


def run_both(rng, ours, theirs, opt, topt, steps, scheds=()):
    for _ in range(steps):
        for p, t in zip(ours, theirs):
            g = rng.standard_normal(p.data.shape).astype(np.float32)
            p.grad = g
            t.grad = torch.from_numpy(g.copy())
        opt.step()
        topt.step()
        for s, ts in scheds:
            s.step()
            ts.step()


SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.05, weight_decay=1e-2),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4),
    dict(lr=0.02, momentum=0.8, dampening=0.3, weight_decay=1e-3),
]


@pytest.mark.parametrize("kw", SGD_CASES, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_sgd_matches_torch(kw):
    rng = np.random.default_rng(1)
    ours, theirs = make(rng)
    run_both(rng, ours, theirs, SGD(ours, **kw), torch.optim.SGD(theirs, **kw), steps=6)
    for p, t in zip(ours, theirs):
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-5, atol=1e-6)


ADAM_CASES = [
    (Adam, torch.optim.Adam, dict()),
    (Adam, torch.optim.Adam, dict(lr=0.01, betas=(0.7, 0.9))),
    (Adam, torch.optim.Adam, dict(lr=3e-3, weight_decay=1e-2, eps=1e-6)),
    (AdamW, torch.optim.AdamW, dict(lr=3e-3, weight_decay=0.1)),
    (AdamW, torch.optim.AdamW, dict()),
]


@pytest.mark.parametrize("ours_cls,torch_cls,kw", ADAM_CASES,
                         ids=lambda v: v.__name__ if isinstance(v, type) else str(v))
def test_adam_matches_torch(ours_cls, torch_cls, kw):
    rng = np.random.default_rng(2)
    ours, theirs = make(rng)
    run_both(rng, ours, theirs, ours_cls(ours, **kw), torch_cls(theirs, **kw), steps=6)
    for p, t in zip(ours, theirs):
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-5, atol=2e-6)


def test_adam_state_matches_torch():
    rng = np.random.default_rng(3)
    ours, theirs = make(rng, [(40, 30)])
    opt, topt = Adam(ours, lr=0.01), torch.optim.Adam(theirs, lr=0.01)
    run_both(rng, ours, theirs, opt, topt, steps=4)
    ts = topt.state[theirs[0]]
    st = opt.state[0]
    assert st["step"] == int(ts["step"]) == 4
    np.testing.assert_allclose(st["exp_avg"], ts["exp_avg"].numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(st["exp_avg_sq"], ts["exp_avg_sq"].numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("threads", [1, 2])
def test_fast_kernels_equal_reference_loops(threads):
    old = fastmnist.get_num_threads()
    fastmnist.set_num_threads(threads)
    try:
        rng = np.random.default_rng(4)
        n = 100_003
        for kw in [dict(momentum=0.9, nesterov=True, first=False), dict(momentum=0.9, dampening=0.2, first=True),
                   dict(momentum=0.0)]:
            p0 = rng.standard_normal(n).astype(np.float32)
            g = rng.standard_normal(n).astype(np.float32)
            b0 = rng.standard_normal(n).astype(np.float32)
            pa, ba, pb, bb = p0.copy(), b0.copy(), p0.copy(), b0.copy()
            _core.sgd_step(pa, g, ba, 0.1, weight_decay=1e-3, **kw)
            _core.sgd_step(pb, g, bb, 0.1, weight_decay=1e-3, reference=True, **kw)
            np.testing.assert_allclose(pa, pb, rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(ba, bb, rtol=1e-6, atol=1e-7)
        p0 = rng.standard_normal(n).astype(np.float32)
        g = rng.standard_normal(n).astype(np.float32)
        m0 = rng.standard_normal(n).astype(np.float32) * 0.1
        v0 = rng.random(n).astype(np.float32) * 0.01
        for dec in (False, True):
            pa, ma, va = p0.copy(), m0.copy(), v0.copy()
            pb, mb, vb = p0.copy(), m0.copy(), v0.copy()
            _core.adam_step(pa, g, ma, va, 7, 1e-3, weight_decay=0.01, decoupled=dec)
            _core.adam_step(pb, g, mb, vb, 7, 1e-3, weight_decay=0.01, decoupled=dec, reference=True)
            np.testing.assert_allclose(pa, pb, rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(ma, mb, rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(va, vb, rtol=1e-5, atol=1e-9)
    finally:
        fastmnist.set_num_threads(old)


def test_params_without_grad_are_skipped_and_zero_grad():
    rng = np.random.default_rng(5)
    ours, _ = make(rng, [(3, 4), (5,)])
    before = ours[1].data.copy()
    ours[0].grad = np.ones((3, 4), np.float32)
    opt = Adam(ours, lr=0.1)
    opt.step()
    np.testing.assert_array_equal(ours[1].data, before)
    assert "step" not in opt.state[1]
    assert not np.allclose(ours[0].data, make(np.random.default_rng(5), [(3, 4)])[0][0].data)
    opt.zero_grad()
    assert all(p.grad is None for p in ours)
    ours[0].grad = np.ones((3, 4), np.float32)
    ours[0].zero_grad(set_to_none=False)
    np.testing.assert_array_equal(ours[0].grad, 0)


def test_parameter_copies_to_float32_c_order():
    src = np.arange(12, dtype=np.float64).reshape(3, 4).T
    p = Parameter(src, name="w")
    assert p.data.dtype == np.float32 and p.data.flags.c_contiguous and p.name == "w"
    np.testing.assert_array_equal(p.data, src)
    src[0, 0] = 99
    assert p.data[0, 0] == 0


# ------------------------------------------------------------------------------------ schedules

def _lrs(ours_opt, torch_opt, sched, tsched, steps, mom_key=None):
    got, want = [], []
    for _ in range(steps):
        got.append(ours_opt.lr)
        want.append(torch_opt.param_groups[0]["lr"])
        if mom_key == "momentum":
            got.append(ours_opt.momentum)
            want.append(torch_opt.param_groups[0]["momentum"])
        elif mom_key == "betas":
            got.extend(ours_opt.betas)
            want.extend(torch_opt.param_groups[0]["betas"])
        assert sched.get_last_lr() == pytest.approx(tsched.get_last_lr(), rel=1e-12)
        ours_opt.step()
        torch_opt.step()
        sched.step()
        tsched.step()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def _pair(cls_ours, cls_torch, **kw):
    p = Parameter(np.zeros(3, np.float32))
    t = torch.nn.Parameter(torch.zeros(3))
    return cls_ours([p], **kw), cls_torch([t], **kw)


def test_steplr_matches_torch():
    o, t = _pair(SGD, torch.optim.SGD, lr=0.3, momentum=0.9)
    _lrs(o, t, StepLR(o, step_size=3, gamma=0.5), torch.optim.lr_scheduler.StepLR(t, step_size=3, gamma=0.5), 20)


@pytest.mark.parametrize("eta_min", [0.0, 1e-3])
def test_cosine_matches_torch(eta_min):
    o, t = _pair(Adam, torch.optim.Adam, lr=0.01)
    # past T_max too: torch's recursive form goes back up, and so must ours
    _lrs(o, t, CosineAnnealingLR(o, T_max=7, eta_min=eta_min),
         torch.optim.lr_scheduler.CosineAnnealingLR(t, T_max=7, eta_min=eta_min), 25)


@pytest.mark.parametrize("opt_pair,key", [((SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9)), "momentum"),
                                          ((Adam, torch.optim.Adam, dict(lr=0.01, betas=(0.7, 0.9))), "betas")],
                         ids=["sgd", "adam"])
@pytest.mark.parametrize("kw", [dict(), dict(anneal_strategy="linear", pct_start=0.25),
                                dict(three_phase=True, div_factor=10.0, final_div_factor=100.0),
                                dict(cycle_momentum=False), dict(base_momentum=0.8, max_momentum=0.9)],
                         ids=["cos", "linear", "three_phase", "no_momentum", "momenta"])
def test_onecycle_matches_torch(opt_pair, key, kw):
    co, ct, okw = opt_pair
    o, t = _pair(co, ct, **okw)
    total = 23
    s = OneCycleLR(o, max_lr=0.05, total_steps=total, **kw)
    ts = torch.optim.lr_scheduler.OneCycleLR(t, max_lr=0.05, total_steps=total, **kw)
    _lrs(o, t, s, ts, total, mom_key=key)
    with pytest.raises(ValueError, match="total_steps"):
        s.step()
        s.step()


def test_onecycle_epochs_form_and_bad_args():
    o, _ = _pair(SGD, torch.optim.SGD, lr=0.1, momentum=0.9)
    assert OneCycleLR(o, max_lr=0.1, epochs=3, steps_per_epoch=5).total_steps == 15
    with pytest.raises(ValueError, match="total_steps"):
        OneCycleLR(o, max_lr=0.1)
    with pytest.raises(ValueError, match="anneal_strategy"):
        OneCycleLR(o, max_lr=0.1, total_steps=10, anneal_strategy="cosine")
    o2, _ = _pair(SGD, torch.optim.SGD, lr=0.1)
    o2.defaults.pop("momentum")
    with pytest.raises(ValueError, match="momentum"):
        OneCycleLR(o2, max_lr=0.1, total_steps=10)


def test_adam_onecycle_training_matches_torch():
    """The full loop the trainers run: Adam + OneCycleLR (lr and beta1 change every step)."""
    rng = np.random.default_rng(6)
    ours, theirs = make(rng, [(20, 10), (10,)])
    opt, topt = Adam(ours, lr=0.01, betas=(0.7, 0.9)), torch.optim.Adam(theirs, lr=0.01, betas=(0.7, 0.9))
    s = OneCycleLR(opt, max_lr=0.01, total_steps=12)
    ts = torch.optim.lr_scheduler.OneCycleLR(topt, max_lr=0.01, total_steps=12)
    run_both(rng, ours, theirs, opt, topt, steps=12, scheds=[(s, ts)])
    for p, t in zip(ours, theirs):
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-5, atol=2e-6)


# ---------------------------------------------------------------------------------- checkpoints

@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_state_dict_round_trip_resumes_identically(kind):
    def build(seed=7):
        r = np.random.default_rng(seed)
        ps = [Parameter(r.standard_normal(s).astype(np.float32), f"p{i}") for i, s in enumerate([(6, 5), (4,)])]
        if kind == "sgd":
            o = SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
            sch = StepLR(o, step_size=2, gamma=0.5)
        else:
            o = Adam(ps, lr=0.01, weight_decay=1e-3)
            sch = OneCycleLR(o, max_lr=0.02, total_steps=10)
        return ps, o, sch

    grads = [[np.random.default_rng(100 + k).standard_normal(s).astype(np.float32) for s in [(6, 5), (4,)]]
             for k in range(6)]

    def advance(ps, o, sch, ks):
        for k in ks:
            for p, g in zip(ps, grads[k]):
                p.grad = g
            o.step()
            sch.step()

    ps_a, oa, sa = build()
    advance(ps_a, oa, sa, range(6))

    ps_b, ob, sb = build()
    advance(ps_b, ob, sb, range(3))
    blob = pickle.dumps({"params": [p.data for p in ps_b], "opt": ob.state_dict(), "sched": sb.state_dict()})
    ck = pickle.loads(blob)
    ps_c, oc, sc = build(seed=99)  # different init: everything must come from the checkpoint
    for p, d in zip(ps_c, ck["params"]):
        p.data[...] = d
    oc.load_state_dict(ck["opt"])
    sc.load_state_dict(ck["sched"])
    advance(ps_c, oc, sc, range(3, 6))
    for pa, pc in zip(ps_a, ps_c):
        np.testing.assert_array_equal(pa.data, pc.data)
    assert oa.lr == oc.lr and sa.get_last_lr() == sc.get_last_lr()
    # the saved dict is a copy: stepping the source optimizer after saving does not change it
    sd = ob.state_dict()
    key = "momentum_buffer" if kind == "sgd" else "exp_avg"
    saved = sd["state"][0][key].copy()
    advance(ps_b, ob, sb, [3])
    np.testing.assert_array_equal(sd["state"][0][key], saved)


def test_load_state_dict_rejects_mismatch():
    a = Adam([Parameter(np.zeros((3, 2), np.float32))])
    b = Adam([Parameter(np.zeros((2, 3), np.float32))])
    with pytest.raises(ValueError, match="shape"):
        b.load_state_dict(a.state_dict())
    s = SGD([Parameter(np.zeros((3, 2), np.float32))], lr=0.1)
    with pytest.raises(ValueError, match="Adam"):
        s.load_state_dict(a.state_dict())
    with pytest.raises(ValueError, match="parameters"):
        Adam([Parameter(np.zeros(2, np.float32)), Parameter(np.zeros(2, np.float32))]).load_state_dict(a.state_dict())


# ------------------------------------------------------------------------------------ bad input

def test_bad_optimizer_arguments():
    p = Parameter(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="lr"):
        SGD([p], lr=-1.0)
    with pytest.raises(ValueError, match="nesterov"):
        SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        Adam([p], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="finite"):
        Adam([p], lr=float("nan"))
    with pytest.raises(ValueError, match="empty"):
        Adam([])
    with pytest.raises(TypeError, match="Parameter"):
        Adam([np.zeros(3, np.float32)])
    with pytest.raises(ValueError, match="more than once"):
        Adam([p, p])
    with pytest.raises(TypeError):
        StepLR(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1), step_size=1)
    with pytest.raises(ValueError, match="step_size"):
        StepLR(SGD([p], lr=0.1), step_size=0)


def test_bad_grads_raise_naming_the_parameter():
    p = Parameter(np.zeros((3, 4), np.float32), name="fc.weight")
    opt = Adam([p])
    p.grad = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"fc\.weight.*\(4, 3\).*\(3, 4\)"):
        opt.step()
    p.grad = np.zeros((3, 4), np.float64)
    with pytest.raises(TypeError, match=r"fc\.weight.*float32"):
        opt.step()
    assert "step" not in opt.state[0] or opt.state[0]["step"] == 0
    p.grad = np.zeros((3, 4), np.float32)[:, ::-1]  # a non-contiguous grad is fine (read only)
    opt.step()
    p.data = np.zeros((4, 3), np.float32).T  # replaced by a non-contiguous array: refuse, do not copy
    with pytest.raises(TypeError, match="C-contiguous"):
        opt.step()


def test_core_kernels_validate_in_place_buffers():
    p = np.zeros(10, np.float32)
    g = np.ones(10, np.float32)
    ro = np.zeros(10, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="param must be writable"):
        _core.sgd_step(ro, g, None, 0.1)
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.sgd_step(np.zeros(20, np.float32)[::2], g, None, 0.1)
    with pytest.raises(TypeError, match="param must be float32"):
        _core.sgd_step(np.zeros(10), g, None, 0.1)
    with pytest.raises(ValueError, match="momentum_buffer is required"):
        _core.sgd_step(p, g, None, 0.1, momentum=0.9)
    with pytest.raises(ValueError, match="momentum_buffer must have the shape"):
        _core.sgd_step(p, g, np.zeros(9, np.float32), 0.1, momentum=0.9)
    with pytest.raises(ValueError, match="exp_avg_sq must have the shape"):
        _core.adam_step(p, g, np.zeros(10, np.float32), np.zeros(11, np.float32), 1, 1e-3)
    with pytest.raises(ValueError, match="step must be >= 1"):
        _core.adam_step(p, g, np.zeros(10, np.float32), np.zeros(10, np.float32), 0, 1e-3)
    with pytest.raises(ValueError, match="beta1"):
        _core.adam_step(p, g, np.zeros(10, np.float32), np.zeros(10, np.float32), 1, 1e-3, beta1=1.5)
    with pytest.raises(TypeError, match="grad must be"):
        _core.adam_step(p, [1.0] * 10, np.zeros(10, np.float32), np.zeros(10, np.float32), 1, 1e-3)
    np.testing.assert_array_equal(p, 0)  # nothing was touched by the failed calls
