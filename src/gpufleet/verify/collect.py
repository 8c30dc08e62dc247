"""Read a host's state through a testinfra host: facts modules, command output, fact files.

Collection only reads. Everything is gathered once per host and handed to the pure check
checks in ``plugin_utils/checks`` (``registry.CHECKS``); a command that fails is recorded with its error, so a
check can say why it has no data instead of guessing.
"""

from __future__ import annotations

import json
import shlex
import time
from typing import Any

REACH_MARKER = "gpufleet-reachable"
FACTS_DIR = "/etc/ansible/facts.d"
LOCAL_FACTS = ("gpufleet_nvidia_driver", "gpufleet_cuda_toolkit", "gpufleet_nccl", "gpufleet_infiniband")
DF_PATHS = ("/", "/var", "/opt", "/tmp")  # noqa: S108 (mount points read with df)
DEFAULT_XID_WINDOW_HOURS = 24
PKG_PATTERNS = ("*nvidia*", "*cuda*", "libnccl*", "*cudnn*", "docker*", "containerd*")
# Every key of the state ``collect`` returns: the inputs a registered check may need
# (``gpufleet.verify.wiring`` refuses a check that needs anything else; a test holds this to collect).
STATE_KEYS = (
    "errors", "gpus", "ib", "network", "local_facts", "packages", "lsmod", "xid_window_hours",
    "kernel_log", "nvlink", "gpu_processes", "services", "nccl_conf", "docker_info", "df", "meminfo",
    "nvcc", "cuda_link", "nccl_loaded", "nccl_error", "cdi", "serving", "collect_s",
)  # fmt: skip


class Unreachable(Exception):
    """The host did not answer a trivial command; the message says what the transport said."""


def _c(cmd: str, timeout: int = 60) -> str:
    """A shell command run with the C locale and a time limit."""
    return f"LC_ALL=C LANG=C timeout -k 5 {int(timeout)} sh -c {shlex.quote(cmd)}"


def run(host, cmd: str, timeout: int = 60) -> dict[str, Any]:
    out = host.run(_c(cmd, timeout))
    return {"rc": out.rc, "stdout": out.stdout, "stderr": out.stderr}


def loaded_modules(host) -> tuple[str | None, str | None]:
    """``/proc/modules`` as text, or None and why it could not be read. No ``/proc/modules`` is a
    kernel without loadable modules (the lab's): no module is loaded, which is not an error."""
    out = run(host, "if [ -e /proc/modules ]; then cat /proc/modules; fi")
    if out["rc"] == 0:
        return out["stdout"], None
    return None, (out["stderr"] or "").strip()[-300:] or f"exit {out['rc']}"


def reach(host) -> None:
    try:
        out = host.run(f"echo {REACH_MARKER}")
    except Exception as exc:  # the transport raised: ssh/docker errors surface here
        raise Unreachable(f"{type(exc).__name__}: {exc}".strip()) from exc
    if REACH_MARKER not in (out.stdout or ""):
        text = " ".join(((out.stderr or "") + " " + (out.stdout or "")).split())
        raise Unreachable(f"transport exit {out.rc}: {text[-500:] or 'no output'}")


def _module(host, name: str, args: str | None = None) -> tuple[dict, str | None]:
    try:
        data = host.ansible(name, args, check=False)
    except Exception as exc:
        return {}, f"{name} failed: {str(exc)[-800:]}"
    return data.get("ansible_facts") or {}, None


def parse_local_facts(text: str) -> dict[str, Any]:
    """``=== path`` separated fact files -> {name: parsed JSON or {"_error": msg}}."""
    facts: dict[str, Any] = {}
    name, lines = None, []

    def flush():
        if name is None:
            return
        body = "\n".join(lines).strip()
        try:
            facts[name] = json.loads(body)
        except ValueError as exc:
            facts[name] = {"_error": f"not JSON: {exc}"}

    for line in (text or "").splitlines():
        if line.startswith("=== "):
            flush()
            path = line[4:].strip()
            name = path.rsplit("/", 1)[-1].removesuffix(".fact")
            lines = []
        else:
            lines.append(line)
    flush()
    return facts


