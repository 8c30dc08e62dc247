# Copyright: gpufleet developers
# Apache-2.0
"""Package work a fault left half done, found and described: host code (stdlib, Python >= 3.8).

A node that loses power (or whose controller is killed) while dpkg runs a maintainer script, most
often the NVIDIA driver's DKMS build, is left with packages half configured, dpkg's journal in
``/var/lib/dpkg/updates`` not yet folded in, and ``dkms status`` at ``added``. Every later apt run
then stops with "dpkg was interrupted, you must manually run 'dpkg --configure -a'". The
``package_recovery`` module uses these readers to say what is half done; the module finishes it.

dpkg's own states are read from ``dpkg-query``'s status abbreviation (``${db:Status-Abbrev}``), not
from ``dpkg --audit``'s English sentences. dpkg locks are fcntl locks, which the kernel drops when
their holder dies: a lock file left behind is not a lock, and only a live holder blocks (it is found
in ``/proc/locks`` by the lock file's inode).
"""

from __future__ import annotations

import csv
import os
import re

DPKG_UPDATES = "/var/lib/dpkg/updates"
DPKG_LOCKS = ("/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock")
DPKG_QUERY_FORMAT = "${db:Status-Abbrev}\t${binary:Package}\t${Version}\n"

# dpkg-query's second status letter (dpkg-query(1), "--showformat ... db:Status-Abbrev").
HALF_DONE = {
    "H": "half-installed",
    "U": "unpacked, not configured",
    "F": "half-configured",
    "W": "awaiting another package's triggers",
    "t": "triggers pending",
}

# dkms status, in the forms dkms 2.x (commas) and 3.x (slash) print.
_DKMS_NEW = re.compile(
    r"^(?P<module>[^/,\s]+)/(?P<version>[^,\s]+),\s*(?P<kernel>[^,\s]+),\s*(?P<arch>[^:\s]+):\s*(?P<state>.+)$"
)
_DKMS_OLD = re.compile(
    r"^(?P<module>[^,\s]+),\s*(?P<version>[^,\s]+),\s*(?P<kernel>[^,\s]+),\s*(?P<arch>[^:\s]+):\s*(?P<state>.+)$"
)
_DKMS_ADDED = re.compile(r"^(?P<module>[^/,\s]+)[/,]\s*(?P<version>[^,:\s]+):\s*(?P<state>.+)$")


def half_done_packages(query_output):
    """Packages ``dpkg-query -W -f DPKG_QUERY_FORMAT`` shows half done: a list of
    ``{"package", "version", "state"}`` (state in words), in dpkg's order. A package whose
    reinstall-required flag (third letter ``R``) is set counts too."""
    found = []
    for line in (query_output or "").splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or len(parts[0]) < 2:
            continue
        abbrev, package, version = parts[0], parts[1].strip(), parts[2].strip()
        state = HALF_DONE.get(abbrev[1])
        if state is None and abbrev[2:3] == "R":
            state = "reinstall required"
        if state:
            found.append({"package": package, "version": version, "state": state})
    return found


def journal_pending(updates_dir=DPKG_UPDATES):
    """Whether dpkg left journal entries it has not folded into its status file (apt's "dpkg was
    interrupted" test: any file in ``updates/`` whose name is digits)."""
    try:
        names = os.listdir(updates_dir)
    except OSError:
        return False
    return any(name.isdigit() for name in names)


def parse_dkms_status(text):
    """Parse ``dkms status`` (dkms 2.x comma form and 3.x slash form).

    Returns a list of {module, version, kernel, arch, state, warnings}; modules only 'added'
    (no kernel) have kernel and arch None.
    """
    rows = []
    for raw in (text or "").splitlines():
        line = raw.strip()
        if not line:
            continue
        m = _DKMS_NEW.match(line) or _DKMS_OLD.match(line)
        if m:
            state, _, warning = m.group("state").partition("(")
            rows.append(
                {
                    "module": m.group("module"),
                    "version": m.group("version"),
                    "kernel": m.group("kernel"),
                    "arch": m.group("arch"),
                    "state": state.strip(),
                    "warnings": warning.rstrip(")").strip() or None,
                }
            )
            continue
        m = _DKMS_ADDED.match(line)
        if m:
            rows.append(
                {
                    "module": m.group("module"),
                    "version": m.group("version"),
                    "kernel": None,
                    "arch": None,
                    "state": m.group("state").strip(),
                    "warnings": None,
                }
            )
    return rows


def dkms_missing_kernels(rows, module, version, kernels):
    """Kernels (from ``kernels``) for which ``module``/``version`` is not 'installed'."""
    built = {
        r["kernel"]
        for r in rows
        if r["module"] == module and r["state"] == "installed" and (not version or r["version"] == version)
    }
    return sorted(k for k in kernels if k not in built)


