"""gpufleet verify: health checks and benchmark probes per host, judged against per-SKU baselines."""
