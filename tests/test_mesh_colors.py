"""Vertex colours: PLY/OBJ export round-trips through read_vertex_colors, and baking a field whose
colour is a known function of position gives those colours."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from taichifield.geometry.mesh_io import load_mesh, read_mesh_data, read_vertex_colors, save_mesh

V = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=np.float32)
F = np.array([[0, 1, 2], [0, 2, 3]], dtype=np.int64)
C = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.2, 0.4, 0.6], [0.5, 0.5, 0.5]])


@pytest.mark.parametrize("suffix", [".ply", ".obj"])
@pytest.mark.parametrize("with_normals", [False, True])
def test_colored_export_round_trips(tmp_path, suffix: str, with_normals: bool) -> None:
    path = tmp_path / f"m{suffix}"
    normals = np.tile([0.0, 0.0, 1.0], (4, 1)) if with_normals else None
    save_mesh(path, torch.as_tensor(V), F, vertex_normals=normals, vertex_colors=C)
    v, f = load_mesh(path)
    assert np.array_equal(v, V) and np.array_equal(f, F)
    c = read_vertex_colors(path)
    assert c is not None and c.shape == (4, 3)
    # stored as 8 bits per channel: within half a step of the colours given
    assert np.abs(c - C).max() <= 0.5 / 255 + 1e-6
    assert np.array_equal(np.round(c * 255), np.round(C * 255))
    _, n, _ = read_mesh_data(path)
    assert (n is not None) == with_normals


def test_ply_colors_are_uchar_and_obj_has_six_numbers_per_vertex(tmp_path) -> None:
    save_mesh(tmp_path / "m.ply", V, F, vertex_colors=C)
    header = (tmp_path / "m.ply").read_bytes().split(b"end_header")[0].decode()
    assert all(f"property uchar {k}" in header for k in ("red", "green", "blue"))
    save_mesh(tmp_path / "m.obj", V, F, vertex_colors=np.round(C * 255).astype(np.uint8))
    rows = [ln.split() for ln in (tmp_path / "m.obj").read_text().splitlines() if ln.startswith("v ")]
    assert len(rows) == 4 and all(len(r) == 7 for r in rows)
    assert np.allclose(np.array([r[4:] for r in rows], float), np.round(C * 255) / 255, atol=1e-4)


def test_hand_written_colour_files(tmp_path) -> None:
    ply = tmp_path / "a.ply"
    ply.write_text("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
                   "property uchar red\nproperty uchar green\nproperty uchar blue\nelement face 1\n"
                   "property list uchar int vertex_indices\nend_header\n"
                   "0 0 0 255 0 0\n1 0 0 0 255 0\n0 1 0 0 0 51\n3 0 1 2\n")
    assert np.allclose(read_vertex_colors(ply), [[1, 0, 0], [0, 1, 0], [0, 0, 0.2]])
    obj = tmp_path / "a.obj"  # some tools write 0..255 in the extension
    obj.write_text("v 0 0 0 255 0 0\nv 1 0 0 0 255 0\nv 0 1 0 0 0 255\nf 1 2 3\n")
    assert np.allclose(read_vertex_colors(obj), np.eye(3))
    save_mesh(tmp_path / "plain.ply", V, F)
    save_mesh(tmp_path / "plain.obj", V, F)
    assert read_vertex_colors(tmp_path / "plain.ply") is None and read_vertex_colors(tmp_path / "plain.obj") is None


# --- baking -----------------------------------------------------------------------------------

def _ball(radius: float = 0.8, subdivisions: int = 2, center=(0.0, 0.0, 0.0)) -> tuple[torch.Tensor, torch.Tensor]:
    import trimesh

    m = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    v = torch.as_tensor(np.asarray(m.vertices) + np.asarray(center), dtype=torch.float32)
    return v, torch.as_tensor(np.asarray(m.faces), dtype=torch.int64)


def _position_color(x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """A field whose colour is a known function of position only: 0.5 + 0.5 x (in [0, 1] on the unit ball)."""
    return 0.5 + 0.5 * x


def test_vertex_normals_point_outward() -> None:
    from taichifield.geometry.colors import vertex_normals

    v, f = _ball()
    n = vertex_normals(v, f)
    assert torch.allclose(n.norm(dim=-1), torch.ones(len(v)), atol=1e-5)
    assert (n * v / 0.8).sum(-1).min() > 0.98  # an icosphere's vertex normals are nearly radial


def test_point_bake_gives_the_fields_colour() -> None:
    from taichifield.geometry.colors import bake_vertex_colors, vertex_normals

    v, f = _ball()
    rgb = bake_vertex_colors(v, vertex_normals(v, f), _position_color, batch_size=7)  # several batches
    assert rgb.shape == (len(v), 3) and torch.allclose(rgb, 0.5 + 0.5 * v, atol=1e-6)
    seen = []  # the view direction is -normal
    bake_vertex_colors(v, vertex_normals(v, f), lambda x, d: seen.append(d) or x * 0)
    assert torch.allclose(torch.cat(seen), -vertex_normals(v, f))


def _render_ball(radius: float):  # type: ignore[no-untyped-def]
    """An opaque ball of ``radius`` at the origin whose surface colour is :func:`_position_color`:
    a render function (rays_o, rays_d, far) -> (rgb on black, opacity) by ray-sphere intersection."""

    def render(o: torch.Tensor, d: torch.Tensor, far: float) -> tuple[torch.Tensor, torch.Tensor]:
        b = (o * d).sum(-1)
        disc = b * b - ((o * o).sum(-1) - radius**2)
        t = -b - disc.clamp(min=0).sqrt()
        hit = (disc > 0) & (t >= 0) & (t <= far)
        x = o + t[:, None] * d
        return torch.where(hit[:, None], _position_color(x, d), torch.zeros_like(x)), hit.float()

    return render


def test_rendered_bake_gives_the_colour_at_the_surface() -> None:
    from taichifield.geometry.colors import bake_rendered_colors, vertex_normals

    v, f = _ball(radius=0.8)
    n = vertex_normals(v, f)
    # a surface slightly inside the mesh (as a density threshold crossing is outside the surface):
    # the short ray reaches it and reports the colour there, which differs from the vertex's by < 0.03
    rgb = bake_rendered_colors(v, n, _render_ball(0.77), offset=0.1)
    assert torch.allclose(rgb, 0.5 + 0.5 * v * (0.77 / 0.8), atol=2e-3)
    # where the short ray finds nothing, the fallback's point colour is used
    far_ball = _render_ball(0.3)
    rgb = bake_rendered_colors(v, n, far_ball, offset=0.1, fallback=lambda x, d: torch.full_like(x, 0.25))
    assert torch.allclose(rgb, torch.full_like(v, 0.25))


def test_multiview_bake_averages_seen_views_and_respects_occlusion() -> None:
    from taichifield.geometry.colors import bake_multiview_colors, vertex_normals

    def view_color(x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        return 0.5 + 0.5 * d  # depends on the view direction only

    v, f = _ball(radius=0.8)
    n = vertex_normals(v, f)
    top = int(torch.argmax(v[:, 2]))  # (0, 0, 0.8)
    eye = torch.tensor([[1.5, 0.0, 5.0]])
    d = torch.nn.functional.normalize(v[top] - eye[0], dim=-1)
    rgb = bake_multiview_colors(v, n, f, view_color, eye)
    assert torch.allclose(rgb[top], 0.5 + 0.5 * d, atol=1e-5)  # seen: the camera's view
    bottom = int(torch.argmin(v[:, 2]))
    assert torch.allclose(rgb[bottom], 0.5 - 0.5 * n[bottom], atol=1e-5)  # unseen: the normal view
    # two cameras: the cos-weighted mean of both views
    eyes = torch.tensor([[1.5, 0.0, 5.0], [-2.0, 0.0, 4.0]])
    ds = torch.nn.functional.normalize(v[top] - eyes, dim=-1)
    w = -(ds * n[top]).sum(-1)
    rgb2 = bake_multiview_colors(v, n, f, view_color, eyes)
    assert torch.allclose(rgb2[top], ((0.5 + 0.5 * ds) * w[:, None]).sum(0) / w.sum(), atol=1e-5)
    # a small ball between the top vertex and the camera hides it: back to the normal view
    bv, bf = _ball(radius=0.2, subdivisions=1, center=(0.75, 0.0, 2.9))
    both_v, both_f = torch.cat([v, bv]), torch.cat([f, bf + len(v)])
    rgb3 = bake_multiview_colors(both_v, vertex_normals(both_v, both_f), both_f, view_color, eye)
    assert torch.allclose(rgb3[top], 0.5 - 0.5 * n[top], atol=1e-5)
