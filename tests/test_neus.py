"""NeuS: the discrete alpha (hand-computed cases, the Taichi volume renderer vs NeuS's own alpha
compositing, float64 gradcheck through the kernel), the field's sphere init, the SDF-built
occupancy grid, and the model's checkpoint round trip."""

from __future__ import annotations

import math

import pytest
import torch

from taichifield.fields.neus import NeuSConfig, NeuSField
from taichifield.render.neus_alpha import alpha_composite_reference, alpha_to_sigma, neus_alpha
from taichifield.render.volrend import volume_render

AABB = torch.tensor([[-1.5] * 3, [1.5] * 3])
TINY = dict(n_levels=4, log2_table_size=10, max_resolution=64)


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_alpha_by_hand() -> None:
    # a ray along -z entering a surface: sdf 0.1 at the midpoint, unit gradient +z, so cos = -1;
    # dt 0.2: s_prev = 0.1 + 0.1 = 0.2, s_next = 0.1 - 0.1 = 0.0; inv_s 10
    # alpha = (Phi(2) - Phi(0) + 1e-5) / (Phi(2) + 1e-5) = (0.880797 - 0.5 + 1e-5) / (0.880797 + 1e-5) = 0.432339
    sdf, grad = torch.tensor([0.1]), torch.tensor([[0.0, 0.0, 1.0]])
    d, dt, inv_s = torch.tensor([[0.0, 0.0, -1.0]]), torch.tensor([0.2]), torch.tensor(10.0)
    a = neus_alpha(sdf, grad, d, dt, inv_s, cos_anneal_ratio=1.0)
    assert a.item() == pytest.approx(0.432339, abs=1e-6)
    assert a.item() == pytest.approx((_sig(2.0) - 0.5 + 1e-5) / (_sig(2.0) + 1e-5), abs=1e-7)
    # r = 0 at cos = -1: relu(1/2 + 1/2) = 1, the same estimate
    assert neus_alpha(sdf, grad, d, dt, inv_s, cos_anneal_ratio=0.0).item() == pytest.approx(0.432339, abs=1e-6)
    # a grazing ray (cos = 0): r = 1 sees no change of sdf (alpha = eps / (Phi(1) + eps));
    # r = 0 still uses cos' = -1/2: s_prev = 0.15, s_next = 0.05
    side = torch.tensor([[1.0, 0.0, 0.0]])
    assert neus_alpha(sdf, grad, side, dt, inv_s, 1.0).item() == pytest.approx(1e-5 / (_sig(1.0) + 1e-5), rel=1e-4)
    expect = (_sig(1.5) - _sig(0.5) + 1e-5) / (_sig(1.5) + 1e-5)
    assert neus_alpha(sdf, grad, side, dt, inv_s, 0.0).item() == pytest.approx(expect, abs=1e-6)
    # leaving the surface (cos = +1) is clamped to the eps floor, never negative
    out = neus_alpha(sdf, grad, -d, dt, inv_s, 1.0).item()
    assert 0.0 <= out < 1e-4
    # just behind the surface (sdf -0.3, entering): s_prev = -0.2, s_next = -0.4 -> alpha = (0.119203 - 0.017986 + 1e-5) / (0.119203 + 1e-5) = 0.849125
    behind = neus_alpha(torch.tensor([-0.3]), grad, d, dt, inv_s, 1.0).item()
    assert behind == pytest.approx((_sig(-2.0) - _sig(-4.0) + 1e-5) / (_sig(-2.0) + 1e-5), abs=1e-6)
    assert behind == pytest.approx(0.849125, abs=1e-6)


def test_alpha_to_sigma_is_exact() -> None:
    alpha = torch.tensor([0.0, 0.1, 0.5, 0.999, 1.0])
    dt = torch.tensor([0.1, 0.2, 0.05, 0.3, 0.1])
    sigma = alpha_to_sigma(alpha, dt)
    back = 1.0 - torch.exp(-sigma * dt)
    assert torch.allclose(back[:4], alpha[:4], atol=1e-6)
    assert torch.isfinite(sigma).all() and back[4] == pytest.approx(1.0, abs=2e-6)  # alpha 1 is clamped


def _packed(n_rays: int, per_ray: int, dtype: torch.dtype, seed: int):  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(1, per_ray + 1, (n_rays,), generator=g)
    ri = torch.repeat_interleave(torch.arange(n_rays), counts).to(torch.int32)
    s = int(counts.sum())
    dt = 0.05 + 0.1 * torch.rand(s, generator=g, dtype=dtype)
    ends = torch.cat([torch.cumsum(dt[ri.long() == r], 0) for r in range(n_rays)]) + 2.0
    sdf = 0.3 * torch.randn(s, generator=g, dtype=dtype)
    grad = torch.randn(s, 3, generator=g, dtype=dtype)
    d = torch.nn.functional.normalize(torch.randn(s, 3, generator=g, dtype=dtype), dim=-1)
    rgb = torch.rand(s, 3, generator=g, dtype=dtype)
    return sdf, grad, d, ends - dt, ends, ri, rgb


