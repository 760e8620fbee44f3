"""The encodings benchmark script runs end to end (tiny sizes; speed itself is not tested)."""

from __future__ import annotations

from typer.testing import CliRunner


def test_bench_encodings_cli_prints_table():
    from taichifield.cli.main import app

    res = CliRunner().invoke(app, ["bench", "encodings", "--points", "256", "--log2-sizes", "8",
                                   "--repeats", "1", "--arch", "cpu"])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("| ")]
    assert lines[0].startswith("| encoding | config")
    names = [ln.split("|")[1].strip() for ln in lines[1:]]
    assert names == ["hashgrid", "frequency", "sh"]
    assert all(ln.rstrip().endswith("x |") for ln in lines[1:])
