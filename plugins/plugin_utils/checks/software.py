# Copyright: gpufleet developers
# Apache-2.0
"""Software state checks: what the roles installed is still what runs (driver package, CUDA
toolkit, NCCL library and configuration, container runtime and its CDI spec, services)."""

from __future__ import annotations

import json
import re

from ansible_collections.gpufleet.cluster.plugins.module_utils.versions import DRIVER_VERSION, to_int
from ansible_collections.gpufleet.cluster.plugins.plugin_utils import cdi, nccl_tuning, nvidia_driver
from ansible_collections.gpufleet.cluster.plugins.plugin_utils import cuda_toolkit as cuda_utils
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks.core import (
    FAIL,
    MONITOR,
    PASS,
    POLICY,
    REPROVISION,
    SKIP,
    WARN,
    no_gpu,
    plural,
    result,
    tail,
)

# --- driver_package -------------------------------------------------------------------------

_DRIVER_PACKAGE = re.compile(r"(nvidia|libcuda|cuda-drivers|firmware-nvidia)")


def driver_package(driver_fact, packages, branch=None, version=None):
    """The driver package the nvidia_driver role recorded is still the installed one.

    ``driver_fact``: /etc/ansible/facts.d/gpufleet_nvidia_driver.fact, or None (the role has not run:
    fail REPROVISION). ``packages``: {name: version} of installed packages. Fails REPROVISION when no
    installed package carries the recorded ``package_version`` any more, or an installed NVIDIA driver
    package is off the pinned branch / version. Runs on GPU-less hosts too (software state).
    """
    check = "driver_package"
    branch = str(branch or (driver_fact or {}).get("branch") or "")
    pinned = nvidia_driver.upstream_version(version) if version else ""
    expected = pinned or (f"{branch}.x" if branch else None)
    if not isinstance(driver_fact, dict):
        return result(
            check,
            FAIL,
            "the nvidia_driver role has not run on this host (no gpufleet_nvidia_driver local fact)",
            expected=expected,
            source=POLICY,
            action=REPROVISION,
        )
    packages = packages if isinstance(packages, dict) else {}
    driver_pkgs = {
        name: str(ver)
        for name, ver in sorted(packages.items())
        if _DRIVER_PACKAGE.search(str(name)) and DRIVER_VERSION.fullmatch(nvidia_driver.upstream_version(ver))
    }
    recorded = str(driver_fact.get("package_version") or "")
    details = [
        {"package": name, "version": ver, "upstream": nvidia_driver.upstream_version(ver)}
        for name, ver in driver_pkgs.items()
    ]
    common = {"expected": expected, "source": POLICY, "details": details}
    if not driver_pkgs:
        return result(
            check,
            FAIL,
            f"no NVIDIA driver package is installed; the nvidia_driver role recorded "
            f"{recorded or 'branch ' + (branch or '?')}",
            action=REPROVISION,
            **common,
        )
    holders = [name for name, ver in driver_pkgs.items() if recorded and ver == recorded]
    if recorded and not holders:
        listing = ", ".join(f"{n} {v}" for n, v in driver_pkgs.items())
        return result(
            check,
            FAIL,
            f"no installed package has the driver version the nvidia_driver role recorded ({recorded}); "
            f"installed: {listing}",
            measured=sorted(set(driver_pkgs.values())),
            action=REPROVISION,
            **{**common, "expected": recorded},
        )
    off_branch = [n for n, v in driver_pkgs.items() if branch and not nvidia_driver.on_branch(branch, [v])]
    if off_branch:
        listing = ", ".join(f"{n} {driver_pkgs[n]}" for n in off_branch)
        return result(
            check,
            FAIL,
            f"driver packages off the pinned branch {branch}: {listing}",
            measured=sorted({driver_pkgs[n] for n in off_branch}),
            action=REPROVISION,
            **common,
        )
    main = holders or list(driver_pkgs)
    primary = next((n for n in main if "kernel" in n or "headless" in n or "cuda-drivers" in n), main[0])
    if pinned and nvidia_driver.upstream_version(driver_pkgs[primary]) != pinned:
        return result(
            check,
            FAIL,
            f"{primary} {driver_pkgs[primary]} installed, {pinned} pinned (nvidia_driver_version)",
            measured=driver_pkgs[primary],
            action=REPROVISION,
            **common,
        )
    how = "as the nvidia_driver role recorded" if holders else "(the role recorded no package version)"
    return result(
        check,
        PASS,
        f"{primary} {driver_pkgs[primary]} installed {how}"
        + (f", branch {branch}" if branch else "")
        + (f" ({len(driver_pkgs)} driver packages)" if len(driver_pkgs) > 1 else ""),
        measured=driver_pkgs[primary],
        **common,
    )