@pytest.mark.parametrize("ratio", [0.0, 0.4, 1.0])
def test_volume_renderer_composites_neus_alpha(ratio: float) -> None:
    """The Taichi renderer fed alpha_to_sigma(alpha) gives NeuS's alpha compositing (the torch
    reference), values and gradients (inv_s 4: opacities stay moderate, no early termination)."""
    sdf, grad, d, t0, t1, ri, rgb = _packed(12, 9, torch.float32, seed=1)
    bg = torch.rand(3)
    outs = []
    for taichi in (True, False):
        s = sdf.clone().requires_grad_(True)
        c = rgb.clone().requires_grad_(True)
        inv_s = torch.tensor(4.0, requires_grad=True)
        alpha = neus_alpha(s, grad, d, t1 - t0, inv_s, ratio)
        if taichi:
            out, _, opacity = volume_render(alpha_to_sigma(alpha, t1 - t0), c, t0, t1, ri, 12, background=bg)
        else:
            out, opacity = alpha_composite_reference(alpha, c, ri, 12, background=bg)
        ((out * torch.tensor([0.5, 1.0, 1.5])).sum() + opacity.sum()).backward()
        outs.append((out.detach(), opacity.detach(), s.grad, c.grad, inv_s.grad))
    for a, b in zip(*outs):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4), (a, b)


def test_gradcheck_through_the_kernel(f64) -> None:  # type: ignore[no-untyped-def]
    """float64 gradcheck of sdf / gradient / inv_s / rgb -> alpha -> sigma -> Taichi volume_render."""
    sdf, grad, d, t0, t1, ri, rgb = _packed(4, 5, torch.float64, seed=2)
    inputs = (sdf.requires_grad_(True), grad.requires_grad_(True), torch.tensor(3.0, dtype=torch.float64,
              requires_grad=True), rgb.requires_grad_(True))

    def fn(s, g, inv_s, c):  # type: ignore[no-untyped-def]
        alpha = neus_alpha(s, g, d, t1 - t0, inv_s, 0.5)
        return volume_render(alpha_to_sigma(alpha, t1 - t0), c, t0, t1, ri, 4, background=torch.ones(3, dtype=torch.float64))

    assert torch.autograd.gradcheck(fn, inputs)


def test_field_starts_as_a_sphere() -> None:
    torch.manual_seed(0)
    field = NeuSField(NeuSConfig(**TINY), AABB)
    x = (torch.rand(4000, 3) * 2 - 1) * 1.5
    true = x.norm(dim=1) - 0.75  # radius 0.5 of the half side 1.5
    s, g, feat = field.sdf_and_gradient(x)
    near = true.abs() < 0.3
    assert (s - true).abs()[near].max() < 0.05 and (s - true).abs().mean() < 0.05
    assert ((g.norm(dim=1) - 1).abs()[near]).mean() < 0.05
    assert feat.shape == (4000, 15)
    out = field(x[:5], torch.nn.functional.normalize(torch.randn(5, 3), dim=-1))
    assert out["rgb"].shape == (5, 3) and ((out["rgb"] > 0) & (out["rgb"] < 1)).all()
    assert torch.allclose(out["normal"].norm(dim=1), torch.ones(5), atol=1e-5)
    assert float(field.inv_s().detach()) == pytest.approx(math.exp(3.0), rel=1e-5)


@pytest.mark.parametrize("scheme", ["tetrahedron", "central"])
def test_laplacian_of_the_initial_sphere(scheme: str) -> None:
    """The finite-difference Laplacian (Neuralangelo's curvature) of the init sphere's SDF
    |x| - r is 2 / |x| (mean curvature x 2), here with a coarse step (h = 0.1); the gradient
    is the sphere's normal x / |x| by either scheme, and the tetrahedron's 4-point value is
    the sphere's SDF raised by h^2 / |x|."""
    torch.manual_seed(0)
    field = NeuSField(NeuSConfig(**TINY, fd_scheme=scheme), AABB)
    field.fd_step = 0.1
    x = torch.nn.functional.normalize(torch.randn(500, 3), dim=1) * (0.6 + 0.6 * torch.rand(500, 1))
    with torch.no_grad():
        s, g, _, lap = field.sdf_derivatives(x)
        s4, g4, _ = field.sdf_and_gradient(x)
    assert torch.allclose(s, field.sdf(x)) and g.shape == (500, 3)
    cos = torch.nn.functional.cosine_similarity(g4, x, dim=1)
    assert float(cos.min()) > 0.98
    if scheme == "central":
        assert torch.equal(s4, s)
    else:  # the mean of the four is s + h^2/2 lap s, and lap s = 2 / |x| for the sphere
        shift = (s4 - s) * x.norm(dim=1) / field.fd_step**2
        assert abs(float(shift.median()) - 1.0) < 0.25
    ratio = lap * x.norm(dim=1) / 2.0
    assert abs(float(ratio.median()) - 1.0) < 0.25 and float((ratio - 1).abs().mean()) < 0.4


