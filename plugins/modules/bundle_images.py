#!/usr/bin/python
# Copyright: gpufleet developers
# Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: bundle_images
short_description: Load container images carried in a signed bundle into Docker, image IDs checked
version_added: 0.1.0
description:
  - Downloads C(manifest.json), C(manifest.json.asc) and C(keys/gpufleet-bundle.gpg) from the bundle at
    O(url) (the bastion) and checks with C(gpgv) that the manifest is signed by the key pinned by
    O(fingerprint) and names that key, exactly as M(gpufleet.cluster.bundle_wheel_requirements) does;
    a manifest that is unsigned, altered or signed by another key is refused and nothing is loaded.
  - For each reference of O(images) the bundle must carry its C(docker save) tarball
    (C(images/<reference with other characters as _>.tar)) with the image ID C(gpufleet bundle build)
    recorded (C(image_id) in the manifest); a reference the bundle lacks fails the task before any
    image is touched.
  - An image already present with that ID is left alone (nothing is downloaded). Otherwise its tarball
    is downloaded to a temporary file, its sha256 and size checked against the manifest while it
    streams (a mismatch fails and nothing is loaded), loaded with C(docker load), and the loaded image's
    ID (C(docker image inspect --format {{.Id}})) compared with the recorded one; a mismatch fails
    naming the image and both IDs. The module never removes an image.
author:
  - gpufleet developers
extends_documentation_fragment:
  - gpufleet.cluster.bundle_source
options:
  images:
    description:
      - Image references as the bundle profile lists them (C(registry/name:tag) or C(name@sha256:...)).
        A digest reference names no image after C(docker load) (Docker restores tags, not repository
        digests); it is found by its image ID.
    type: list
    elements: str
    required: true
  docker:
    description:
      - Path of the C(docker) command; by default the one on the E(PATH).
    type: path
attributes:
  check_mode:
    support: full
    description: Verifies the manifest and reports which images would be loaded; nothing is downloaded.
  diff_mode:
    support: none
notes:
  - Needs C(gpgv) and a running Docker engine on the managed host.
  - The tarball is written to the system's temporary directory (C(TMPDIR)) and removed after loading;
    that directory needs room for the largest image.
  - The logic lives in the collection's C(bundle_images), C(bundle_remote) and C(bundle) module utils.
seealso:
  - module: gpufleet.cluster.bundle_wheel_requirements
  - module: gpufleet.cluster.bundle_verify
"""

EXAMPLES = r"""
- name: Load the serving images the bundle carries
  gpufleet.cluster.bundle_images:
    url: "http://{{ groups['bastion'][0] }}/{{ gpufleet_bundle_name }}"
    fingerprint: "{{ gpufleet_bundle_fingerprint }}"
    images:
      - registry.example.internal/llm/server:1.0
"""

RETURN = r"""
images:
  description: One result per requested image, in the order given.
  returned: success
  type: list
  elements: dict
  contains:
    ref:
      description: The image reference.
      type: str
    image_id:
      description: The image ID the signed manifest records (and the image now has).
      type: str
    action:
      description: C(present) (already there, untouched), C(loaded), or C(would load) in check mode.
      type: str
    path:
      description: The tarball's path in the bundle.
      type: str
  sample:
    - ref: registry.example.internal/llm/server:1.0
      image_id: sha256:3f57d9401f8d42f986df300f0c69192fc41da28ccc8d797829467780db3dd741
      action: loaded
      path: images/registry.example.internal_llm_server_1.0.tar
bundle:
  description: The bundle's name, from its manifest.
  returned: success
  type: str
  sample: lab
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url
from ansible_collections.gpufleet.cluster.plugins.module_utils.bundle import BundleError
from ansible_collections.gpufleet.cluster.plugins.module_utils.bundle_images import (
    Docker,
    ensure_image,
    image_entries,
)
from ansible_collections.gpufleet.cluster.plugins.module_utils.bundle_remote import (
    SOURCE_SPEC,
    remote_manifest,
)
from ansible_collections.gpufleet.cluster.plugins.module_utils.tool_run import C_LOCALE


def main():
    module = AnsibleModule(
        argument_spec=dict(
            **SOURCE_SPEC,
            images=dict(type="list", elements="str", required=True),
            docker=dict(type="path"),
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
    binary = p["docker"] or module.get_bin_path("docker")
    if binary:
        docker = Docker(binary, lambda argv: module.run_command(argv, environ_update=C_LOCALE))
    elif module.check_mode:
        # A check run before the engine is installed: no image is there, each would be loaded.
        docker = Docker("docker", lambda argv: (1, "", "docker is not installed"))
    else:
        module.fail_json(
            msg="docker is not installed on this host: install the engine first (role container_runtime)"
        )
        return
    results = []
    try:
        gpgv = module.get_bin_path("gpgv") or "gpgv"
        manifest = remote_manifest(url, p["fingerprint"], p["timeout"], open_url, gpgv=gpgv)
        entries = image_entries(manifest, p["images"])
        for ref in p["images"]:
            results.append(
                ensure_image(docker, url, ref, entries[ref], p["timeout"], open_url, module.check_mode)
            )
    except BundleError as exc:
        module.fail_json(msg=str(exc), images=results)
        return
    module.exit_json(
        changed=any(r["changed"] for r in results),
        images=[{k: r[k] for k in ("ref", "image_id", "action", "path")} for r in results],
        bundle=manifest.get("name"),
    )


if __name__ == "__main__":
    main()
