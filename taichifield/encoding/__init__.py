"""Input encodings for neural fields, each with a Taichi kernel and a pure-torch reference.

* :class:`HashGridEncoding` - Instant-NGP multiresolution hash grid (Mueller et al. 2022).
* :class:`FrequencyEncoding` - NeRF positional encoding (Mildenhall et al. 2020).
* :class:`FourierFeatureEncoding` - random Fourier features (Tancik et al. 2020).
* :class:`SphericalHarmonicsEncoding` - real SH of view directions (Instant-NGP's constants).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "HashGridEncoding": ".hashgrid",
    "FrequencyEncoding": ".frequency",
    "FourierFeatureEncoding": ".fourier",
    "SphericalHarmonicsEncoding": ".sh",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'taichifield.encoding' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
