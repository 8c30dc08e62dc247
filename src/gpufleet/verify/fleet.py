"""``gpufleet verify``'s fleet path (tier quick): every host read by one Ansible run, judged here.

The per-host path (``gpufleet.verify.runner.verify_host``) starts a pytest process per host, and
testinfra starts an ``ansible`` process per module call: about 3.7 CPU-seconds of the controller per
host, an hour for 1,000 hosts on two cores. Tier quick needs no testinfra: its checks judge the
state one ``gpufleet.cluster.verify_collect`` call returns. So this path

1. writes a one-task play (``verify_collect``) whose arguments per host come from the same code as the
   per-host path (``collect.commands``, ``collect.module_args``; hosts with the same arguments share
   one set, so the variables stay small on a large fleet);
2. runs it once on all hosts through ansible-runner (its event stream; ``jobs`` forks, the per-host
   time limit as the task's ``timeout``), keeping each host's result as its event arrives;
3. turns each result into the state (``collect.state_from_result``) and judges it in this process
   with the registered checks (``judge``), as the pytest plugin does.

A host Ansible could not reach is reported unreachable with Ansible's message. A host where the
module failed (no Python there, a module error) goes to the per-host path, which reads it over the
connection instead: no host loses its verdict to the faster path.
"""

from __future__ import annotations

import json
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import yaml
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import core as health
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import registry

from gpufleet.verify import collect, settings, wiring

# The play, written into the run's private directory. The arguments come from extra variables:
# ``gpufleet_verify_collect_sets`` (a list of argument sets, commands marked !unsafe so Ansible never
# reads ``{{`` in them as a template) and ``gpufleet_verify_collect_host`` ({host: index of its set}).
PLAY = """\
- name: gpufleet verify reads each host once
  hosts: all
  gather_facts: false
  tasks:
    - name: Read what verify judges (gpufleet.cluster.verify_collect)
      vars:
        gpufleet_verify_args: >-
          {{{{ gpufleet_verify_collect_sets[gpufleet_verify_collect_host[inventory_hostname]] }}}}
      gpufleet.cluster.verify_collect:
        commands: "{{{{ gpufleet_verify_args.commands }}}}"
        command_timeouts: "{{{{ gpufleet_verify_args.command_timeouts }}}}"
        services: "{{{{ gpufleet_verify_args.services }}}}"
        sysfs_pci_root: "{{{{ gpufleet_verify_args.sysfs_pci_root | default(omit) }}}}"
        counter_interval: "{{{{ gpufleet_verify_args.counter_interval | default(0) }}}}"
        serve_measure_tokens: "{{{{ gpufleet_verify_args.serve_measure_tokens | default(0) }}}}"
      timeout: {timeout}
"""


class _Unsafe(str):
    """A string written with YAML's ``!unsafe`` tag: Ansible passes it on as it is."""


def _unsafe_representer(dumper: yaml.SafeDumper, data: _Unsafe):
    return dumper.represent_scalar("!unsafe", str(data))


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Unsafe, _unsafe_representer)


def host_args(hostvars: dict, tier: str) -> dict:
    """verify_collect's arguments for one host at ``tier``: what the per-host path passes."""
    named, timeouts = collect.commands(hostvars)
    services = list(settings.hostvar(hostvars, "gpufleet_verify_services") or [])
    units = sorted(set(services) | set(collect.BASE_SERVICES))
    options = wiring.collect_options(tier)
    interval = options.get("ib_counter_interval", 0)
    return collect.module_arguments(hostvars, units, interval, named, timeouts, unsafe=_Unsafe)


def extra_vars(args_by_host: dict[str, dict]) -> str:
    """The play's extra variables as YAML: the distinct argument sets and each host's set."""
    sets: list[dict] = []
    index: dict[str, int] = {}
    which: dict[str, int] = {}
    for host, args in args_by_host.items():
        key = json.dumps(args, sort_keys=True)
        if key not in index:
            index[key] = len(sets)
            sets.append(args)
        which[host] = index[key]
    data = {"gpufleet_verify_collect_sets": sets, "gpufleet_verify_collect_host": which}
    return yaml.dump(data, Dumper=_Dumper, default_flow_style=False, sort_keys=True)


def judge(state: dict, hostvars: dict, overrides, tier: str) -> list[dict]:
    """Every registered check of ``tier`` (and below) on one host's state, as the pytest plugin records
    them: the result plus title, tier, kind and seconds. A check that raises is a ``fail`` with the
    exception: a crash is never a pass."""
    entries = []
    for name, spec in registry.CHECKS.items():
        if not settings.tier_includes(tier, spec.tier):
            continue
        started = time.monotonic()
        try:
            res = wiring.run(spec, state, hostvars, overrides)
        except Exception as exc:
            res = health.result(
                name,
                health.FAIL,
                f"check crashed: {str(exc)[-300:]}",
                action=health.MONITOR,
                details=[{"traceback": traceback.format_exc()[-2000:]}],
            )
        entry = dict(res)
        entry.update(
            {
                "title": spec.title,
                "tier": spec.tier,
                "kind": spec.kind,
                "duration_s": round(time.monotonic() - started, 3),
            }
        )
        entries.append(entry)
    return entries


