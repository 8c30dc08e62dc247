"""``gpufleet bundle build|verify|diff|apply|key``."""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import time
from pathlib import Path

from gpufleet._progress import Bar, human, say, sayer
from gpufleet.bundle import BundleBuildError
from gpufleet.bundle.signing import ENV_HOME


class VerifyFailed(BundleBuildError):
    exit_code = 1


def _signing(args):
    from gpufleet.bundle.signing import SigningKey

    return SigningKey(getattr(args, "signing_home", None), getattr(args, "key", None))


def _pin(args) -> tuple[str, str]:
    """The fingerprint to trust: --fingerprint, else this machine's own signing key."""
    if args.fingerprint:
        return args.fingerprint, "--fingerprint"
    try:
        return _signing(args).fingerprint(), "this machine's bundle signing key"
    except BundleBuildError:
        raise BundleBuildError(
            "pass --fingerprint FPR: the fingerprint of the key the bundle must be signed with "
            "(on the build machine: gpufleet bundle key --fingerprint). A bundle is never trusted "
            "because of the key it carries."
        ) from None


def _verify(path: Path, fingerprint: str, base: Path | None, quiet: bool) -> dict:
    from gpufleet.bundle.build import _core

    core = _core()
    if not path.is_dir():
        raise BundleBuildError(
            f"{path} is not a directory; pass the bundle directory (the one with manifest.json)"
        )
    total = None
    with contextlib.suppress(core.BundleError):
        total = sum(e["size"] for e in core.load_manifest(str(path))["files"])
    bar = Bar("verify", total, stream=sys.stderr if not quiet else open("/dev/null", "w"))  # noqa: SIM115
    t0 = time.monotonic()
    report = core.verify_bundle(str(path), fingerprint, base=str(base) if base else None, progress=bar.add)
    report["seconds"] = time.monotonic() - t0
    if report.get("files_checked"):
        bar.close(f", {report.get('files', 0)} files")
    return report


def cmd_bundle(args: argparse.Namespace) -> int:
    from gpufleet.bundle.build import _core

    try:
        return _cmd_bundle(args)
    except _core().BundleError as exc:  # a malformed pin or manifest: the user's input, not a crash
        raise BundleBuildError(str(exc)) from None


def _cmd_bundle(args: argparse.Namespace) -> int:
    from gpufleet.bundle import build, update

    if args.bundle_cmd == "build":
        result = None
        if args.reuse:
            result = build.reusable(args.profile, args.output, signing_home=args.signing_home, key=args.key)
        if result is None:
            result = build.build(
                args.profile,
                args.output,
                signing_home=args.signing_home,
                key=args.key,
                apt_rate_limit=args.apt_rate_limit,
            )
        print(
            f"bundle '{result['name']}' {'reused' if result.get('reused') else 'built'} in "
            f"{result['path']}: {result['files']} files, "
            f"{human(result['bytes'])}, {result['seconds']:.0f} s\n"
            f"signed by {result['fingerprint']}\n"
            f"pin it on the fleet:  gpufleet_bundle_fingerprint: {result['fingerprint']}\n"
            f"check it after transfer:  gpufleet bundle verify {result['path']} "
            f"--fingerprint {result['fingerprint']}"
        )
        return 0
    if args.bundle_cmd == "verify":
        from gpufleet.bundle.build import _core

        fpr, why = _pin(args)
        report = _verify(Path(args.path), fpr, Path(args.base) if args.base else None, args.json)
        if args.json:
            print(json.dumps(report, indent=2, default=str))
        else:
            lines = _core().format_problems(report)
            if report["ok"]:
                rate = report["bytes"] / report["seconds"] / 1e6 if report["seconds"] else 0
                print(
                    f"OK: bundle '{report.get('name')}' in {args.path}: signature good "
                    f"(key {report['fingerprint']}, "
                    f"pinned by {why}); {report['files']} files, {human(report['bytes'])} match their sha256 "
                    f"({report['seconds']:.1f} s, {rate:.0f} MB/s)"
                )
            else:
                print(f"FAILED: bundle in {args.path} did not verify ({len(lines)} problem(s)):")
                for line in lines:
                    print(f"  - {line}")
        if not report["ok"]:
            raise VerifyFailed("bundle verification failed; do not install from it")
        return 0
    if args.bundle_cmd == "diff":
        old, new = Path(args.old), Path(args.new)
        if args.output:
            fpr, _ = _pin(args)
            for p in (old, new):
                report = _verify(p, fpr, None, quiet=True)
                if not report["ok"]:
                    raise VerifyFailed(
                        f"{p} does not verify; refusing to make an update from it: run bundle verify"
                    )
            changes = update.make_update(old, new, Path(args.output))
        else:
            changes = update.diff(old, new)
        for e in changes["added"]:
            print(f"+ {e['path']}  {human(e['size'])}")
        for e in changes["removed"]:
            print(f"- {e['path']}")
        for o, n in changes["changed"]:
            print(f"~ {n['path']}  {o['sha256'][:12]} -> {n['sha256'][:12]}")
        print(
            f"{len(changes['added'])} added, {len(changes['removed'])} removed, "
            f"{len(changes['changed'])} changed, "
            f"{len(changes['unchanged'])} unchanged"
        )
        if args.output:
            print(
                f"update bundle written to {args.output} ({human(changes['carried_bytes'])} carried); "
                "apply it "
                f"beside the old bundle with: gpufleet bundle apply {args.output} --base {old} -o NEWDIR"
            )
        return 0
    if args.bundle_cmd == "apply":
        fpr, _ = _pin(args)
        final = update.apply_update(Path(args.update), Path(args.base), Path(args.output), fpr)
        print(f"bundle '{final['name']}' assembled in {args.output} and verified: {final['files']} files")
        return 0
    if args.bundle_cmd == "key":
        key = _signing(args)
        if args.create:
            fpr, created = key.ensure(say=sayer("bundle"))
            if not created:
                say("bundle", f"a signing key already exists in {key.home}")
        fpr = key.fingerprint()
        if args.export:
            Path(args.export).write_bytes(key.export(armor=True))
        print(fpr if args.fingerprint else f"{fpr}  ({key.home})")
        return 0
    raise AssertionError(args.bundle_cmd)


