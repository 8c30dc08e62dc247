"""The lab image: a Debian 12 root file system from debootstrap, imported into docker.

No image registry is used. The image is tagged ``gpufleet-lab:bookworm`` and labelled with
the hash of its recipe (suite, packages, mirror, setup script); it is rebuilt only when
that hash changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from glob import glob
from pathlib import Path

from gpufleet._progress import sayer
from gpufleet.errors import GpufleetError
from gpufleet.lab import docker as dk

IMAGE = "gpufleet-lab:bookworm"
RECIPE_LABEL = "io.gpufleet.recipe"
SUITE = "bookworm"
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "python3",
    "python3-apt",
    "ca-certificates",
    "gnupg",
    "sudo",
    "iproute2",
    "iputils-ping",
    "procps",
    "kmod",
    "pciutils",
    "curl",
    # SSH mode (gpufleet.lab.ssh): real fleets are reached over SSH as a user with sudo.
    "openssh-server",
)
# Runs inside the new root (chroot) before it is imported.
SETUP_SCRIPT = r"""
set -eu
# Units that make no sense in a container (no consoles, no udev, no first-boot wizard).
systemctl mask getty@tty1.service console-getty.service systemd-firstboot.service \
  systemd-udevd.service systemd-udev-trigger.service systemd-modules-load.service \
  sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount >/dev/null 2>&1 || true
# An empty machine-id lets every container get its own at boot.
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
printf 'APT::Install-Suggests "false";\n' > /etc/apt/apt.conf.d/90gpufleet-lab
# dpkg without an fsync per file (what Docker's debootstrap image script shipped as
# docker-apt-speedup): a container's "power loss" is a restart that keeps the host's page cache,
# and the 1.6 GB CUDA unpack is otherwise bound by fsync.
printf 'force-unsafe-io\n' > /etc/dpkg/dpkg.cfg.d/90gpufleet-lab-unsafe-io
# Trust what the build host trusts (site CAs copied to /usr/local/share/ca-certificates), and make
# pip use the system store instead of its bundled one, as the host does.
update-ca-certificates >/dev/null 2>&1
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > /etc/pip.conf
# SSH mode: an unprivileged operator with passwordless sudo, keys only. Host keys are never baked
# into the image: each container makes its own at sshd's first start, and the lab pins them.
useradd --create-home --shell /bin/bash ops
printf 'ops ALL=(ALL:ALL) NOPASSWD: ALL\n' > /etc/sudoers.d/90-gpufleet-ops
chmod 0440 /etc/sudoers.d/90-gpufleet-ops
printf 'PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin no\n' \
  > /etc/ssh/sshd_config.d/gpufleet-lab.conf
rm -f /etc/ssh/ssh_host_*
mkdir -p /etc/systemd/system/ssh.service.d
printf '[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n' \
  > /etc/systemd/system/ssh.service.d/gpufleet-host-keys.conf
systemctl enable ssh.service >/dev/null 2>&1
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/*.log
"""


class ImageError(GpufleetError):
    pass


def host_mirror(apt_dir: str = "/etc/apt") -> dict:
    """The Debian mirrors the build host already uses (``GPUFLEET_LAB_MIRROR`` overrides)."""
    from ansible_collections.gpufleet.cluster.plugins.plugin_utils import apt_sources

    files = {}
    for path in [f"{apt_dir}/sources.list", *sorted(glob(f"{apt_dir}/sources.list.d/*"))]:
        if path.endswith((".list", ".sources")) and os.path.isfile(path):
            files[path] = Path(path).read_text(errors="replace")
    main = os.environ.get("GPUFLEET_LAB_MIRROR") or apt_sources.debian_mirror(files, SUITE)
    security = os.environ.get("GPUFLEET_LAB_SECURITY_MIRROR") or apt_sources.debian_mirror(
        files, f"{SUITE}-security"
    )
    if not main:
        raise ImageError(
            f"no Debian '{SUITE}' mirror found in {apt_dir}/sources.list*; "
            "set GPUFLEET_LAB_MIRROR to the URI of a Debian mirror this machine can reach"
        )
    return {"main": main, "security": security}


_PEM = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def _pems(text: str) -> list[str]:
    return ["\n".join(line.strip() for line in c.strip().splitlines()) for c in _PEM.findall(text)]


def host_extra_cas(
    bundle: str = "/etc/ssl/certs/ca-certificates.crt", shipped_dir: str = "/usr/share/ca-certificates"
) -> list[str]:
    """Certificates the build host trusts beyond Debian's ca-certificates (a site or proxy CA).

    The lab nodes get them too, so HTTPS to the package registries works from the lab exactly as
    it does from the host. Sorted, so the recipe hash only changes when the set changes."""
    try:
        host = _pems(Path(bundle).read_text(errors="replace"))
    except OSError:
        return []
    shipped = set()
    for path in glob(f"{shipped_dir}/**/*.crt", recursive=True):
        try:
            shipped.update(_pems(Path(path).read_text(errors="replace")))
        except OSError:
            continue
    return sorted({c for c in host if c not in shipped})


