# Copyright: gpufleet developers
# Apache-2.0
"""Named Python environments (the python_runtime role): the checked list of environments, the
problems with their directories on a host, and the local fact that tells other roles where they are.

Controller code (plugin_utils): runs in filters and the CLI, never on managed hosts. Wheel names and
``NAME==VERSION`` specifications (with optional ``[EXTRA,...]``) are parsed as the offline bundle parses them
(``module_utils/bundle_wheels.py``), so a list this module accepts is one the bundle can pin.

Every problem names the entry (``python_runtime_envs[INDEX]`` and its name), says what is wrong and
what to write instead; nothing here raises on bad input, so the role reports all problems at once.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence

from ansible_collections.gpufleet.cluster.plugins.module_utils.bundle import BundleError
from ansible_collections.gpufleet.cluster.plugins.module_utils.bundle_wheels import parse_wheel_spec
from ansible_collections.gpufleet.cluster.plugins.plugin_utils import python_runtime_conda as conda

VAR = "python_runtime_envs"
ENV_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# A PEP 440 version as pip accepts it after '==' (no spaces, no further specifiers or options).
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+!_-]*$")
ENV_KEYS = ("name", "kind", "packages", "pack", "url", "sha256", "path", "state")
CONDA_ONLY_KEYS = ("pack", "url", "sha256")
KINDS = ("venv", "conda")
STATES = ("present", "absent")
# Written into every environment the role creates; state: absent removes only a directory that has it.
MARKER = ".gpufleet-python-runtime"
# Offline: the requirements file bundle_wheel_requirements writes, pinned to the signed manifest.
REQUIREMENTS = "gpufleet-requirements.txt"
EXAMPLE = "{name: torch, packages: ['torch==2.10.0']}"
# Where conda-pack archives and the Miniforge installer are kept on the host between runs (a file
# already there with the pinned sha256 is not downloaded again).
CACHE = "/var/cache/gpufleet/python_runtime"


def _kind(value):
    return "a list" if isinstance(value, Sequence) and not isinstance(value, str) else type(value).__name__


def _package_problems(where, packages, required):
    if packages is None and not required:
        return []
    if isinstance(packages, str) or not isinstance(packages, Sequence) or not packages:
        if packages is None:
            got = "it is missing"
        elif isinstance(packages, str):
            got = f"not the string {packages!r}"
        else:
            got = f"not {_kind(packages) if packages else 'an empty list'}"
        return [
            f"{where}: packages must be a non-empty list of NAME==VERSION strings ({got}); "
            "write e.g. packages: ['torch==2.10.0']"
        ]
    problems, seen = [], {}
    for spec in packages:
        try:
            key, version, _extras = parse_wheel_spec(spec)
        except BundleError:
            problems.append(
                f"{where}: package {spec!r} is not NAME==VERSION (or NAME[EXTRA,...]==VERSION); pin every "
                "package to one version, e.g. 'torch==2.10.0' or 'llama-cpp-python[server]==0.3.36' "
                "(the offline bundle pins each wheel by its sha256)"
            )
            continue
        if version is None or not VERSION_RE.match(version):
            problems.append(
                f"{where}: package {spec!r} has no exact version; write {key}==VERSION "
                "(one version, as the offline bundle carries it)"
            )
        elif key in seen:
            problems.append(
                f"{where}: package {key} is listed twice ({seen[key]!r} and {spec!r}); keep one of them"
            )
        else:
            seen[key] = spec
    return problems


def _path(where, env, root):
    """(normalized path, problem or None) of an entry; ``root`` is None when it is not usable."""
    path = env.get("path")
    if path is None or path == "":
        if root is None:
            return None, None  # reported once, for python_runtime_root
        return posixpath.join(root, env["name"]), None
    if not isinstance(path, str) or not posixpath.isabs(path):
        return (
            None,
            f"{where}: path {path!r} is not an absolute path; write e.g. path: /opt/gpufleet/envs/NAME",
        )
    if ".." in path.split("/") or posixpath.normpath(path) == "/":
        return None, f"{where}: path {path!r} must name a directory of its own below /, without '..'"
    return posixpath.normpath(path), None


def python_runtime_plan(
    envs,
    root="/opt/gpufleet/envs",
    offline=False,
    conda_root="/opt/gpufleet/miniforge3",
    miniforge_installer="",
    miniforge_url="",
    miniforge_sha256="",
    conda_channels=None,
    cache=CACHE,
):
    """``{"envs": [...], "problems": [...], "miniforge": ...}``: each valid entry of
    ``python_runtime_envs`` with its path resolved (``ROOT/NAME`` by default), its state (``present``
    by default), its kind (``venv`` by default), its marker, what it is made from and its ``steps``;
    one message per problem; and the Miniforge base (``python_runtime_miniforge_plan``'s fields, or
    None when no present conda env lists packages). Entries with a problem are left out of envs.

    ``offline`` is ``gpufleet_offline``: venv wheels, conda-pack archives and the Miniforge
    installer then come from the bundle only, and conda packages need ``conda_channels``."""
    problems, planned = conda.channel_problems(conda_channels), []
    channels = [c.strip() for c in conda_channels or [] if isinstance(c, str)] if not problems else []
    usable_root = None
    if isinstance(root, str) and posixpath.isabs(root) and posixpath.normpath(root) != "/":
        usable_root = posixpath.normpath(root)
    else:
        problems.append(
            f"python_runtime_root {root!r} is not an absolute directory below /; set e.g. "
            "python_runtime_root: /opt/gpufleet/envs"
        )
    if envs is None:
        envs = []
    if isinstance(envs, (str, Mapping)) or not isinstance(envs, Sequence):
        return {
            "envs": [],
            "miniforge": None,
            "problems": [
                *problems,
                f"{VAR} must be a list of environments, not {_kind(envs)}; write e.g. [{EXAMPLE}]",
            ],
        }
    names = {}
    for index, env in enumerate(envs):
        where = f"{VAR}[{index}]"
        if not isinstance(env, Mapping):
            problems.append(f"{where} is {_kind(env)}, not an environment; write e.g. {EXAMPLE}")
            continue
        name = env.get("name")
        if isinstance(name, str) and ENV_NAME_RE.match(name):
            where = f"{where} ({name})"
        before = len(problems)
        unknown = sorted(str(k) for k in env if k not in ENV_KEYS)
        if unknown:
            problems.append(
                f"{where}: unknown key(s) {', '.join(unknown)}; the keys are {', '.join(ENV_KEYS)}"
            )
        if not isinstance(name, str) or not ENV_NAME_RE.match(name):
            problems.append(
                f"{where}: name {name!r} is not a valid environment name; start with a letter or digit and "
                "use only letters, digits, '.', '_' and '-' (it names a directory)"
            )
        elif name in names:
            problems.append(
                f"{where}: the name {name} is already used by {VAR}[{names[name]}]; give each environment "
                "its own name"
            )
        else:
            names[name] = index
        state = env.get("state") or "present"
        if state not in STATES:
            problems.append(f"{where}: state {state!r} is not one of {', '.join(STATES)}")
        kind = env.get("kind") or "venv"
        if kind not in KINDS:
            problems.append(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
        elif kind == "conda":
            problems += conda.conda_entry_problems(where, {**env, "state": state}, offline, channels)
        else:
            problems += _package_problems(where, env.get("packages"), required=state != "absent")
            given = [key for key in CONDA_ONLY_KEYS if env.get(key) not in (None, "")]
            if given:
                problems.append(
                    f"{where}: {', '.join(given)} is for kind: conda (a conda-pack archive); a venv gets its "
                    "packages as NAME==VERSION wheels: drop it, or set kind: conda"
                )
        named = isinstance(name, str) and names.get(name) == index
        path, problem = _path(where, env, usable_root) if named else (None, None)
        if problem:
            problems.append(problem)
        if len(problems) > before or path is None:
            continue
        entry = {
            "name": name,
            "path": path,
            "state": state,
            "kind": kind,
            "marker": posixpath.join(path, MARKER),
        }
        if kind == "conda":
            entry.update(conda.conda_entry(env, path, state, cache, channels))
        else:
            entry.update(
                packages=[p.strip() for p in env.get("packages") or []],
                requirements=posixpath.join(path, REQUIREMENTS),
                steps=_venv_steps(state, offline),
            )
        planned.append(entry)
    problems += _overlap_problems(planned)
    needed = any(env["kind"] == "conda" and "conda_create" in env["steps"] for env in planned)
    miniforge, more = conda.miniforge_plan(
        conda_root, miniforge_installer, miniforge_url, miniforge_sha256, offline, cache, needed
    )
    return {"envs": planned, "problems": problems + more, "miniforge": miniforge}


def _venv_steps(state, offline):
    if state == "absent":
        return ["remove"]
    return ["venv", "pin_wheels", "pip_install"] if offline else ["venv", "pip_install"]


def _overlap_problems(planned):
    """Two environments in one directory, or one inside another (removing the outer one would
    remove the inner one too)."""
    problems = []
    for i, env in enumerate(planned):
        for other in planned[:i]:
            a, b = other["path"], env["path"]
            if a == b:
                problems.append(
                    f"{VAR} ({env['name']}): path {b} is also the path of {other['name']}; give each "
                    "environment its own directory"
                )
            elif b.startswith(a + "/") or a.startswith(b + "/"):
                problems.append(
                    f"{VAR} ({env['name']}): path {b} and the path {a} of {other['name']} are one inside "
                    "the other; give each environment a directory of its own, side by side"
                )
    return problems


def python_runtime_dir_problems(envs, listing):
    """Problems with the environments' directories on the host, before anything is changed.

    ``envs`` is ``python_runtime_plan``'s envs; ``listing`` the results of the role's
    ``ansible.builtin.find`` loop over its ``ansible.builtin.stat`` loop on each env's path (each
    result: ``item`` = the stat result with ``item`` = the env and ``stat``; ``files`` unless the
    path is not a directory). The role never takes over, nor removes, a directory it did not make:
    a directory without the marker is used only when it is empty, and never removed."""
    seen = {}
    for result in listing or []:
        stat_result = result.get("item") or {}
        env = stat_result.get("item") or {}
        stat = stat_result.get("stat") or {}
        if not stat.get("exists"):
            seen[env.get("path")] = None
        elif not stat.get("isdir"):
            seen[env.get("path")] = "file"
        else:
            seen[env.get("path")] = {posixpath.basename(f["path"]) for f in result.get("files") or []}
    problems = []
    for env in envs:
        found = seen.get(env["path"])
        where = f"{VAR} ({env['name']})"
        if found is None:
            continue
        if found == "file":
            problems.append(
                f"{where}: {env['path']} exists and is not a directory; nothing was changed; remove it or "
                "set path to another directory"
            )
        elif MARKER in found:
            continue
        elif env["state"] == "absent":
            problems.append(
                f"{where}: state is absent but {env['path']} was not made by this role (it has no {MARKER}); "
                "nothing was removed; delete it yourself or drop the entry"
            )
        elif found:
            problems.append(
                f"{where}: {env['path']} already exists and was not made by this role (it has no {MARKER}); "
                "set path to a new directory, or empty or remove this one yourself (the role never takes "
                "over a directory it did not create)"
            )
    return problems


def python_runtime_fact(envs, pythons):
    """The local fact: env name -> ``{path, kind, python, packages}`` of each present environment,
    and ``pack`` (the archive's name) for a conda env made from a conda-pack archive. ``pythons``
    holds each present env's Python version (``"3.11"``; ``""`` when unknown), in order."""
    present = [env for env in envs if env["state"] == "present"]
    versions = list(pythons or []) + [""] * len(present)
    fact = {}
    for i, env in enumerate(present):
        fact[env["name"]] = {
            "path": env["path"],
            "kind": env.get("kind", "venv"),
            "python": str(versions[i]).strip(),
            "packages": list(env["packages"]),
        }
        if env.get("pack"):
            fact[env["name"]]["pack"] = env["pack"]
    return fact
