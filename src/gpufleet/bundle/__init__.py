"""Offline bundles: build a signed, self-verifying bundle from a profile, verify it, diff it.

The verification core (manifest, hashes, signature, key fingerprints) lives once in
``plugins/module_utils/bundle.py`` so the bastion's Ansible module and this CLI agree exactly.
"""

from gpufleet.errors import GpufleetError


class BundleBuildError(GpufleetError):
    """A profile or build problem the user can fix."""
