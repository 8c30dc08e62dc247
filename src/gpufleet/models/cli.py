"""``gpufleet model add|verify|fetch|rollback``."""

from __future__ import annotations

import argparse
import sys

from gpufleet._progress import Bar, human, sayer
from gpufleet.bundle.cli import parse_rate
from gpufleet.bundle.signing import ENV_HOME
from gpufleet.models import ModelVerifyFailed

# model_transfer.ENGINES (a test keeps them equal): the collection, and boto3 with it, is imported
# only when a model command runs, not to build the parser
ENGINES = ("builtin", "aria2")


def cmd_model(args: argparse.Namespace) -> int:
    from gpufleet.models import api

    if args.model_cmd == "add":
        bar = None

        def start(total: int) -> None:
            nonlocal bar
            bar = Bar("hash", total, stream=sys.stderr)

        result = api.add_model(
            args.directory,
            args.name,
            args.version,
            output=args.output,
            chunk_size=args.chunk_size,
            signing_home=args.signing_home,
            key=args.key,
            progress=lambda n: bar.add(n) if bar else None,
            say=sayer("model"),
            on_total=start,
        )
        if bar is not None:
            bar.close(f", {result['hashed']} files hashed, {result['cached']} from an earlier run")
        print(
            f"model '{result['name']}' version {result['version']}: {result['files']} files, "
            f"{human(result['bytes'])}\n"
            f"manifest {result['manifest']}, signed by {result['fingerprint']} ({result['signature']})\n"
            f"check it:  gpufleet model verify {result['manifest']} --fingerprint {result['fingerprint']}"
        )
        return 0
    if args.model_cmd == "verify":
        bar = Bar("verify", None, stream=sys.stderr) if args.dir else None
        report = api.verify_model(
            args.manifest,
            args.fingerprint,
            keyring=args.keyring,
            signature=args.signature,
            directory=args.dir,
            signing_home=args.signing_home,
            progress=bar.add if bar else None,
        )
        if bar is not None:
            bar.close()
        what = f"model '{report['name']}' version {report['version']}"
        if not report["ok"]:
            print(f"FAILED: {args.dir} does not match {what} ({len(report['problems'])} problem(s)):")
            for line in report["problems"]:
                print(f"  - {line}")
            raise ModelVerifyFailed("the model directory does not match its signed manifest")
        checked = f"; every file in {args.dir} matches" if args.dir else ""
        print(
            f"OK: {what}: signature good (pinned key {args.fingerprint}); {report['files']} files, "
            f"{human(report['bytes'])}{checked}"
        )
        return 0
    if args.model_cmd == "fetch":
        bar = None

        def start(total: int) -> None:
            nonlocal bar
            bar = Bar("fetch", total, stream=sys.stderr)

        result = api.fetch_model(
            args.manifest,
            args.fingerprint,
            args.source,
            args.store,
            keyring=args.keyring,
            signature=args.signature,
            activate=not args.no_activate,
            workers=args.workers,
            rate_limit=args.rate_limit,
            signing_home=args.signing_home,
            progress=lambda n: bar.add(n) if bar else None,
            on_total=start,
            timeout=args.timeout,
            engine=args.engine,
            s3_endpoint_url=args.s3_endpoint_url,
            s3_region=args.s3_region,
        )
        if bar is not None:
            bar.close(f", {len(result['fetched'])} files")
        state = "now current" if result["activated"] else "in the store (current unchanged)"
        print(
            f"{result['path']}: {state}; {len(result['fetched'])} files fetched ({human(result['bytes'])}), "
            f"{human(result['resumed_bytes'])} resumed; previous: {result['previous'] or 'none'}"
        )
        return 0
    if args.model_cmd == "rollback":
        result = api.rollback_model(args.store, args.name)
        print(f"model {args.name}: current is {result['current']} again (previous: {result['previous']})")
        return 0
    raise AssertionError(args.model_cmd)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"want a whole number of seconds, at least 1, got {text!r}")
    return value


