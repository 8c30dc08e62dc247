"""gpufleet verify: health checks and benchmark probes per host, judged against per-SKU baselines."""

from gpufleet import _collection

# The checks' knowledge lives in the collection's module_utils; make it importable for every submodule.
_collection.ensure_importable()
