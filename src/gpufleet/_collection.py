"""Make ``ansible_collections.gpufleet.cluster`` importable from the CLI.

An installed wheel carries the collection in site-packages. In a source checkout the collection is
the repository itself, reached through the ``.collections`` link that ``make venv`` creates, and it
must win over the copy an editable install (``pip install -e .``) puts in site-packages: that copy
is taken once, at install time, and goes stale with the next edit of ``plugins/``.
"""

import os
import sys
from pathlib import Path


def ensure_importable():
    repo = Path(__file__).resolve().parents[2]
    if (repo / "galaxy.yml").is_file():
        link = repo / ".collections" / "ansible_collections" / "gpufleet" / "cluster"
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.relpath(repo, link.parent), link)
        path = str(repo / ".collections")
        if path not in sys.path:
            sys.path.insert(0, path)
