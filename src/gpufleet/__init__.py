"""gpufleet: GPU fleet provisioning and verification."""

from gpufleet import _collection

__version__ = "0.1.0"

# The one place the collection namespace is made importable: every submodule loads after this
# package, so it may import ``ansible_collections.gpufleet.cluster`` at its top like any library.
_collection.ensure_importable()
