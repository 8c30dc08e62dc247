"""Files gpufleet writes: whole or not at all, so no reader ever sees half of one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomic(path, text: str | bytes, mode: int = 0o644) -> Path:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never a part.

    The text goes to a hidden temporary file in the same directory (same file system), is flushed
    to disk, then renamed over ``path`` with ``os.replace``. Parent directories are created. The
    temporary name ends in ``.tmp``, so node_exporter's textfile collector (``*.prom``) never reads
    it; it is removed if anything fails. No other file is touched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if isinstance(text, bytes):
            handle = os.fdopen(fd, "wb")
        else:
            handle = os.fdopen(fd, "w", encoding="utf-8", errors="replace", newline="")
        with handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path
