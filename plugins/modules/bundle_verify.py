#!/usr/bin/python
# Copyright: gpufleet developers
# Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: bundle_verify
short_description: Verify a gpufleet offline bundle against a pinned key, and place a verified copy
version_added: 0.1.0
description:
  - Verifies the offline bundle in O(path) on the managed host, in this order. The key shipped in the
    bundle (or O(keyring)) must be the key pinned by O(fingerprint); C(gpgv) must find a valid
    signature of C(manifest.json) by that key; only then is the manifest read and every file it lists
    checked for presence, size and sha256, and every file it does not list reported.
  - Any problem fails the task, naming every problem (C(missing), C(truncated), C(corrupt), C(extra),
    or the signature or manifest problem); nothing is placed.
  - With O(dest), copies the verified bundle to O(dest) - into C(DEST.gpufleet-partial) first, verifies
    the copy, then swaps it into place by renames, so O(dest) is never a partly copied bundle. A
    O(dest) that already verifies and holds the same C(manifest.json) is left alone; one that fails
    verification (altered after it was placed) is replaced, see RV(replaced_tampered).
author:
  - gpufleet developers
options:
  path:
    description:
      - Directory of the bundle on the managed host (a mounted medium, or where it was copied).
    type: path
    required: true
  fingerprint:
    description:
      - Fingerprint of the bundle signing key that is trusted (40 hexadecimal characters; spaces and a
        C(0x) prefix are allowed). Print it on the machine that built the bundle with
        C(gpufleet bundle key --fingerprint).
      - The key shipped inside the bundle is trusted only when it is this key.
    type: str
    required: true
  keyring:
    description:
      - Public key (binary or armored) to verify the signature with, instead of the bundle's own
        C(keys/gpufleet-bundle.gpg). It must still be the key named by O(fingerprint).
      - Used for O(path) and for O(dest).
    type: path
  dest:
    description:
      - Directory to place a verified copy of the bundle in (directories mode 0755, files 0644).
      - Created with its parents when absent. An existing O(dest) must be a gpufleet bundle (it holds
        C(manifest.json)) or empty; anything else is refused rather than replaced.
    type: path
attributes:
  check_mode:
    support: full
    description: Verifies O(path) (and O(dest)) and reports whether a copy would be placed; copies nothing.
  diff_mode:
    support: full
    description: The files of O(dest) before and after, one C(path sha256) line each.
notes:
  - Needs C(gpgv) on the managed host (Debian package C(gpgv), installed by default).
  - Every file is hashed, so verifying a large bundle takes as long as reading it; the idempotency
    check re-verifies O(dest) in full.
  - Verification lives in the collection's C(bundle) module utils, which the C(gpufleet bundle verify)
    command shares.
  - An update bundle (files unchanged from its base left out) cannot be verified alone; verify the
    base and update with C(gpufleet bundle verify --base).
seealso:
  - name: gpgv
    description: The signature check this module runs.
    link: https://www.gnupg.org/documentation/manuals/gnupg/gpgv.html
"""

EXAMPLES = r"""
- name: Verify the bundle on the mounted medium
  gpufleet.cluster.bundle_verify:
    path: /media/gpufleet-bundle
    fingerprint: "{{ gpufleet_bundle_fingerprint }}"

- name: Verify it and place a verified copy for the bastion to serve
  gpufleet.cluster.bundle_verify:
    path: /media/gpufleet-bundle
    fingerprint: "{{ gpufleet_bundle_fingerprint }}"
    dest: /srv/gpufleet/bundle
  register: __bundle

- name: Verify with a key installed out of band instead of the bundle's own copy
  gpufleet.cluster.bundle_verify:
    path: /srv/gpufleet/bundle
    fingerprint: 2F173C5CB4120B0D1C028E34128F7BAC8776D15E
    keyring: /etc/gpufleet/bundle-key.asc
"""

RETURN = r"""
name:
  description: The bundle's name, from its manifest.
  returned: success
  type: str
  sample: lab
fingerprint:
  description: Fingerprint of the primary key that signed the manifest (the pinned key).
  returned: success
  type: str
  sample: 2F173C5CB4120B0D1C028E34128F7BAC8776D15E
files:
  description: Number of files the manifest lists (besides the manifest and its signature).
  returned: success
  type: int
  sample: 214
bytes:
  description: Total size of those files.
  returned: success
  type: int
  sample: 3841283072
placed:
  description: O(dest) when given (where the verified copy is, or would be in check mode), else V(null).
  returned: success
  type: str
  sample: /srv/gpufleet/bundle
replaced_tampered:
  description: V(true) when O(dest) existed but failed verification, and was (or would be) replaced.
  returned: success
  type: bool
  sample: false
dest_problems:
  description: Why an existing O(dest) failed verification, one line per problem (empty otherwise).
  returned: success
  type: list
  elements: str
  sample:
    - "corrupt: apt/pool/main/h/hello/hello_2.10-3_amd64.deb (sha256 1a2b3c4d... expected, 9f8e7d6c... found)"