def parse_packages(text: str) -> dict[str, str]:
    """``dpkg-query`` (status, name, version) or ``rpm -qa`` (name, version) lines -> {name: version}."""
    packages = {}
    for line in (text or "").splitlines():
        parts = line.split("\t")
        if len(parts) == 3:
            status, name, version = (p.strip() for p in parts)
            if status.startswith("ii"):
                packages[name] = version
        elif len(parts) == 2:
            packages[parts[0].strip()] = parts[1].strip()
    return packages


def parse_service_states(units: list[str], text: str) -> dict[str, str]:
    words = (text or "").split()
    return {unit: (words[i] if i < len(words) else "unknown") for i, unit in enumerate(units)}


def network_facts(facts: dict) -> dict:
    """``setup`` returns ``ansible_``-prefixed keys; nccl_tuning reads them without the prefix."""
    return {k.removeprefix("ansible_"): v for k, v in facts.items()}


def collect(host, hostvars: dict, *, services: list[str], ib_counter_interval: int = 0) -> dict[str, Any]:
    """Everything the checks need, read from ``host`` (a testinfra host). Raises Unreachable.

    ``ib_counter_interval``: seconds between two reads of the InfiniBand error counters (ib_facts
    ``counter_interval``; ``registry.COLLECT_OPTIONS`` per tier); 0 reads them once.
    """
    started = time.monotonic()
    reach(host)
    state: dict[str, Any] = {"errors": {}}
    errors = state["errors"]

    args = None
    if hostvars.get("gpufleet_sysfs_pci_root"):
        args = f"sysfs_pci_root={shlex.quote(str(hostvars['gpufleet_sysfs_pci_root']))}"
    facts, err = _module(host, "gpufleet.cluster.gpu_facts", args)
    state["gpus"] = facts.get("gpufleet_gpus")
    if err:
        errors["gpus"] = err
    facts, err = _module(
        host,
        "gpufleet.cluster.ib_facts",
        f"counter_interval={int(ib_counter_interval)}" if ib_counter_interval else None,
    )
    state["ib"] = facts.get("gpufleet_ib")
    if err:
        errors["ib"] = err
    facts, err = _module(host, "ansible.builtin.setup", "gather_subset=!all,!min,network")
    state["network"] = network_facts(facts)
    if err:
        errors["network"] = err

    out = run(
        host, f'for f in {FACTS_DIR}/gpufleet_*.fact; do [ -f "$f" ] && echo "=== $f" && cat "$f"; done'
    )
    state["local_facts"] = parse_local_facts(out["stdout"])

    patterns = " ".join(shlex.quote(p) for p in PKG_PATTERNS)
    out = run(
        host,
        "if command -v dpkg-query >/dev/null; then "
        f"dpkg-query -W -f='${{db:Status-Abbrev}}\\t${{Package}}\\t${{Version}}\\n' {patterns} 2>/dev/null; "
        "else rpm -qa --qf '%{NAME}\\t%{VERSION}-%{RELEASE}\\n' 2>/dev/null; fi; true",
    )
    state["packages"] = parse_packages(out["stdout"])

    state["lsmod"], error = loaded_modules(host)
    if error:
        errors["lsmod"] = error

    window = int(hostvars.get("gpufleet_verify_xid_window_hours", DEFAULT_XID_WINDOW_HOURS))
    state["xid_window_hours"] = window
    out = run(host, f"journalctl -k -o short-iso --no-pager --since '-{window}h'")
    state["kernel_log"] = out["stdout"] if out["rc"] == 0 else None
    if out["rc"]:
        out2 = run(host, "dmesg --ctime")
        state["kernel_log"] = out2["stdout"] if out2["rc"] == 0 else None
        if out2["rc"]:
            errors["kernel_log"] = (out["stderr"] + " / " + out2["stderr"]).strip()[-300:]

    gpus = state["gpus"] or {}
    smi = gpus.get("nvidia_smi_path") or "nvidia-smi"
    state["nvlink"] = None
    state["gpu_processes"] = None
    if gpus.get("gpu_count") and gpus.get("driver_loaded"):
        out = run(host, f"{shlex.quote(smi)} nvlink -s")
        state["nvlink"] = out["stdout"] if out["rc"] == 0 else None
        if out["rc"]:
            errors["nvlink"] = (out["stderr"] or out["stdout"]).strip()[-300:]
        out = run(
            host,
            f"{shlex.quote(smi)} --query-compute-apps=pid,process_name,used_memory --format=csv,noheader",
        )
        state["gpu_processes"] = out["stdout"] if out["rc"] == 0 else None

    # What the host serves (llm_serve): its recorded state, each current version's readiness and the
    # front's refusal of a keyless request, read on the host itself (engines listen on 127.0.0.1).
    from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import serving

    facts, err = _module(host, "gpufleet.cluster.serve_facts")
    state["serving"] = facts.get("gpufleet_serving")
    if err:
        errors["serving"] = err

    units = sorted(
        set(services)
        | {"nvidia-fabricmanager", "nvidia-persistenced", "docker"}
        | set(serving.units(state["serving"]))
    )
    out = run(host, "systemctl is-active " + " ".join(shlex.quote(u) for u in units) + "; true")
    state["services"] = parse_service_states(units, out["stdout"])

    out = run(host, "cat /etc/nccl.conf")
    state["nccl_conf"] = out["stdout"] if out["rc"] == 0 else None

    out = run(host, "command -v docker >/dev/null || exit 3; docker info --format '{{json .}}'", timeout=30)
    state["docker_info"] = None if out["rc"] == 3 else (out["stdout"] if out["rc"] == 0 else "")
    if out["rc"] not in (0, 3):
        errors["docker_info"] = (out["stderr"] or "").strip()[-300:]

    # NVIDIA CDI specs, /dev nodes and the driver version in one command (plugin_utils/cdi.py).
    from ansible_collections.gpufleet.cluster.plugins.plugin_utils import cdi

    out = run(host, cdi.COLLECT_COMMAND, timeout=30)
    state["cdi"] = out["stdout"] if out["rc"] == 0 else None
    if out["rc"]:
        errors["cdi"] = (out["stderr"] or "").strip()[-300:] or f"exit {out['rc']}"

    out = run(host, "df -P -m " + " ".join(DF_PATHS))
    state["df"] = out["stdout"]
    out = run(host, "cat /proc/meminfo")
    state["meminfo"] = out["stdout"]

    cuda = state["local_facts"].get("gpufleet_cuda_toolkit")
    state["nvcc"] = state["cuda_link"] = None
    if cuda:
        out = run(host, "readlink -f /usr/local/cuda")
        state["cuda_link"] = out["stdout"].strip() if out["rc"] == 0 else None
        out = run(host, "/usr/local/cuda/bin/nvcc --version")
        state["nvcc"] = out["stdout"] if out["rc"] == 0 else None

    nccl = state["local_facts"].get("gpufleet_nccl")
    state["nccl_loaded"] = state["nccl_error"] = None
    if nccl and nccl.get("library"):
        from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import software

        python = f"{nccl['venv']}/bin/python" if nccl.get("venv") else "python3"
        snippet = shlex.quote(software.NCCL_VERSION_SNIPPET)
        out = run(host, f"{shlex.quote(python)} -c {snippet} {shlex.quote(nccl['library'])}")
        if out["rc"] == 0 and out["stdout"].strip().isdigit():
            state["nccl_loaded"] = int(out["stdout"].strip())
        else:
            state["nccl_error"] = ((out["stderr"] or "") + (out["stdout"] or "")).strip()[-500:] or (
                f"exit {out['rc']}"
            )
    state["collect_s"] = round(time.monotonic() - started, 3)
    return state
