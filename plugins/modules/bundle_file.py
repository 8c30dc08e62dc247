#!/usr/bin/python
# Copyright: gpufleet developers
# Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: bundle_file
short_description: Download one pinned file of the bundle, checked against its signed manifest
version_added: 0.1.0
description:
  - Downloads C(manifest.json), C(manifest.json.asc) and C(keys/gpufleet-bundle.gpg) from the bundle at
    O(url) (the bastion) and checks with C(gpgv) that the manifest is signed by the key pinned by
    O(fingerprint) and names that key, exactly as M(gpufleet.cluster.bundle_wheel_requirements) does; a
    manifest that is unsigned, altered or signed by another key is refused and nothing is written.
  - Then downloads C(URL/files/NAME) (a file the bundle profile's C(files) pinned) to O(dest) and keeps it
    only when its sha256 is the one the verified manifest lists for C(files/NAME); it is written to a
    temporary file beside O(dest) and renamed into place, so O(dest) is never a partial or unchecked file.
  - When O(dest) already has that sha256 nothing is downloaded and nothing changes.
author:
  - gpufleet developers
extends_documentation_fragment:
  - gpufleet.cluster.bundle_source
options:
  name:
    description:
      - The file's name under C(files/) in the bundle (the bundle profile's C(files[].name)).
    type: str
    required: true
  dest:
    description:
      - Where to put the file on the host (mode C(0644)); its directory is created when missing.
    type: path
    required: true
attributes:
  check_mode:
    support: full
    description: Verifies the manifest and reports whether O(dest) would change; downloads nothing.
  diff_mode:
    support: full
    description: Shows the old and new sha256 of O(dest).
notes:
  - Needs C(gpgv) on the managed host (Debian package C(gpgv), installed by default).
  - The logic lives in the collection's C(bundle_remote) module utils.
seealso:
  - module: gpufleet.cluster.bundle_wheel_requirements
  - module: gpufleet.cluster.bundle_verify
"""

EXAMPLES = r"""
- name: Take the conda-pack archive from the bundle, checked against the signed manifest
  gpufleet.cluster.bundle_file:
    url: "http://{{ groups['bastion'][0] }}/{{ gpufleet_bundle_name }}"
    fingerprint: "{{ gpufleet_bundle_fingerprint }}"
    name: torch-env.tar.gz
    dest: /var/cache/gpufleet/python_runtime/torch-env.tar.gz
"""

RETURN = r"""
dest:
  description: The file on the host.
  returned: success
  type: str
  sample: /var/cache/gpufleet/python_runtime/torch-env.tar.gz
sha256:
  description: The file's sha256, from the verified manifest (and that of O(dest) after the task).
  returned: success
  type: str
  sample: 9f2c5d0b0a4d1f6f3c1b8e0d7a6c5b4a392817161514131211100f0e0d0c0b0a
size:
  description: The file's size in bytes, from the verified manifest.
  returned: success
  type: int
  sample: 1048576
bundle:
  description: The bundle's name, from its manifest.
  returned: success
  type: str
  sample: lab
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url
from ansible_collections.gpufleet.cluster.plugins.module_utils.bundle import BundleError
from ansible_collections.gpufleet.cluster.plugins.module_utils.bundle_remote import (
    SOURCE_SPEC,
    download_verified,
    file_entry,
    file_sha256,
    remote_manifest,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            **SOURCE_SPEC,
            name=dict(type="str", required=True),
            dest=dict(type="path", required=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    url = p["url"].strip()
    if not url:
        module.fail_json(
            msg="url is empty: set it to the bundle's base URL on the bastion (offline_repo_url, "
            "recorded on the node by the offline_repo role)"
        )
    try:
        manifest = remote_manifest(
            url, p["fingerprint"], p["timeout"], open_url, gpgv=module.get_bin_path("gpgv") or "gpgv"
        )
        entry = file_entry(manifest, p["name"])
        sha256 = entry["sha256"].lower()
        before = file_sha256(p["dest"])
        changed = before != sha256
        if changed and not module.check_mode:
            download_verified(f"{url.rstrip('/')}/{entry['path']}", p["dest"], sha256, p["timeout"], open_url)
    except BundleError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg=f"{p['dest']} cannot be read or written: {exc.strerror or exc}")
    result = dict(
        changed=changed, dest=p["dest"], sha256=sha256, size=entry["size"], bundle=manifest.get("name")
    )
    if module._diff:
        result["diff"] = dict(
            before=f"sha256 {before}\n" if before else "",
            after=f"sha256 {sha256}\n",
            before_header=p["dest"],
            after_header=p["dest"],
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