problems:
  description: On failure, one line per problem found in O(path).
  returned: failure
  type: list
  elements: str
  sample:
    - "corrupt: apt/pool/main/h/hello/hello_2.10-3_amd64.deb (sha256 1a2b3c4d... expected, 9f8e7d6c... found)"
    - "extra: apt/pool/main/e/evil/evil_1.0_amd64.deb (1204 bytes, not listed in manifest.json)"
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.gpufleet.cluster.plugins.module_utils.bundle import (
    MANIFEST,
    BundleError,
    copy_bundle,
    format_problems,
    load_manifest,
    normalize_fingerprint,
    remove_tree,
    swap_into_place,
    verify_bundle,
)

PARTIAL = ".gpufleet-partial"


def read_bytes(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def listing(root):
    """``path sha256`` lines of a bundle's manifest, for diff mode ('' when it has none)."""
    try:
        manifest = load_manifest(root)
    except BundleError:
        return ""
    return "".join(f"{entry['path']} {entry['sha256']}\n" for entry in manifest["files"])


def verify(module, root, what):
    """verify_bundle with the module's pin, keyring and gpgv."""
    params = module.params
    try:
        return verify_bundle(
            root,
            params["fingerprint"],
            keyring=params["keyring"],
            gpgv=module.get_bin_path("gpgv") or "gpgv",
        )
    except (BundleError, OSError) as exc:
        module.fail_json(msg=f"{what} {root} could not be verified: {exc}")
    return None  # not reached: fail_json exits


def dest_state(module, src, dest):
    """``(up_to_date, problems)`` for an existing ``dest``; fails when it is not ours to replace."""
    if not os.path.lexists(dest):
        return False, []
    if os.path.islink(dest) or not os.path.isdir(dest):
        module.fail_json(msg=f"dest {dest} exists and is not a directory; refusing to replace it")
    if not os.path.exists(os.path.join(dest, MANIFEST)) and os.listdir(dest):
        module.fail_json(
            msg=f"dest {dest} is a non-empty directory without {MANIFEST}, not a placed gpufleet bundle; "
            "refusing to replace it: choose another dest or empty it"
        )
    if not os.listdir(dest):
        return False, []  # an empty directory made ready for the bundle: nothing to replace
    report = verify(module, dest, "dest")
    if not report["ok"]:
        return False, format_problems(report)
    same = read_bytes(os.path.join(dest, MANIFEST)) == read_bytes(os.path.join(src, MANIFEST))
    return same, []


def place(module, src, dest):
    """Copy the verified ``src`` to ``dest + '.gpufleet-partial'``, verify it, swap it in."""
    partial = dest + PARTIAL
    try:
        remove_tree(partial)  # the leftover of an interrupted run
        copy_bundle(src, partial, load_manifest(src))
    except (OSError, BundleError) as exc:
        remove_tree(partial)
        module.fail_json(msg=f"copying bundle {src} to {partial} failed: {exc}; {dest} was not changed")
    report = verify(module, partial, "copy")
    if not report["ok"]:
        remove_tree(partial)
        module.fail_json(
            msg=f"the copy of bundle {src} failed verification: {'; '.join(format_problems(report))}; "
            f"{dest} was not changed",
            problems=format_problems(report),
        )
    try:
        swap_into_place(partial, dest)
    except OSError as exc:
        remove_tree(partial)
        module.fail_json(msg=f"moving the verified copy into {dest} failed: {exc}")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            fingerprint=dict(type="str", required=True),
            keyring=dict(type="path"),
            dest=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    try:
        normalize_fingerprint(module.params["fingerprint"])
    except BundleError as exc:
        module.fail_json(msg=f"fingerprint: {exc}")
    src = module.params["path"]
    dest = module.params["dest"]
    if dest:
        dest = os.path.normpath(dest)
        real_src, real_dest = os.path.realpath(src), os.path.realpath(dest)
        if real_dest == real_src or real_dest.startswith(real_src + os.sep):
            module.fail_json(msg=f"dest {dest} is inside the bundle {src}; give a directory outside it")

    report = verify(module, src, "bundle")
    if not report["ok"]:
        lines = format_problems(report)
        module.fail_json(
            msg=f"bundle {src} failed verification: {'; '.join(lines)}; nothing was placed",
            problems=lines,
        )
    result = dict(
        changed=False,
        name=report["name"],
        fingerprint=report["fingerprint"],
        files=report["files"],
        bytes=report["bytes"],
        placed=dest or None,
        replaced_tampered=False,
        dest_problems=[],
    )
    if dest:
        up_to_date, problems = dest_state(module, src, dest)
        result["replaced_tampered"] = bool(problems)
        result["dest_problems"] = problems
        if not up_to_date:
            result["changed"] = True
            if module._diff:
                result["diff"] = dict(
                    before_header=dest,
                    after_header=src,
                    before=listing(dest) if os.path.isdir(dest) else "",
                    after=listing(src),
                )
            if problems:
                module.warn(f"{dest} failed verification and is replaced: {'; '.join(problems)}")
            if not module.check_mode:
                place(module, src, dest)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
