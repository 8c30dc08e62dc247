# Copyright: gpufleet developers
# Apache-2.0
"""conda environments of the python_runtime role (``kind: conda`` in ``python_runtime_envs``): the
checks on such an entry and the steps the role takes for it.

A conda environment is either a conda-pack archive (``pack: FILE.tar.gz``), unpacked into the
environment's path and made to work there with ``bin/conda-unpack`` (conda-pack's documented
procedure), or a list of pinned conda packages (``packages: [NAME=VERSION]``) that ``conda create``
installs with a Miniforge base the role installs from its pinned installer. Archives and the
installer come from the offline bundle (pinned files, each checked against the signed manifest's
sha256 by ``bundle_file``) or, online only, from a ``url`` with its ``sha256``.

Controller code (plugin_utils), called by ``python_runtime.python_runtime_plan``; every problem names
the entry, what is wrong and what to write instead. Nothing here raises on bad input.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence

# A pinned file's name in the bundle (files[].name of a bundle profile, docs/bundles.md).
FILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
PACK_SUFFIXES = (".tar.gz", ".tgz")
MINIFORGE_RE = re.compile(r"^Miniforge3-[A-Za-z0-9._+-]+-Linux-(x86_64|aarch64)\.sh$")
# conda match specs pinned to one version: NAME=VERSION, NAME==VERSION or NAME=VERSION=BUILD. No
# ranges, wildcards, channel prefixes (channel::name) or brackets: the channels are the role's.
CONDA_SPEC_RE = re.compile(
    r"^(?P<name>[A-Za-z0-9_][A-Za-z0-9_.-]*)"
    r"(?:==(?P<exact>[A-Za-z0-9_.+!]+)|=(?P<version>[A-Za-z0-9_.+!]+)(?:=(?P<build>[A-Za-z0-9_.+]+))?)$"
)
SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")
URL_PREFIXES = ("https://", "http://", "file://")
# Written after the installer finished; the installer runs again only when it records another file.
MINIFORGE_MARKER = ".gpufleet-miniforge"
PACK_EXAMPLE = "pack: torch-env.tar.gz"
PACKAGES_EXAMPLE = "packages: ['python=3.11.10', 'numpy=1.26.4']"


def _given(env, key):
    return env.get(key) not in (None, "", [])


def _source_problems(where, env, offline, what):
    """``url`` + ``sha256`` (online only) for ``what``; from the bundle when there is no url."""
    url, sha256 = env.get("url"), env.get("sha256")
    if not _given(env, "url"):
        if _given(env, "sha256"):
            return [
                f"{where}: sha256 goes with url; from the bundle, the signed manifest gives each file's "
                "sha256: drop sha256, or give url too"
            ]
        return []
    if offline:
        return [
            f"{where}: url {url!r} is for online hosts only; offline (gpufleet_offline) the {what} comes "
            "from the bundle: drop url and sha256 and add the file to the bundle profile's files"
        ]
    problems = []
    if not isinstance(url, str) or not url.startswith(URL_PREFIXES):
        problems.append(f"{where}: url {url!r} is not an http://, https:// or file:// URL")
    if not isinstance(sha256, str) or not SHA256_RE.match(sha256):
        problems.append(
            f"{where}: url needs its sha256 (64 hexadecimal characters; got {sha256!r}); compute it with "
            "'sha256sum FILE' from a trusted copy"
        )
    return problems


def _pack_problems(where, pack):
    if not isinstance(pack, str) or not FILE_NAME_RE.match(pack) or not pack.endswith(PACK_SUFFIXES):
        return [
            f"{where}: pack {pack!r} is not a conda-pack archive name; write the archive's file name in the "
            f"bundle, ending .tar.gz or .tgz (conda-pack's default format), e.g. {PACK_EXAMPLE}"
        ]
    return []


def conda_package_problems(where, packages):
    """Problems with a conda env's ``packages``: a non-empty list of pinned match specs, each name once."""
    if isinstance(packages, str) or not isinstance(packages, Sequence) or not packages:
        return [
            f"{where}: packages must be a non-empty list of NAME=VERSION strings; "
            f"write e.g. {PACKAGES_EXAMPLE}"
        ]
    problems, seen = [], {}
    for spec in packages:
        match = CONDA_SPEC_RE.match(spec.strip()) if isinstance(spec, str) else None
        if not match:
            problems.append(
                f"{where}: conda package {spec!r} is not pinned to one version; write NAME=VERSION, "
                "NAME==VERSION or NAME=VERSION=BUILD (conda match specs; no ranges, wildcards or "
                "channel::name prefixes), e.g. 'numpy=1.26.4'"
            )
            continue
        key = match.group("name").lower()
        if key in seen:
            problems.append(
                f"{where}: conda package {key} is listed twice ({seen[key]!r} and {spec!r}); keep one"
            )
        else:
            seen[key] = spec
    return problems


