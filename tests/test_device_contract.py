"""The one device rule, checked without a GPU.

* ``same_device`` compares type and index; ``check_device`` refuses mixed or foreign devices.
* With the runtime's device spelled with an index (``torch.device("cpu", 0)``, as a CUDA
  runtime's is ``cuda:0``), everything still runs: a device compared by its spelled name
  (``cpu:0 != cpu``) or a tensor moved behind the caller's back would fail here exactly as
  ``cuda != cuda:0`` failed on GPUs.
* A training step makes at most one host sync outside its logging interval (counted on the
  CPU with :class:`sync_counter.CountHostSyncs`).
"""

from __future__ import annotations


import pytest
import torch

from taichifield import runtime
from taichifield.errors import DeviceError
from sync_counter import CountHostSyncs
from tiny_scenes import lego_scene

INDEXED = torch.device("cpu", 0)


def test_same_device_compares_type_and_index() -> None:
    assert runtime.same_device("cpu", torch.device("cpu", 0))
    assert runtime.same_device(torch.zeros(1), "cpu:0")
    assert runtime.same_device("cuda:1", torch.device("cuda", 1))
    assert not runtime.same_device("cuda:0", "cuda:1")
    assert not runtime.same_device("cpu", "cuda:0")
    assert not runtime.same_device("cpu", "meta")


def test_check_device_refuses_mixed_and_foreign_devices() -> None:
    cpu = torch.zeros(3)
    assert runtime.check_device(cpu, None, cpu).type == "cpu"
    with pytest.raises(DeviceError, match="meta"):
        runtime.check_device(torch.empty(3, device="meta"), what="test")
    with pytest.raises(DeviceError, match="one device"):
        runtime.check_device(cpu, torch.empty(3, device="meta"))


def test_hash_grid_refuses_a_foreign_device_with_one_line() -> None:
    from taichifield.encoding import HashGridEncoding

    enc = HashGridEncoding(n_levels=2, log2_table_size=8, max_resolution=32)
    with pytest.raises(DeviceError, match="HashGridEncoding"):
        enc(torch.empty(4, 3, device="meta"))


@pytest.fixture
def indexed_runtime(monkeypatch: pytest.MonkeyPatch) -> torch.device:
    """The runtime reports its device with an index, as a CUDA runtime does (``cuda:0``)."""
    runtime.ensure_init()
    monkeypatch.setattr(runtime, "device", lambda: INDEXED)
    return INDEXED


def test_hash_grid_on_an_indexed_device(indexed_runtime: torch.device) -> None:
    from taichifield.encoding import HashGridEncoding
    from taichifield.encoding.hashgrid_torch import hashgrid_reference

    enc = HashGridEncoding(n_levels=4, log2_table_size=10, max_resolution=64).to(indexed_runtime)
    x = torch.rand(100, 3, device=indexed_runtime)
    out = enc(x)
    ref = hashgrid_reference(x, enc.table, enc.meta, enc.log2_table_size, enc.n_features)
    assert torch.allclose(out, ref, atol=1e-6)
    out.sum().backward()
    assert enc.table.grad is not None and enc.table.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory):  # type: ignore[no-untyped-def]
    return lego_scene(tmp_path_factory.mktemp("lego_device"), 16, train=6, test=1, render=("train", "val", "test"))


def _nerf_config(scene: str, out, steps: int, **kw):  # type: ignore[no-untyped-def]
    from taichifield.fields.nerf import NerfConfig
    from taichifield.train.nerf import NerfTrainConfig

    base = dict(scene=scene, out=str(out), steps=steps, model=NerfConfig(n_levels=4, log2_table_size=10, max_resolution=64),
                target_samples=1 << 11, grid_resolution=16, render_steps=64, eval_views=1, grid_start=1,
                progress_images=False)
    return NerfTrainConfig(**{**base, **kw})


def test_nerf_train_render_and_mesh_on_an_indexed_device(indexed_runtime, tiny_scene, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from taichifield.pipelines.nerf import NerfModel
    from taichifield.train.nerf import run_train_nerf

    res = run_train_nerf(_nerf_config(tiny_scene, tmp_path / "run", 20))
    assert res.step == 20 and res.test_psnr is not None and res.test_psnr > 5.0
    model = NerfModel.load(tmp_path / "run")
    assert model.device.type == "cpu"
    img = model.render_view(torch.eye(4), 6, 4, 8.0, 8.0, 3.0, 2.0)
    assert img.shape == (4, 6, 3) and torch.isfinite(img).all()


def test_sdf_train_and_mesh_on_an_indexed_device(indexed_runtime, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    from taichifield.geometry.extract import extract_mesh
    from taichifield.train.sdf import SDFTrainConfig, load_sdf, train_sdf

    rng = np.random.default_rng(0)
    n = rng.normal(size=(2000, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    np.savetxt(tmp_path / "ball.xyz", np.hstack([0.5 * n, n]))
    res = train_sdf(tmp_path / "ball.xyz", tmp_path / "run", SDFTrainConfig(steps=30, batch_size=128))
    assert res.step == 30
    sdf = load_sdf(tmp_path / "run")
    verts, faces = extract_mesh(sdf, 32, sdf.bbox())
    assert len(faces) > 0


def test_sphere_trace_on_an_indexed_device(indexed_runtime) -> None:
    from taichifield.render.sphere_trace import sphere_trace

    o = torch.tensor([[0.0, 0.0, 3.0]], device=indexed_runtime).repeat(8, 1)
    d = torch.tensor([[0.0, 0.0, -1.0]], device=indexed_runtime).repeat(8, 1)
    t, hit = sphere_trace(lambda p: p.norm(dim=-1) - 1.0, o, d, near=0.0, far=6.0)
    assert hit.all() and torch.allclose(t, torch.full_like(t, 2.0), atol=1e-3)


@pytest.mark.parametrize("cull", [False, True], ids=["gpu-preset", "cpu-preset"])
def test_a_nerf_step_syncs_at_most_once_outside_logging(tiny_scene, tmp_path, monkeypatch, cull) -> None:  # type: ignore[no-untyped-def]
    from taichifield.render import volrend
    from taichifield.train.nerf import NerfTrainer

    # pack_info checks its indices only for CPU tensors (free there); a GPU step skips that
    monkeypatch.setattr(volrend, "_validate_on_cpu", False)
    trainer = NerfTrainer(_nerf_config(tiny_scene, tmp_path / "run", 100, cull_samples=cull))
    for step in range(3):  # past the first grid update, so every path of the step has run
        trainer.step(step)
    counts = []
    for step in range(16, 20):  # 16: a grid update step
        with CountHostSyncs() as c:
            trainer.step(step)
        counts.append((c.total, dict(c.calls)))
    allowed = 2 if cull else 1  # marched-sample count (+ the culled-sample count)
    assert all(total <= allowed for total, _ in counts), counts


def test_an_sdf_step_makes_no_host_sync(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    from taichifield.train.sdf import SDFTrainConfig, SDFTrainer

    rng = np.random.default_rng(1)
    n = rng.normal(size=(1000, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    np.savetxt(tmp_path / "ball.xyz", np.hstack([0.5 * n, n]))
    cfg = SDFTrainConfig(steps=10, batch_size=64, lr=1e-2, uniform_fraction=0.5, far_weight=1.0)
    trainer = SDFTrainer(tmp_path / "ball.xyz", tmp_path, cfg, None)
    trainer.step(0)
    with CountHostSyncs() as c:
        trainer.step(1)
    assert c.total == 0, dict(c.calls)
