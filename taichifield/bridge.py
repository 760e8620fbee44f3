"""Taichi kernel ⇄ ``torch.autograd.Function``: one small, reusable bridge.

A Taichi op is a forward kernel that takes torch tensors directly as
``ti.types.ndarray()`` arguments (inputs first, then the outputs it writes), plus a
way to get gradients: either Taichi's own autodiff (``kernel.grad``) or a
hand-written backward function.

Gradient safety (the "doubled gradient" trap): when a tensor that
``requires_grad`` is handed to a Taichi kernel, Taichi silently allocates
``tensor.grad`` and, for ``kernel.grad``, *accumulates adjoints into it*. If the
autograd function then also returns that ``.grad`` to torch, torch adds it a
second time. This bridge therefore

* passes only ``.detach()``-ed views to kernels in forward (Taichi never touches
  a user's ``Parameter.grad``), and
* in backward gives Taichi *fresh* zero buffers as adjoints, returning them to
  torch, which accumulates exactly once.

Example (autodiff)::

    @ti.kernel
    def square(x: ti.types.ndarray(), y: ti.types.ndarray()):
        for i in x:
            y[i] = x[i] * x[i]

    op = TaichiOp(square, outputs=lambda x: [torch.empty_like(x)])
    y = op(x)               # differentiable wrt x, via square.grad

Example (hand-written backward)::

    def backward(saved, grads):          # saved: the forward args; grads: dL/d(outputs)
        (x,), (gy,) = saved, grads
        gx = torch.zeros_like(x)
        square_bwd(x, gy.contiguous(), gx)
        return [gx]                      # one entry per forward arg (None: no grad)

    op = TaichiOp(square, outputs=..., backward=backward)
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from . import runtime

__all__ = ["TaichiOp"]

OutputsFn = Callable[..., Sequence[torch.Tensor]]
BackwardFn = Callable[[Sequence[Any], Sequence[torch.Tensor]], Sequence[torch.Tensor | None]]


def _prepare(arg: Any) -> Any:
    """Kernel-ready form of one argument: tensors detached and contiguous; others as is."""
    if isinstance(arg, torch.Tensor):
        return arg.detach().contiguous()
    return arg


class _Function(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, op: "TaichiOp", *args: Any) -> Any:  # type: ignore[override]
        runtime.ensure_init()
        prepared = [_prepare(a) for a in args]
        outputs = list(op.outputs(*prepared))
        op.kernel(*prepared, *outputs)
        ctx.op = op
        ctx.n_out = len(outputs)
        tensor_pos = [i for i, a in enumerate(prepared) if isinstance(a, torch.Tensor)]
        ctx.tensor_pos = tensor_pos
        ctx.others = [None if i in tensor_pos else a for i, a in enumerate(prepared)]
        ctx.save_for_backward(*[prepared[i] for i in tensor_pos])
        non_diff = [o for o in outputs if not o.is_floating_point()]
        if non_diff:
            ctx.mark_non_differentiable(*non_diff)
        return tuple(outputs) if len(outputs) > 1 else outputs[0]

    @staticmethod
    def backward(ctx: Any, *grad_outputs: torch.Tensor) -> Any:  # type: ignore[override]
        saved = list(ctx.others)
        for pos, t in zip(ctx.tensor_pos, ctx.saved_tensors):
            saved[pos] = t
        needs = ctx.needs_input_grad[1:]
        grads_out = [
            g.contiguous() if g is not None else None for g in grad_outputs
        ]
        op: TaichiOp = ctx.op
        if op.backward_fn is not None:
            grads = list(op.backward_fn(saved, grads_out))
        else:
            grads = _taichi_autodiff(op, saved, grads_out, needs)
        if len(grads) != len(saved):
            raise RuntimeError(f"{op.name}: backward returned {len(grads)} grads for {len(saved)} args")
        grads = [g if (n and g is not None) else None for g, n in zip(grads, needs)]
        return (None, *grads)


def _taichi_autodiff(
    op: "TaichiOp", saved: list[Any], grads_out: list[torch.Tensor | None], needs: Sequence[bool]
) -> list[torch.Tensor | None]:
    """Run ``kernel.grad`` with fresh adjoint buffers (never a user tensor's ``.grad``)."""
    if not runtime.supports_autodiff():
        raise RuntimeError(f"{op.name}: Taichi autodiff needs arch cpu or cuda, not {runtime.current_arch()}")
    args: list[Any] = []
    adjoints: list[torch.Tensor | None] = []
    for a, need in zip(saved, needs):
        if isinstance(a, torch.Tensor) and a.is_floating_point():
            fresh = a.detach().clone().requires_grad_(True)  # clone: a distinct leaf, own .grad
            fresh.grad = torch.zeros_like(fresh)
            args.append(fresh)
            adjoints.append(fresh.grad if need else None)
        else:
            args.append(a)
            adjoints.append(None)
    outs = list(op.outputs(*[_prepare(a) for a in saved]))
    for i, o in enumerate(outs):
        if o.is_floating_point():
            o.requires_grad_(True)
            g = grads_out[i] if i < len(grads_out) else None
            o.grad = torch.zeros_like(o) if g is None else g.clone()
    op.kernel.grad(*args, *outs)
    return adjoints


class TaichiOp:
    """A differentiable op made of a Taichi forward kernel and its gradient.

    Args:
        kernel: ``@ti.kernel`` taking ``(*args, *outputs)``; tensors as
            ``ti.types.ndarray()``. It must only *write* the outputs.
        outputs: ``outputs(*args) -> [tensor, ...]`` allocates the output buffers
            (shape, dtype, device) from the (detached, contiguous) args.
        backward: ``backward(saved_args, grad_outputs) -> [grad or None per arg]``;
            must write adjoints into freshly allocated tensors. ``None`` uses
            Taichi autodiff (``kernel.grad``; CPU and CUDA only).
        name: for error messages.

    Calling the op: ``op(*args)`` returns one tensor or a tuple of tensors.
    Non-tensor args (ints, floats) pass through to the kernel and get no gradient;
    integer outputs are marked non-differentiable.
    """

    def __init__(
        self,
        kernel: Any,
        outputs: OutputsFn,
        backward: BackwardFn | None = None,
        name: str | None = None,
    ) -> None:
        self.kernel = kernel
        self.outputs = outputs
        self.backward_fn = backward
        self.name = name or getattr(kernel, "__name__", "taichi_op")

    def __call__(self, *args: Any) -> Any:
        return _Function.apply(self, *args)

    def __repr__(self) -> str:
        mode = "autodiff" if self.backward_fn is None else "hand-written backward"
        return f"TaichiOp({self.name}, {mode})"
