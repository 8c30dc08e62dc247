# Copyright: gpufleet developers
# Apache-2.0
"""Offline bundle filters. OpenPGP parsing lives in module_utils/bundle.py; each filter has the
name of the function it exposes and its own documentation (``<name>.yml`` next to this file)."""

from __future__ import annotations

import base64
import binascii

from ansible.errors import AnsibleFilterError
from ansible_collections.gpufleet.cluster.plugins.module_utils import bundle


def pgp_fingerprint(key):
    """Fingerprint of the primary key in an OpenPGP public key: armored text (a lookup('file') of a
    .asc), binary bytes, or the base64 of the binary key (what ansible.builtin.slurp returns)."""
    if isinstance(key, str) and "-----BEGIN PGP " not in key:
        try:
            key = base64.b64decode("".join(key.split()), validate=True)
        except (binascii.Error, ValueError):
            raise AnsibleFilterError(
                "pgp_fingerprint expects an armored OpenPGP key (-----BEGIN PGP PUBLIC KEY BLOCK-----) "
                "or the base64 of a binary one (slurp's content)"
            ) from None
    try:
        return bundle.pgp_fingerprint(key)
    except bundle.BundleError as exc:
        raise AnsibleFilterError(f"pgp_fingerprint: {exc}") from None


class FilterModule:
    def filters(self):
        return {"pgp_fingerprint": pgp_fingerprint}
