"""Host health checks: one test per check in ``plugin_utils/checks/registry.py``, generated from it.

There is no second table: every registered check is parametrized here with its tier, and
``gpufleet.verify.wiring`` hands it the inputs its registration names. The ``state`` fixture reads
the host once (``gpufleet.verify.collect``); the probes (``test_probes.py``) run on the host.
"""

from __future__ import annotations

import time

import pytest
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import registry

from gpufleet.verify import wiring

_PARAMS = [
    pytest.param(name, id=name, marks=pytest.mark.gpufleet_tier(check.tier))
    for name, check in registry.CHECKS.items()
]


@pytest.mark.parametrize("check", _PARAMS)
def test_check(check, state, hostvars, baseline_overrides, record):
    spec = registry.CHECKS[check]
    started = time.monotonic()
    res = wiring.run(spec, state, hostvars, baseline_overrides)
    record(res, title=spec.title, tier=spec.tier, kind=spec.kind, started=started)
