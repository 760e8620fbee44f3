"""Runtime and the Taichi<->torch bridge."""

# no `from __future__ import annotations`: Taichi reads kernel annotations at runtime

import json
import subprocess
import sys

import pytest
import taichi as ti
import torch

from taichifield import runtime
from taichifield.bridge import TaichiOp
from taichifield.errors import ArchError


@ti.kernel
def _poly(x: ti.types.ndarray(), w: ti.types.ndarray(), y: ti.types.ndarray()):
    for i in range(x.shape[0]):
        y[i] = x[i] * x[i] * w[0] + ti.sin(x[i])


@ti.kernel
def _poly_bwd(x: ti.types.ndarray(), w: ti.types.ndarray(), gy: ti.types.ndarray(),
              gx: ti.types.ndarray(), gw: ti.types.ndarray()):
    for i in range(x.shape[0]):
        gx[i] = gy[i] * (2 * x[i] * w[0] + ti.cos(x[i]))
        gw[0] += gy[i] * x[i] * x[i]


def _poly_backward(saved, grads):
    x, w = saved
    gx, gw = torch.zeros_like(x), torch.zeros_like(w)
    _poly_bwd(x, w, grads[0], gx, gw)
    return [gx, gw]


_autodiff_op = TaichiOp(_poly, outputs=lambda x, w: [torch.empty_like(x)])
_manual_op = TaichiOp(_poly, outputs=lambda x, w: [torch.empty_like(x)], backward=_poly_backward)


def _reference(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return x * x * w[0] + torch.sin(x)


@pytest.mark.parametrize("op", [_autodiff_op, _manual_op], ids=["autodiff", "manual"])
def test_bridge_gradcheck(f64, op):
    x = torch.randn(7, dtype=torch.float64, requires_grad=True)
    w = torch.randn(1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(op, (x, w))


@pytest.mark.parametrize("op", [_autodiff_op, _manual_op], ids=["autodiff", "manual"])
def test_bridge_gradient_not_doubled(f64, op):
    """The classic trap: a Parameter passed straight into a kernel gets its .grad written twice."""
    x = torch.nn.Parameter(torch.randn(9, dtype=torch.float64))
    w = torch.nn.Parameter(torch.tensor([1.5], dtype=torch.float64))
    op(x, w).sum().backward()
    xr = x.detach().clone().requires_grad_(True)
    wr = w.detach().clone().requires_grad_(True)
    _reference(xr, wr).sum().backward()
    torch.testing.assert_close(x.grad, xr.grad)
    torch.testing.assert_close(w.grad, wr.grad)
    # and forward alone leaves a user's .grad untouched (Taichi would otherwise zero-fill it)
    p = torch.nn.Parameter(torch.randn(3, dtype=torch.float64))
    with torch.no_grad():
        op(p, w)
    assert p.grad is None


def test_bridge_non_contiguous_input(f64):
    x = torch.randn(4, 6, dtype=torch.float64)[:, 1]  # strided view
    w = torch.tensor([0.5], dtype=torch.float64)
    torch.testing.assert_close(_manual_op(x, w), _reference(x, w))


def test_init_rejects_unknown_arch():
    with pytest.raises(ArchError, match="unknown arch 'metal2'"):
        runtime.init("metal2")


def test_init_auto_never_fails():
    assert runtime.init("auto") in ("cpu", "cuda")


def test_cuda_unavailable_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ArchError, match="unavailable"):
        runtime.init("cuda")


def test_import_is_light():
    """`import taichifield` starts no Taichi runtime and imports neither taichi, torch nor open3d.

    Runs in a fresh interpreter so that this test process's own imports cannot hide a leak.
    """
    code = (
        "import json, sys\n"
        "import taichifield\n"
        "after_import = sorted(sys.modules)\n"
        "arch = taichifield.current_arch()\n"  # resolves taichifield.runtime lazily
        "after_query = sorted(sys.modules)\n"
        "print(json.dumps({'after_import': after_import, 'arch': arch, 'after_query': after_query}))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    state = json.loads(res.stdout.strip().splitlines()[-1])

    def heavy(mods: list[str]) -> list[str]:
        return [m for m in mods if m.split(".")[0] in ("taichi", "torch", "open3d")]

    assert heavy(state["after_import"]) == []
    # the runtime module is itself lazy: a bare import does not even load it
    assert "taichifield.runtime" not in state["after_import"]
    # asking for the arch loads the module but does not initialise (or import) Taichi
    assert state["arch"] is None
    assert "taichifield.runtime" in state["after_query"]
    assert heavy(state["after_query"]) == []