def parse_rate(text: str) -> int:
    """'500K' / '20M' / '1G' / '65536' -> bytes per second (K = 1024)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?)(?:B)?(?:/S)?\s*", text.upper())
    value = float(m.group(1)) * 1024 ** " KMG".index(m.group(2) or " ") if m else 0
    if value < 1024:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a rate of at least 1K: give bytes per second such as 500K, 20M or 1G"
        )
    return int(value)


def add_parser(sub) -> None:
    b = sub.add_parser(
        "bundle",
        help="offline bundles: build, verify, diff, apply, signing key",
        description="Signed offline bundles for air-gapped sites: a flat apt repository signed with "
        "the bundle key, a hash-pinned wheelhouse, saved container images, pinned files, and manifest.json "
        "(every file's path, size, sha256, origin and purpose) with a detached signature.",
    )
    bs = b.add_subparsers(dest="bundle_cmd", required=True)

    def signing(p):
        p.add_argument(
            "--signing-home",
            help=f"GnuPG home of the bundle signing key (default: ${ENV_HOME} or "
            "~/.local/share/gpufleet/signing)",
        )
        p.add_argument("--key", help="fingerprint of the signing key when the home holds several")

    bb = bs.add_parser("build", help="build a bundle from a profile (resumable)")
    bb.add_argument("profile", help="bundle profile (YAML), e.g. bundles/lab.yml")
    bb.add_argument(
        "-o", "--output", required=True, help="bundle directory (new, empty, or an earlier build)"
    )
    bb.add_argument(
        "--apt-rate-limit",
        metavar="RATE",
        type=parse_rate,
        help="cap apt's download rate, e.g. 500K or 20M (bytes/s), to spare a shared uplink; "
        "apt applies it per connection (Acquire::http::Dl-Limit)",
    )
    bb.add_argument(
        "--reuse",
        action="store_true",
        help="use the bundle already in -o as it is when it was built from this profile, is signed by "
        "this machine's key and has every file at its recorded size (no download, no re-resolve; "
        "contents are hashed by 'gpufleet bundle verify'); otherwise build as usual",
    )
    signing(bb)
    bv = bs.add_parser("verify", help="check the signature, then every file's sha256; exit 1 on any problem")
    bv.add_argument("path", help="bundle directory")
    bv.add_argument("--fingerprint", help="the pinned signing key fingerprint (default: this machine's key)")
    bv.add_argument("--base", help="for an update bundle: the bundle it applies to")
    bv.add_argument("--json", action="store_true", help="print the report as JSON")
    signing(bv)
    bd = bs.add_parser("diff", help="what changed between two bundles; -o writes an update bundle")
    bd.add_argument("old")
    bd.add_argument("new")
    bd.add_argument("-o", "--output", help="write an update bundle with only the added/changed files here")
    bd.add_argument("--fingerprint", help="pinned key both bundles must verify against (with -o)")
    signing(bd)
    ba = bs.add_parser("apply", help="assemble a full bundle from an update bundle and its base")
    ba.add_argument("update")
    ba.add_argument("--base", required=True, help="the bundle the update was made against")
    ba.add_argument("-o", "--output", required=True, help="new directory for the full bundle")
    ba.add_argument("--fingerprint", help="the pinned signing key fingerprint (default: this machine's key)")
    signing(ba)
    bk = bs.add_parser("key", help="show (or --create) the bundle signing key")
    bk.add_argument("--create", action="store_true", help="create the key if there is none")
    bk.add_argument("--fingerprint", action="store_true", help="print only the fingerprint")
    bk.add_argument("--export", metavar="FILE", help="write the armored public key here")
    signing(bk)
    b.set_defaults(func=cmd_bundle)