# --- nccl_conf -----------------------------------------------------------------------------


def parse_nccl_conf(text):
    """/etc/nccl.conf -> {KEY: value}: NCCL's rule, the name up to the first '=', the rest the value;
    lines starting with '#' and lines without '=' are skipped."""
    out = {}
    for raw in (text or "").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        out[key.strip()] = value.strip()
    return out


def _socket_problems(value, interfaces):
    """Every NCCL_SOCKET_IFNAME entry must name an interface that exists and is up."""
    text = value.strip()
    if text.startswith("^"):
        return []  # an exclusion of an absent interface is harmless
    exact = text.startswith("=")
    text = text[1:] if exact else text
    ifaces = nccl_tuning._interfaces(interfaces)
    problems = []
    for token in [t.strip() for t in text.split(",") if t.strip()]:
        named = [i for i in ifaces if (i["name"] == token if exact else i["name"].startswith(token))]
        if not named:
            problems.append(
                f"NCCL_SOCKET_IFNAME names {token}, which this host does not have "
                f"(interfaces: {', '.join(i['name'] for i in ifaces) or 'none'})"
            )
        elif not any(i["active"] for i in named):
            problems.append(f"NCCL_SOCKET_IFNAME names {token}, which is down")
    return problems


def nccl_conf(conf_text, nccl_fact, ib, interfaces):
    """/etc/nccl.conf against this host's interfaces and RDMA ports.

    Not written and no nccl fact: skip (role not applied). The role recorded a conf path but the file
    is missing: fail REPROVISION. NCCL_SOCKET_IFNAME entries that do not exist or are down and
    NCCL_IB_HCA entries that ``nccl_tuning.hca_problems`` rejects fail REPROVISION (the role
    recomputes them from facts). NCCL_IB_DISABLE=1 with an ACTIVE RDMA port, no NCCL_IB_DISABLE without
    one, and values that differ from what the role recorded warn MONITOR. Every problem is in details.
    """
    check = "nccl_conf"
    fact = nccl_fact if isinstance(nccl_fact, dict) else None
    path = (fact or {}).get("conf") or "/etc/nccl.conf"
    if conf_text is None:
        if fact is None:
            return result(check, SKIP, "nccl role not applied (no nccl.conf, no gpufleet_nccl local fact)")
        if not fact.get("conf"):
            return result(
                check, SKIP, "the nccl role did not write nccl.conf on this host (nccl_conf: false)"
            )
        return result(
            check,
            FAIL,
            f"{path} is missing although the nccl role wrote it",
            expected="present",
            source=POLICY,
            action=REPROVISION,
        )
    values = parse_nccl_conf(conf_text)
    fails, warns = [], []
    if "NCCL_SOCKET_IFNAME" in values:
        fails += _socket_problems(values["NCCL_SOCKET_IFNAME"], interfaces)
    if "NCCL_IB_HCA" in values:
        fails += nccl_tuning.hca_problems(ib, values["NCCL_IB_HCA"])
    kind = nccl_tuning.fabric(ib)
    disable = values.get("NCCL_IB_DISABLE")
    if disable == "1" and kind != "ethernet":
        warns.append(f"NCCL_IB_DISABLE=1 although this host has ACTIVE {kind} ports: NCCL uses TCP sockets")
    if disable is None and kind == "ethernet":
        warns.append("no ACTIVE InfiniBand/RoCE port and no NCCL_IB_DISABLE: NCCL probes RDMA devices first")
    recorded = (fact or {}).get("settings")
    if isinstance(recorded, dict):
        for key in sorted(set(recorded) | set(values)):
            if str(recorded.get(key)) != str(values.get(key)) and (key in recorded or key in values):
                warns.append(
                    f"{key}={values.get(key, '(unset)')} in {path}, "
                    f"the nccl role wrote {recorded.get(key, '(unset)')}"
                )
    details = [{"problem": p, "severity": FAIL} for p in fails] + [
        {"problem": p, "severity": WARN} for p in warns
    ]
    common = {"measured": values, "source": nccl_tuning.DOC_URL, "details": details}
    if fails:
        return result(check, FAIL, f"{path}: " + "; ".join(fails), action=REPROVISION, **common)
    if warns:
        return result(check, WARN, f"{path}: " + "; ".join(warns), action=MONITOR, **common)
    shown = ", ".join(f"{k}={v}" for k, v in values.items()) or "no variables"
    return result(check, PASS, f"{path} fits this host ({kind}): {shown}", **common)


