"""Read a host's state through a testinfra host: facts, command output, fact files.

Collection only reads. Everything is gathered once per host and handed to the pure check
checks in ``plugin_utils/checks`` (``registry.CHECKS``); a command that fails is recorded with its error, so a
check can say why it has no data instead of guessing.

One module call reads the host (``gpufleet.cluster.verify_collect``: the GPU, InfiniBand, network and
serving facts, ``systemctl is-active`` and the commands named here): each module call costs the
controller a whole ``ansible`` process. The commands that only make sense on some hosts (the GPUs'
NVLinks and processes when a driver is loaded, nvcc where the CUDA role ran, NCCL's loaded version
where the NCCL role ran) guard themselves on the host and exit 3 where they do not apply, so one
call is all it takes. What to run is decided here; the module only runs it.

``collect`` reads one testinfra host (``gpufleet verify``'s per-host pytest path);
``state_from_result`` turns the module's result into the state, wherever it came from (the fleet
path, ``gpufleet.verify.fleet``, gets the results of all hosts from one Ansible run).
"""

from __future__ import annotations

import json
import shlex
import time
from typing import Any

from gpufleet.verify.settings import hostvar

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


MODULE = "gpufleet.cluster.verify_collect"
PARTS = ("gpus", "ib", "network", "serving")  # the module's fact parts, each an errors key when it failed
BASE_SERVICES = ("nvidia-fabricmanager", "nvidia-persistenced", "docker")
LSMOD_COMMAND = "if [ -e /proc/modules ]; then cat /proc/modules; fi"
PACKAGES_COMMAND = (
    "if command -v dpkg-query >/dev/null; then "
    "dpkg-query -W -f='${db:Status-Abbrev}\\t${Package}\\t${Version}\\n' "
    + " ".join(shlex.quote(p) for p in PKG_PATTERNS)
    + " 2>/dev/null; else rpm -qa --qf '%{NAME}\\t%{VERSION}-%{RELEASE}\\n' 2>/dev/null; fi; true"
)
DOCKER_INFO_COMMAND = "command -v docker >/dev/null || exit 3; docker info --format '{{json .}}'"


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
    return _loaded_modules(run(host, LSMOD_COMMAND))


def _loaded_modules(out: dict[str, Any]) -> tuple[str | None, str | None]:
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
    """The module's whole result, or {} and why there is none."""
    try:
        return host.ansible(name, args, check=False), None
    except Exception as exc:
        return {}, f"{name} failed: {str(exc)[-800:]}"


def _unsafe(text: str) -> dict[str, str]:
    """A string Ansible must pass on as it is: command lines hold ``{{`` (docker's ``--format``), which
    Ansible would otherwise read as a template. The ad hoc command's JSON arguments take this marker."""
    return {"__ansible_unsafe": str(text)}


def commands(hostvars: dict) -> tuple[dict[str, str], dict[str, int]]:
    """The commands the module runs on every host: ({name: command}, {name: seconds} where the limit
    is not the default 60)."""
    window = int(hostvars.get("gpufleet_verify_xid_window_hours", DEFAULT_XID_WINDOW_HOURS))
    from ansible_collections.gpufleet.cluster.plugins.plugin_utils import cdi

    named = {
        "local_facts": (
            f'for f in {FACTS_DIR}/gpufleet_*.fact; do [ -f "$f" ] && echo "=== $f" && cat "$f"; done'
        ),
        "packages": PACKAGES_COMMAND,
        "lsmod": LSMOD_COMMAND,
        "kernel_log": f"journalctl -k -o short-iso --no-pager --since '-{window}h'",
        "nccl_conf": "cat /etc/nccl.conf",
        "docker_info": DOCKER_INFO_COMMAND,
        # NVIDIA CDI specs, /dev nodes and the driver version in one command (plugin_utils/cdi.py).
        "cdi": cdi.COLLECT_COMMAND,
        "df": "df -P -m " + " ".join(DF_PATHS),
        "meminfo": "cat /proc/meminfo",
    }
    named.update(dependent_commands())
    return named, {"docker_info": 30, "cdi": 30}


NOT_HERE = 3  # the exit status of a command that does not apply to this host (a guard below)
# The Python that loads the NCCL library the nccl role recorded, as the fact says (its venv's Python,
# else python3), and prints ncclGetVersion's int: the fact is read on the host.
_NCCL_LOADED = """\
import json, subprocess, sys
fact = json.load(open(sys.argv[1]))
if not isinstance(fact, dict) or not fact.get("library"):
    sys.exit(3)
python = fact["venv"] + "/bin/python" if fact.get("venv") else "python3"
sys.exit(subprocess.call([python, "-c", sys.argv[2], fact["library"]]))
"""


