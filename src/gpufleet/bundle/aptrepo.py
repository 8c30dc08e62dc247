"""apt side of a bundle: resolve and download in a lab container of the target OS, then write a
flat repository (Packages, Release) that the bundle key signs (InRelease, Release.gpg).

Resolution runs where the target's base system is (the lab image of that OS), so exactly the
packages the nodes lack are fetched, by apt itself, which checks every download against the
archive's signed indexes. Downloads land in the bundle's pool, so an interrupted build resumes:
apt skips the .deb files already there."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import re
import subprocess
import threading
import time
import uuid
from email.utils import formatdate
from pathlib import Path

from gpufleet._progress import Bar, watch
from gpufleet.bundle import BundleBuildError

POOL = "apt/pool"
URI_LINE = re.compile(r"^'(?P<uri>[^']+)' (?P<file>\S+) (?P<size>\d+)(?: (?P<hash>\S+))?$")
APT_ERRORS = (
    (re.compile(r"Unable to locate package (\S+)"), "package {0} does not exist in the target's sources"),
    (
        re.compile(r"Package '?([^' ]+)'? has no installation candidate"),
        "package {0} has no installation candidate",
    ),
    (re.compile(r"Version '([^']+)' for '([^']+)' was not found"), "version {0} of {1} does not exist"),
    (re.compile(r"Couldn't find any package by (?:glob|regex) '([^']+)'"), "no package matches {0}"),
)


class BuildContainer:
    """A throw-away container of the target OS (the lab image), removed on exit."""

    def __init__(self, image: str, mounts: dict[str, str]):
        self.image, self.mounts = image, mounts
        self.name = f"gpufleet-bundle-build-{uuid.uuid4().hex[:8]}"

    def __enter__(self):
        args = ["docker", "run", "--detach", "--rm", "--name", self.name, "--entrypoint", "sleep"]
        for host, inside in self.mounts.items():
            args += ["--volume", f"{host}:{inside}"]
        proc = subprocess.run([*args, self.image, "infinity"], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise BundleBuildError(f"could not start a {self.image} build container: {proc.stderr.strip()}")
        return self

    def __exit__(self, *exc):
        subprocess.run(["docker", "rm", "-f", self.name], capture_output=True, check=False)

    def sh(self, script: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [
                "docker",
                "exec",
                "-e",
                "DEBIAN_FRONTEND=noninteractive",
                "-e",
                "LC_ALL=C",
                self.name,
                "bash",
                "-c",
                script,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if check and proc.returncode != 0:
            raise BundleBuildError(
                f"in the build container: {script.split()[0]} failed: {proc.stderr.strip()[-800:]}"
            )
        return proc


def enable_components(container: BuildContainer, components: list[str]) -> None:
    comps = " ".join(components)
    container.sh(
        "set -e; for f in /etc/apt/sources.list.d/*.sources; do "
        f'[ -e "$f" ] && sed -i \'s/^Components: .*/Components: {comps}/\' "$f"; done; '
        "[ -e /etc/apt/sources.list ] && "
        "sed -i -E 's/^(deb(-src)? +(\\[[^]]*\\] +)?[^ ]+ +[^ ]+) .*/\\1 "
        f"{comps}/' /etc/apt/sources.list; true"
    )
    proc = container.sh("apt-get update -qq 2>&1", check=False)
    if proc.returncode != 0:
        raise BundleBuildError(
            "apt-get update failed in the build container; is a Debian mirror reachable from docker "
            f"containers on this machine? {proc.stdout.strip()[-600:]}"
        )


PIN_FILE = "/etc/apt/preferences.d/gpufleet-bundle.pref"


def pin_preferences(pins: list[dict]) -> str:
    """APT preferences holding each pinned group at its version (priority 1001: chosen even when
    newer versions are published, as the roles pin them on the hosts)."""
    return "\n".join(
        f"Package: {' '.join(pin['packages'])}\nPin: version {pin['version']}\nPin-Priority: 1001\n"
        for pin in pins
    )


def apply_pins(container: BuildContainer, pins: list[dict]) -> None:
    """Write the profile's pins into the build container before anything is resolved."""
    if not pins:
        return
    text = pin_preferences(pins).replace("'", "")
    container.sh(f"printf '%s' '{text}' > {PIN_FILE}")


def package_problems(stderr: str) -> list[str]:
    found = []
    for line in stderr.splitlines():
        for pattern, message in APT_ERRORS:
            m = pattern.search(line)
            if m:
                found.append(message.format(*m.groups()))
    return found