# --- container_runtime ---------------------------------------------------------------------


def _docker_info(text):
    """(dict or None, error text). The first JSON object in the text (stderr may follow it)."""
    text = text or ""
    start = text.find("{")
    if start < 0:
        return None, tail(text) or "no output"
    try:
        data, end = json.JSONDecoder().raw_decode(text[start:])
    except ValueError:
        return None, tail(text) or "no output"
    rest = tail(text[start + end :])
    return (data if isinstance(data, dict) else None), rest


def container_runtime(gpus, docker_info_json):
    """Docker can hand GPUs to containers.

    ``docker_info_json``: ``docker info --format '{{json .}}'`` output (None: docker not installed,
    skip). A daemon that does not answer fails REPROVISION. On a GPU host the runtimes must include
    ``nvidia`` (nvidia-container-toolkit) or the daemon must list NVIDIA CDI devices; else fail
    REPROVISION. Without a GPU the check skips once the daemon answers.
    """
    check = "container_runtime"
    if docker_info_json is None:
        return result(check, SKIP, "docker not installed")
    info, error = _docker_info(docker_info_json)
    server_errors = (info or {}).get("ServerErrors") or []
    if info is None or server_errors or not info.get("ServerVersion"):
        why = "; ".join(str(e) for e in server_errors) or error or "no server version in docker info"
        return result(
            check,
            FAIL,
            f"the docker daemon does not answer: {why}",
            expected="daemon answers",
            source=POLICY,
            action=REPROVISION,
        )
    runtimes = sorted((info.get("Runtimes") or {}).keys())
    cdi = [
        d.get("ID")
        for d in info.get("DiscoveredDevices") or ()
        if isinstance(d, dict) and str(d.get("ID") or "").startswith("nvidia.com/gpu")
    ]
    details = [
        {
            "server_version": info.get("ServerVersion"),
            "runtimes": runtimes,
            "default_runtime": info.get("DefaultRuntime"),
            "cdi_devices": cdi,
        }
    ]
    version = info.get("ServerVersion")
    skip = no_gpu(check, gpus)
    if skip:
        skip["summary"] += f"; docker {version} answers"
        skip["details"] = details
        return skip
    common = {
        "measured": runtimes,
        "expected": "nvidia runtime or CDI devices",
        "source": POLICY,
        "details": details,
    }
    if "nvidia" in runtimes or cdi:
        how = (
            "nvidia runtime" + (" (default)" if info.get("DefaultRuntime") == "nvidia" else "")
            if "nvidia" in runtimes
            else f"CDI devices {', '.join(cdi)}"
        )
        return result(check, PASS, f"docker {version} can give GPUs to containers: {how}", **common)
    return result(
        check,
        FAIL,
        f"docker {version} has no nvidia runtime and no NVIDIA CDI devices "
        f"(runtimes: {', '.join(runtimes) or 'none'})",
        action=REPROVISION,
        **common,
    )


# --- cdi_spec ------------------------------------------------------------------------------


