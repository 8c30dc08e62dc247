"""``gpufleet.verify.run``: the one function behind ``gpufleet verify`` and ``playbooks/verify.yml``.

Validate the inputs -> drain the hosts (when asked) -> verify every host -> undrain the fit ones ->
write the reports, and return a :class:`VerifyResult`. The command line (``gpufleet verify``) and
the ``gpufleet.cluster.verify_fleet`` action only map their options onto these parameters and show
the result; nothing of the orchestration lives in them.

    from gpufleet import verify

    result = verify.run("inventories/site", tier="full", junit_report="reports/verify.junit.xml")
    for host in result.hosts:
        print(host.host, host.verdict, host.action)
    raise SystemExit(result.exit_code)

The fleet run itself (one pytest process per host) is ``gpufleet.verify.runner``; this module
imports it only when called, so parsers may import the defaults below cheaply.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gpufleet._io import write_atomic
from gpufleet.verify import drain as _drain
from gpufleet.verify.settings import DEFAULT_JOBS, DEFAULT_TIER, TIERS

DRAIN_KINDS = tuple(_drain.KINDS)  # ("slurm", "kubernetes")
DEFAULT_DRAIN_STATE = _drain.DEFAULT_STATE_FILE
# Verdicts after which a host goes back into service; the others stay drained for a person to look at.
FIT_VERDICTS = ("healthy", "degraded")
REPORT_KINDS = ("json", "junit", "prometheus")

__all__ = [
    "DEFAULT_DRAIN_STATE",
    "DEFAULT_JOBS",
    "DEFAULT_TIER",
    "DRAIN_KINDS",
    "REPORT_KINDS",
    "TIERS",
    "HostVerdict",
    "VerifyPlan",
    "VerifyResult",
    "preview",
    "run",
]


@dataclass(frozen=True)
class HostVerdict:
    """One host's verdict: ``healthy``, ``degraded``, ``unhealthy`` or ``unreachable``."""

    host: str
    verdict: str
    action: str | None = None  # suggested action (health.ACTIONS), None when healthy
    failing: tuple[str, ...] = ()  # names of the checks that failed
    warning: tuple[str, ...] = ()  # names of the checks that warned
    error: str | None = None  # why an unreachable host could not be verified

    @classmethod
    def from_entry(cls, entry: dict) -> HostVerdict:
        return cls(
            host=entry["host"],
            verdict=entry["verdict"],
            action=entry.get("action"),
            failing=tuple(entry.get("failing") or ()),
            warning=tuple(entry.get("warning") or ()),
            error=entry.get("error"),
        )


@dataclass
class VerifyResult:
    """What :func:`run` returns.

    ``report``: the full report (schema in ``gpufleet.verify.report``; with a ``drain`` entry when
    hosts were drained), the input of every renderer. ``exit_code``: 1 when any host is unhealthy or
    unreachable, else 0. ``written``: report kind -> the file written. ``drained``: the scheduler
    nodes this run drained (some may be back in service, see ``report["drain"]``).
    """

    report: dict
    exit_code: int
    written: dict[str, Path] = field(default_factory=dict)
    drained: list[str] = field(default_factory=list)

    @property
    def hosts(self) -> list[HostVerdict]:
        return [HostVerdict.from_entry(h) for h in self.report["hosts"]]

    @property
    def verdicts(self) -> dict[str, str]:
        """{host: verdict}, in inventory order."""
        return {h["host"]: h["verdict"] for h in self.report["hosts"]}

    @property
    def summary(self) -> dict[str, int]:
        """{verdict: number of hosts}."""
        return dict(self.report["summary"])

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass
class VerifyPlan:
    """What :func:`preview` returns: what :func:`run` would do with the same arguments."""

    inventory: str  # absolute path
    limit: str | None
    tier: str
    jobs: int
    hosts: list[str]
    drain: str | None = None
    drain_state: str | None = None
    drain_nodes: dict[str, str] = field(default_factory=dict)  # inventory host -> scheduler node
    reports: dict[str, str] = field(default_factory=dict)  # report kind -> path


def _validate(tier: str, drain: str | None, drain_state, assume_drained: bool) -> None:
    from gpufleet.verify import runner

    runner.check_tier(tier)
    if tier == "burnin" and not (drain or assume_drained):
        raise runner.VerifyError(
            "tier burnin loads every GPU for minutes: drain the hosts first (--drain slurm|kubernetes) "
            "or say they are already out of service (--assume-drained)"
        )
    if drain_state and not drain:
        raise runner.VerifyError("--drain-state needs --drain slurm|kubernetes")
    if drain and drain not in DRAIN_KINDS:
        raise _drain.DrainError(f"unknown drain kind {drain!r}; known: {', '.join(DRAIN_KINDS)}")


def node_names(hosts: dict[str, dict], kind: str) -> dict[str, str]:
    """{inventory host: scheduler node name}: ``gpufleet_slurm_node``/``gpufleet_k8s_node``, else the host."""
    var = "gpufleet_slurm_node" if kind == "slurm" else "gpufleet_k8s_node"
    return {h: str(hv.get(var) or h) for h, hv in hosts.items()}


def _reports(json_report, junit_report, prometheus_report) -> dict[str, str]:
    paths = dict(zip(REPORT_KINDS, (json_report, junit_report, prometheus_report), strict=True))
    return {kind: str(path) for kind, path in paths.items() if path}


