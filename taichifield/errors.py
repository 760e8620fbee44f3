"""Exceptions that carry a one-line, user-facing message.

The CLI catches :class:`TaichiFieldError` and prints ``error: <message>`` with a
non-zero exit code and no traceback. Library code raises the most specific
subclass and puts the offending file and the problem into the message.
"""

from __future__ import annotations

__all__ = [
    "TaichiFieldError",
    "InputError",
    "CheckpointError",
    "ArchError",
    "ResourceError",
    "DeviceError",
]


class TaichiFieldError(Exception):
    """Base class: an error whose message is fit to show a user as is."""


class InputError(TaichiFieldError, ValueError):
    """A user-supplied file or argument is missing, malformed or inconsistent."""


class CheckpointError(TaichiFieldError):
    """A checkpoint is not a taichifield checkpoint, of the wrong kind or version."""


class ArchError(TaichiFieldError):
    """An unknown Taichi arch, or one that is not available on this machine."""


class ResourceError(TaichiFieldError):
    """A request would exceed memory or another resource; refused up front."""


class DeviceError(TaichiFieldError, ValueError):
    """Tensors on different devices, or on a device the running Taichi arch cannot use."""