def test_render_hits_the_initial_sphere() -> None:
    from taichifield.pipelines.neus import render_neus_rays

    torch.manual_seed(0)
    field = NeuSField(NeuSConfig(**TINY), AABB)
    field.variance.data.fill_(0.6)  # inv_s ~ 400: a sharp surface
    o = torch.tensor([[0.0, 0.0, 4.0], [0.0, 3.0, 4.0]])
    d = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]])  # through the centre; past the sphere
    with torch.no_grad():
        out = render_neus_rays(field, None, o, d, near=2.0, far=6.0, step_size=0.01, background=torch.ones(3),
                               n_samples=256, normals=True)
    assert out["opacity"][0] > 0.99 and out["opacity"][1] < 0.01
    assert out["depth"][0] == pytest.approx(4.0 - 0.75, abs=0.05)
    # the finite-width init is a sphere to ~0.02 in value, its normals to ~7 degrees
    assert torch.allclose(out["normal"][0], torch.tensor([0.0, 0.0, 1.0]), atol=0.2)
    assert torch.allclose(out["rgb"][1], torch.ones(3), atol=0.01)


def test_grid_from_the_sdf_keeps_only_the_shell() -> None:
    from taichifield.pipelines.neus import sdf_density_fn
    from taichifield.render.raymarch import OccupancyGrid

    torch.manual_seed(0)
    field = NeuSField(NeuSConfig(**TINY), AABB)
    field.variance.data.fill_(0.6)
    grid = OccupancyGrid(AABB, resolution=16)
    assert grid.update(0, sdf_density_fn(field, grid))
    occ = grid.occupied_mask()[0]
    centres = (torch.stack(torch.meshgrid(*[torch.arange(16)] * 3, indexing="ij"), -1).float() + 0.5) / 16 * 3 - 1.5
    dist = (centres.norm(dim=-1) - 0.75).abs()
    diag = 3 / 16 * math.sqrt(3)
    assert occ[dist < 0.5 * diag].all()  # every cell the sphere passes through
    assert not occ[dist > 2.5 * diag].any()  # nothing far from it: the centre and the corners are empty
    t0, t1, ri = grid.sample(torch.tensor([[0.0, 0.0, 4.0]]), torch.tensor([[0.0, 0.0, -1.0]]), 2.0, 6.0, step_size=0.01)
    assert 0 < len(t0) < 200 and float(t0.min()) > 4.0 - 0.75 - 2 * diag


def test_model_checkpoint_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from taichifield.errors import CheckpointError
    from taichifield.pipelines.neus import NeuSModel
    from taichifield.train.checkpoint import save_checkpoint

    model = NeuSModel.build(NeuSConfig(**TINY), AABB, 16, torch.device("cpu"), meta={"step_size": 0.01})
    with torch.no_grad():
        model.field.variance.fill_(0.42)
    save_checkpoint(tmp_path / "ckpt.pt", "neus", {"model": model.field.config.to_dict(), "train": {"grid_resolution": 16}},
                    model.state_dict(), meta={"step_size": 0.01, "fd_step": 0.2})
    back = NeuSModel.load(tmp_path)
    x = torch.rand(50, 3) - 0.5
    assert torch.equal(back.sdf(x), model.sdf(x)) and back.field.fd_step == 0.2
    assert float(back.field.variance.detach()) == pytest.approx(0.42)
    save_checkpoint(tmp_path / "nerf.pt", "nerf", {"model": {}, "train": {}}, {})
    with pytest.raises(CheckpointError, match="expected 'neus'"):
        NeuSModel.load(tmp_path / "nerf.pt")


def test_colour_and_normals_from_one_pass_match_the_separate_renders() -> None:
    """The progress picture's colour and normal map come from one pass; each equals its own render,
    and the normal map of the initial sphere seen head-on points back at the camera."""
    from taichifield.cameras import look_at
    from taichifield.pipelines.neus import NeuSModel

    torch.manual_seed(0)
    model = NeuSModel.build(NeuSConfig(**TINY), AABB, 16, torch.device("cpu"), meta={"step_size": 0.02})
    model.grid.bits.fill_(-1)  # every cell occupied: march the whole box
    model.eval()
    c2w = look_at(torch.tensor([0.0, 0.0, 4.0]), torch.zeros(3), up=(0.0, 1.0, 0.0)).float()
    args = (c2w, 24, 24, 30.0, 30.0, 12.0, 12.0)
    rgb, normal = model.render_color_and_normals(*args)
    assert torch.equal(rgb, model.render_view(*args)) and torch.equal(normal, model.render_view(*args, normals=True))
    centre = normal[11:13, 11:13].reshape(-1, 3)  # the 4 pixels half a pixel off the sphere's near pole (+z)
    assert bool((centre[:, 2] > 0.97).all()) and bool(((centre[:, :2] - 0.5).abs() < 0.15).all())  # n_z > 0.94
