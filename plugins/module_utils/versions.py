# Copyright: gpufleet developers
# Apache-2.0
"""Integers and versions read from text, one way for the whole collection.

Host code (stdlib only, Python 3.8): modules and probes on managed hosts use it, and so does the
controller (health checks, compatibility rules), so a number or a driver version reads the same on
both sides of the line.
"""

from __future__ import annotations

import re

# An NVIDIA driver version as nvidia-smi and the packages print it: a three-digit branch, then
# "minor" or "minor.patch" ("550.54", "535.261.03"). Match it with ``fullmatch``.
DRIVER_VERSION = re.compile(r"\d{3}\.\d+(?:\.\d+)?")

_EPOCH = re.compile(r"^\d+:")
_DIGITS = re.compile(r"\d+")


def to_int(value, base=10):
    """``value`` as an int, or None: ints pass through (bools do not), strings are parsed after
    stripping white space (``base`` 16 reads sysfs hex such as ``0x1a``); anything else is None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if not isinstance(value, str):
        return None
    try:
        return int(value.strip(), base)
    except ValueError:
        return None


def is_driver_version(text):
    """True for an NVIDIA driver version (``DRIVER_VERSION``), e.g. ``"550.54.15"``."""
    return bool(DRIVER_VERSION.fullmatch(str(text or "")))


def version_key(version):
    """Sort key of a version string: its runs of digits as ints, after a Debian epoch ("1:").

    ``"535.261.03"`` -> ``(535, 261, 3)``; ``"550.54.15-0ubuntu1"`` -> ``(550, 54, 15, 0, 1)``;
    ``"12.4"`` -> ``(12, 4)``. Never raises: text without digits sorts first, as ``()``.
    """
    text = _EPOCH.sub("", str(version if version is not None else "").strip())
    return tuple(int(p) for p in _DIGITS.findall(text))
