#!/usr/bin/python
# Copyright: gpufleet developers
# Apache-2.0
"""Finish package work a fault interrupted: dpkg runs, unresolved dependencies, DKMS builds."""

from __future__ import annotations

DOCUMENTATION = r"""
module: package_recovery
short_description: Finish package work that a power loss, a killed run or a full disk interrupted
description:
  - Run first by every gpufleet role that installs packages. On APT hosts it finds packages dpkg
    left half done (half-installed, unpacked, half-configured, triggers pending) and a dpkg journal
    not yet folded in (the state in which every apt run stops with "dpkg was interrupted"), and
    finishes them with C(dpkg --configure -a) (keeping the user's changed configuration files), then
    lets apt complete missing dependencies with C(apt-get install -f --no-remove), which fails rather
    than remove any package.
  - For the DKMS modules named in O(dkms_modules), a version dkms knows but has not installed for a
    kernel whose headers are installed (a build cut short) is built and installed with C(dkms install).
  - A package manager that is still running (a live holder of dpkg's lock) is waited for up to
    O(lock_timeout) seconds, then reported by PID and command line; nothing is killed. dpkg's locks
    are fcntl locks, so a lock file whose holder died is not a lock and needs no repair.
  - In each venv of O(venvs), a distribution whose install a fault cut short (a C(*.dist-info) without
    METADATA or RECORD, or a file its RECORD lists missing or of another size) has its metadata
    directory renamed to C(<name>.dist-info.gpufleet-broken-<time>), so the caller's pip install sees
    it missing and installs it again from its pinned requirements; its files stay for pip to overwrite.
  - Nothing is removed, no package is purged, no file of the user's is touched. Every repair is
    appended to O(record) as a JSON line (time, role, what was repaired).
  - On dnf hosts, duplicate packages left by an interrupted transaction are reported with the command
    that resolves them; they are not removed automatically.
version_added: 0.2.0
author: gpufleet developers
options:
  dkms_modules:
    description: DKMS module names whose unfinished builds to finish (for example C(nvidia-current)).
    type: list
    elements: str
    default: []
  lock_timeout:
    description:
      - Seconds to wait for another running package manager before failing. A DKMS build that a
        killed run left running takes minutes (6 to 9 on two cores in the lab), hence 20 minutes.
    type: int
    default: 1200
  role:
    description: Name of the calling role, written into the record.
    type: str
    default: ""
  record:
    description: JSON-lines file every repair is appended to.
    type: path
    default: /var/lib/gpufleet/recovery.jsonl
  venvs:
    description: Python venvs the caller installs wheels into, checked for installs cut short.
    type: list
    elements: path
    default: []
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
notes:
  - The DKMS build that C(dpkg --configure -a) or C(dkms install) runs takes minutes for the NVIDIA
    driver.
"""

EXAMPLES = r"""
- name: Finish package work a fault interrupted
  gpufleet.cluster.package_recovery:
    dkms_modules: [nvidia-current]
    role: nvidia_driver
  register: recovery
"""

RETURN = r"""
repaired:
  description: What was repaired (in check mode, what would be), in order.
  returned: always
  type: list
  elements: dict
  sample: [{"what": "dpkg", "packages": [{"package": "nvidia-kernel-dkms", "version": "535.261.03-1",
            "state": "half-configured"}]}]
msg:
  description: One sentence saying what was repaired, empty when nothing was.
  returned: always
  type: str
  sample: recovered an interrupted dpkg run (nvidia-kernel-dkms)
"""

import fcntl
import json
import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.gpufleet.cluster.plugins.module_utils import pkg_recovery as pr
from ansible_collections.gpufleet.cluster.plugins.module_utils.tool_run import C_LOCALE, output_tail

APT_ENV = dict(C_LOCALE, DEBIAN_FRONTEND="noninteractive")
DPKG_CONF = ["--force-confdef", "--force-confold"]


