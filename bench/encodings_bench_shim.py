"""Import bench/encodings.py under another name: as ``encodings`` it would shadow the
standard library's codec package for any script run from bench/."""

import importlib.util
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location("tf_bench_encodings", Path(__file__).with_name("encodings.py"))
_mod = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
sys.modules[_spec.name] = _mod  # dataclasses look their module up there
_spec.loader.exec_module(_mod)  # type: ignore[union-attr]
run = _mod.run
