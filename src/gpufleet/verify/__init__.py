"""gpufleet verify: health checks and benchmark probes per host, judged against per-SKU baselines.

The API is :func:`run` (and :func:`preview`, what it would do); see ``gpufleet.verify.api``.
"""

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