def conda_entry_problems(where, env, offline, channels):
    """Problems with one ``kind: conda`` entry (its name, path and state are checked by the caller)."""
    if env.get("state") == "absent":
        return []
    has_pack, has_packages = _given(env, "pack"), env.get("packages") is not None
    if has_pack and has_packages:
        return [
            f"{where}: pack and packages exclude each other (a conda-pack archive is a whole environment); "
            f"keep {PACK_EXAMPLE} or {PACKAGES_EXAMPLE}, not both"
        ]
    if not has_pack and not has_packages:
        return [
            f"{where}: a conda environment needs pack (a conda-pack archive, e.g. {PACK_EXAMPLE}) or "
            f"packages (e.g. {PACKAGES_EXAMPLE})"
        ]
    if has_pack:
        return _pack_problems(where, env["pack"]) + _source_problems(
            where, env, offline, "conda-pack archive"
        )
    problems = conda_package_problems(where, env["packages"])
    if _given(env, "url") or _given(env, "sha256"):
        problems.append(
            f"{where}: url and sha256 are for a conda-pack archive (pack); packages are installed from the "
            "conda channels (python_runtime_conda_channels); drop url and sha256"
        )
    if offline and not channels:
        problems.append(
            f"{where}: offline (gpufleet_offline) there is no conda channel to install packages from: "
            "set python_runtime_conda_channels to a channel your site serves on its own network, or carry "
            f"the environment as a conda-pack archive ({PACK_EXAMPLE}, a pinned file of the bundle profile)"
        )
    return problems


def conda_entry(env, path, state, cache, channels):
    """The planned fields of a valid ``kind: conda`` entry (merged into the env by the caller)."""
    if state == "absent":
        return {
            "pack": None,
            "source": None,
            "url": None,
            "sha256": None,
            "packages": [],
            "steps": ["remove"],
        }
    if _given(env, "pack"):
        url = env.get("url") or None
        return {
            "pack": env["pack"],
            "source": "url" if url else "bundle",
            "url": url,
            "sha256": env["sha256"].lower() if url else None,
            "archive": posixpath.join(cache, env["pack"]),
            "packages": [],
            "steps": ["fetch_pack", "unpack", "conda_unpack"],
        }
    packages = [p.strip() for p in env["packages"]]
    args = [arg for channel in channels for arg in ("-c", channel)]
    args = (["--override-channels", *args] if args else []) + packages
    return {
        "pack": None,
        "source": None,
        "url": None,
        "sha256": None,
        "packages": packages,
        # What the marker records once conda create finished: a change in it creates the env again.
        "record": "conda create " + " ".join(args),
        "create_args": args,
        "steps": ["miniforge", "conda_create"],
    }


def miniforge_plan(conda_root, installer, url, sha256, offline, cache, needed):
    """``(plan or None, problems)`` of the Miniforge base that ``conda create`` runs from; needed when
    a present conda env lists packages."""
    if not needed:
        return None, []
    problems = []
    if (
        not isinstance(conda_root, str)
        or not posixpath.isabs(conda_root)
        or posixpath.normpath(conda_root) == "/"
    ):
        problems.append(
            f"python_runtime_conda_root {conda_root!r} is not an absolute directory below /; set e.g. "
            "python_runtime_conda_root: /opt/gpufleet/miniforge3"
        )
    if not isinstance(installer, str) or not MINIFORGE_RE.match(installer):
        problems.append(
            f"python_runtime_miniforge_installer {installer!r} is not a Miniforge installer's file name; "
            "conda packages need it: set it to the installer's name (a pinned file of the bundle "
            "profile, or the file python_runtime_miniforge_url downloads), "
            "e.g. Miniforge3-24.11.3-0-Linux-x86_64.sh"
        )
    where = "python_runtime_miniforge_url"
    problems += _source_problems(where, {"url": url, "sha256": sha256}, offline, "Miniforge installer")
    if problems:
        return None, problems
    root = posixpath.normpath(conda_root)
    return {
        "installer": installer,
        "source": "url" if url else "bundle",
        "url": url or None,
        "sha256": sha256.lower() if url else None,
        "download": posixpath.join(cache, installer),
        "root": root,
        "conda": posixpath.join(root, "bin", "conda"),
        "marker": posixpath.join(root, MINIFORGE_MARKER),
    }, []


def channel_problems(channels):
    if channels is None:
        return []
    if isinstance(channels, str) or not isinstance(channels, Sequence):
        return [f"python_runtime_conda_channels must be a list of channel URLs or names, not {channels!r}"]
    return [
        f"python_runtime_conda_channels: {channel!r} is not a channel; write a URL or a name, without spaces"
        for channel in channels
        if not isinstance(channel, str) or not channel.strip() or any(c.isspace() for c in channel.strip())
    ]
