"""gpufleet: GPU fleet provisioning and verification."""

__version__ = "0.1.0"
