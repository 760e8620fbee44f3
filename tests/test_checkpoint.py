"""Checkpoints are data: versioned schema, weights_only loading, atomic writes."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import pytest
import torch

from taichifield.errors import CheckpointError
from taichifield.train.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint


def _save(path, **kw):
    args = dict(kind="sdf", config={"lr": 1e-3, "model": "relu"}, state={"w": torch.arange(6.0).reshape(2, 3)})
    args.update(kw)
    return save_checkpoint(path, **args)


def test_roundtrip_with_optimizer_and_rng(tmp_path):
    w = torch.nn.Parameter(torch.randn(4))
    opt = torch.optim.Adam([w], lr=1e-2)
    (w * w).sum().backward()
    opt.step()
    path = _save(tmp_path / "ckpt.pt", optimizer=opt.state_dict(), rng={"torch": torch.get_rng_state()}, step=7,
                 meta={"psnr": 30.5})
    data = load_checkpoint(tmp_path, kind="sdf")  # a run folder is accepted
    assert data["step"] == 7 and data["version"] == FORMAT_VERSION and data["meta"]["psnr"] == 30.5
    torch.testing.assert_close(data["state"]["w"], torch.arange(6.0).reshape(2, 3))
    opt2 = torch.optim.Adam([torch.nn.Parameter(torch.zeros(4))], lr=1e-2)
    opt2.load_state_dict(data["optimizer"])
    torch.testing.assert_close(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert path.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_wrong_kind_is_refused(tmp_path):
    _save(tmp_path / "ckpt.pt", kind="nerf")
    with pytest.raises(CheckpointError, match="'nerf' checkpoint, expected 'sdf'"):
        load_checkpoint(tmp_path / "ckpt.pt", kind="sdf")


def test_future_version_is_refused(tmp_path):
    path = tmp_path / "ckpt.pt"
    _save(path)
    data = torch.load(path, weights_only=True)
    data["version"] = FORMAT_VERSION + 1
    torch.save(data, path)
    with pytest.raises(CheckpointError, match="newer than this taichifield supports"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04truncated"])
def test_garbage_is_a_clear_error(tmp_path, content):
    path = tmp_path / "ckpt.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)


def test_other_torch_file_is_refused(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"w": torch.ones(2)}, path)
    with pytest.raises(CheckpointError, match="not a taichifield checkpoint"):
        load_checkpoint(path)


def test_truncated_checkpoint_is_refused(tmp_path):
    path = tmp_path / "ckpt.pt"
    _save(path)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


class _Evil:
    """Unpickling this would run os.system and create a file."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_malicious_pickle_does_not_execute(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "ckpt.pt"
    payload = {"format": "taichifield", "version": 1, "kind": "sdf", "config": {}, "state": {}, "x": _Evil(str(marker))}
    torch.save(payload, path)
    # sanity: a plain unpickle of this file WOULD create the marker
    with zipfile.ZipFile(path) as zf:
        name = next(n for n in zf.namelist() if n.endswith("data.pkl"))
        raw = zf.read(name)
    code = f"import pickle, sys; pickle.loads({raw!r})"
    subprocess.run([sys.executable, "-c", code], check=False)
    assert marker.exists(), "the crafted payload is not actually malicious; the test would prove nothing"
    marker.unlink()
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not marker.exists()


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "ckpt.pt"
    _save(path, step=1)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("boom during pickling")

    with pytest.raises(RuntimeError, match="boom"):
        save_checkpoint(path, kind="sdf", config={}, state={}, meta={"x": Boom()})
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]


def test_atomic_output_has_normal_permissions(tmp_path):
    from taichifield.atomic import atomic_path

    umask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "a.txt") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(umask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644


def test_atomic_output_sweeps_temporaries_of_killed_writers(tmp_path):
    import subprocess
    import sys

    from taichifield.atomic import atomic_path

    # a writer that dies by SIGKILL inside atomic_path leaves its temporary behind
    code = (
        "import os, signal, sys\n"
        "from taichifield.atomic import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n"
        "    tmp.write_text('half')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "mesh.ply")])
    assert proc.returncode == -9
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".mesh.") and leftovers[0].endswith(".tmp.ply")
    # a temporary of a live writer (this process) and another file's temporary stay
    (tmp_path / f".mesh.{os.getpid()}.abc.tmp.ply").write_text("in progress")
    (tmp_path / ".other.1.abc.tmp.ply").write_text("not ours")
    with atomic_path(tmp_path / "mesh.ply") as tmp:
        tmp.write_text("whole")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([".other.1.abc.tmp.ply", f".mesh.{os.getpid()}.abc.tmp.ply", "mesh.ply"])
    assert (tmp_path / "mesh.ply").read_text() == "whole"
