"""Make the repository importable as the collection ``gpufleet.cluster``.

Ansible plugins import each other as ``ansible_collections.gpufleet.cluster...``. Inside the
repository that namespace is provided by ``.collections/ansible_collections/gpufleet/cluster``,
a link back to the repository root (``make venv`` creates it; so does this file, idempotently).
"""

import importlib
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COLLECTIONS = REPO / ".collections"
LINK = COLLECTIONS / "ansible_collections" / "gpufleet" / "cluster"

if not LINK.exists():
    LINK.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(REPO, LINK.parent), LINK)

if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))

FIXTURES = REPO / "tests" / "fixtures"


def collection_filters():
    """{filter name: (plugin file stem, function)} over every plugins/filter/*.py, as the collection's
    FilterModule classes register them (the short name; roles call them gpufleet.cluster.<name>)."""
    found = {}
    for path in sorted((REPO / "plugins" / "filter").glob("*.py")):
        module = importlib.import_module(f"ansible_collections.gpufleet.cluster.plugins.filter.{path.stem}")
        for name, func in module.FilterModule().filters().items():
            assert name not in found, f"filter {name} registered by both {found[name][0]} and {path.stem}"
            found[name] = (path.stem, func)
    return found


def playbook_env(**settings):
    """The environment for a test's own ansible-playbook run on this machine: the checkout's
    ansible.cfg and collection, no warning about the implicit localhost, plus ``settings``
    (``ANSIBLE_*`` names to values)."""
    return {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections"),
        "ANSIBLE_LOCALHOST_WARNING": "false",
        **settings,
    }