def preview(
    inventory: str,
    *,
    limit: str | None = None,
    tier: str = DEFAULT_TIER,
    jobs: int = DEFAULT_JOBS,
    baselines: str | None = None,
    drain: str | None = None,
    drain_state: str | None = None,
    assume_drained: bool = False,
    json_report: str | None = None,
    junit_report: str | None = None,
    prometheus_report: str | None = None,
) -> VerifyPlan:
    """Validate like :func:`run` and say which hosts it would verify and drain; touch nothing.

    The parameters are :func:`run`'s (those that change what would run). Bad input raises the same
    errors as :func:`run`. Used for the action's check mode.
    """
    from gpufleet.verify import runner

    _validate(tier, drain, drain_state, assume_drained)
    inventory, hosts, _ = runner.prepare(
        inventory, limit=limit, tier=tier, jobs=jobs, baselines_file=baselines
    )
    return VerifyPlan(
        inventory=inventory,
        limit=limit,
        tier=tier,
        jobs=jobs,
        hosts=list(hosts),
        drain=drain,
        drain_state=(drain_state or DEFAULT_DRAIN_STATE) if drain else None,
        drain_nodes=node_names(hosts, drain) if drain else {},
        reports=_reports(json_report, junit_report, prometheus_report),
    )


def run(
    inventory: str,
    *,
    limit: str | None = None,
    tier: str = DEFAULT_TIER,
    jobs: int = DEFAULT_JOBS,
    baselines: str | None = None,
    host_timeout_s: int | None = None,
    drain: str | None = None,
    drain_state: str | None = None,
    assume_drained: bool = False,
    json_report: str | None = None,
    junit_report: str | None = None,
    prometheus_report: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> VerifyResult:
    """Verify every host of an Ansible inventory and return the verdicts.

    Validates every input first (a bad one raises :class:`gpufleet.errors.GpufleetError`, exit
    code 2, before anything is touched), drains the hosts when ``drain`` is given, runs the checks
    (and from tier ``full`` the benchmark probes) on all hosts in parallel, returns the fit ones to
    service, writes the asked-for reports atomically, and returns a :class:`VerifyResult`.

    Parameters:
        inventory: Ansible inventory file or directory (group_vars applied, as ``ansible-inventory``).
        limit: only hosts matching this Ansible pattern (like ``--limit``); None for all.
        tier: one of ``TIERS``: ``quick`` state checks (seconds), ``full`` plus benchmark probes
            (minutes), ``burnin`` longer probes, only on drained hosts (``drain`` or ``assume_drained``).
        jobs: hosts verified at once (at least 1).
        baselines: YAML/JSON file of per-SKU baseline overrides, applied over each host's
            ``gpufleet_baselines``.
        host_timeout_s: seconds one host may take before it is reported unreachable (default: per
            tier, ``runner.HOST_TIMEOUT_S``).
        drain: ``slurm`` or ``kubernetes`` (``DRAIN_KINDS``): drain the hosts before verifying and
            undrain afterwards the fit ones (healthy, degraded) that gpufleet drained; unfit hosts and
            nodes someone else took out of service stay out. None: no draining.
        drain_state: file where gpufleet records what it drained (default ``DEFAULT_DRAIN_STATE``);
            only with ``drain``.
        assume_drained: the hosts are already out of service; allows tier ``burnin`` without ``drain``.
        json_report: write the JSON report to this path (None: not written).
        junit_report: write a JUnit XML report to this path.
        prometheus_report: write a node_exporter textfile-collector file to this path.
        progress: called with one line per step (drain, each host's verdict, undrain); None: silent.

    Returns:
        VerifyResult: ``report`` (the full report), ``hosts`` (a :class:`HostVerdict` each),
        ``verdicts``, ``summary``, ``exit_code`` (0, or 1 when any host is unhealthy or unreachable)
        ``written`` (report kind -> path) and ``drained`` (the nodes this run drained).
    """
    from gpufleet.verify import report as render
    from gpufleet.verify import runner

    _validate(tier, drain, drain_state, assume_drained)
    reports = _reports(json_report, junit_report, prometheus_report)
    say = progress or (lambda _msg: None)
    drainer = None
    nodes: dict[str, str] = {}
    drained: list[str] = []

    def before(hosts: dict[str, dict]) -> None:
        nonlocal drainer, nodes
        if not drain:
            return
        drainer = _drain.make_drainer(drain, drain_state or DEFAULT_DRAIN_STATE)
        nodes = node_names(hosts, drain)
        done = drainer.drain(list(nodes.values()), f"gpufleet verify {tier}")
        drained.extend(done["drained"])
        say(
            f"{drain}: drained {', '.join(done['drained']) or 'none'}"
            + (
                f"; already out of service (left alone): {', '.join(done['already'])}"
                if done["already"]
                else ""
            )
            + "".join(f"; {n}: {e}" for n, e in done["errors"].items())
        )

    report = runner.run(
        inventory,
        limit=limit,
        tier=tier,
        jobs=jobs,
        baselines_file=baselines,
        host_timeout_s=host_timeout_s,
        progress=say,
        before=before,
    )
    if drainer is not None:
        fit = [nodes[h["host"]] for h in report["hosts"] if h["verdict"] in FIT_VERDICTS]
        unfit = [nodes[h["host"]] for h in report["hosts"] if h["verdict"] not in FIT_VERDICTS]
        back = drainer.undrain(fit)
        report["drain"] = {"kind": drain, "undrained": back["undrained"], "kept": back["kept"] + unfit,
                           "errors": back["errors"]}  # fmt: skip
        say(
            f"{drain}: returned to service {', '.join(back['undrained']) or 'none'}; "
            f"kept out {', '.join(report['drain']['kept']) or 'none'}"
        )
    renderers = {
        "json": render.render_json,
        "junit": render.render_junit,
        "prometheus": render.render_prometheus,
    }
    written = {kind: write_atomic(path, renderers[kind](report)) for kind, path in reports.items()}
    return VerifyResult(report=report, exit_code=runner.exit_code(report), written=written, drained=drained)
