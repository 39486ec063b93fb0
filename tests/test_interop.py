"""Models that move to PyTorch and ONNX: Sequential.to_torch, nn.from_torch and
`fastmnist export CHECKPOINT --onnx` (run as a real subprocess, the file run by onnxruntime)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import fastmnist_path
import torch

from fastmnist import models, nn, optim
from fastmnist.train import Trainer, prepare

torch.set_num_threads(1)


@pytest.mark.parametrize("name", models.names())
def test_to_torch_outputs_equal(name, mnist):
    m = models.build(name, seed=2, **({"dropout": 0.5} if name == "cnn5" else {})).eval()
    tm = m.to_torch()
    assert isinstance(tm, torch.nn.Sequential) and not tm.training
    assert list(tm.state_dict()) == list(m.state_dict())
    x = prepare(mnist[2][:32])
    np.testing.assert_allclose(m(x), tm(torch.from_numpy(x)).detach().numpy(), rtol=1e-4, atol=1e-5)
    fused = nn.fuse(m)
    np.testing.assert_allclose(fused.to_torch()(torch.from_numpy(x)).detach().numpy(), m(x), rtol=1e-4, atol=1e-5)


def _torch_model():
    g = torch.manual_seed(0)  # noqa: F841 - torch's default init, seeded
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 5, stride=(1, 1), padding=(2, 1)), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Sequential(torch.nn.Conv2d(6, 8, 3, stride=2), torch.nn.Sigmoid()),
        torch.nn.Flatten(), torch.nn.Dropout(0.25), torch.nn.Linear(8 * 6 * 6, 32), torch.nn.ReLU(),
        torch.nn.Linear(32, 10))


def test_from_torch_equal_outputs_gradients_and_round_trip(mnist):
    tm = _torch_model().eval()
    m = nn.from_torch(tm)
    assert not m.training
    assert [type(l).__name__ for l in m.layers.values()] == ["Conv2d", "ReLU", "MaxPool2d", "Conv2d", "Sigmoid",
                                                             "Flatten", "Dropout", "Linear", "ReLU", "Linear"]
    assert list(m.layers)[3] == "conv2"
    x = prepare(mnist[2][:16])
    y = mnist[3][:16].astype(np.int64)
    xt = torch.from_numpy(x)
    tout = tm(xt)
    np.testing.assert_allclose(m(x), tout.detach().numpy(), rtol=1e-4, atol=1e-5)
    # gradients equal torch's too (so a converted model trains as in torch)
    torch.nn.functional.cross_entropy(tout, torch.from_numpy(y)).backward()
    crit = nn.CrossEntropyLoss()
    crit(m(x), y)
    m.backward(crit.backward())
    for p, tp in zip(m.parameters(), tm.parameters()):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-4, atol=1e-6)
    back = m.to_torch()
    for (k, v), (k2, v2) in zip(back.state_dict().items(), tm.state_dict().items()):
        assert v.shape == v2.shape
        np.testing.assert_array_equal(v.numpy(), v2.numpy())


def test_from_torch_refuses_what_it_cannot_represent():
    with pytest.raises(TypeError, match="must be a torch.nn.Sequential"):
        nn.from_torch(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match=r"'1': BatchNorm2d is not supported"):
        nn.from_torch(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2)))
    with pytest.raises(ValueError, match="dilation=1"):
        nn.from_torch(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, dilation=2)))
    with pytest.raises(ValueError, match="ceil_mode=False"):
        nn.from_torch(torch.nn.Sequential(torch.nn.MaxPool2d(2, ceil_mode=True)))


def _save(model, path):
    from fastmnist.checkpoint import save_checkpoint

    try:
        return save_checkpoint(model, path)  # torch.save's (obj, path) order
    except (TypeError, AttributeError):
        return save_checkpoint(path, model)


def test_export_onnx_cli_and_onnxruntime_agree(mnist, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    x_train, y_train, x_test, _ = mnist
    model = models.build("cnn5", seed=0)
    Trainer(model, optim.Adam(model.parameters(), lr=2e-3), batch_size=128, epochs=1, quiet=True).fit(
        x_train[:1500], y_train[:1500])
    ckpt = tmp_path / "model.npz"
    _save(model, ckpt)
    out = tmp_path / "sub" / "model.onnx"
    r = subprocess.run([sys.executable, "-m", "fastmnist", "export", str(ckpt), "--onnx", str(out)],
                       capture_output=True, text=True, env={"PYTHONPATH": fastmnist_path(), "PATH": ""})
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout and "(x - 0.1307) / 0.3081" in r.stdout
    x = prepare(x_test[:300])
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input"]
    (logits,) = sess.run(None, {"input": x})
    ours = model.eval()(x)
    np.testing.assert_allclose(logits, ours, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(logits.argmax(1), ours.argmax(1))
    r = subprocess.run([sys.executable, "-m", "fastmnist", "export", str(tmp_path / "missing.npz"), "--onnx",
                        str(out)], capture_output=True, text=True, env={"PYTHONPATH": fastmnist_path(), "PATH": ""})
    assert r.returncode == 1 and "does not exist" in r.stderr and "Traceback" not in r.stderr