def cdi_spec(gpus, cdi_text, error=None):
    """The NVIDIA CDI specs in /etc/cdi and /var/run/cdi still describe this host (``cdi.compare``).

    ``cdi_text``: ``cdi.COLLECT_COMMAND`` output (None: not read, ``error`` says why: skip naming
    it). No ``nvidia.com/gpu`` spec skips, saying whether the toolkit is installed. A spec that does
    not parse, or one with a missing node, other major/minor, a GPU node it lacks, or libraries of
    another driver version fails REPROVISION naming ``cdi.REGENERATE``. Without any /dev/nvidia<N>
    node the spec cannot be compared: skip saying why (driver not loaded, or no GPU at all).
    """
    check = "cdi_spec"
    if cdi_text is None:
        return result(check, SKIP, f"CDI state not read: {tail(error, 200) or 'no output'}")
    collected = cdi.parse_collected(cdi_text)
    specs, broken, other = [], [], []
    for found in collected["specs"]:
        try:
            data = cdi.load(found["text"], found["path"])
            if data.get("kind") != cdi.KIND:
                other.append(found["path"])
                continue
            specs.append(cdi.read(data, found["path"], found["mtime"]))
        except cdi.SpecError as exc:
            broken.append(str(exc))
    details = [
        {
            "spec": s["path"],
            "cdi_version": s["cdi_version"],
            "written": cdi.stamp(s["mtime"]),
            "devices": s["devices"],
            "nodes": [n["host_path"] for n in s["nodes"]],
            "driver_versions": sorted(s["versions"]),
        }
        for s in specs
    ] + [{"spec": p, "not_judged": "kind is not nvidia.com/gpu"} for p in other]
    common = {"source": cdi.SOURCE_URL, "details": details}
    fix = f"; regenerate: {cdi.REGENERATE}"
    if broken:
        details += [{"problem": b, "severity": FAIL} for b in broken]
        return result(check, FAIL, "; ".join(broken) + fix, action=REPROVISION, **common)
    dirs = " or ".join(cdi.SPEC_DIRS)
    if not specs:
        if collected["toolkit"]:
            why = (
                f"nvidia-ctk is installed ({collected['toolkit']}) but no {cdi.KIND} CDI spec is in {dirs}: "
                f"containers get GPUs without CDI; {cdi.REGENERATE} writes one"
            )
        else:
            why = (
                f"NVIDIA Container Toolkit not installed (no nvidia-ctk) and no {cdi.KIND} CDI spec in {dirs}"
            )
        return result(check, SKIP, why, **common)
    names = ", ".join(s["path"] for s in specs)
    dev = cdi.parse_dev(collected["dev"])
    if not cdi.gpu_nodes(dev):
        count = int((gpus or {}).get("gpu_count") or 0)
        nodes = sum(len(s["nodes"]) for s in specs)
        if count:
            why = (
                f"{plural(count, 'GPU')} on PCI but no /dev/nvidia<N> node: the driver is not loaded "
                f"(see driver_loaded), so {names} cannot be compared"
            )
        else:
            why = (
                f"no GPU on this host (no /dev/nvidia<N>, none on PCI), yet {names} names "
                f"{plural(nodes, 'device node')}: left from GPUs that are gone; containers asking for "
                f"{cdi.KIND} fail. Remove it, or {cdi.REGENERATE} once GPUs are back"
            )
        return result(check, SKIP, why, **common)
    loaded = cdi.driver_version(collected["driver"]) or (gpus or {}).get("driver_version")
    found = cdi.compare(specs, dev, loaded)
    details += [{"problem": f["text"], "severity": FAIL} for f in found["findings"]]
    details += [{"not_compared": p} for p in found["not_compared"]]
    if found["findings"]:
        return result(
            check,
            FAIL,
            "stale CDI spec: " + "; ".join(f["text"] for f in found["findings"]) + fix,
            measured={f["subject"]: f["measured"] for f in found["findings"]},
            expected={f["subject"]: f["expected"] for f in found["findings"]},
            action=REPROVISION,
            **common,
        )
    versions = sorted({v for s in specs for v in s["versions"]})
    libraries = (
        f"libraries of driver {loaded}"
        if loaded and versions
        else "no driver version in the spec"
        if loaded
        else "driver version unknown, libraries not compared"
    )
    return result(
        check,
        PASS,
        f"{names} match /dev: {plural(found['compared'], 'node')} present "
        f"({found['numbered']} with major:minor compared), {plural(len(found['gpu_nodes']), 'GPU node')} "
        f"all in the spec, {libraries}",
        measured=loaded,
        expected=versions[0] if len(versions) == 1 else versions or None,
        **common,
    )


# --- services ------------------------------------------------------------------------------


def services(states, required):
    """Each unit in ``required`` (gpufleet_verify_services) is ``active`` per ``systemctl is-active``.
    Anything else fails REPROVISION (site.yml starts them); none required skips."""
    check = "services"
    required = [str(u) for u in required or ()]
    if not required:
        return result(check, SKIP, "no services required (gpufleet_verify_services)")
    states = states or {}
    details = [{"unit": u, "state": states.get(u)} for u in required]
    bad = [f"{u} {states.get(u) or 'not found'}" for u in required if states.get(u) != "active"]
    common = {
        "measured": {u: states.get(u) for u in required},
        "expected": "active",
        "source": POLICY,
        "details": details,
    }
    if bad:
        return result(check, FAIL, f"services not active: {', '.join(bad)}", action=REPROVISION, **common)
    return result(check, PASS, f"{plural(len(required), 'service')} active: {', '.join(required)}", **common)


