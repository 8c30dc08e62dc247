"""Make ``ansible_collections.gpufleet.cluster`` importable from the CLI.

An installed wheel carries the collection in site-packages. In a source checkout
(``pip install -e .``) the collection is the repository itself, reached through the
``.collections`` link that ``make venv`` creates.
"""

import os
import sys
from pathlib import Path


def ensure_importable():
    try:
        import ansible_collections.gpufleet.cluster.plugins.module_utils  # noqa: F401
    except ImportError:
        pass
    else:
        return
    repo = Path(__file__).resolve().parents[2]
    link = repo / ".collections" / "ansible_collections" / "gpufleet" / "cluster"
    if (repo / "galaxy.yml").is_file():
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.relpath(repo, link.parent), link)
        sys.path.insert(0, str(repo / ".collections"))
