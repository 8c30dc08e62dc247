# Copyright: gpufleet developers
# Apache-2.0
"""Controller side of the GPU stack's receipt (gpufleet apply --fast): the inputs digest.

A receipt (plugins/module_utils/stack_receipt.py, written on the host) holds only for the inputs it
was recorded with: the settings the run was given and the collection's own content. Changing either
(another driver branch, an edited role, an upgraded collection) makes the next --fast run full.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

COLLECTION = Path(__file__).resolve().parents[2]
# What decides what a run does on a host: the roles, the plugins (modules, filters, knowledge) and
# the playbooks. Documentation and tests are left out.
CONTENT = ("roles", "plugins", "playbooks", "galaxy.yml")
_content_cache: dict[str, str] = {}


def content_digest(root: Path | None = None) -> str:
    """sha256 over the relative path and bytes of every file of the collection's CONTENT."""
    root = COLLECTION if root is None else root
    key = str(root)
    if key not in _content_cache:
        digest = hashlib.sha256()
        for part in CONTENT:
            top = root / part
            files = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
            for path in files:
                if "__pycache__" in path.parts or path.suffix == ".pyc":
                    continue
                digest.update(str(path.relative_to(root)).encode() + b"\0")
                digest.update(path.read_bytes() + b"\0")
        _content_cache[key] = digest.hexdigest()
    return _content_cache[key]


def stack_receipt_inputs(settings: dict) -> str:
    """The inputs digest of a run: its settings (a mapping of variable name to value, as the play
    sees them) and the collection's content. Key order does not matter; any value change does."""
    if not isinstance(settings, dict):
        kind = type(settings).__name__
        raise TypeError(f"stack_receipt_inputs: expected a mapping of settings, got {kind}")
    text = json.dumps(settings, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(f"{content_digest()}\n{text}".encode()).hexdigest()
