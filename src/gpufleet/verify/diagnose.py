"""``gpufleet.verify.diagnose``: judge a directory of recorded tool outputs with verify's checks.

    from gpufleet.verify import diagnose

    result = diagnose.diagnose("case-4711/", junit_report="case-4711.junit.xml")
    print(result.report["hosts"][0]["verdict"])
    raise SystemExit(result.exit_code)

The files are read by ``gpufleet.verify.recorded`` into the state ``gpufleet verify`` collects on a
live host; every check of ``registry.CHECKS`` is then called as verify calls it
(``gpufleet.verify.wiring``), and the report is verify's (``gpufleet.verify.report``): one host,
named after the directory, plus ``inputs``, what was read from which file and what was not. A
check whose inputs are not in the recording skips and says which file would have given them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import yaml
from ansible_collections.gpufleet.cluster.plugins.plugin_utils import baselines
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import core as health
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import policy, registry

from gpufleet import __version__
from gpufleet._io import write_atomic
from gpufleet.errors import GpufleetError
from gpufleet.verify import recorded, wiring

TOOL = "gpufleet diagnose"
TIER = "recorded"
# expect.yml key -> (the verify hostvar it sets, what it is)
EXPECT_KEYS = {
    "gpus": ("gpufleet_expected_gpus", "GPUs the host must have (0: none)"),
    "rails": ("gpufleet_expected_ib_ports", "InfiniBand rails (ACTIVE ports) the host must have"),
    "rail_rate_gbps": ("gpufleet_expected_ib_rate_gbps", "their rate in Gb/s, e.g. 400 for NDR"),
    "rail_ports": (
        "gpufleet_ib_rails",
        "the ports that are rails (mlx5_0:1) on RoCE; default InfiniBand ones",
    ),
    "sku": (None, "the GPU SKU the host must have, as baselines names it (e.g. H100-SXM)"),
    "policy": ("gpufleet_verify_policy", "the site's policy (plugins/plugin_utils/checks/policy.py)"),
}
# state key -> the files that provide it (for the skip reason of a check that needs it)
PROVIDERS = {
    "gpus": "nvidia-smi-q.xml or nvidia-smi-q.txt",
    "nvlink": "nvlink-s.txt",
    "kernel_log": "kernel.log",
    "ib": "ibstat.txt or sys-class-infiniband/",
}


class DiagnoseError(GpufleetError):
    """Bad input: no such directory, a bad expect.yml. Exit status 2."""


@dataclass
class DiagnoseResult:
    """``report``: verify's report shape with one host and ``inputs``; ``exit_code``: 0 healthy or
    degraded, 1 unhealthy; ``written``: report kind -> file."""

    report: dict
    exit_code: int
    written: dict[str, Path] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return self.report["hosts"][0]["verdict"]


def load_expect(path: str | Path | None) -> dict:
    """expect.yml as ``{key: value}``, validated. Raises DiagnoseError saying what is wrong."""
    if path is None:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise DiagnoseError(f"cannot read expectations {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise DiagnoseError(f"{path}: a mapping of expectations expected, got {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in EXPECT_KEYS)
    if unknown:
        raise DiagnoseError(f"{path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(EXPECT_KEYS)}")
    for key in ("gpus", "rails"):
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise DiagnoseError(f"{path}: {key} must be a whole number (0 or more), got {value!r}")
    rate = data.get("rail_rate_gbps")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0):
        raise DiagnoseError(f"{path}: rail_rate_gbps must be a positive number, got {rate!r}")
    rail_ports = data.get("rail_ports")
    if rail_ports is not None and (
        not isinstance(rail_ports, list) or not all(isinstance(p, str) and p for p in rail_ports)
    ):
        raise DiagnoseError(
            f"{path}: rail_ports must be a list of ports (mlx5_0:1) or devices, got {rail_ports!r}"
        )
    sku = data.get("sku")
    if sku is not None and sku not in baselines.BASELINES:
        raise DiagnoseError(f"{path}: unknown sku {sku!r}; known: {', '.join(sorted(baselines.BASELINES))}")
    try:
        data["policy"] = policy.validate(data.get("policy"), where=f"{path}: policy")
    except policy.PolicyError as exc:
        raise DiagnoseError(str(exc)) from exc
    return data


def _skip_reason(check: registry.Check, rec: recorded.Recording) -> str | None:
    missing = [
        need.key
        for need in check.needs.values()
        if need.source == registry.STATE and need.key not in rec.recorded and not need.optional
    ]
    if not missing:
        return None
    if any(key not in PROVIDERS for key in missing):
        return "read on a live host only (gpufleet verify)"
    return "not in the recording: needs " + " and ".join(sorted({PROVIDERS[key] for key in missing}))


def _sku_result(expected_sku: str, gpus: dict | None) -> dict | None:
    names = sorted({g.get("name") or "?" for g in (gpus or {}).get("gpus") or ()})
    found = sorted({baselines.sku_for(n) or n for n in names})
    if not names:
        return None
    if found == [expected_sku]:
        return None
    return health.result(
        "gpu_count",
        health.FAIL,
        f"GPU SKU {', '.join(found)} found, {expected_sku} expected (expect.yml sku)",
        measured=found,
        expected=expected_sku,
        source=health.POLICY,
        action=health.MONITOR,
    )


def _nccl_result(text: str, sku: str | None) -> dict:
    from ansible_collections.gpufleet.cluster.plugins.module_utils.probe_output import parse_nccl_tests

    from gpufleet.verify import probes, probing

    meta = probes.PROBES["allreduce"]
    check = "probe_allreduce"
    parsed = parse_nccl_tests(text)
    details = [{k: parsed.get(k) for k in ("ranks", "layout", "avg_busbw_gbps", "max_busbw_gbps")}]
    if not parsed["rows"]:
        return health.result(
            check,
            health.FAIL,
            "nccl-tests.txt has no result rows (the run did not finish, or it is not an nccl-tests report)",
            action=health.MONITOR,
            details=details,
        )
    if parsed["wrong_total"] or parsed["out_of_bounds"]:
        return health.result(
            check,
            health.FAIL,
            f"nccl-tests found wrong results: #wrong total {parsed['wrong_total']}, out of bounds "
            f"{parsed['out_of_bounds']}",
            action=health.RESET_GPU,
            details=details,
        )
    return probing.judged_result(
        check,
        sku,
        meta["metric"],
        parsed["largest_busbw_gbps"],
        None,
        unit=meta["unit"],
        fail_action=health.RESET_GPU,
        details=details,
        suffix=f" (recorded nccl-tests, {parsed['ranks'] or '?'} ranks, largest size)",
    )


def diagnose(
    directory: str | Path,
    *,
    expect: str | Path | None = None,
    host: str | None = None,
    json_report: str | None = None,
    junit_report: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> DiagnoseResult:
    """Judge the recorded outputs in ``directory`` and return verify's report for them.

    Parameters:
        directory: a directory of recorded outputs named as ``recorded.FILES`` lists.
        expect: the expectations file (default: ``directory/expect.yml`` when there is one).
        host: the name the report gives the host (default: the directory's name).
        json_report: write the JSON report here.
        junit_report: write a JUnit XML report here.
        progress: called with one line per step; None: silent.

    Returns:
        DiagnoseResult: ``report``, ``exit_code`` (0 healthy/degraded, 1 unhealthy), ``written``.

    Raises:
        DiagnoseError (exit status 2): no such directory, a bad expectations file, or a directory
        with no file gpufleet diagnose can read.
    """
    from gpufleet.verify import report as render
    from gpufleet.verify import runner

    say = progress or (lambda _msg: None)
    started = time.monotonic()
    directory = Path(directory)
    if not directory.is_dir():
        raise DiagnoseError(f"{directory} is not a directory of recorded outputs")
    rec = recorded.read(directory)
    expectations = load_expect(expect or rec.expect_path)
    if not (rec.recorded - {"errors"}) and rec.nccl_tests is None:
        listed = ", ".join(f"{i['file']} ({i['status']})" for i in rec.inputs) or "nothing"
        raise DiagnoseError(
            f"{directory}: no recorded output gpufleet diagnose can read (found: {listed}); "
            f"known file names: {', '.join(recorded.FILES)}"
        )
    hostvars = {
        var: expectations[key] for key, (var, _what) in EXPECT_KEYS.items() if var and key in expectations
    }
    say(f"read {', '.join(i['file'] for i in rec.inputs if i['status'] == 'used')}")
    checks = []
    for check in registry.CHECKS.values():
        t0 = time.monotonic()
        reason = _skip_reason(check, rec)
        if reason:
            res = health.result(check.name, health.SKIP, reason)
        else:
            state = dict(rec.state)
            for need in check.needs.values():
                if need.source == registry.STATE and need.key not in rec.recorded:
                    state[need.key] = None  # an optional input the recording lacks
            try:
                res = wiring.call(check, state, hostvars, None)
            except Exception as exc:  # a check that crashes on odd data is a result, never a pass
                res = health.result(
                    check.name,
                    health.FAIL,
                    f"check crashed on the recording: {type(exc).__name__}: {str(exc)[-300:]}",
                    action=health.MONITOR,
                )
        if check.name == "gpu_count" and expectations.get("sku") and res["status"] != health.FAIL:
            res = _sku_result(expectations["sku"], rec.state.get("gpus")) or res
        res.update(title=check.title, tier=check.tier, kind=check.kind,
                   duration_s=round(time.monotonic() - t0, 3))  # fmt: skip
        checks.append(res)
    gpus = rec.state.get("gpus") or {}
    sku_names = sorted(
        {baselines.sku_for(g.get("name")) or g.get("name") or "unknown" for g in gpus.get("gpus") or []}
    )
    sku = expectations.get("sku") or (sku_names[0] if len(sku_names) == 1 else None)
    if rec.nccl_tests is not None:
        res = _nccl_result(rec.nccl_tests, sku)
        res.update(
            title="NCCL all-reduce bus bandwidth (recorded)", tier="full", kind="fabric", duration_s=0.0
        )
        checks.append(res)
    entry = runner.host_entry(
        {
            "host": host or directory.resolve().name,
            "checks": checks,
            "gpu_count": gpus.get("gpu_count") if "gpus" in rec.recorded else None,
            "sku": ", ".join(sku_names) or None,
            "duration_s": time.monotonic() - started,
        }
    )
    report = {
        "schema": 1,
        "tool": TOOL,
        "version": __version__,
        "directory": str(directory),
        "tier": TIER,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - started, 3),
        "summary": runner.summarize([entry]),
        "hosts": [entry],
        "inputs": rec.inputs,
    }
    say(f"{entry['host']}: {entry['verdict']}" + (f", {entry['action']}" if entry["action"] else ""))
    renderers = {"json": render.render_json, "junit": render.render_junit}
    written = {}
    for kind, path in (("json", json_report), ("junit", junit_report)):
        if path:
            written[kind] = write_atomic(path, renderers[kind](report))
    return DiagnoseResult(report=report, exit_code=runner.exit_code(report), written=written)