def _message(res: dict) -> str:
    """Ansible's own words for a failed or unreachable host, on one line."""
    parts = [str(res.get("msg") or "")]
    for key in ("module_stderr", "module_stdout", "stderr"):
        if res.get(key):
            parts.append(str(res[key]))
    return " ".join(" ".join(parts).split())[-800:] or "no message"


def _address(hostvars: dict) -> str:
    """How Ansible was to reach the host: its address, user and connection (an unreachable host's
    report says where it was looked for; some connections' messages do not)."""
    host = hostvars.get("ansible_host") or hostvars.get("inventory_hostname")
    user = hostvars.get("ansible_user")
    connection = hostvars.get("ansible_connection") or "ssh"
    return f"{f'{user}@' if user else ''}{host} over {connection}"


def collect_results(
    inventory: str,
    hosts: dict[str, dict],
    tier: str,
    jobs: int,
    timeout_s: int,
    on_result: Callable[[str, str, dict], None],
) -> dict:
    """Run verify_collect on every host in one ansible-runner run.

    ``on_result(host, kind, res)`` is called as each host's result arrives: kind ``ok``,
    ``failed`` or ``unreachable``. Returns {"status", "rc", "stdout"} of the run (its last lines of
    output, for a run that fails as a whole)."""
    import ansible_runner

    from gpufleet.apply.api import runner_env

    args = {host: host_args(hostvars, tier) for host, hostvars in hosts.items()}
    with tempfile.TemporaryDirectory(prefix="gpufleet-verify-fleet-") as tmp:
        root = Path(tmp)
        (root / "project").mkdir()
        playbook = root / "project" / "collect.yml"
        playbook.write_text(PLAY.format(timeout=int(timeout_s)))
        variables = root / "collect-vars.yml"
        variables.write_text(extra_vars(args))
        limit = root / "hosts.txt"
        limit.write_text("".join(f"{h}\n" for h in hosts))

        def on_event(event: dict) -> bool:
            kind = {
                "runner_on_ok": "ok",
                "runner_on_failed": "failed",
                "runner_on_unreachable": "unreachable",
            }.get(event.get("event"))
            data = event.get("event_data") or {}
            if kind and data.get("host") in hosts:
                on_result(data["host"], kind, dict(data.get("res") or {}, _duration=data.get("duration")))
            return False  # nothing kept on disk: the results are consumed here

        runner = ansible_runner.run(
            private_data_dir=str(root),
            playbook=str(playbook),
            inventory=inventory,
            limit=f"@{limit}",
            forks=max(1, min(jobs, len(hosts))),
            cmdline=f"-e @{variables}",
            envvars=runner_env(),
            event_handler=on_event,
            quiet=True,
        )
        stdout = ""
        if runner.status != "successful":
            try:
                stdout = runner.stdout.read()[-3000:]
            except (OSError, AttributeError):
                stdout = ""
        return {"status": runner.status, "rc": runner.rc, "stdout": stdout}


def verify(
    inventory: str,
    hosts: dict[str, dict],
    overrides: dict[str, dict],
    tier: str,
    jobs: int,
    timeout_s: int,
    on_host: Callable[[str, dict], None],
) -> list[str]:
    """Verify every host of ``hosts`` on the fleet path; ``on_host(host, raw)`` gets each host's raw
    results (``runner.host_entry``'s input) as it is judged. Returns the hosts this path could not
    verify (the module failed there, or no result came back): the per-host path's to do."""
    started = time.monotonic()
    done: set[str] = set()
    left: dict[str, str] = {}

    def on_result(host: str, kind: str, res: dict) -> None:
        seconds = float(res.pop("_duration", None) or (time.monotonic() - started))
        if kind == "unreachable":
            error = f"{_address(hosts[host])}: {_message(res)}"
            raw = {"host": host, "reachable": False, "error": error, "checks": [], "duration_s": seconds}
        elif kind == "failed":
            text = _message(res)
            if res.get("timedout"):  # the task's timeout (ansible-core puts {"period": s} here)
                raw = {
                    "host": host,
                    "reachable": False,
                    "error": f"verification did not finish within {timeout_s} s: {text}",
                    "checks": [],
                    "duration_s": seconds,
                }
            else:
                left[host] = text
                return
        else:
            state = collect.state_from_result(res, hosts[host], seconds)
            raw = {
                "host": host,
                "reachable": True,
                "error": None,
                "checks": judge(state, hosts[host], overrides[host], tier),
                **collect.host_summary(state),
                "duration_s": round(seconds, 3),
                "path": "fleet",
            }
        done.add(host)
        on_host(host, raw)

    run = collect_results(inventory, hosts, tier, jobs, timeout_s, on_result)
    missing = [h for h in hosts if h not in done]
    for host in missing:
        why = f"no result from the fleet run (ansible-runner {run['status']}, rc {run['rc']})"
        left.setdefault(host, why)
    return [h for h in hosts if h in left]