def dependent_commands() -> dict[str, str]:
    """The commands whose use depends on what the module reads first, each guarded on the host.

    The GPU commands run only when the module's GPU part found GPUs with the driver loaded (it tells
    them with GPUFLEET_GPUS_READY, and names the nvidia-smi it found in GPUFLEET_NVIDIA_SMI); the
    CUDA and NCCL ones only where their role wrote its fact file. Where they do not apply they exit
    ``NOT_HERE`` and ``state_from_result`` does not read them."""
    from ansible_collections.gpufleet.cluster.plugins.module_utils import verify_state
    from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import software

    gpus = f'[ -n "${verify_state.GPUS_READY_ENV}" ] || exit {NOT_HERE}; "${verify_state.NVIDIA_SMI_ENV}" '
    cuda = f"[ -f {FACTS_DIR}/gpufleet_cuda_toolkit.fact ] || exit {NOT_HERE}; "
    nccl_fact = f"{FACTS_DIR}/gpufleet_nccl.fact"
    return {
        "nvlink": gpus + "nvlink -s",
        "gpu_processes": gpus + "--query-compute-apps=pid,process_name,used_memory --format=csv,noheader",
        "cuda_link": cuda + "readlink -f /usr/local/cuda",
        "nvcc": cuda + "/usr/local/cuda/bin/nvcc --version",
        "nccl_loaded": (
            f"[ -f {nccl_fact} ] || exit {NOT_HERE}; exec python3 -c {shlex.quote(_NCCL_LOADED)} "
            f"{nccl_fact} {shlex.quote(software.NCCL_VERSION_SNIPPET)}"
        ),
        # a host without journald: the kernel's ring buffer (only when journalctl cannot answer)
        "dmesg": f"journalctl -k -n 0 --no-pager >/dev/null 2>&1 && exit {NOT_HERE}; dmesg --ctime",
    }


def module_args(
    hostvars: dict,
    services: list[str],
    ib_counter_interval: int,
    named: dict[str, str],
    timeouts: dict[str, int],
) -> str:
    """verify_collect's arguments as the JSON text ``host.ansible`` passes to ``ansible --args``."""
    return json.dumps(module_arguments(hostvars, services, ib_counter_interval, named, timeouts))


def module_arguments(
    hostvars: dict,
    services: list[str],
    ib_counter_interval: int,
    named: dict[str, str],
    timeouts: dict[str, int],
    unsafe=_unsafe,
) -> dict[str, Any]:
    """verify_collect's arguments; ``unsafe`` marks each string Ansible must not template (the ad hoc
    command's JSON marker by default; the fleet path's play marks them with YAML's ``!unsafe``)."""
    args: dict[str, Any] = {
        "commands": {name: unsafe(command) for name, command in named.items()},
        "command_timeouts": timeouts,
        "services": [unsafe(unit) for unit in services],
    }
    if hostvars.get("gpufleet_sysfs_pci_root"):
        args["sysfs_pci_root"] = unsafe(hostvars["gpufleet_sysfs_pci_root"])
    if ib_counter_interval:
        args["counter_interval"] = int(ib_counter_interval)
    # tokens/s per served model through the front (serving_tokens); the probe key is read on the host
    tokens = int(hostvar(hostvars, "gpufleet_verify_serving_tokens") or 0)
    if tokens:
        args["serve_measure_tokens"] = tokens
    return args


def _read_natively(
    host, named: dict[str, str], timeouts: dict[str, int], services: list[str], error: str
) -> dict:
    """What the module would have returned, read over the connection when the module could not run
    (no Python on the host, a module failure): every fact part is missing with ``error``; the
    commands and systemctl still answer."""
    units = sorted(services)
    return {
        **{part: None for part in PARTS},
        "errors": {part: error for part in PARTS},
        "commands": {name: run(host, command, timeouts.get(name, 60)) for name, command in named.items()},
        "services": dict(
            run(host, "systemctl is-active " + " ".join(shlex.quote(u) for u in units) + "; true"),
            units=units,
        ),
    }


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
    named, timeouts = commands(hostvars)
    units = sorted(set(services) | set(BASE_SERVICES))
    args = module_args(hostvars, units, ib_counter_interval, named, timeouts)
    result, err = _module(host, MODULE, args)
    if err:
        result = _read_natively(host, named, timeouts, units, err)
    return state_from_result(result, hostvars, time.monotonic() - started)


