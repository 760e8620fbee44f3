"""Entry point: ``taichifield``. Imports each domain module so its commands register."""

from __future__ import annotations

import importlib
import logging
import os

# torch's OpenMP threads spin while they wait; on a 2-core machine whose other core is busy
# that made the NeRF MLPs 1.4-4.6x slower (bench nerf-throughput), at no cost when idle.
# A command line tool may choose this for its process; the library does not.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .apps import app  # noqa: E402

# Each module registers its commands on the groups in .apps; missing ones are skipped so
# a partial checkout still has a working CLI.
_COMMAND_MODULES = ("image", "nerf", "sdf", "neus", "geometry", "scene", "poses", "view", "bench")


def _register() -> None:
    for name in _COMMAND_MODULES:
        try:
            importlib.import_module(f"{__package__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{name}":
                raise


_register()


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    main()
