"""``gpufleet verify``: the checks on every inventory host in parallel, one verdict per host.

Tier quick takes the fleet path (``gpufleet.verify.fleet``): one Ansible run reads every host with
one module call each, and the checks are judged in this process. The tiers with probes (full,
burnin), and any host the fleet path could not read, take the per-host path: each host is verified
by its own pytest process (``-p gpufleet.verify.plugin``) against the inventory through testinfra's
``ansible://`` backend. Either way one slow or unreachable host never holds up or hides the others;
results are folded into one report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import UTC, datetime
from pathlib import Path

import yaml
from ansible_collections.gpufleet.cluster.plugins.plugin_utils import baselines
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import core as health

from gpufleet import __version__
from gpufleet.errors import GpufleetError
from gpufleet.verify import settings

HOST_TIMEOUT_S = {"quick": 600, "full": 3600, "burnin": 4 * 3600}
# Tiers verified on the fleet path (gpufleet.verify.fleet: one Ansible run reads every host, the
# checks are judged here); the probes of full and burnin run on each host through testinfra.
FLEET_TIERS = ("quick",)
_PYTEST_INI = "[pytest]\naddopts =\n"


class VerifyError(GpufleetError):
    pass


def inventory_hosts(inventory: str, limit: str | None = None) -> dict[str, dict]:
    """{host: hostvars} for the inventory (group_vars applied), via ``ansible-inventory --list``."""
    if not Path(inventory).exists():
        raise VerifyError(
            f"inventory {inventory} does not exist; pass -i with an inventory file or directory"
        )
    cmd = [_ansible_tool("ansible-inventory"), "-i", inventory, "--list"]
    if limit:
        cmd += ["--limit", limit]
    # stdin: nothing to read, and Ansible refuses an inherited one that is non-blocking (as in an
    # action plugin's worker process, where gpufleet.cluster.verify_fleet calls this).
    proc = subprocess.run(
        cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300, check=False
    )
    if proc.returncode != 0:
        raise VerifyError(f"ansible-inventory could not read {inventory}: {proc.stderr.strip()[-1000:]}")
    try:
        data = json.loads(proc.stdout)
    except ValueError as exc:
        raise VerifyError(f"ansible-inventory printed no JSON for {inventory}: {exc}") from exc
    hostvars = (data.get("_meta") or {}).get("hostvars") or {}
    names: list[str] = []

    def walk(group: str, seen: set) -> None:
        if group in seen:
            return
        seen.add(group)
        entry = data.get(group) or {}
        for h in entry.get("hosts", []):
            if h not in names:
                names.append(h)
        for child in entry.get("children", []):
            walk(child, seen)

    walk("all", set())
    if not names:
        where = f" matching --limit {limit}" if limit else ""
        said = " ".join(proc.stderr.split())[-600:]
        raise VerifyError(
            f"inventory {inventory} has no hosts{where}" + (f" (ansible-inventory: {said})" if said else "")
        )
    return {h: dict(hostvars.get(h) or {}, inventory_hostname=h) for h in names}


def _ansible_tool(name: str) -> str:
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else name


def load_baselines_file(path: str | None) -> dict:
    """Validated overrides from a YAML/JSON file; errors name the file and the field."""
    if not path:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise VerifyError(f"baselines file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise VerifyError(f"baselines file {path} is not valid YAML: {exc}") from exc
    if isinstance(data, dict) and set(data) == {"baselines"}:
        data = data["baselines"]
    try:
        return baselines.load_overrides(data)
    except ValueError as exc:
        raise VerifyError(f"baselines file {path}: {exc}") from exc


def host_overrides(hosts: dict[str, dict], file_overrides: dict) -> dict[str, dict]:
    """Per-host overrides: the host's ``gpufleet_baselines`` then the file on top, all validated."""
    result = {}
    for host, hv in hosts.items():
        try:
            own = baselines.load_overrides(hv.get("gpufleet_baselines"))
        except ValueError as exc:
            raise VerifyError(f"host {host}: gpufleet_baselines: {exc}") from exc
        merged = {sku: dict(metrics) for sku, metrics in own.items()}
        for sku, metrics in file_overrides.items():
            for metric, fields in metrics.items():
                merged.setdefault(sku, {}).setdefault(metric, {}).update(fields)
        result[host] = merged
    return result


def _unreachable(host: str, error: str, duration: float) -> dict:
    return {"host": host, "reachable": False, "error": error, "checks": [], "duration_s": duration}


