"""The bundle signing key: a GnuPG home of its own, created on first use, used by gpg in batch mode.

The key signs the apt repository (InRelease, Release.gpg) and the manifest (manifest.json.asc).
Nodes and the bastion trust it only by its pinned fingerprint (``gpufleet_bundle_fingerprint``),
never because the bundle carries it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from gpufleet.bundle import BundleBuildError

KEY_UID = "gpufleet bundle signing key"
ENV_HOME = "GPUFLEET_SIGNING_HOME"


def default_home() -> Path:
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env)
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "gpufleet" / "signing"


class SigningKey:
    def __init__(self, home: str | Path | None = None, key: str | None = None):
        self.home = Path(home) if home else default_home()
        self.key = key

    def _gpg(self, *args: str, input: bytes | None = None) -> bytes:
        exe = shutil.which("gpg")
        if exe is None:
            raise BundleBuildError("gpg is not installed: apt-get install gnupg (make host-deps does it)")
        proc = subprocess.run(
            [exe, "--homedir", str(self.home), "--batch", "--no-tty", *args],
            input=input,
            capture_output=True,
            check=False,
            env={**os.environ, "LC_ALL": "C"},
        )
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip().splitlines()
            raise BundleBuildError(f"gpg {args[0]} failed in {self.home}: {' / '.join(err[-3:])}")
        return proc.stdout

    def created(self) -> int:
        """Creation time of the signing key (seconds since the epoch)."""
        fpr = self.fingerprint()
        for line in self._gpg("--with-colons", "--list-secret-keys", fpr).decode().splitlines():
            fields = line.split(":")
            if fields[0] == "sec":
                return int(fields[5])
        return 0

    def fingerprints(self) -> list[str]:
        if not (self.home / "pubring.kbx").exists() and not (self.home / "pubring.gpg").exists():
            return []
        out = self._gpg("--with-colons", "--list-secret-keys").decode()
        fprs, want_fpr = [], False
        for line in out.splitlines():
            fields = line.split(":")
            if fields[0] == "sec":
                want_fpr = True
            elif fields[0] == "fpr" and want_fpr:
                fprs.append(fields[9])
                want_fpr = False
        return fprs

    def fingerprint(self) -> str:
        """The fingerprint of the key that signs; raise when there is none."""
        fprs = self.fingerprints()
        if self.key:
            want = self.key.replace(" ", "").upper()
            match = [f for f in fprs if f.endswith(want)]
            if not match:
                raise BundleBuildError(
                    f"no secret key {self.key} in {self.home}; keys there: {', '.join(fprs) or 'none'}"
                )
            return match[0]
        if not fprs:
            raise BundleBuildError(
                f"no bundle signing key in {self.home} yet; create one with 'gpufleet bundle key --create' "
                "(or let 'gpufleet bundle build' create it)"
            )
        if len(fprs) > 1:
            raise BundleBuildError(
                f"{self.home} holds several secret keys ({', '.join(fprs)}); choose one with --key"
            )
        return fprs[0]

    def ensure(self, say=print) -> tuple[str, bool]:
        """Return (fingerprint, created). Creates an ed25519 signing key when the home has none."""
        if self.fingerprints() or self.key:
            return self.fingerprint(), False
        self.home.mkdir(parents=True, exist_ok=True)
        os.chmod(self.home, 0o700)
        self._gpg("--passphrase", "", "--quick-gen-key", KEY_UID, "ed25519", "sign", "never")
        fpr = self.fingerprint()
        say(
            f"created bundle signing key {fpr} in {self.home}: back this directory up, "
            f"and pin the key on the fleet with 'gpufleet_bundle_fingerprint: {fpr}' in group_vars"
        )
        return fpr, True

    def export(self, armor: bool) -> bytes:
        fpr = self.fingerprint()
        return self._gpg(
            "--export", "--export-options", "export-minimal", *(["--armor"] if armor else []), fpr
        )

    def sign(self, src: Path, dest: Path, mode: str, at: int | None = None) -> None:
        """mode 'detach' (armored detached signature) or 'clear' (InRelease).

        ``at`` dates the signature (never before the key's creation): with ed25519's deterministic
        signatures, the same input and date give the same bytes, so rebuilds are reproducible."""
        fpr = self.fingerprint()
        when = ["--faked-system-time", f"{max(at, self.created())}!"] if at else []
        flag = ["--detach-sign", "--armor"] if mode == "detach" else ["--clearsign"]
        tmp = dest.with_name(dest.name + ".tmp")
        self._gpg(
            "--yes", *when, "--digest-algo", "SHA512", "--local-user", fpr,
            *flag, "--output", str(tmp), str(src),
        )  # fmt: skip
        tmp.replace(dest)
