"""Optimizers and learning-rate schedules with ``torch.optim`` semantics on :class:`Parameter` s.

Each ``step()`` updates every parameter that has a gradient **in place**, one C++ call per parameter
(``fastmnist._core.sgd_step`` / ``adam_step``: a single fused streaming pass, OpenMP for large
tensors, the GIL released). One parameter group: the hyper-parameters are plain attributes
(``opt.lr``, ``opt.momentum``, ``opt.betas``) read at every step, so schedules and users can change
them between steps.

    opt = Adam(model.parameters(), lr=1e-3)
    sched = OneCycleLR(opt, max_lr=0.01, total_steps=epochs * steps_per_epoch)
    crit = nn.CrossEntropyLoss()
    for x, y in batches:
        loss = crit(model(x), y)
        model.backward(crit.backward())   # fills p.grad
        opt.step(); opt.zero_grad(); sched.step()

``state_dict()`` / ``load_state_dict()`` (optimizer and schedule) hold numpy arrays, numbers and
step counts only, so a checkpoint (``np.savez`` / pickle) resumes training exactly.
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from . import _core
from .parameter import Parameter

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "LRScheduler", "StepLR", "CosineAnnealingLR", "OneCycleLR"]


def _check_number(name: str, value, lo: float | None = 0.0, lo_open: bool = False, hi: float | None = None,
                  hi_open: bool = True) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise ValueError(f"{name} must be {'>' if lo_open else '>='} {lo}, got {v}")
    if hi is not None and (v > hi or (hi_open and v == hi)):
        raise ValueError(f"{name} must be {'<' if hi_open else '<='} {hi}, got {v}")
    return v


class Optimizer:
    """Base class: a list of :class:`Parameter` s, per-parameter state, one set of hyper-parameters.

    ``defaults`` names the hyper-parameters (as in torch; schedules look for ``momentum`` / ``betas``).
    """

    defaults: dict

    def __init__(self, params: Iterable[Parameter], defaults: dict):
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        seen = set()
        for i, p in enumerate(params):
            if not isinstance(p, Parameter):
                raise TypeError(f"params[{i}] must be a fastmnist Parameter, got {type(p).__name__}")
            if id(p) in seen:
                raise ValueError(f"params[{i}] ({p.name!r}) appears more than once")
            seen.add(id(p))
        self.params: list[Parameter] = params
        self.defaults = dict(defaults)
        for k, v in defaults.items():
            setattr(self, k, v)
        self.state: list[dict] = [{} for _ in params]
        self.initial_lr: float | None = None  # set by a schedule, as torch's group["initial_lr"]

    # the hyper-parameters a state_dict carries (the current values, possibly set by a schedule)
    def _hyper(self) -> dict:
        return {k: getattr(self, k) for k in self.defaults}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.zero_grad(set_to_none)

    def _grad(self, p: Parameter) -> np.ndarray:
        g = p.grad
        if not isinstance(g, np.ndarray):
            raise TypeError(f"parameter {p.name!r}: grad must be a numpy array, got {type(g).__name__}")
        if g.shape != p.data.shape:
            raise ValueError(f"parameter {p.name!r}: grad shape {g.shape} does not match data shape {p.data.shape}")
        if not isinstance(p.data, np.ndarray) or p.data.dtype != np.float32 or not p.data.flags.c_contiguous:
            raise TypeError(f"parameter {p.name!r}: data must be a float32 C-contiguous array "
                            "(assign into p.data[...] rather than replacing it)")
        return g

    def step(self) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Hyper-parameters, per-parameter state (copies of the numpy buffers, step counts) and the
        parameter shapes, for checkpoints."""
        state = []
        for s in self.state:
            state.append({k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()})
        return {
            "type": type(self).__name__,
            "hyper": self._hyper(),
            "initial_lr": self.initial_lr,
            "shapes": [tuple(p.data.shape) for p in self.params],
            "state": state,
        }

    def load_state_dict(self, sd: dict) -> None:
        """Restore what :meth:`state_dict` returned (same optimizer type and parameter shapes)."""
        if not isinstance(sd, dict) or "state" not in sd or "hyper" not in sd:
            raise ValueError("load_state_dict: not an optimizer state_dict (needs 'hyper' and 'state')")
        if sd.get("type", type(self).__name__) != type(self).__name__:
            raise ValueError(f"load_state_dict: state_dict is for {sd['type']}, this is {type(self).__name__}")
        shapes = [tuple(s) for s in sd.get("shapes", [tuple(p.data.shape) for p in self.params])]
        if len(sd["state"]) != len(self.params) or len(shapes) != len(self.params):
            raise ValueError(f"load_state_dict: state_dict has {len(sd['state'])} parameters, "
                             f"optimizer has {len(self.params)}")
        for i, (p, shp) in enumerate(zip(self.params, shapes)):
            if tuple(p.data.shape) != shp:
                raise ValueError(f"load_state_dict: parameter {i} ({p.name!r}) has shape {p.data.shape}, "
                                 f"state_dict has {shp}")
        new_state = []
        for i, s in enumerate(sd["state"]):
            d = {}
            for k, v in s.items():
                if isinstance(v, np.ndarray) or (hasattr(v, "__array__") and not np.isscalar(v)):
                    arr = np.array(v, dtype=np.float32, order="C", copy=True)
                    if arr.shape != self.params[i].data.shape:
                        raise ValueError(f"load_state_dict: state {k!r} of parameter {i} has shape {arr.shape}, "
                                         f"expected {self.params[i].data.shape}")
                    d[k] = arr
                else:
                    d[k] = v
            new_state.append(d)
        for k in self.defaults:
            if k in sd["hyper"]:
                v = sd["hyper"][k]
                setattr(self, k, tuple(float(x) for x in v) if isinstance(v, (tuple, list, np.ndarray)) else v)
        self.initial_lr = sd.get("initial_lr")
        self.state = new_state

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.defaults)
        return f"{type(self).__name__}({len(self.params)} parameters, {hp})"


