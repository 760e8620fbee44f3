"""The NeRF field's two small MLPs as one autograd op (Instant-NGP's network, Mueller et al. 2022, Sec. 5.4).

:func:`nerf_head` computes what :class:`~taichifield.fields.nerf.NerfField` builds from
``nn.Sequential`` layers, in one ``torch.autograd.Function`` with a hand-written backward::

    h   = density_mlp(enc)                    enc (N, E) -> h (N, 1 + G)
    rgb = sigmoid(color_mlp([sh, h[:, 1:]]))  sh (N, S)  -> rgb (N, 3)
    returns h[:, 0] (the density logit, (N,)) and rgb

Bias-free linear layers with ReLU between them (tiny-cuda-nn's FullyFusedMLP has no biases
either). What the op saves against the layer-by-layer graph: no ``cat`` of the colour input
(its first layer is split into the SH and the geometry columns), no slice of ``h``, ReLU
applied in place and its backward as an in-place mask, the sigmoid's backward from its
output, no gradient for ``sh`` (a function of the view direction only) and one autograd node
instead of about fifteen. The reference is the ``nn.Sequential`` path itself (the tests
compare both and gradcheck this op in float64).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

__all__ = ["nerf_head"]


def _chain(x: torch.Tensor, weights: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``x`` through ReLU(x W_i^T) ... then a last linear layer; returns the output and the
    post-ReLU activations (the inputs of layers 1..k)."""
    acts: list[torch.Tensor] = []
    h = x
    for w in weights[:-1]:
        h = torch.mm(h, w.t()).relu_()
        acts.append(h)
    return torch.mm(h, weights[-1].t()), acts


def _chain_backward(g: torch.Tensor, x: torch.Tensor, acts: list[torch.Tensor], weights: Sequence[torch.Tensor],
                    need_input: bool) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
    """Backward of :func:`_chain` for the output gradient ``g``: (dL/dx or None, dL/dW_i)."""
    grads: list[torch.Tensor] = [torch.empty(0)] * len(weights)
    for i in range(len(weights) - 1, -1, -1):
        inp = acts[i - 1] if i > 0 else x
        grads[i] = torch.mm(g.t(), inp)
        if i > 0:
            g = torch.mm(g, weights[i]).mul_(inp > 0)  # ReLU's derivative from its output
        elif need_input:
            g = torch.mm(g, weights[0])
    return (g if need_input else None), grads


class _NerfHead(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, enc: torch.Tensor, sh: torch.Tensor, n_density: int,  # type: ignore[override]
                *weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dw, cw = weights[:n_density], weights[n_density:]
        n_sh = sh.shape[1]
        h, d_acts = _chain(enc, dw)
        geo = h[:, 1:]
        w0 = cw[0]
        z = torch.addmm(torch.mm(sh, w0[:, :n_sh].t()), geo, w0[:, n_sh:].t())
        c_acts: list[torch.Tensor] = []
        if len(cw) > 1:
            z.relu_()
            c_acts.append(z)
            out, rest = _chain(z, cw[1:])
            c_acts += rest
        else:
            out = z
        rgb = torch.sigmoid_(out)
        ctx.n_density, ctx.n_d_acts, ctx.n_c_acts = n_density, len(d_acts), len(c_acts)
        ctx.save_for_backward(enc, sh, h, rgb, *d_acts, *c_acts, *weights)
        return h[:, 0].contiguous(), rgb

    @staticmethod
    def backward(ctx: Any, g_sigma: torch.Tensor | None, g_rgb: torch.Tensor | None):  # type: ignore[override]
        saved = ctx.saved_tensors
        enc, sh, h, rgb = saved[:4]
        nd, na, nc = ctx.n_density, ctx.n_d_acts, ctx.n_c_acts
        d_acts = list(saved[4:4 + na])
        c_acts = list(saved[4 + na:4 + na + nc])
        weights = saved[4 + na + nc:]
        dw, cw = weights[:nd], weights[nd:]
        n_sh = sh.shape[1]
        geo = h[:, 1:]
        g_h = h.new_zeros(h.shape)
        c_grads: list[torch.Tensor] = [torch.zeros_like(w) for w in cw]
        if g_rgb is not None:
            g = g_rgb * rgb * (1 - rgb)  # sigmoid' from its output
            if len(cw) > 1:
                g_z, c_grads[1:] = _chain_backward(g, c_acts[0], c_acts[1:], cw[1:], True)
                assert g_z is not None
                g_z.mul_(c_acts[0] > 0)
            else:
                g_z = g
            c_grads[0] = torch.cat([torch.mm(g_z.t(), sh), torch.mm(g_z.t(), geo)], dim=1)
            g_h[:, 1:] = torch.mm(g_z, cw[0][:, n_sh:])
        if g_sigma is not None:
            g_h[:, 0] = g_sigma
        g_enc, d_grads = _chain_backward(g_h, enc, d_acts, dw, ctx.needs_input_grad[0])
        return (g_enc, None, None, *d_grads, *c_grads)


def nerf_head(enc: torch.Tensor, sh: torch.Tensor, density_weights: Sequence[torch.Tensor],
              color_weights: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The NeRF density and colour MLPs in one op (see the module docstring).

    Args:
        enc: (N, E) position encoding.
        sh: (N, S) direction encoding (no gradient is returned for it).
        density_weights: bias-free layer weights ``(out, in)``, first ``(H, E)``, last ``(1 + G, H)``.
        color_weights: first ``(H', S + G)`` (SH columns first, as ``cat([sh, geo])``), last ``(3, H')``.

    Returns:
        density logit (N,) (``h[:, 0]``, before ``trunc_exp``) and rgb (N, 3) in (0, 1).
    """
    if not density_weights or not color_weights:
        raise ValueError("nerf_head needs at least one density and one colour layer")
    w = [*density_weights, *color_weights]
    return _NerfHead.apply(enc.contiguous(), sh.to(enc.dtype).contiguous().detach(), len(density_weights), *w)
