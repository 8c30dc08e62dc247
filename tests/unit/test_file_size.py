"""The house rule from the architecture issue: no Python file of the product over 600 lines. A file
that grows past it gets split by topic (as compat -> compat, compat_matrix, compat_torch), because
the big files are where duplicated preambles and mixed concerns hid before."""

import subprocess

from conftest import REPO

LIMIT = 600


def test_no_product_python_file_is_over_600_lines():
    files = subprocess.run(
        ["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    product = [f for f in files if not f.startswith("tests/")]
    assert len(product) > 50, "git ls-files found too few files; is this a checkout?"
    over = {}
    for name in product:
        with open(REPO / name, encoding="utf-8") as handle:
            count = sum(1 for _ in handle)
        if count >= LIMIT:
            over[name] = count
    assert not over, f"split these by topic (limit {LIMIT} lines): {over}"
