# Copyright: gpufleet developers
# Apache-2.0
"""Files modules write on the host, written whole or not at all.

Host code: stdlib only, Python >= 3.8 (Ansible ships it to hosts).
"""

from __future__ import annotations

import os
import tempfile


def write_atomically(dest, text, mode=0o644):
    """``text`` into ``dest``: written to a temporary file beside it, synced, given ``mode`` and renamed
    into place, so a reader (or a power loss) sees the old file or the new one, never a part. The
    directory is made when missing; on any error the temporary file is removed and the error raised."""
    directory = os.path.dirname(dest) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".gpufleet-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
