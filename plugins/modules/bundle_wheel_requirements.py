#!/usr/bin/python
# Copyright: gpufleet developers
# Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: bundle_wheel_requirements
short_description: Write pip requirements with sha256 pins from a bundle's signed manifest
version_added: 0.1.0
description:
  - Downloads C(manifest.json), C(manifest.json.asc) and C(keys/gpufleet-bundle.gpg) from the bundle at
    O(url) (the bastion), checks with C(gpgv) that the manifest is signed by the key pinned by
    O(fingerprint) and names that key, exactly as M(gpufleet.cluster.bundle_verify) does; a manifest
    that is unsigned, altered or signed by another key is refused and nothing is written.
  - Writes to O(dest) one line C(NAME==VERSION --hash=sha256:HEX) for each wheel of O(packages) and for
    each wheel they depend on in the bundle (the manifest's C(requires), and C(extras) for the extras asked
    for; such a line is C(NAME[EXTRA]==VERSION --hash=sha256:HEX)), sorted. C(pip install
    --require-hashes -r DEST) then refuses any wheel the bastion, or anything between it and the node,
    serves with another sha256.
  - O(dest) is replaced by a rename only when its content changes (mode C(0644)).
author:
  - gpufleet developers
extends_documentation_fragment:
  - gpufleet.cluster.bundle_source
options:
  packages:
    description:
      - Wheels to install, as C(NAME) or C(NAME==VERSION), each optionally with extras after the name
        (C(NAME[EXTRA,...]==VERSION)); names and extras compared as PEP 503 and PEP 685 normalize them.
        A wheel the bundle does not carry, or carries in another version, fails the task.
      - An extra brings the wheels the manifest records for it (C(extras) on the wheel's entry); an extra
        the bundle was not built with fails the task, naming the profile line to add.
    type: list
    elements: str
    required: true
  dest:
    description:
      - Path of the requirements file to write.
    type: path
    required: true
attributes:
  check_mode:
    support: full
    description: Verifies the manifest and reports whether O(dest) would change.
  diff_mode:
    support: full
    description: Shows the old and new content of O(dest).
notes:
  - Needs C(gpgv) on the managed host (Debian package C(gpgv), installed by default).
  - The bundle must have been built by a gpufleet that records wheel dependencies (C(requires) in the
    manifest); an older bundle fails with a message to rebuild it.
  - The logic lives in the collection's C(bundle_wheels), C(bundle_remote) and C(bundle) module utils.
seealso:
  - module: gpufleet.cluster.bundle_verify
"""

EXAMPLES = r"""
- name: Pin the cuDNN wheel and its dependencies to the signed manifest
  gpufleet.cluster.bundle_wheel_requirements:
    url: "http://{{ groups['bastion'][0] }}/{{ gpufleet_bundle_name }}"
    fingerprint: "{{ gpufleet_bundle_fingerprint }}"
    packages: [nvidia-cudnn-cu12==9.1.0.70]
    dest: /opt/gpufleet/venv/gpufleet-cuda_toolkit-requirements.txt

- name: Install exactly those wheels, each checked against its pinned hash
  ansible.builtin.pip:
    requirements: /opt/gpufleet/venv/gpufleet-cuda_toolkit-requirements.txt
    extra_args: --require-hashes
    virtualenv: /opt/gpufleet/venv
    virtualenv_command: python3 -m venv
"""

RETURN = r"""
lines:
  description: The requirement lines written to O(dest) (or, in check mode, that would be).
  returned: success
  type: list
  elements: str
  sample:
    - filelock==3.16.1 --hash=sha256:2fc8da60df463fdefa81e323eef2e36489e1c94335b5358bcb38360adf75ac9b
    - mpmath==1.3.0 --hash=sha256:165764f44ef8c61fcdfdfdbe769d687e06374059fbb388b6c89ecb0e28793a6f
dest:
  description: The requirements file.
  returned: success
  type: str
  sample: /opt/gpufleet/venv/gpufleet-cuda_toolkit-requirements.txt
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
    remote_manifest,
)
from ansible_collections.gpufleet.cluster.plugins.module_utils.bundle_wheels import wheel_requirements
from ansible_collections.gpufleet.cluster.plugins.module_utils.host_files import write_atomically

HEADER = "# Written by gpufleet from the bundle's signed manifest: pip install --require-hashes -r THIS\n"


def main():
    module = AnsibleModule(
        argument_spec=dict(
            **SOURCE_SPEC,
            packages=dict(type="list", elements="str", required=True),
            dest=dict(type="path", required=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if not p["url"].strip():
        module.fail_json(
            msg="url is empty: set it to the bundle's base URL on the bastion (offline_repo_url, "
            "recorded on the node by the offline_repo role)"
        )
    try:
        manifest = remote_manifest(
            p["url"].strip(),
            p["fingerprint"],
            p["timeout"],
            open_url,
            gpgv=module.get_bin_path("gpgv") or "gpgv",
        )
        lines = wheel_requirements(manifest, p["packages"])
    except BundleError as exc:
        module.fail_json(msg=str(exc))
    content = HEADER + "".join(line + "\n" for line in lines)
    try:
        with open(p["dest"]) as handle:
            before = handle.read()
    except FileNotFoundError:
        before = None
    except OSError as exc:
        module.fail_json(msg=f"{p['dest']} cannot be read: {exc.strerror}")
    changed = before != content
    result = dict(changed=changed, lines=lines, dest=p["dest"], bundle=manifest.get("name"))
    if module._diff:
        result["diff"] = dict(
            before=before or "", after=content, before_header=p["dest"], after_header=p["dest"]
        )
    if changed and not module.check_mode:
        try:
            write_atomically(p["dest"], content)
        except OSError as exc:
            module.fail_json(msg=f"{p['dest']} cannot be written: {exc.strerror}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
