"""pytest plugin behind ``gpufleet verify``: one host per pytest run, typed results to a JSON file.

Loaded with ``-p gpufleet.verify.plugin``; the checks live in ``gpufleet.verify.checks``. Run by
hand against any Ansible inventory::

    pytest -p gpufleet.verify.plugin --pyargs gpufleet.verify.checks \\
        --hosts ansible://node1 --ansible-inventory inventories/site/hosts.yml --gpufleet-tier quick

Each check test records one result (``plugin_utils/checks/core.py`` shape); the test fails when the
result is ``fail`` and is skipped, with the reason, when it is ``skip``. A check that raises is
recorded as ``fail`` with the exception: a crash is never a pass.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import core as health

from gpufleet._io import write_atomic
from gpufleet.verify import collect, connection, settings, wiring

_KEY = pytest.StashKey[dict]()


def pytest_addoption(parser):
    group = parser.getgroup("gpufleet", "gpufleet verify")
    group.addoption(
        "--gpufleet-tier", default=settings.DEFAULT_TIER, choices=settings.TIERS, help="check tier"
    )
    group.addoption("--gpufleet-out", default=None, help="write the host's typed results (JSON) here")
    group.addoption("--gpufleet-hostvars", default=None, help="JSON file with the host's inventory variables")
    group.addoption("--gpufleet-baselines", default=None, help="JSON file with validated baseline overrides")


def pytest_configure(config):
    connection.install()  # before testinfra reads the inventory: native connections where it can
    config.addinivalue_line("markers", "gpufleet_tier(name): the check's tier (quick, full, burnin)")
    config.stash[_KEY] = {
        "host": None,
        "reachable": True,
        "error": None,
        "checks": [],
        "started": time.monotonic(),
        "gpu_count": None,
        "sku": None,
    }


def pytest_collection_modifyitems(config, items):
    """Deselect checks above the selected tier (quick < full < burnin)."""
    tier = config.getoption("--gpufleet-tier")
    keep, drop = [], []
    for item in items:
        marker = item.get_closest_marker("gpufleet_tier")
        item_tier = marker.args[0] if marker else "quick"
        (keep if settings.tier_includes(tier, item_tier) else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_report_header(config):
    return f"gpufleet verify: tier {config.getoption('--gpufleet-tier')}"


@pytest.fixture(scope="session")
def gpufleet_results(request):
    return request.config.stash[_KEY]


@pytest.fixture(scope="module")
def hostvars(request, host):
    path = request.config.getoption("--gpufleet-hostvars")
    if path:
        return json.loads(Path(path).read_text())
    try:
        return host.ansible.get_variables()
    except RuntimeError:  # not an ansible:// host
        return {}


@pytest.fixture(scope="module")
def baseline_overrides(request, hostvars):
    from ansible_collections.gpufleet.cluster.plugins.plugin_utils import baselines

    path = request.config.getoption("--gpufleet-baselines")
    if path:
        return baselines.load_overrides(json.loads(Path(path).read_text()))
    return baselines.load_overrides(hostvars.get("gpufleet_baselines"))


@pytest.fixture(scope="module")
def state(request, host, hostvars, gpufleet_results):
    """The host's collected state, read once per run (testinfra's ``host`` is module-scoped)."""
    if "_state" in request.config.stash[_KEY]:
        return request.config.stash[_KEY]["_state"]
    gpufleet_results["host"] = hostvars.get("inventory_hostname") or str(host.backend.get_pytest_id())
    try:
        data = collect.collect(
            host,
            hostvars,
            services=list(settings.hostvar(hostvars, "gpufleet_verify_services") or []),
            **wiring.collect_options(request.config.getoption("--gpufleet-tier")),
        )
    except collect.Unreachable as exc:
        gpufleet_results["reachable"] = False
        gpufleet_results["error"] = str(exc)
        _write(request.config)
        pytest.exit(f"unreachable: {exc}", returncode=3)
    except Exception as exc:  # a transport that drops mid-way; never a silent pass
        gpufleet_results["reachable"] = False
        gpufleet_results["error"] = f"state collection failed: {type(exc).__name__}: {str(exc)[-500:]}"
        _write(request.config)
        pytest.exit(gpufleet_results["error"], returncode=3)
    gpufleet_results.update(collect.host_summary(data))
    gpufleet_results["_state"] = data
    return data


@pytest.fixture
def record(request, gpufleet_results):
    """Record a check result and turn it into the pytest outcome."""

    def _record(res: dict, *, title: str, tier: str, kind: str, started: float) -> dict:
        entry = dict(res)
        entry.update(
            {"title": title, "tier": tier, "kind": kind, "duration_s": round(time.monotonic() - started, 3)}
        )
        gpufleet_results["checks"].append(entry)
        request.node.stash[_KEY] = entry
        line = f"{entry['check']}: {entry['status']}: {entry['summary']}"
        if entry["status"] == health.FAIL:
            pytest.fail(line, pytrace=False)
        if entry["status"] in (health.SKIP, health.UNVERIFIED_STATUS):  # neither is a pass
            pytest.skip(line)
        return entry

    return _record


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    if _KEY in item.stash:  # a recorded fail: the result is already there
        return
    name = item.callspec.params.get("check", item.name) if hasattr(item, "callspec") else item.name
    marker = item.get_closest_marker("gpufleet_tier")
    results = item.config.stash[_KEY]
    crash = health.result(
        name,
        health.FAIL,
        f"check crashed: {str(call.excinfo.value)[-300:] if call.excinfo else 'unknown error'}",
        action=health.MONITOR,
        details=[{"traceback": str(report.longrepr)[-2000:]}],
    )
    crash.update(
        {"title": name, "tier": marker.args[0] if marker else "quick", "kind": "software", "duration_s": 0}
    )
    results["checks"].append(crash)


def _write(config):
    path = config.getoption("--gpufleet-out")
    data = {k: v for k, v in config.stash[_KEY].items() if k != "_state"}
    data["duration_s"] = round(time.monotonic() - data.pop("started"), 3)
    if path:
        write_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def pytest_sessionfinish(session, exitstatus):
    results = session.config.stash[_KEY]
    if results.get("reachable", True) and results.get("host") is not None:
        _write(session.config)