def _holder(path):
    """PID and command line of a live holder of dpkg lock ``path``; None when it is free."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pass
        else:
            fcntl.lockf(fd, fcntl.LOCK_UN)
            return None
    finally:
        os.close(fd)
    ident = pr.file_identity(path)
    try:
        with open("/proc/locks") as fh:
            pids = pr.lock_holders(fh.read(), {ident} if ident else set())
    except OSError:
        pids = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                return pid, fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
    return -1, "unknown process"


def _wait_for_lock(module):
    deadline = time.monotonic() + module.params["lock_timeout"]
    while True:
        busy = [(p, _holder(p)) for p in pr.DPKG_LOCKS if os.path.exists(p)]
        busy = [(p, h) for p, h in busy if h]
        if not busy:
            return
        if time.monotonic() >= deadline:
            path, (pid, cmd) = busy[0]
            module.fail_json(
                msg=f"another package manager holds {path}: pid {pid} ({cmd}); it was still running after "
                f"{module.params['lock_timeout']} s. Wait for it to finish (or stop it) and run again; "
                "nothing was changed",
                repaired=[],
            )
        time.sleep(3)


def _run(module, argv, what, repaired):
    rc, out, err = module.run_command(argv, environ_update=APT_ENV)
    if rc != 0:
        module.fail_json(
            msg=f"{what} failed (exit {rc}): {output_tail(err, out)}. The host is still half configured: "
            f"fix the cause shown and run again (or run '{' '.join(argv)}' on the host)",
            repaired=repaired,
        )
    return out


def _apt(module, repaired):
    query = module.get_bin_path("dpkg-query")
    if not query:
        return
    if not module.check_mode:
        # A dpkg that is still running (a killed controller's apt goes on on the node) is not half
        # done: wait for it first, then read what it left.
        _wait_for_lock(module)
    _rc, out, _err = module.run_command([query, "-W", "-f", pr.DPKG_QUERY_FORMAT], environ_update=C_LOCALE)
    half = pr.half_done_packages(out)
    if half or pr.journal_pending():
        repaired.append({"what": "dpkg", "packages": half})
        if not module.check_mode:
            _run(module, ["dpkg", "--configure", "-a", *DPKG_CONF], "dpkg --configure -a", repaired)
    apt_get = module.get_bin_path("apt-get")
    if apt_get and not module.check_mode:
        rc, _out, _err = module.run_command([apt_get, "check", "-q"], environ_update=APT_ENV)
        if rc != 0:
            repaired.append({"what": "apt"})
            _wait_for_lock(module)
            opts = [arg for c in DPKG_CONF for arg in ("-o", f"Dpkg::Options::={c}")]
            _run(
                module,
                [apt_get, "install", "-f", "-y", "-q", "--no-remove", *opts],
                "apt-get install -f",
                repaired,
            )


def _kernels_with_headers():
    try:
        names = os.listdir("/lib/modules")
    except OSError:
        return []
    return sorted(k for k in names if os.path.exists(os.path.join("/lib/modules", k, "build")))


def _dkms(module, repaired):
    dkms = module.get_bin_path("dkms")
    if not dkms or not module.params["dkms_modules"]:
        return
    _rc, out, _err = module.run_command([dkms, "status"], environ_update=C_LOCALE)
    todo = pr.dkms_unfinished(
        pr.parse_dkms_status(out), module.params["dkms_modules"], _kernels_with_headers()
    )
    for item in todo:
        repaired.append(dict(item, what="dkms"))
        if not module.check_mode:
            _run(
                module,
                [dkms, "install", "-m", item["module"], "-v", item["version"], "-k", item["kernel"]],
                f"dkms install {item['module']}/{item['version']} for {item['kernel']}",
                repaired,
            )


def _venvs(module, repaired):
    """A wheel install cut short in one of the caller's venvs: the broken distribution's metadata is
    set aside (renamed, not deleted) so the caller's pip sees it missing and installs it again from
    its pinned, hashed requirements. The package's files stay; pip writes over them."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for venv in module.params["venvs"]:
        broken = [b for sp in pr.venv_site_packages(venv) for b in pr.broken_distributions(sp)]
        if not broken:
            continue
        repaired.append(
            {
                "what": "venv",
                "venv": venv,
                "packages": [{k: b[k] for k in ("package", "version", "problem")} for b in broken],
            }
        )
        if module.check_mode:
            continue
        for item in broken:
            aside = f"{item['dist_info']}.gpufleet-broken-{stamp}"
            try:
                os.rename(item["dist_info"], aside)
            except OSError as exc:
                pin = f"{item['package']}=={item['version']}"
                module.fail_json(
                    msg=f"could not set aside {item['dist_info']} ({exc}): the install of {pin} in {venv} "
                    f"was cut short ({item['problem']}); run '{venv}/bin/pip install --force-reinstall "
                    f"{pin}' on the host, then run again",
                    repaired=repaired,
                )


def _dnf(module, problems):
    dnf = module.get_bin_path("dnf")
    if not dnf:
        return
    rc, out, err = module.run_command([dnf, "-q", "check", "--duplicates"], environ_update=C_LOCALE)
    if rc != 0 or out.strip():
        problems.append(
            "dnf check --duplicates reports packages an interrupted transaction left twice: "
            f"{output_tail(out, err)}; review 'dnf history' and run 'dnf remove --duplicates' "
            "(or 'dnf distro-sync') on the host, then run again"
        )


def _record(module, repaired):
    path = module.params["record"]
    entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "role": module.params["role"]}
    entry["repaired"] = repaired
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(entry, sort_keys=True) + "\n")


def main():
    module = AnsibleModule(
        argument_spec={
            "dkms_modules": {"type": "list", "elements": "str", "default": []},
            "lock_timeout": {"type": "int", "default": 1200},
            "role": {"type": "str", "default": ""},
            "record": {"type": "path", "default": "/var/lib/gpufleet/recovery.jsonl"},
            "venvs": {"type": "list", "elements": "path", "default": []},
        },
        supports_check_mode=True,
    )
    repaired, problems = [], []
    if module.get_bin_path("dpkg"):
        _apt(module, repaired)
    else:
        _dnf(module, problems)
    _dkms(module, repaired)
    _venvs(module, repaired)
    if problems:
        module.fail_json(msg="; ".join(problems), repaired=repaired)
    if repaired and not module.check_mode:
        _record(module, repaired)
    module.exit_json(changed=bool(repaired), repaired=repaired, msg=pr.summary(repaired))


if __name__ == "__main__":
    main()