def add_parser(sub) -> None:
    m = sub.add_parser(
        "model",
        help="model packaging: signed model manifests",
        description="A model is a directory (safetensors shards, config, tokenizer) described by a model "
        "manifest: every file's size and sha256 and the sha256 of each fixed-size chunk, signed with the "
        "bundle key. Nodes fetch it with the gpufleet.cluster.model_fetch module, every chunk verified.",
    )
    ms = m.add_subparsers(dest="model_cmd", required=True)
    ma = ms.add_parser("add", help="hash a model directory into a signed manifest (resumable)")
    ma.add_argument("directory", help="the model directory")
    ma.add_argument("--name", required=True, help="the model's name in the store")
    ma.add_argument("--version", required=True, help="the model version (a directory name in the store)")
    ma.add_argument(
        "-o", "--output", help="manifest path (default NAME-VERSION.model.json); signature OUTPUT.asc"
    )
    ma.add_argument("--chunk-size", type=int, help="bytes per verified chunk (default 64 MiB)")
    ma.add_argument(
        "--signing-home",
        help=f"GnuPG home of the bundle signing key (default: ${ENV_HOME} or "
        "~/.local/share/gpufleet/signing)",
    )
    ma.add_argument("--key", help="fingerprint of the signing key when the home holds several")
    mv = ms.add_parser("verify", help="check a model manifest's signature (and a directory against it)")
    mv.add_argument("manifest", help="the .model.json file")
    mv.add_argument("--fingerprint", required=True, help="the pinned bundle key fingerprint")
    mv.add_argument("--keyring", help="public key to check with (default: this machine's bundle key)")
    mv.add_argument("--signature", help="detached signature (default MANIFEST.asc)")
    mv.add_argument("--dir", help="also hash this model directory against the manifest")
    mv.add_argument("--signing-home", help="GnuPG home of the bundle key, for the default keyring")
    mf = ms.add_parser(
        "fetch",
        help="fetch a signed model into a local store, every chunk verified",
        description="Fetch a signed model version into a local store, as the gpufleet.cluster.model_fetch "
        "module does on a node: the signature first, then every chunk checked as it lands; a failed fetch "
        "never changes current.",
        epilog="S3 credentials have no flags (they would land in shell history and process lists): boto3 "
        "takes them from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, AWS_PROFILE and "
        "~/.aws/credentials, or an instance role. They are never printed.",
    )
    mf.add_argument("manifest", help="the .model.json file")
    mf.add_argument("--fingerprint", required=True, help="the pinned bundle key fingerprint")
    mf.add_argument(
        "--source",
        action="append",
        required=True,
        help="the model directory: an http(s) URL, or s3://BUCKET/PREFIX (needs boto3); repeatable, "
        "tried in turn for each chunk",
    )
    mf.add_argument("--store", required=True, help="the model store directory")
    mf.add_argument("--keyring", help="public key to check with (default: this machine's bundle key)")
    mf.add_argument("--signature", help="detached signature (default MANIFEST.asc)")
    mf.add_argument("--no-activate", action="store_true", help="stage the version; leave current as it is")
    mf.add_argument("--workers", type=int, default=4, help="parallel chunk downloads (default 4)")
    mf.add_argument("--rate-limit", metavar="RATE", type=parse_rate, help="cap, e.g. 500K or 20M (bytes/s)")
    mf.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_positive_int,
        default=60,
        help="seconds to wait for a source to answer one request (default 60)",
    )
    mf.add_argument(
        "--engine",
        choices=ENGINES,
        default="builtin",
        help="builtin: parallel ranged requests; aria2: aria2c (Debian package aria2) carries the bytes "
        "from every source, the first one least preferred - http(s) sources only, no --rate-limit, "
        "--workers is the connections per source (default builtin)",
    )
    mf.add_argument(
        "--s3-endpoint-url",
        metavar="URL",
        help="S3-compatible storage (MinIO, Ceph RGW, ...) for s3:// sources, such as "
        "https://minio.example:9000 (default: AWS S3, or AWS_ENDPOINT_URL_S3)",
    )
    mf.add_argument(
        "--s3-region",
        metavar="REGION",
        help="region of the s3:// sources' bucket (default: boto3's, AWS_REGION)",
    )
    mf.add_argument("--signing-home", help="GnuPG home of the bundle key, for the default keyring")
    mr = ms.add_parser("rollback", help="point current back at the previous version (nothing fetched)")
    mr.add_argument("name", help="the model's name")
    mr.add_argument("--store", required=True, help="the model store directory")
    m.set_defaults(func=cmd_model)
