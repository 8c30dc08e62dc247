"""Molecule scenario files: what Molecule itself would only reject after a converge."""

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1].parent
SCENARIOS = [*sorted(REPO.glob("molecule/*/molecule.yml")), REPO / ".config" / "molecule" / "config.yml"]


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: str(p.relative_to(REPO)))
def test_verifier_options_are_strings_or_flags(path):
    """Molecule turns verifier options into a command line with shlex.join: an int (n: 3) raises
    TypeError at the verify step, after the whole converge has run."""
    options = ((yaml.safe_load(path.read_text()) or {}).get("verifier") or {}).get("options") or {}
    bad = {k: v for k, v in options.items() if not isinstance(v, (str, bool))}
    assert not bad, f"{path.relative_to(REPO)}: quote these verifier options: {bad}"