def verify_host(
    host: str,
    inventory: str,
    hostvars: dict,
    overrides: dict,
    tier: str,
    workdir: Path,
    timeout_s: int | None = None,
) -> dict:
    """Run the checks on one host in its own pytest process; the raw host results."""
    started = time.monotonic()
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in host)
    out = workdir / f"{safe}.json"
    vars_file = workdir / f"{safe}.vars.json"
    base_file = workdir / f"{safe}.baselines.json"
    vars_file.write_text(json.dumps(hostvars, default=str))
    base_file.write_text(json.dumps(overrides))
    ini = workdir / "pytest.ini"
    cmd = [
        sys.executable, "-m", "pytest", "-c", str(ini), "--rootdir", str(workdir),
        "-p", "no:cacheprovider", "-p", "gpufleet.verify.plugin", "-q", "-rN", "--no-header",
        "--pyargs", "gpufleet.verify.checks",
        "--hosts", f"ansible://{host}", "--ansible-inventory", inventory,
        "--gpufleet-tier", tier, "--gpufleet-out", str(out),
        "--gpufleet-hostvars", str(vars_file), "--gpufleet-baselines", str(base_file),
    ]  # fmt: skip
    limit = timeout_s or HOST_TIMEOUT_S[tier]
    if not timeout_s and tier == "burnin":  # a long sustained burn-in must not outlast the host's limit
        limit = max(limit, int(hostvars.get("gpufleet_verify_burnin_seconds") or 0) + 2 * 3600)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", ANSIBLE_FORCE_COLOR="0", PY_COLORS="0")
    try:
        proc = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=limit, env=env,
            check=False, cwd=workdir,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return _unreachable(host, f"verification did not finish within {limit} s", time.monotonic() - started)
    if not out.exists():
        tail = (proc.stdout + proc.stderr).strip()[-1500:]
        return _unreachable(host, f"verification failed to run (pytest exit {proc.returncode}): {tail}",
                            time.monotonic() - started)  # fmt: skip
    data = json.loads(out.read_text())
    data["host"] = host
    data.setdefault("duration_s", round(time.monotonic() - started, 3))
    return data


def host_entry(raw: dict) -> dict:
    """The report's host entry: raw results plus the verdict."""
    checks = raw.get("checks") or []
    folded = health.verdict(checks, reachable=raw.get("reachable", True))
    return {
        "host": raw["host"],
        "verdict": folded["verdict"],
        "action": folded["action"],
        "failing": folded["failing"],
        "warning": folded["warning"],
        "policy": folded.get("policy", []),
        "unverified": folded.get("unverified", []),
        "error": raw.get("error"),
        "duration_s": round(float(raw.get("duration_s") or 0), 3),
        "gpu_count": raw.get("gpu_count"),
        "sku": raw.get("sku"),
        "checks": checks,
    }


def summarize(hosts: list[dict]) -> dict:
    """Hosts per verdict; ``unverified`` is listed only when some host has it."""
    counts = {v: 0 for v in health.VERDICTS}
    for h in hosts:
        counts[h["verdict"]] = counts.get(h["verdict"], 0) + 1
    return counts


def check_tier(tier: str) -> None:
    if tier not in settings.TIERS:
        raise VerifyError(f"unknown tier {tier!r}; choose one of {', '.join(settings.TIERS)}")


def prepare(
    inventory: str, *, limit: str | None, tier: str, jobs: int, baselines_file: str | None
) -> tuple[str, dict[str, dict], dict[str, dict]]:
    """Validate the inputs and read the inventory before anything runs.

    Returns (the inventory's absolute path, {host: hostvars}, {host: baseline overrides}).
    """
    check_tier(tier)
    if jobs < 1:
        raise VerifyError("--jobs must be at least 1")
    file_overrides = load_baselines_file(baselines_file)
    # Each host's pytest runs in a work directory of its own: give it the inventory by absolute path.
    inventory = os.path.abspath(inventory)
    hosts = inventory_hosts(inventory, limit)
    check_policies(hosts)
    return inventory, hosts, host_overrides(hosts, file_overrides)


def check_policies(hosts: dict[str, dict]) -> None:
    """Every host's ``gpufleet_verify_policy``, ``gpufleet_inference_baselines`` and
    ``gpufleet_verify_burnin_seconds`` valid, before any host is touched (VerifyError names the host
    and the setting)."""
    from ansible_collections.gpufleet.cluster.plugins.plugin_utils import baselines
    from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import policy

    for host, hostvars in hosts.items():
        try:
            policy.validate(hostvars.get("gpufleet_verify_policy"), where=f"{host}: gpufleet_verify_policy")
        except policy.PolicyError as exc:
            raise VerifyError(str(exc)) from exc
        try:
            baselines.load_inference_baselines(hostvars.get("gpufleet_inference_baselines"))
        except ValueError as exc:
            raise VerifyError(f"host {host}: {exc}") from exc
        seconds = hostvars.get("gpufleet_verify_burnin_seconds")
        if seconds is not None and (
            isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 60
        ):
            raise VerifyError(
                f"host {host}: gpufleet_verify_burnin_seconds: must be an integer of at least 60, "
                f"got {seconds!r}"
            )


