#!/usr/bin/python
# Copyright: gpufleet developers
# Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: daemon_json
short_description: Set the keys gpufleet owns in Docker's daemon.json, keeping everything else
version_added: 0.1.0
description:
  - Merges O(settings) into Docker's C(daemon.json) and deletes the keys listed in O(remove). Every other
    key stays, with its value, its place in the key order and its formatting; the file is edited, never
    written anew (NVIDIA's C(nvidia-docker2) package and Ansible role replaced the whole file).
  - A value that is an object merges one level deep into an object already there, so a C(runtimes)
    setting holding only C(nvidia) adds or updates only C(runtimes.nvidia) and a site's other runtimes
    stay. Any other value replaces the key's value.
  - New keys are appended after the last one, rendered in the file's own style (its indent unit,
    spaces or a tab; a one-line file stays on one line). The trailing newline, or its absence, stays.
  - A file that is not valid JSON, or whose top level is not an object, fails the task with the parse
    error's line and column; the file is left untouched. An empty or missing file counts as C({}); a
    missing file is created with mode C(0644), owner root, and a missing directory with C(0755).
  - The new text goes to a temporary file in the same directory, is synced to disk and renamed over
    the file, which keeps its mode and owner. A symlinked C(daemon.json) stays a link; its target is
    written.
author:
  - gpufleet developers
options:
  path:
    description:
      - Path of Docker's daemon configuration on the managed host.
    type: path
    default: /etc/docker/daemon.json
  settings:
    description:
      - The keys gpufleet owns and their values. An object value merges one level deep into the
        object the file has under that key.
    type: dict
    default: {}
  remove:
    description:
      - Top-level keys to delete when present (a key gpufleet set before and no longer wants). A key
        may not be both in O(settings) and here.
    type: list
    elements: str
    default: []
  backup:
    description:
      - Before changing an existing file, copy it to C(<path>.<timestamp>.gpufleet-bak) next to it.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: Reads and merges, reports whether the file would change and the keys; writes nothing.
  diff_mode:
    support: full
    description: The file's text before and after.
notes:
  - Docker reads C(daemon.json) only when it starts; restart it when RV(restart_needed) is true (notify
    a handler from this task).
  - The logic lives in the collection's C(daemon_json) module util.
seealso:
  - name: Docker daemon configuration file
    description: The keys C(dockerd) accepts in C(daemon.json).
    link: https://docs.docker.com/reference/cli/dockerd/#daemon-configuration-file
"""

EXAMPLES = r"""
- name: Register the NVIDIA runtime and make it the default, keeping the site's other settings
  gpufleet.cluster.daemon_json:
    settings:
      runtimes:
        nvidia:
          path: nvidia-container-runtime
          runtimeArgs: []
      default-runtime: nvidia
  notify: Restart docker

- name: Stop making NVIDIA the default runtime (the runtime stays registered)
  gpufleet.cluster.daemon_json:
    remove:
      - default-runtime
    backup: false
"""

RETURN = r"""
path:
  description: The file merged into.
  returned: always
  type: str
  sample: /etc/docker/daemon.json
keys_set:
  description:
    - Keys added or given a new value (or, in check mode, that would be); a key merged one level deep
      is named C(key.subkey).
  returned: success
  type: list
  elements: str
  sample: [runtimes.nvidia, default-runtime]
keys_removed:
  description: Keys of O(remove) that were present and deleted (or would be).
  returned: success
  type: list
  elements: str
  sample: []
backup_file:
  description: The copy of the file as it was before the change.
  returned: when an existing file changed and O(backup) is true
  type: str
  sample: /etc/docker/daemon.json.20261202T004512.gpufleet-bak
restart_needed:
  description: Whether Docker must be restarted to read the change (true whenever the file changed).
  returned: success
  type: bool
  sample: true
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.gpufleet.cluster.plugins.module_utils.daemon_json import (
    DEFAULT_PATH,
    DaemonJsonError,
    update,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", default=DEFAULT_PATH),
            settings=dict(type="dict", default={}),
            remove=dict(type="list", elements="str", default=[]),
            backup=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        done = update(p["path"], p["settings"], p["remove"], backup=p["backup"], check=module.check_mode)
    except DaemonJsonError as exc:
        module.fail_json(msg=str(exc), path=p["path"])
    except OSError as exc:
        module.fail_json(msg=f"cannot update {p['path']}: {exc}", path=p["path"])
    result = dict(
        changed=done["changed"],
        path=p["path"],
        keys_set=done["keys_set"],
        keys_removed=done["keys_removed"],
        restart_needed=done["changed"],
    )
    if done["backup_file"]:
        result["backup_file"] = done["backup_file"]
    if module._diff and done["changed"]:
        result["diff"] = dict(
            before=done["before"],
            after=done["after"],
            before_header=p["path"],
            after_header=p["path"],
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
