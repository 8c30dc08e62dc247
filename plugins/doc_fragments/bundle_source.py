# Copyright: gpufleet developers
# Apache-2.0
"""The options of every module that reads a bundle from the bastion (its signed manifest checked
against the pinned key): bundle_file, bundle_images, bundle_wheel_requirements."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  url:
    description:
      - Base URL of the bundle on the bastion (C(http://), C(https://) or C(file://)), such as
        C(http://bastion/lab); the manifest is fetched from C(URL/manifest.json).
    type: str
    required: true
  fingerprint:
    description:
      - Fingerprint of the trusted bundle signing key (40 hexadecimal characters; spaces and a C(0x)
        prefix are allowed), usually C(gpufleet_bundle_fingerprint).
    type: str
    required: true
  timeout:
    description:
      - Seconds to wait for the bastion to answer one request.
    type: int
    default: 30
"""