def _verify_each(
    names: list[str],
    inventory: str,
    hosts: dict[str, dict],
    overrides: dict[str, dict],
    tier: str,
    jobs: int,
    host_timeout_s: int | None,
    done: Callable[[str, dict], None],
) -> None:
    """The per-host path: a pytest process per host (``verify_host``), ``jobs`` at a time."""
    with tempfile.TemporaryDirectory(prefix="gpufleet-verify-") as tmp:
        workdir = Path(tmp)
        (workdir / "pytest.ini").write_text(_PYTEST_INI)
        with ThreadPoolExecutor(max_workers=min(jobs, len(names))) as pool:
            futures = {
                pool.submit(
                    verify_host, h, inventory, hosts[h], overrides[h], tier, workdir, host_timeout_s
                ): h
                for h in names
            }
            for future in as_completed(futures):
                host = futures[future]
                try:
                    raw = future.result()
                except Exception as exc:  # a bug must not hide the other hosts' results
                    raw = _unreachable(host, f"verification crashed: {type(exc).__name__}: {exc}", 0.0)
                done(host, raw)


def run(
    inventory: str,
    *,
    limit: str | None = None,
    tier: str = settings.DEFAULT_TIER,
    jobs: int = settings.DEFAULT_JOBS,
    baselines_file: str | None = None,
    host_timeout_s: int | None = None,
    progress: Callable[[str], None] | None = None,
    before: Callable[[dict[str, dict]], None] | None = None,
) -> dict:
    """Verify every host; returns the report (see ``gpufleet.verify.report``).

    The fleet run alone: ``gpufleet.verify.run`` (verify/api.py) adds draining and the report files.
    ``before(hosts)`` is called once the inputs are valid, before the first host is touched.
    """
    inventory, hosts, overrides = prepare(
        inventory, limit=limit, tier=tier, jobs=jobs, baselines_file=baselines_file
    )
    if before:
        before(hosts)
    started_at = datetime.now(UTC)
    started = time.monotonic()
    say = progress or (lambda _msg: None)
    say(f"verifying {len(hosts)} host(s), tier {tier}, {min(jobs, len(hosts))} at a time")
    raws: dict[str, dict] = {}
    lock = threading.Lock()

    def done(host: str, raw: dict) -> None:
        entry = host_entry(raw)
        with lock:
            raws[host] = raw
            n = len(raws)
        if entry["verdict"] == health.UNREACHABLE:
            extra = f": {entry['error'][:200]}"
        elif entry["verdict"] != health.HEALTHY:
            extra = f" ({', '.join(entry['failing'] or entry['warning'] or entry['unverified'])})"
        else:
            extra = ""
        say(f"[{n}/{len(hosts)}] {host}: {entry['verdict']}{extra} in {entry['duration_s']:.1f} s")

    per_host = list(hosts)
    if tier in FLEET_TIERS:
        from gpufleet.verify import fleet

        try:
            per_host = fleet.verify(
                inventory, hosts, overrides, tier, jobs, host_timeout_s or HOST_TIMEOUT_S[tier], done
            )
        except Exception as exc:  # the faster path failing must not cost any host its verdict
            per_host = [h for h in hosts if h not in raws]
            say(f"the one-run read failed ({type(exc).__name__}: {str(exc)[-300:]}); verifying one by one")
        if per_host:
            names = ", ".join(per_host)
            say(f"{len(per_host)} host(s) verified one by one (the one-call read failed there): {names}")
    if per_host:
        _verify_each(per_host, inventory, hosts, overrides, tier, jobs, host_timeout_s, done)
    if settings.tier_includes(tier, "full"):
        from gpufleet.verify import fabric

        def get_host(name: str):
            import testinfra

            from gpufleet.verify import connection

            connection.install()

            return testinfra.get_host(f"ansible://{name}", ansible_inventory=inventory)

        fabric.run_pairs(raws, hosts, overrides, get_host, progress=say)
    results = {h: host_entry(raws[h]) for h in hosts}
    ordered = [results[h] for h in hosts]
    return {
        "schema": 1,
        "tool": "gpufleet verify",
        "version": __version__,
        "inventory": inventory,
        "limit": limit,
        "tier": tier,
        "started": started_at.isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - started, 3),
        "summary": summarize(ordered),
        "hosts": ordered,
    }


def exit_code(report: dict) -> int:
    """1 when any host is unhealthy or unreachable, else 0."""
    bad = report["summary"].get(health.UNHEALTHY, 0) + report["summary"].get(health.UNREACHABLE, 0)
    return 1 if bad else 0
