"""Model packaging: ``gpufleet model add`` hashes a model directory into a signed model manifest,
``gpufleet model verify`` checks one against the pinned bundle key.

The format, the chunk hashing and the signature check live once in the collection's
``plugins/module_utils/model_manifest.py`` (shared with the ``model_fetch`` module on the nodes);
signing reuses the bundle key (``gpufleet.bundle.signing``).
"""

from gpufleet.errors import GpufleetError


class ModelCommandError(GpufleetError):
    """A model directory, manifest or key problem the user can fix."""


class ModelVerifyFailed(ModelCommandError):
    exit_code = 1