def dkms_unfinished(rows, modules, kernels):
    """DKMS work a fault cut short: for each of ``modules`` whose newest known version is not
    installed for a kernel in ``kernels`` (kernels with headers), a ``{"module", "version",
    "kernel"}``. Versions only 'added' or 'built' count; a module dkms does not know is not ours to
    build."""
    todo = []
    for module in modules:
        versions = sorted({r["version"] for r in rows if r["module"] == module}, key=_version_key)
        if not versions:
            continue
        version = versions[-1]
        for kernel in dkms_missing_kernels(rows, module, version, kernels):
            todo.append({"module": module, "version": version, "kernel": kernel})
    return todo


def _version_key(version):
    return [int(p) if p.isdigit() else p for p in re.split(r"[.\-+~]", version)]


def lock_holders(locks_text, inodes):
    """PIDs holding a lock on any of ``inodes`` (``{(major, minor, inode)}``), from ``/proc/locks``.
    A line reads ``1: POSIX  ADVISORY  WRITE 4242 08:01:131090 0 EOF`` (device numbers in hex)."""
    pids = []
    for line in (locks_text or "").splitlines():
        m = re.search(r"\s(\d+)\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s", line)
        if not m or "->" in line:  # "->": a process waiting for the lock, not holding it
            continue
        key = (int(m.group(2), 16), int(m.group(3), 16), int(m.group(4)))
        # overlayfs may report another device number than stat() does: the inode decides then
        same = key in inodes or key[2] in {i[2] for i in inodes}
        if same and int(m.group(1)) not in pids:
            pids.append(int(m.group(1)))
    return pids


def file_identity(path):
    """``(major, minor, inode)`` of a file, as /proc/locks names it; None when it does not exist."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)


def summary(repaired):
    """One sentence for the play's output from the module's ``repaired`` list."""
    parts = []
    for item in repaired:
        if item["what"] == "dpkg":
            names = ", ".join(p["package"] for p in item.get("packages", [])) or "no package left half done"
            parts.append(f"recovered an interrupted dpkg run ({names})")
        elif item["what"] == "apt":
            parts.append("completed dependencies apt left unresolved (apt-get install -f, nothing removed)")
        elif item["what"] == "venv":
            names = ", ".join(f"{p['package']} {p['version']} ({p['problem']})" for p in item["packages"])
            parts.append(
                f"set aside the metadata of a cut-short install in {item['venv']} so pip installs it "
                f"again: {names}"
            )
        elif item["what"] == "dkms":
            parts.append(
                f"finished the DKMS build of {item['module']}/{item['version']} for {item['kernel']}"
            )
    return "; ".join(parts)


def _dist_name(dist_info):
    """``(name, version)`` from a ``name-version.dist-info`` directory name."""
    stem = dist_info[: -len(".dist-info")]
    name, _, version = stem.partition("-")
    return name, version


def broken_distributions(site_packages):
    """Distributions in ``site_packages`` whose install a fault cut short, each a
    ``{"package", "version", "problem", "dist_info"}``: a ``*.dist-info`` directory without its
    ``METADATA`` or ``RECORD`` (pip writes RECORD last), or a file its RECORD lists that is missing or
    has another size than recorded (a file cut short). Sizes only: a stat per file, no reading."""
    found = []
    try:
        names = sorted(os.listdir(site_packages))
    except OSError:
        return found
    for entry in names:
        dist_info = os.path.join(site_packages, entry)
        if not entry.endswith(".dist-info") or not os.path.isdir(dist_info):
            continue
        name, version = _dist_name(entry)
        problem = None
        for needed in ("METADATA", "RECORD"):
            if not os.path.isfile(os.path.join(dist_info, needed)):
                problem = f"no {needed} (its install was cut short)"
                break
        if problem is None:
            problem = _record_problem(site_packages, os.path.join(dist_info, "RECORD"))
        if problem:
            found.append({"package": name, "version": version, "problem": problem, "dist_info": dist_info})
    return found


def _record_problem(site_packages, record):
    try:
        with open(record, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return f"RECORD unreadable: {exc}"
    for row in rows:
        if len(row) < 3 or not row[2].strip().isdigit():
            continue  # RECORD itself and INSTALLER-written files carry no size
        if row[0].endswith((".pyc", ".pyo")) or "__pycache__/" in row[0]:
            # Bytecode is a cache: Python rewrites it when it sees fit (PEP 3147), and pip records the
            # size it compiled first; a .pyc of another size or none at all is no broken install.
            continue
        path = os.path.normpath(os.path.join(site_packages, row[0]))
        try:
            size = os.stat(path).st_size
        except OSError:
            return f"{row[0]} is missing"
        if size != int(row[2]):
            return f"{row[0]} is {size} bytes, {row[2]} recorded (cut short)"
    return None


def venv_site_packages(venv):
    """The site-packages directories of the venv at ``venv`` (``lib/pythonX.Y/site-packages``)."""
    lib = os.path.join(venv, "lib")
    try:
        versions = sorted(os.listdir(lib))
    except OSError:
        return []
    found = []
    for name in versions:
        path = os.path.join(lib, name, "site-packages")
        if name.startswith("python") and os.path.isdir(path):
            found.append(path)
    return found
