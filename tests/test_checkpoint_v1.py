"""Version-1 checkpoints (written before NerfModel and the device-side guard) still load and resume."""

from __future__ import annotations

import torch

from taichifield.fields.nerf import NerfConfig
from taichifield.pipelines.nerf import NerfModel
from taichifield.render.raymarch import OccupancyGrid


def _v1_nerf_state(model: NerfConfig, aabb: torch.Tensor) -> dict[str, torch.Tensor]:
    """The state layout taichifield 0.1 wrote by hand: field.* plus the grid's five tensors."""
    from taichifield.fields.nerf import NerfField

    field = NerfField(model, aabb)
    state = {f"field.{k}": v for k, v in field.state_dict().items()}
    density = torch.rand(16 ** 3)
    bits = torch.randint(-2**31, 2**31 - 1, ((16 ** 3 + 31) // 32,), dtype=torch.int32)
    state.update({"grid.density": density, "grid.bits": bits, "grid.aabb": aabb.clone(),
                  "grid.config": torch.tensor([16, 1]), "grid.params": torch.tensor([0.01, 0.95], dtype=torch.float64)})
    return state


def test_version1_nerf_state_loads_into_nerf_model(tmp_path) -> None:
    from taichifield.train.checkpoint import load_checkpoint

    aabb = torch.tensor([[-1.5, -1.0, -1.0], [1.5, 1.0, 1.0]])
    cfg = NerfConfig(n_levels=2, log2_table_size=8, max_resolution=32)
    state = _v1_nerf_state(cfg, aabb)
    payload = {"format": "taichifield", "version": 1, "kind": "nerf",
               "config": {"model": cfg.to_dict(), "train": {"grid_resolution": 16}, "scene": "x"},
               "state": state, "optimizer": None, "rng": {"torch": torch.get_rng_state(), "generators": []},
               "step": 3, "meta": {"step_size": 0.01, "trainer": {"n_rays": 64, "psnr_ema": 20.0, "base_lr": 5e-3}}}
    torch.save(payload, tmp_path / "ckpt.pt")
    assert load_checkpoint(tmp_path / "ckpt.pt")["version"] == 1
    model = NerfModel.load(tmp_path)
    assert torch.equal(model.grid.density, state["grid.density"]) and torch.equal(model.grid.bits, state["grid.bits"])
    assert model.step == 3 and model.step_size == 0.01
    # the grid's derived box follows the loaded aabb (centre, half extent)
    assert torch.allclose(model.grid._box, torch.tensor([0.0, 0.0, 0.0, 1.5, 1.0, 1.0]))
    assert set(model.state_dict()) == set(state)  # the same layout is written back


def test_occupancy_grid_is_a_module_that_moves_with_to() -> None:
    grid = OccupancyGrid(torch.tensor([[-1.0] * 3, [1.0] * 3]), resolution=8)
    names = dict(grid.named_buffers())
    assert {"density", "bits", "aabb", "config", "params"} <= set(names)
    assert "_box" not in grid.state_dict()  # derived, not saved
    moved = grid.to(torch.device("cpu", 0))
    assert moved.density.device.type == "cpu" and moved is grid
