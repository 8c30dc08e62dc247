"""``gpufleet.upgrade.run``: the one function behind ``gpufleet upgrade``.

    from gpufleet import upgrade

    result = upgrade.run("inventories/site", batches="1,3")
    print(result.text)
    raise SystemExit(result.exit_code)

It validates the inputs, runs ``playbooks/upgrade.yml`` (``gpufleet.cluster.upgrade``) through
``gpufleet.apply.run`` (ansible-runner, a run directory per run), builds the report from the run's
events and writes it to ``runs/<apply id>/upgrade-report.json``. The rules (batches, drain
backends, the state record, resume) live in the collection's ``plugins/plugin_utils/rollout.py``.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ansible_collections.gpufleet.cluster.plugins.plugin_utils import rollout

from gpufleet._io import write_atomic
from gpufleet.apply import api as apply_api
from gpufleet.errors import GpufleetError
from gpufleet.upgrade import report as reports

PLAYBOOK = "gpufleet.cluster.upgrade"
REPORT_FILE = "upgrade-report.json"
DRAIN_BACKENDS = tuple(rollout.BACKENDS)
# Exit codes of ``gpufleet upgrade`` (and UpgradeResult.exit_code).
EXIT_OK = 0
EXIT_USAGE = 1
EXIT_STOPPED = 2
EXIT_RUNNER = 3
EXIT_CODES = {
    EXIT_OK: "every host was upgraded, verified and (when this run drained it) returned to service",
    EXIT_USAGE: "bad input (inventory, batches, run id): nothing was run",
    EXIT_STOPPED: "the rollout stopped: a host failed or was unreachable (it stays drained); no later batch "
    "was started",
    EXIT_RUNNER: apply_api.EXIT_CODES[apply_api.EXIT_RUNNER],  # the same runner, the same words
}


class UpgradeInputError(GpufleetError):
    """Bad input to :func:`run`: nothing was run."""

    exit_code = EXIT_USAGE


@dataclass
class UpgradeResult:
    """What :func:`run` returns: ``run_id`` (the rollout's id, for ``--resume``), ``apply`` (the
    ansible-runner run), ``report`` (see ``gpufleet.upgrade.report``), ``report_file``, ``exit_code``."""

    run_id: str
    apply: apply_api.ApplyResult
    report: dict
    report_file: Path
    exit_code: int

    @property
    def text(self) -> str:
        return reports.render_report(self.report)

    @property
    def ok(self) -> bool:
        return self.exit_code == EXIT_OK


def new_run_id() -> str:
    """``upgrade-<UTC time>-<random>``: sorts by start, never collides between two rollouts."""
    return "upgrade-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def exit_code_for(apply_code: int, report: dict) -> int:
    """gpufleet upgrade's exit code from gpufleet apply's and the report."""
    if report["failed_hosts"] or apply_code in (apply_api.EXIT_FAILED, apply_api.EXIT_UNREACHABLE):
        return EXIT_STOPPED
    if apply_code == apply_api.EXIT_RUNNER:
        return EXIT_RUNNER
    return EXIT_OK if apply_code == apply_api.EXIT_OK else EXIT_STOPPED


def _read_events(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue  # a line cut short by an interrupted run
    return events


def run(
    inventory: str,
    *,
    batches=None,
    resume: str | None = None,
    limit: str | None = None,
    check: bool = False,
    drain: str | None = None,
    verify_tier: str | None = None,
    extra_vars: dict | None = None,
    runs_dir: str = apply_api.DEFAULT_RUNS_DIR,
    view=None,
    timeout: int | None = None,
) -> UpgradeResult:
    """Upgrade the GPU nodes of ``inventory`` in batches and report every host.

    Validates the inputs first (:class:`UpgradeInputError`, exit code 1, nothing run), then runs
    ``playbooks/upgrade.yml`` through :func:`gpufleet.apply.run`: per batch, each host is drained,
    stops serving, gets driver/CUDA/NCCL (a reboot only when the kernel module changed), is verified
    and returned to service only when this run drained it; a failed or unreachable host stops the
    rollout before the next batch and stays drained. Writes the report to
    ``runs/<apply id>/upgrade-report.json`` atomically.

    Parameters:
        inventory: an Ansible inventory file or directory.
        batches: batch sizes, a list or a comma-separated string (``"1,10%,25%"``, the default):
            whole numbers of hosts or percentages in (0, 100]; the last repeats.
        resume: the run id of a stopped rollout to continue: each host goes on from the step its
            state record says (``/var/lib/gpufleet/upgrade-state.json``); None starts a new rollout.
        limit: only hosts matching this Ansible pattern (``--limit``); None for all of ``gpu_nodes``.
        check: Ansible check mode: show what would be done; nothing is drained or changed.
        drain: drain backend (``slurm``, ``kubernetes``, ``command``, ``none``), overriding the
            inventory's ``gpufleet_drain_backend``; None keeps the inventory's (default ``none``).
        verify_tier: ``gpufleet verify`` tier after each host's upgrade (default ``quick``).
        extra_vars: more playbook variables (``-e``); the rollout's own win over them.
        runs_dir: where run directories are made (default ``runs``).
        view: what shows the run (``gpufleet.apply.view.LiveView``/``PlainView``); None shows nothing.
        timeout: seconds the whole run may take before ansible-runner stops it (exit code 3).

    Returns:
        UpgradeResult: ``run_id``, ``apply`` (the ansible-runner run), ``report``, ``report_file``
        and ``exit_code`` (``EXIT_CODES``: 0 done, 1 bad input, 2 stopped, 3 runner failure).
    """
    try:
        serial = rollout.rollout_batches(batches)
        run_id = rollout.check_run_id(resume) if resume is not None else new_run_id()
    except rollout.RolloutError as exc:
        raise UpgradeInputError(str(exc)) from None
    if drain is not None and drain not in DRAIN_BACKENDS:
        raise UpgradeInputError(f"drain backend {drain!r} is unknown; known: {', '.join(DRAIN_BACKENDS)}")
    if extra_vars is not None and not isinstance(extra_vars, dict):
        raise UpgradeInputError("extra_vars must be a mapping of variable names to values")
    variables = dict(extra_vars or {})
    variables.update(
        gpufleet_upgrade_run_id=run_id,
        gpufleet_upgrade_resume=resume is not None,
        gpufleet_upgrade_batches=serial,
    )
    if drain is not None:
        variables["gpufleet_drain_backend"] = drain
    if verify_tier is not None:
        variables["gpufleet_upgrade_verify_tier"] = verify_tier
    try:
        done = apply_api.run(
            PLAYBOOK,
            inventory,
            limit=limit,
            check=check,
            extra_vars=variables,
            runs_dir=runs_dir,
            view=view,
            timeout=timeout,
        )
    except apply_api.ApplyInputError as exc:
        raise UpgradeInputError(str(exc)) from None
    events = _read_events(done.events_file)
    report = reports.build_report(run_id, events, done.state, exit_code=done.exit_code, apply_id=done.id)
    code = exit_code_for(done.exit_code, report)
    report["exit_code"] = code
    report["check"] = check
    report_file = write_atomic(
        done.run_dir / REPORT_FILE, json.dumps(report, indent=2, sort_keys=True) + "\n"
    )
    return UpgradeResult(run_id=run_id, apply=done, report=report, report_file=report_file, exit_code=code)