class SGD(Optimizer):
    """``torch.optim.SGD``: ``d = g + weight_decay*p``; with momentum ``buf = momentum*buf +
    (1-dampening)*d`` (``buf = d`` on the first step), ``d = d + momentum*buf`` (nesterov) or ``buf``;
    ``p -= lr*d``."""

    def __init__(self, params, lr: float, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        lr = _check_number("lr", lr)
        momentum = _check_number("momentum", momentum)
        dampening = _check_number("dampening", dampening, lo=None)
        weight_decay = _check_number("weight_decay", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov momentum requires a momentum > 0 and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=bool(nesterov)))

    def step(self) -> None:
        lr, mom = float(self.lr), float(self.momentum)
        for p, st in zip(self.params, self.state):
            if p.grad is None:
                continue
            g = self._grad(p)
            buf = st.get("momentum_buffer")
            first = False
            if mom != 0.0 and buf is None:
                buf = np.empty_like(p.data)
                st["momentum_buffer"] = buf
                first = True
            try:
                _core.sgd_step(p.data, g, buf if mom != 0.0 else None, lr, mom, float(self.dampening),
                               float(self.weight_decay), bool(self.nesterov), first)
            except (ValueError, TypeError) as e:
                raise type(e)(f"parameter {p.name!r}: {e}") from None


