"""Entry point: ``taichifield``. Imports each domain module so its commands register."""

from __future__ import annotations

import importlib
import logging

from .apps import app

# Each module registers its commands on the groups in .apps; missing ones are skipped so
# a partial checkout still has a working CLI.
_COMMAND_MODULES = ("image", "nerf", "sdf", "geometry", "view", "bench")


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