def state_from_result(result: dict, hostvars: dict, seconds: float | None = None) -> dict[str, Any]:
    """The state the checks read (``STATE_KEYS``), from verify_collect's whole result (or what
    ``_read_natively`` made instead). ``seconds``: how long the reading took (``collect_s``)."""
    state: dict[str, Any] = {"errors": {}}
    errors = state["errors"]
    errors.update({part: msg for part, msg in (result.get("errors") or {}).items() if part in PARTS})
    out = result["commands"]

    state["gpus"] = result.get("gpus")
    state["ib"] = result.get("ib")
    # Ansible adds what it discovered of the host's Python to every module's ansible_facts; setup's
    # network facts carried it, so they still do.
    network = result.get("network")
    state["network"] = (
        {} if network is None else network_facts({**network, **(result.get("ansible_facts") or {})})
    )
    state["serving"] = result.get("serving")
    state["local_facts"] = parse_local_facts(out["local_facts"]["stdout"])
    state["packages"] = parse_packages(out["packages"]["stdout"])
    state["lsmod"], error = _loaded_modules(out["lsmod"])
    if error:
        errors["lsmod"] = error

    window = int(hostvars.get("gpufleet_verify_xid_window_hours", DEFAULT_XID_WINDOW_HOURS))
    state["xid_window_hours"] = window
    log = out["kernel_log"]
    state["kernel_log"] = log["stdout"] if log["rc"] == 0 else None
    if log["rc"]:  # no journal (a host without journald): the kernel's ring buffer
        log2 = out.get("dmesg") or {"rc": 1, "stdout": "", "stderr": "dmesg not run"}
        state["kernel_log"] = log2["stdout"] if log2["rc"] == 0 else None
        if log2["rc"]:
            errors["kernel_log"] = (log["stderr"] + " / " + log2["stderr"]).strip()[-300:]

    gpus = state["gpus"] or {}
    state["nvlink"] = None
    state["gpu_processes"] = None
    if gpus.get("gpu_count") and gpus.get("driver_loaded"):
        nv = out.get("nvlink") or {"rc": NOT_HERE, "stdout": "", "stderr": "not run"}
        state["nvlink"] = nv["stdout"] if nv["rc"] == 0 else None
        if nv["rc"]:
            errors["nvlink"] = (nv["stderr"] or nv["stdout"]).strip()[-300:]
        nv = out.get("gpu_processes") or {"rc": NOT_HERE, "stdout": ""}
        state["gpu_processes"] = nv["stdout"] if nv["rc"] == 0 else None

    # The units asked about include each served model's current version and the front (the module
    # adds them from the serving state it read: serve_state.units).
    state["services"] = parse_service_states(result["services"]["units"], result["services"]["stdout"])

    conf = out["nccl_conf"]
    state["nccl_conf"] = conf["stdout"] if conf["rc"] == 0 else None

    docker = out["docker_info"]
    state["docker_info"] = None if docker["rc"] == 3 else (docker["stdout"] if docker["rc"] == 0 else "")
    if docker["rc"] not in (0, 3):
        errors["docker_info"] = (docker["stderr"] or "").strip()[-300:]

    cdi = out["cdi"]
    state["cdi"] = cdi["stdout"] if cdi["rc"] == 0 else None
    if cdi["rc"]:
        errors["cdi"] = (cdi["stderr"] or "").strip()[-300:] or f"exit {cdi['rc']}"

    state["df"] = out["df"]["stdout"]
    state["meminfo"] = out["meminfo"]["stdout"]

    cuda = state["local_facts"].get("gpufleet_cuda_toolkit")
    state["nvcc"] = state["cuda_link"] = None
    if cuda:
        link = out.get("cuda_link") or {"rc": NOT_HERE, "stdout": ""}
        state["cuda_link"] = link["stdout"].strip() if link["rc"] == 0 else None
        nvcc = out.get("nvcc") or {"rc": NOT_HERE, "stdout": ""}
        state["nvcc"] = nvcc["stdout"] if nvcc["rc"] == 0 else None

    nccl = state["local_facts"].get("gpufleet_nccl")
    state["nccl_loaded"] = state["nccl_error"] = None
    if nccl and nccl.get("library"):
        loaded = out.get("nccl_loaded") or {"rc": NOT_HERE, "stdout": "", "stderr": "not run"}
        if loaded["rc"] == 0 and loaded["stdout"].strip().isdigit():
            state["nccl_loaded"] = int(loaded["stdout"].strip())
        else:
            state["nccl_error"] = ((loaded["stderr"] or "") + (loaded["stdout"] or "")).strip()[-500:] or (
                f"exit {loaded['rc']}"
            )
    state["collect_s"] = None if seconds is None else round(seconds, 3)
    return {key: state[key] for key in STATE_KEYS}


def host_summary(state: dict) -> dict[str, Any]:
    """What a host's report entry carries of its state besides the checks: GPU count, SKU(s),
    active IB ports (the fabric pairing reads them), the collection's errors and seconds."""
    from ansible_collections.gpufleet.cluster.plugins.plugin_utils import baselines

    gpus = state.get("gpus") or {}
    skus = sorted(
        {baselines.sku_for(g.get("name")) or g.get("name") or "unknown" for g in gpus.get("gpus", [])}
    )
    return {
        "gpu_count": gpus.get("gpu_count"),
        "sku": ", ".join(skus) if skus else None,
        "ib_active_ports": list((state.get("ib") or {}).get("active_ports") or []),
        "collect_errors": state.get("errors") or {},
        "collect_s": state.get("collect_s"),
    }
