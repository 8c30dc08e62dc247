"""ib_write_bw between pairs of hosts (tier full): the one probe that needs two hosts at once.

After the per-host checks, hosts with ACTIVE InfiniBand/RoCE ports are paired (1-2, 3-4, ...; an
odd one out is paired with the first); for each pair, each port of the first host serves
``ib_write_bw`` and the same-numbered port of the second is the client. The client's average
bandwidth of the largest message is judged against the ``ib_write_bw_gbps`` baseline of the
host's GPU SKU, and both hosts get the result. Hosts without an active port get a skip saying so.
"""

from __future__ import annotations

import shlex
import threading
import time
from collections.abc import Callable

from ansible_collections.gpufleet.cluster.plugins.module_utils import probe_output
from ansible_collections.gpufleet.cluster.plugins.plugin_utils import baselines
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import core as health

from gpufleet.verify import probing

CHECK = "probe_ib_write_bw"
TITLE = "ib_write_bw between host pairs"
DURATION_S = 5
STARTUP_S = 2.0


def pairs(hosts: list[str]) -> list[tuple[str, str]]:
    """(server, client) pairs covering every host once; an odd one out pairs with the first."""
    ordered = list(hosts)
    out = [(ordered[i], ordered[i + 1]) for i in range(0, len(ordered) - 1, 2)]
    if len(ordered) % 2 == 1 and len(ordered) > 1:
        out.append((ordered[0], ordered[-1]))
    return out


def _entry(res: dict, duration: float) -> dict:
    res = dict(res)
    res.update({"title": TITLE, "tier": "full", "kind": "probe", "duration_s": round(duration, 3)})
    return res


def _run(host, argv: list[str], timeout_s: int) -> dict:
    out = host.run(f"LC_ALL=C timeout -k 5 {int(timeout_s)} " + " ".join(shlex.quote(a) for a in argv))
    return {"rc": out.rc, "stdout": out.stdout, "stderr": out.stderr}


def measure_pair(server, client, address: str, ports: list[str], duration_s: int = DURATION_S) -> list[dict]:
    """One measurement per port: {"port", "gbps" or None, "error"}. ``server``/``client`` are
    testinfra hosts; ``ports`` are "mlx5_0:1" ids of the server (the client uses the same ids)."""
    results = []
    for port_id in ports:
        device, _, port = port_id.partition(":")
        argv = probe_output.ib_write_bw_commands(device, int(port or 1), address, duration=duration_s)
        thread = threading.Thread(target=_run, args=(server, argv["server"], duration_s + 30), daemon=True)
        thread.start()
        time.sleep(STARTUP_S)
        out = _run(client, argv["client"], duration_s + 20)
        thread.join(duration_s + 40)
        parsed = probe_output.parse_ib_write_bw(out["stdout"])
        gbps = parsed.get("bw_average_gbps")
        error = None
        if out["rc"] != 0 or gbps is None:
            tail = (out["stderr"] or out["stdout"] or "").strip()[-500:]
            error = f"ib_write_bw client exit {out['rc']}: {tail or 'no report'}"
            gbps = None
        results.append({"port": port_id, "gbps": gbps, "error": error})
    return results


def judge(host: str, peer: str, measured: list[dict], sku: str | None, overrides: dict) -> dict:
    errors = [m for m in measured if m["error"]]
    details = [{"peer": peer, **m} for m in measured]
    if errors:
        return health.result(
            CHECK, health.FAIL, f"probe failed with {peer}: {errors[0]['port']}: {errors[0]['error']}",
            action=health.ISOLATE, details=details,
        )  # fmt: skip
    worst = min(measured, key=lambda m: m["gbps"])
    return probing.judged_result(
        CHECK, sku, "ib_write_bw_gbps", worst["gbps"], overrides, unit="Gb/s", fail_action=health.ISOLATE,
        details=details, prefix=f"{worst['port']} with {peer}: ",
    )  # fmt: skip


def run_pairs(
    raw: dict[str, dict],
    hostvars: dict[str, dict],
    overrides: dict[str, dict],
    get_host: Callable[[str], object],
    progress: Callable[[str], None] = lambda _m: None,
) -> None:
    """Append a ``probe_ib_write_bw`` result to every reachable host's raw results."""
    reachable = [h for h, r in raw.items() if r.get("reachable", True)]
    with_ib = [h for h in reachable if raw[h].get("ib_active_ports")]
    for h in reachable:
        if h not in with_ib:
            raw[h]["checks"].append(
                _entry(health.result(CHECK, health.SKIP, "no active InfiniBand/RoCE port on this host"), 0)
            )
    if len(with_ib) == 1:
        h = with_ib[0]
        raw[h]["checks"].append(
            _entry(health.result(CHECK, health.SKIP, "no peer host with an active port in this run"), 0)
        )
        return
    for server_name, client_name in pairs(with_ib):
        started = time.monotonic()
        hv = hostvars[server_name]
        address = str(hv.get("gpufleet_verify_ib_address") or hv.get("ansible_host") or server_name)
        ports = [p for p in raw[server_name]["ib_active_ports"] if p in raw[client_name]["ib_active_ports"]]
        progress(f"ib_write_bw {server_name} <- {client_name} over {', '.join(ports) or 'no common port'}")
        if not ports:
            measured = [{"port": "-", "gbps": None, "error": "the two hosts have no port id in common"}]
        else:
            measured = measure_pair(get_host(server_name), get_host(client_name), address, ports)
        took = time.monotonic() - started
        for me, peer in ((server_name, client_name), (client_name, server_name)):
            if any(c["check"] == CHECK for c in raw[me]["checks"]):
                continue  # an odd host out is measured twice; keep its first result
            sku = baselines.sku_for((raw[me].get("sku") or "").split(", ")[0])
            raw[me]["checks"].append(_entry(judge(me, peer, measured, sku, overrides.get(me, {})), took))
