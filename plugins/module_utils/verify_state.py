# Copyright: gpufleet developers
# Apache-2.0
"""What ``gpufleet verify`` reads of a host, in one module call (module ``verify_collect``).

Each module call through Ansible costs the controller a whole ``ansible`` process (about 1.2-1.5
CPU-seconds); verify used to make four per host (gpu_facts, ib_facts, setup, serve_facts). This
reads the same in one: the GPU and InfiniBand facts (``host_facts``, the modules' own bodies), the
network facts ``setup gather_subset=!all,!min,network`` gives (Ansible's own fact collector, called
as the setup module calls it), the serving facts (``serve_state.collect``), ``systemctl is-active``
over the units the controller names plus the served ones (``serve_state.units``: they depend on
the serving state just read), and shell commands the controller names and builds
(``gpufleet.verify.collect``: what to run stays there).

A part that raises is recorded in ``errors`` under its name, its value None; the other parts are
still read. Host code: stdlib (and Ansible's module_utils) only, Python >= 3.8.
"""

from __future__ import annotations

import shlex
import time

from ansible.module_utils.facts import ansible_collector, default_collectors
from ansible.module_utils.facts.namespace import PrefixFactNamespace
from ansible_collections.gpufleet.cluster.plugins.module_utils import host_facts, serve_state
from ansible_collections.gpufleet.cluster.plugins.module_utils.tool_run import C_LOCALE

PARTS = ("gpus", "ib", "network", "serving")
NETWORK_SUBSET = ("!all", "!min", "network")
NETWORK_GATHER_TIMEOUT = 10  # the setup module's default gather_timeout
COMMAND_TIMEOUT = 60
SERVICES_TIMEOUT = 60
ERROR_MAX_CHARS = 800
KILL_AFTER_S = 5  # timeout(1) -k: a command that ignores TERM is killed this long after


def network_facts(module, gather_timeout=NETWORK_GATHER_TIMEOUT):
    """The ``ansible_``-prefixed facts ``setup gather_subset=!all,!min,network`` returns: Ansible's
    own collector, called as ``ansible.builtin.setup`` calls it (its ``main``)."""
    collector = ansible_collector.get_ansible_collector(
        all_collector_classes=default_collectors.collectors,
        namespace=PrefixFactNamespace(namespace_name="ansible", prefix="ansible_"),
        filter_spec=[],
        gather_subset=list(NETWORK_SUBSET),
        gather_timeout=gather_timeout,
    )
    return collector.collect(module=module)


def run_shell(module, command, timeout=COMMAND_TIMEOUT, environ=None):
    """``command`` run by ``/bin/sh -c`` with the C locale (and ``environ``), under coreutils
    ``timeout`` when it has one (0: no limit): {"rc", "stdout", "stderr"}, as
    ``gpufleet.verify.collect.run`` returns over ssh. Output bytes that are not UTF-8 are replaced,
    never an error."""
    argv = ["/bin/sh", "-c", command]
    timeout_bin = module.get_bin_path("timeout") if timeout else None
    if timeout_bin:
        argv = [timeout_bin, "-k", str(KILL_AFTER_S), str(int(timeout)), *argv]
    rc, out, err = module.run_command(
        argv,
        environ_update=dict(C_LOCALE, **(environ or {})),
        expand_user_and_vars=False,  # the shell expands what the command asks it to, nothing else
        errors="replace",  # a log line with bytes not UTF-8 must not fail the whole read
    )
    return {"rc": rc, "stdout": out, "stderr": err}


def service_states(module, services, serving, timeout=SERVICES_TIMEOUT):
    """``systemctl is-active`` over ``services`` and the units ``serving`` serves (sorted, once each):
    {"units", "rc", "stdout", "stderr"}; its output has one word per unit, in ``units`` order."""
    units = sorted(set(services) | set(serve_state.units(serving)))
    if not units:
        return {"units": [], "rc": 0, "stdout": "", "stderr": ""}
    command = "systemctl is-active " + " ".join(shlex.quote(u) for u in units) + "; true"
    return dict(run_shell(module, command, timeout), units=units)


# What the commands are told of the parts read before them (``command_environ``): a command that
# only makes sense on a host with GPUs and a loaded driver tests GPUFLEET_GPUS_READY (exit 3 when it
# is empty) and runs the nvidia-smi the GPU part found, without a second round trip to the host.
GPUS_READY_ENV = "GPUFLEET_GPUS_READY"
NVIDIA_SMI_ENV = "GPUFLEET_NVIDIA_SMI"


def command_environ(gpus):
    """The environment the commands get from the GPU part's facts (None when that part failed)."""
    gpus = gpus or {}
    ready = bool(gpus.get("gpu_count") and gpus.get("driver_loaded"))
    return {GPUS_READY_ENV: "1" if ready else "", NVIDIA_SMI_ENV: gpus.get("nvidia_smi_path") or ""}


def gatherers(module, params):
    """The real parts, each a callable of no argument, in ``PARTS`` order: ``params`` are the
    module's options (``verify_collect``'s argument spec)."""
    p = params
    return (
        ("gpus", lambda: host_facts.gather_gpus(module, p["nvidia_smi_path"], p["sysfs_pci_root"])),
        ("ib", lambda: host_facts.gather_ib(module, counter_interval=p["counter_interval"])),
        ("network", lambda: network_facts(module)),
        (
            "serving",
            lambda: serve_state.collect(
                p["serve_state_dir"],
                p["front_conf"],
                p["serve_timeout"],
                measure_tokens=p.get("serve_measure_tokens") or 0,
            ),
        ),
    )


def collect(
    module, parts, commands=None, services=(), command_timeout=COMMAND_TIMEOUT, command_timeouts=None
):
    """Everything ``gpufleet verify`` reads of this host.

    ``parts``: ``[(name, callable)]`` (``gatherers``); ``commands``: {name: shell command}, each run
    with ``command_timeouts[name]`` seconds, else ``command_timeout``; ``services``: units to ask
    ``systemctl is-active`` about besides the served ones. Returns {part name: its facts or None,
    "services": ``service_states``, "commands": {name: {"rc", "stdout", "stderr"}}, "errors":
    {part name: why it is None}, "timings": {part or "commands"/"services": seconds taken}}.
    """
    out = {"errors": {}, "timings": {}}
    for name, gather in parts:
        started = time.monotonic()
        try:
            out[name] = gather()
        except Exception as exc:  # one part failing must not cost the others (verify says why)
            out[name] = None
            out["errors"][name] = f"{name} facts failed: {type(exc).__name__}: {exc}"[-ERROR_MAX_CHARS:]
        out["timings"][name] = round(time.monotonic() - started, 3)
    started = time.monotonic()
    out["services"] = service_states(module, services, out.get("serving"))
    out["timings"]["services"] = round(time.monotonic() - started, 3)
    started = time.monotonic()
    timeouts = command_timeouts or {}
    environ = command_environ(out.get("gpus"))
    out["commands"] = {
        name: run_shell(module, command, timeouts.get(name, command_timeout), environ)
        for name, command in sorted((commands or {}).items())
    }
    out["timings"]["commands"] = round(time.monotonic() - started, 3)
    return out
