"""gpufleet verify: health checks and benchmark probes per host, judged against per-SKU baselines.

The API is :func:`run` (and :func:`preview`, what it would do); see ``gpufleet.verify.api``.
"""

from gpufleet import _collection
from gpufleet.verify.api import (
    DEFAULT_DRAIN_STATE,
    DEFAULT_JOBS,
    DEFAULT_TIER,
    DRAIN_KINDS,
    TIERS,
    HostVerdict,
    VerifyPlan,
    VerifyResult,
    preview,
    run,
)

__all__ = [
    "DEFAULT_DRAIN_STATE",
    "DEFAULT_JOBS",
    "DEFAULT_TIER",
    "DRAIN_KINDS",
    "TIERS",
    "HostVerdict",
    "VerifyPlan",
    "VerifyResult",
    "preview",
    "run",
]

# The checks' knowledge lives in the collection's module_utils; make it importable for every submodule.
_collection.ensure_importable()
