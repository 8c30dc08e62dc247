"""gpufleet upgrade: a rolling upgrade of the GPU nodes in batches, with a report per host.

The API is :func:`run` (``gpufleet.upgrade.api``); the report is built from the run's events by
``gpufleet.upgrade.report``. The playbook is ``playbooks/upgrade.yml`` (``gpufleet.cluster.upgrade``).
"""

from gpufleet.upgrade.api import EXIT_CODES, UpgradeInputError, UpgradeResult, new_run_id, run

__all__ = ["EXIT_CODES", "UpgradeInputError", "UpgradeResult", "new_run_id", "run"]