def parse_uris(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        m = URI_LINE.match(line.strip())
        if m:
            out.append({"uri": m["uri"], "file": m["file"], "size": int(m["size"])})
    return out


def resolve(container: BuildContainer, packages: list[str]) -> list[dict]:
    """The .deb files apt would fetch for ``packages`` on the target base system (nothing downloaded)."""
    quoted = " ".join(f"'{p}'" for p in packages)
    proc = container.sh(
        f"apt-get install --download-only --no-install-recommends -y -qq --print-uris {quoted}", check=False
    )
    if proc.returncode != 0:
        named = package_problems(proc.stderr + proc.stdout)
        if named:
            raise BundleBuildError(
                "apt cannot resolve the profile's packages (nothing was downloaded):\n  - "
                + "\n  - ".join(named)
            )
        raise BundleBuildError(f"apt cannot resolve the profile's packages: {proc.stderr.strip()[-800:]}")
    return parse_uris(proc.stdout)


def _dir_bytes(path: Path) -> int:
    total = 0
    for p in path.rglob("*.deb*"):
        with contextlib.suppress(OSError):
            total += p.stat().st_size
    return total


def download(
    container: BuildContainer,
    packages: list[str],
    pool: Path,
    wanted: list[dict],
    rate_limit: int | None = None,
) -> None:
    """apt-get --download-only into the bundle's pool, with a progress bar polled from disk.

    ``rate_limit`` (bytes/s) becomes apt's own Dl-Limit (KiB/s, per connection)."""
    total = sum(w["size"] for w in wanted)
    have = sum((pool / w["file"]).stat().st_size for w in wanted if (pool / w["file"]).is_file())
    bar = Bar("apt", total)
    bar.update(have)
    stop = threading.Event()
    watcher = watch(lambda: _dir_bytes(pool), bar, stop)
    quoted = " ".join(f"'{p}'" for p in packages)
    limit = ""
    if rate_limit:
        kib = max(1, rate_limit // 1024)
        limit = f"-o Acquire::http::Dl-Limit={kib} -o Acquire::https::Dl-Limit={kib} "
    try:
        proc = container.sh(
            "apt-get install --download-only --no-install-recommends -y -qq "
            f"-o Dir::Cache::Archives=/bundle-pool/ {limit}{quoted}",
            check=False,
        )
    finally:
        stop.set()
        watcher.join()
    if proc.returncode != 0:
        raise BundleBuildError(f"apt could not download the packages: {proc.stderr.strip()[-800:]}")
    for leftover in ("lock",):
        (pool / leftover).unlink(missing_ok=True)
    partial = pool / "partial"
    if partial.is_dir() and not any(partial.iterdir()):
        partial.rmdir()
    bar.update(_dir_bytes(pool))
    bar.close(f", {len(wanted)} packages")
    missing = [w["file"] for w in wanted if not (pool / w["file"]).is_file()]
    if missing:
        raise BundleBuildError(
            f"apt finished but these packages are not in {pool}: {', '.join(missing[:10])}"
        )


def _hashes(path: Path) -> dict:
    md5, sha1, sha256 = (
        hashlib.md5(usedforsecurity=False),
        hashlib.sha1(usedforsecurity=False),
        hashlib.sha256(),
    )
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            md5.update(block)
            sha1.update(block)
            sha256.update(block)
    return {"MD5sum": md5.hexdigest(), "SHA1": sha1.hexdigest(), "SHA256": sha256.hexdigest()}


def control_fields(deb: Path) -> str:
    proc = subprocess.run(["dpkg-deb", "--field", str(deb)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BundleBuildError(f"{deb.name} is not a readable Debian package: {proc.stderr.strip()}")
    return proc.stdout.rstrip("\n")


def packages_index(repo: Path) -> str:
    """The Packages index of every .deb under repo/pool, sorted by file name (deterministic)."""
    stanzas = []
    for deb in sorted((repo / "pool").glob("*.deb")):
        h = _hashes(deb)
        rel = deb.relative_to(repo).as_posix()
        extra = (
            f"Filename: {rel}\nSize: {deb.stat().st_size}\n"
            f"MD5sum: {h['MD5sum']}\nSHA1: {h['SHA1']}\nSHA256: {h['SHA256']}"
        )
        stanzas.append(control_fields(deb) + "\n" + extra + "\n")
    return "\n".join(stanzas)


def write_index(repo: Path, created_epoch: int, label: str, arch: str) -> list[Path]:
    """Write Packages, Packages.gz and Release into repo; return the files to sign over."""
    text = packages_index(repo).encode()
    (repo / "Packages").write_bytes(text)
    with (
        (repo / "Packages.gz").open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
    ):
        gz.write(text)
    lines = [
        "Origin: gpufleet",
        f"Label: gpufleet bundle {label}",
        "Suite: gpufleet",
        f"Codename: {label}",
        f"Date: {formatdate(created_epoch, usegmt=True)}",
        f"Architectures: {arch} all",
        "Description: gpufleet offline bundle (flat repository)",
    ]
    for algo, field in (("md5", "MD5Sum"), ("sha1", "SHA1"), ("sha256", "SHA256")):
        lines.append(f"{field}:")
        for name in ("Packages", "Packages.gz"):
            data = (repo / name).read_bytes()
            digest = hashlib.new(algo, data, usedforsecurity=False).hexdigest()
            lines.append(f" {digest} {len(data):>16} {name}")
    (repo / "Release").write_text("\n".join(lines) + "\n")
    return [repo / "Release"]


def epoch_now() -> int:
    return int(time.time())