# --- cuda_toolkit --------------------------------------------------------------------------


def cuda_toolkit(cuda_fact, nvcc_text, cuda_link):
    """/usr/local/cuda points at the default toolkit the cuda_toolkit role recorded, and that
    toolkit's nvcc reports the same release (``cuda_toolkit.nvcc_release``). ``cuda_link``: the
    resolved target of /usr/local/cuda. Anything else fails REPROVISION; no fact skips."""
    check = "cuda_toolkit"
    if not isinstance(cuda_fact, dict):
        return result(check, SKIP, "cuda_toolkit role not applied (no gpufleet_cuda_toolkit local fact)")
    default = str(cuda_fact.get("default") or "")
    home = (cuda_fact.get("homes") or {}).get(default) or cuda_utils.HOME.format(version=default)
    release = cuda_utils.nvcc_release(nvcc_text or "")
    details = [{"default": default, "home": home, "link": cuda_link, "nvcc": release}]
    common = {"expected": default, "source": POLICY, "details": details}
    link = str(cuda_link or "").rstrip("/")
    if link != home.rstrip("/"):
        return result(
            check,
            FAIL,
            f"/usr/local/cuda points to {cuda_link or 'nothing'}, {home} (CUDA {default}) expected",
            measured=cuda_link,
            action=REPROVISION,
            **common,
        )
    if not release:
        return result(
            check,
            FAIL,
            f"{home}/bin/nvcc gave no release ({tail(nvcc_text, 120) or 'no output'}); "
            f"CUDA {default} expected",
            action=REPROVISION,
            **common,
        )
    if release["release"] != default:
        return result(
            check,
            FAIL,
            f"nvcc reports CUDA {release['version']}, {default} expected (/usr/local/cuda -> {home})",
            measured=release["release"],
            action=REPROVISION,
            **common,
        )
    return result(
        check,
        PASS,
        f"/usr/local/cuda -> {home}, nvcc {release['version']} (CUDA {default} as recorded)",
        measured=release["release"],
        **common,
    )


# --- nccl_library --------------------------------------------------------------------------

# Run with the nccl fact's venv python: ``python -c NCCL_VERSION_SNIPPET <libnccl.so path>``.
NCCL_VERSION_SNIPPET = """\
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
version = ctypes.c_int(0)
rc = lib.ncclGetVersion(ctypes.byref(version))
if rc != 0:
    sys.exit("ncclGetVersion returned %d" % rc)
print(version.value)
"""


def nccl_version_text(code):
    """ncclGetVersion's int -> "2.21.5" (NCCL_VERSION_CODE: major*10000 + minor*100 + patch since
    2.9; major*1000 + minor*100 + patch before)."""
    code = to_int(code)
    if code is None or code < 0:
        return None
    if code >= 20900:
        return f"{code // 10000}.{code // 100 % 100}.{code % 100}"
    return f"{code // 1000}.{code // 100 % 10}.{code % 100}"


def nccl_library(nccl_fact, loaded_version, error=None):
    """The NCCL library the nccl role recorded loads and reports the recorded version.

    ``loaded_version``: the int ``NCCL_VERSION_SNIPPET`` printed (22105 for 2.21.5). A load error or
    a different version fails REPROVISION; no nccl fact skips.
    """
    check = "nccl_library"
    if not isinstance(nccl_fact, dict):
        return result(check, SKIP, "nccl role not applied (no gpufleet_nccl local fact)")
    expected = str(nccl_fact.get("version") or "")
    library = nccl_fact.get("library") or "libnccl"
    details = [
        {"library": library, "venv": nccl_fact.get("venv"), "loaded_version": loaded_version, "error": error}
    ]
    common = {"expected": expected, "source": POLICY, "details": details}
    if error:
        return result(
            check, FAIL, f"{library} did not load: {tail(error, 200)}", action=REPROVISION, **common
        )
    found = nccl_version_text(loaded_version)
    if found is None:
        return result(
            check,
            FAIL,
            f"no NCCL version read from {library} (got {loaded_version!r})",
            action=REPROVISION,
            **common,
        )
    if found != expected:
        return result(
            check,
            FAIL,
            f"{library} reports NCCL {found}, {expected or 'no version'} recorded by the nccl role",
            measured=found,
            action=REPROVISION,
            **common,
        )
    return result(check, PASS, f"{library} reports NCCL {found} as recorded", measured=found, **common)
