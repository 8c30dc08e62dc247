"""In a source checkout the CLI imports the checkout's own collection, never the stale copy an
editable install leaves in site-packages."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_checkout_collection_wins_over_an_installed_copy(tmp_path):
    code = (
        "import gpufleet, ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks as c; "
        "print(c.__file__)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ANSIBLE_COLLECTIONS_PATH")}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    )
    loaded = Path(out.stdout.strip()).resolve()
    assert loaded.is_relative_to(REPO.resolve()), loaded
    assert "site-packages" not in loaded.parts