class Adam(Optimizer):
    """``torch.optim.Adam`` (``weight_decay`` is L2 added to the gradient, as torch does):

    ``m = beta1*m + (1-beta1)*g``; ``v = beta2*v + (1-beta2)*g*g``;
    ``p -= lr/(1-beta1^t) * m / (sqrt(v)/sqrt(1-beta2^t) + eps)``."""

    _decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        lr = _check_number("lr", lr)
        eps = _check_number("eps", eps)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        b1 = _check_number("betas[0]", betas[0], hi=1.0)
        b2 = _check_number("betas[1]", betas[1], hi=1.0)
        weight_decay = _check_number("weight_decay", weight_decay)
        super().__init__(params, dict(lr=lr, betas=(b1, b2), eps=eps, weight_decay=weight_decay))

    def step(self) -> None:
        lr = float(self.lr)
        b1, b2 = (float(b) for b in self.betas)
        for p, st in zip(self.params, self.state):
            if p.grad is None:
                continue
            g = self._grad(p)
            if "step" not in st:
                st["step"] = 0
                st["exp_avg"] = np.zeros_like(p.data)
                st["exp_avg_sq"] = np.zeros_like(p.data)
            st["step"] += 1
            try:
                _core.adam_step(p.data, g, st["exp_avg"], st["exp_avg_sq"], int(st["step"]), lr, b1, b2,
                                float(self.eps), float(self.weight_decay), self._decoupled)
            except (ValueError, TypeError) as e:
                st["step"] -= 1
                raise type(e)(f"parameter {p.name!r}: {e}") from None


class AdamW(Adam):
    """``torch.optim.AdamW``: Adam with decoupled weight decay (``p *= 1 - lr*weight_decay`` before
    the Adam update); torch's default ``weight_decay`` is 1e-2."""

    _decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


# ---------------------------------------------------------------------------------------------
# learning-rate schedules (torch.optim.lr_scheduler semantics; call .step() after opt.step())
# ---------------------------------------------------------------------------------------------


class LRScheduler:
    """Base class. Construction performs torch's initial step (``last_epoch`` becomes 0 and
    ``optimizer.lr`` the schedule's first value); each :meth:`step` advances one epoch/iteration."""

    def __init__(self, optimizer: Optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not a fastmnist Optimizer")
        self.optimizer = optimizer
        if optimizer.initial_lr is None:
            optimizer.initial_lr = float(optimizer.lr)
        self.base_lr = float(optimizer.initial_lr)
        self.last_epoch = -1
        self._is_initial = True
        self.step()
        self._is_initial = False

    @property
    def base_lrs(self) -> list[float]:
        return [self.base_lr]

    def get_lr(self) -> float:
        raise NotImplementedError

    def step(self) -> None:
        self.last_epoch += 1
        lr = self.get_lr()
        self.optimizer.lr = lr
        self._last_lr = [float(lr)]

    def get_last_lr(self) -> list[float]:
        """The learning rate set by the last step, as a one-element list (torch: one per group)."""
        return list(self._last_lr)

    def state_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, sd: dict) -> None:
        self.__dict__.update({k: v for k, v in sd.items() if k != "optimizer"})


class StepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` steps."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1):
        if not isinstance(step_size, (int, np.integer)) or step_size < 1:
            raise ValueError(f"step_size must be a positive integer, got {step_size!r}")
        self.step_size = int(step_size)
        self.gamma = _check_number("gamma", gamma)
        super().__init__(optimizer)

    def get_lr(self) -> float:
        lr = float(self.optimizer.lr)
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return lr
        return lr * self.gamma


class CosineAnnealingLR(LRScheduler):
    """Cosine from the base lr down to ``eta_min`` over ``T_max`` steps (torch's recursive form, which
    also continues past ``T_max`` as torch does)."""

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0):
        if not isinstance(T_max, (int, np.integer)) or T_max < 1:
            raise ValueError(f"T_max must be a positive integer, got {T_max!r}")
        self.T_max = int(T_max)
        self.eta_min = _check_number("eta_min", eta_min)
        super().__init__(optimizer)

    def get_lr(self) -> float:
        lr, T, e, lo = float(self.optimizer.lr), self.T_max, self.last_epoch, self.eta_min
        if self._is_initial:
            return lr
        if (e - 1 - T) % (2 * T) == 0:
            return lr + (self.base_lr - lo) * (1 - math.cos(math.pi / T)) / 2
        return (1 + math.cos(math.pi * e / T)) / (1 + math.cos(math.pi * (e - 1) / T)) * (lr - lo) + lo


class OneCycleLR(LRScheduler):
    """The 1cycle policy (``torch.optim.lr_scheduler.OneCycleLR``): the lr rises from
    ``max_lr/div_factor`` to ``max_lr`` over ``pct_start`` of ``total_steps`` and anneals to
    ``initial_lr/final_div_factor``; with ``cycle_momentum`` the momentum (SGD) or beta1 (Adam) moves
    inversely between ``max_momentum`` and ``base_momentum``. Step it once per batch."""

    def __init__(self, optimizer: Optimizer, max_lr: float, total_steps: int | None = None,
                 epochs: int | None = None, steps_per_epoch: int | None = None, pct_start: float = 0.3,
                 anneal_strategy: str = "cos", cycle_momentum: bool = True, base_momentum: float = 0.85,
                 max_momentum: float = 0.95, div_factor: float = 25.0, final_div_factor: float = 1e4,
                 three_phase: bool = False):
        if total_steps is not None:
            if not isinstance(total_steps, (int, np.integer)) or total_steps <= 0:
                raise ValueError(f"total_steps must be a positive integer, got {total_steps!r}")
            total = int(total_steps)
        elif epochs is not None and steps_per_epoch is not None:
            for nm, v in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)):
                if not isinstance(v, (int, np.integer)) or v <= 0:
                    raise ValueError(f"{nm} must be a positive integer, got {v!r}")
            total = int(epochs) * int(steps_per_epoch)
        else:
            raise ValueError("OneCycleLR needs total_steps, or epochs and steps_per_epoch")
        pct_start = _check_number("pct_start", pct_start, hi=1.0, hi_open=False)
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
        max_lr = _check_number("max_lr", max_lr)
        div_factor = _check_number("div_factor", div_factor, lo_open=True)
        final_div_factor = _check_number("final_div_factor", final_div_factor, lo_open=True)
        self.total_steps = total
        self.anneal_strategy = anneal_strategy
        self.initial_lr = max_lr / div_factor
        self.max_lr = max_lr
        self.min_lr = self.initial_lr / final_div_factor
        if three_phase:
            self.phases = [
                (float(pct_start * total) - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                (float(2 * pct_start * total) - 2, "max_lr", "initial_lr", "base_momentum", "max_momentum"),
                (total - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum"),
            ]
        else:
            self.phases = [
                (float(pct_start * total) - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                (total - 1, "max_lr", "min_lr", "base_momentum", "max_momentum"),
            ]
        self.cycle_momentum = bool(cycle_momentum)
        if self.cycle_momentum:
            if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
                raise ValueError("cycle_momentum needs an optimizer with momentum (SGD) or betas (Adam)")
            self.use_beta1 = "betas" in optimizer.defaults
            self.max_momentum = _check_number("max_momentum", max_momentum)
            self.base_momentum = _check_number("base_momentum", base_momentum)
            self._set_momentum(optimizer, self.max_momentum)
        optimizer.initial_lr = self.initial_lr
        super().__init__(optimizer)

    def _set_momentum(self, optimizer: Optimizer, m: float) -> None:
        if self.use_beta1:
            optimizer.betas = (m, *tuple(optimizer.betas)[1:])
        else:
            optimizer.momentum = m

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self) -> float:
        step = self.last_epoch
        if step > self.total_steps:
            raise ValueError(f"OneCycleLR stepped {step} times, more than total_steps={self.total_steps}")
        start = 0.0
        for i, (end, lr0, lr1, m0, m1) in enumerate(self.phases):
            if step <= end or i == len(self.phases) - 1:
                pct = (step - start) / (end - start)
                lr = self._anneal(getattr(self, lr0), getattr(self, lr1), pct)
                if self.cycle_momentum:
                    self._set_momentum(self.optimizer, self._anneal(getattr(self, m0), getattr(self, m1), pct))
                return lr
            start = end
        raise AssertionError("unreachable")
