"""Count the host syncs a block of torch code would make on a GPU, on any device.

A ``TorchFunctionMode`` sees every tensor method and torch function call. The calls counted
are the ones that need a tensor's value on the host (``item``, ``bool``/``int``/``float``,
``tolist``, ``numpy``, ``nonzero``, boolean-mask indexing, ``masked_select``, copies to the
CPU): on CUDA each is a device-to-host sync, on the CPU it is free, so counting them on the
CPU tells what a GPU run would pay. Taichi kernels that return a value would sync too; the
project's kernels return none.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

_VALUE_READS = {"item", "__bool__", "__int__", "__float__", "__index__", "tolist", "numpy",
                "nonzero", "argwhere", "masked_select", "unique", "bincount"}


class CountHostSyncs(TorchFunctionMode):
    """``with CountHostSyncs() as c: ...`` then ``c.total`` and ``c.calls`` (name -> count)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        if name in _VALUE_READS:
            self.calls[name] += 1
        elif name == "__getitem__" and len(args) > 1 and _has_bool_index(args[1]):
            self.calls["bool-mask index"] += 1
        elif name == "cpu":  # (a ``.to(device)`` is not counted: on the CPU it cannot tell a no-op from a copy)
            self.calls["copy to host"] += 1
        return func(*args, **kwargs)


def _has_bool_index(index: Any) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in items)