def sources_file(mirrors: dict) -> str:
    stanzas = [
        f"Types: deb\nURIs: {mirrors['main']}\nSuites: {SUITE} {SUITE}-updates\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    ]
    if mirrors.get("security"):
        stanzas.append(
            f"Types: deb\nURIs: {mirrors['security']}\nSuites: {SUITE}-security\nComponents: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        )
    return "\n".join(stanzas)


def recipe(mirrors: dict) -> dict:
    return {
        "suite": SUITE,
        "mirror": mirrors["main"],
        "variant": "minbase",
        "packages": list(PACKAGES),
        "sources": sources_file(mirrors),
        "setup": SETUP_SCRIPT,
        "extra_cas": host_extra_cas(),
        "format": 1,
    }


def recipe_hash(rec: dict) -> str:
    return hashlib.sha256(json.dumps(rec, sort_keys=True).encode()).hexdigest()[:16]


def current_image_hash() -> str | None:
    info = dk.inspect("image", IMAGE)
    if not info:
        return None
    return ((info.get("Config") or {}).get("Labels") or {}).get(RECIPE_LABEL)


_say = sayer("lab")


def ensure_image(rebuild: bool = False) -> str:
    """Return the image name, building it first when missing or out of date."""
    dk.require_daemon()
    mirrors = host_mirror()
    rec = recipe(mirrors)
    want = recipe_hash(rec)
    have = current_image_hash()
    if have == want and not rebuild:
        return IMAGE
    if have == want:
        _say(f"rebuilding {IMAGE} on request (recipe {want} unchanged)")
    elif have:
        _say(f"image recipe changed ({have} -> {want}); rebuilding {IMAGE}")
    build(rec, want)
    return IMAGE


def build(rec: dict, digest: str) -> None:
    if os.geteuid() != 0:
        raise ImageError("building the lab image runs debootstrap, which needs root: run as root")
    if shutil.which("debootstrap") is None:
        raise ImageError(
            "debootstrap is not installed: 'apt-get install debootstrap' ('make host-deps' does it)"
        )
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gpufleet" / "lab"
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="build-", dir=cache) as tmp:
        root = Path(tmp) / "rootfs"
        log = cache / "debootstrap.log"
        started = time.monotonic()
        _say(f"[1/3] debootstrap {rec['suite']} ({rec['variant']}, {len(rec['packages'])} extra packages)")
        _say(f"      from {rec['mirror']} - about a minute; log: {log}")
        with log.open("w") as fh:
            proc = subprocess.run(
                [
                    "debootstrap",
                    f"--variant={rec['variant']}",
                    "--include=" + ",".join(rec["packages"]),
                    rec["suite"],
                    str(root),
                    rec["mirror"],
                ],
                stdout=fh,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if proc.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise ImageError(f"debootstrap failed (exit {proc.returncode}); last lines of {log}:\n{tail}")
        _say(f"      done in {time.monotonic() - started:.0f} s")
        _say("[2/3] configuring the root file system")
        (root / "etc/apt/sources.list").write_text("# see sources.list.d/debian.sources\n")
        (root / "etc/apt/sources.list.d").mkdir(parents=True, exist_ok=True)
        (root / "etc/apt/sources.list.d/debian.sources").write_text(rec["sources"])
        local_cas = root / "usr/local/share/ca-certificates"
        local_cas.mkdir(parents=True, exist_ok=True)
        for n, pem in enumerate(rec.get("extra_cas") or []):
            (local_cas / f"gpufleet-host-{n}.crt").write_text(pem + "\n")
        subprocess.run(["chroot", str(root), "/bin/sh", "-c", rec["setup"]], check=True)
        _say(f"[3/3] importing into docker as {IMAGE}")
        changes = [
            'CMD ["/lib/systemd/systemd"]',
            "ENV container=docker",
            f"LABEL {RECIPE_LABEL}={digest}",
            "LABEL io.gpufleet.lab-image=1",
        ]
        args = ["docker", "import"]
        for change in changes:
            args += ["-c", change]
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        imp = subprocess.run([*args, "-", IMAGE], stdin=tar.stdout, capture_output=True, check=False)
        tar.wait()
        if imp.returncode != 0 or tar.returncode != 0:
            raise ImageError(f"docker import failed: {imp.stderr.decode(errors='replace').strip()}")
    _say(f"image {IMAGE} ready (recipe {digest}) in {time.monotonic() - started:.0f} s")
