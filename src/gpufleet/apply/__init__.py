"""gpufleet apply: a playbook on a fleet through ansible-runner, with a live view and a record per run.

The API is :func:`run` (``gpufleet.apply.api``); the host model is ``gpufleet.apply.state`` and the
terminal view ``gpufleet.apply.view``.
"""

from gpufleet.apply.api import (
    DEFAULT_RUNS_DIR,
    EXIT_CODES,
    ApplyInputError,
    ApplyResult,
    resolve_inventory,
    resolve_playbook,
    run,
)
from gpufleet.apply.state import FleetState, HostState

__all__ = [
    "DEFAULT_RUNS_DIR",
    "EXIT_CODES",
    "ApplyInputError",
    "ApplyResult",
    "FleetState",
    "HostState",
    "resolve_inventory",
    "resolve_playbook",
    "run",
]
