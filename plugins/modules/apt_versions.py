#!/usr/bin/python
# Copyright: gpufleet developers
# Apache-2.0
"""List the versions APT sources offer for packages, without changing the host."""

from __future__ import annotations

DOCUMENTATION = r"""
module: apt_versions
short_description: Versions of packages that APT sources offer, read without changing the host
description:
  - Copies the host's APT sources (plus O(extra_sources)) into a private directory, runs
    C(apt-get update) with its lists and cache there, and reports every version each package
    has. The host's own APT lists, cache and configuration are never written, so preflight
    checks can ask "does this source have version X?" before any change is made.
version_added: 0.1.0
author: gpufleet developers
options:
  packages:
    description: Package names to look up.
    type: list
    elements: str
    required: true
  extra_sources:
    description: Additional sources in deb822 format, as if they were in C(/etc/apt/sources.list.d).
    type: str
    default: ""
  include_host_sources:
    description: Include the host's C(/etc/apt/sources.list) and C(sources.list.d).
    type: bool
    default: true
  timeout:
    description: Seconds allowed for C(apt-get update).
    type: int
    default: 300
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
notes:
  - Needs network access to the configured mirrors (or the bastion in offline mode).
"""

EXAMPLES = r"""
- name: Versions of the NVIDIA kernel module package on Debian with non-free enabled
  gpufleet.cluster.apt_versions:
    packages: [nvidia-kernel-dkms]
    extra_sources: |
      Types: deb
      URIs: http://mirror.example/debian
      Suites: bookworm
      Components: non-free
      Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
  register: driver_versions
"""

RETURN = r"""
versions:
  description: Package name to the list of versions offered, newest first; empty when unknown.
  returned: always
  type: dict
  sample: {"nvidia-kernel-dkms": ["535.309.01-0+deb12u1", "535.261.03-1"]}
"""

import glob
import os
import re
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule


def _madison(module, apt_opts, package):
    rc, out, _err = module.run_command(["apt-cache", *apt_opts, "madison", package])
    if rc != 0:
        return []
    versions = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) >= 3 and parts[0] == package and parts[1] not in versions:
            versions.append(parts[1])
    return versions


def _host_source_paths(module):
    """Where this host's apt really reads its sources: apt.conf may move them (gpufleet's offline
    mode points them at the bastion's bundle), so ask apt-config instead of assuming /etc/apt."""
    rc, out, _ = module.run_command(
        ["apt-config", "shell", "SL", "Dir::Etc::sourcelist/f", "SP", "Dir::Etc::sourceparts/d"]
    )
    found = dict(re.findall(r"^(SL|SP)='([^']*)'", out, re.M)) if rc == 0 else {}
    return found.get("SL", "/etc/apt/sources.list"), found.get("SP", "/etc/apt/sources.list.d/").rstrip("/")


def main():
    module = AnsibleModule(
        argument_spec={
            "packages": {"type": "list", "elements": "str", "required": True},
            "extra_sources": {"type": "str", "default": ""},
            "include_host_sources": {"type": "bool", "default": True},
            "timeout": {"type": "int", "default": 300},
        },
        supports_check_mode=True,
    )
    module.run_command_environ_update = {"LANG": "C", "LC_ALL": "C", "LC_MESSAGES": "C"}
    tmp = tempfile.mkdtemp(prefix="gpufleet-apt-")
    try:
        parts = os.path.join(tmp, "sources.list.d")
        lists = os.path.join(tmp, "lists")
        cache = os.path.join(tmp, "cache")
        for d in (parts, os.path.join(lists, "partial"), os.path.join(cache, "archives", "partial")):
            os.makedirs(d)
        source_list = os.path.join(tmp, "sources.list")
        host_list, host_parts = _host_source_paths(module)
        with open(source_list, "w") as fh:
            if module.params["include_host_sources"] and os.path.exists(host_list):
                with open(host_list) as src:
                    fh.write(src.read())
        if module.params["include_host_sources"]:
            for path in glob.glob(os.path.join(host_parts, "*")):
                if path.endswith((".list", ".sources")):
                    shutil.copy(path, parts)
        if module.params["extra_sources"]:
            with open(os.path.join(parts, "zz-gpufleet-extra.sources"), "w") as fh:
                fh.write(module.params["extra_sources"])
        apt_opts = [
            "-o", f"Dir::Etc::SourceList={source_list}",
            "-o", f"Dir::Etc::SourceParts={parts}",
            "-o", f"Dir::State::Lists={lists}",
            "-o", f"Dir::Cache={cache}",
            "-o", "Debug::NoLocking=1",
        ]  # fmt: skip
        cmd = ["timeout", str(module.params["timeout"]), "apt-get", *apt_opts, "-q", "update"]
        rc, out, err = module.run_command(cmd)
        if rc != 0:
            module.fail_json(
                msg="apt-get update against the configured sources failed; check the mirror URIs and "
                "network (or the bastion when offline)",
                rc=rc,
                stdout=out,
                stderr=err,
            )
        versions = {p: _madison(module, apt_opts, p) for p in module.params["packages"]}
        module.exit_json(changed=False, versions=versions, update_warnings=err.strip() or None)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
