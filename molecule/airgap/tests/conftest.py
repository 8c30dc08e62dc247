"""Fixtures shared by the airgap scenario's tests (run by Molecule's testinfra verifier, three
pytest-xdist workers)."""

import fcntl
import tempfile
from pathlib import Path

import pytest

# One file per scenario run's machine: every xdist worker is a process on this machine.
SERVING_LOCK = Path(tempfile.gettempdir()) / "gpufleet-airgap-serving.lock"


@pytest.fixture
def serving_lock():
    """Held for the whole test: the serving tests change what the node serves (rollouts, a split, the
    front stopped and started again) and gpufleet verify's tests read it, so no two of them may run at
    once, whichever workers run them. (pytest-xdist's --dist loadgroup with an xdist_group mark was
    tried first: the marked tests still spread over the workers here, so the exclusion is a lock.)"""
    with SERVING_LOCK.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
