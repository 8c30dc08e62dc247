# Copyright: gpufleet developers
# Apache-2.0
"""InfiniBand port error counters judged by their rate of change between two reads.

A counter's total says what happened since boot or the last reset (a cable reseated last month, a
switch rebooted last week); only its increase over a known interval says the link is bad now. So
``ib_facts`` (``counter_interval``) reads the counters twice and reports each port's increase
(``counter_deltas``) and the interval measured (``counter_interval_s``); ``judge`` turns those into a
verdict for the ``ib_ports`` check. After a single read (``gpufleet diagnose`` on a copy of
``/sys/class/infiniband``, ``gpufleet verify --tier quick``) the counters are reported, never judged.

Thresholds, per counter, as data (``COUNTER_RULES``), with their sources:

- ``link_downed``, ``link_error_recovery``: any increase fails ISOLATE. The link went down, or
  retrained to recover, during a few seconds of an idle check: a flapping link (cable, transceiver or
  switch port: hands-on work, as for a rail that is down). azurehpc-health-checks fails a node on
  any InfiniBand link flap within its window (``check_ib_link_flapping``); NVIDIA NVSentinel's NIC
  health monitor treats any increase of ``link_downed`` as fatal.
- ``symbol_error``: above 120 per hour warns MONITOR: the IBTA's bit error rate limit (10^-12) at
  the link's rate, the figure NVSentinel's NIC health monitor uses for this counter.
- ``port_rcv_errors``, ``local_link_integrity_errors``, ``excessive_buffer_overrun_errors``: any
  increase warns MONITOR (received packets dropped with errors; physical errors beyond the link's
  integrity limit; receive-buffer overruns, i.e. a lossless link that lost packets). NVSentinel
  monitors the same counters; the last two it treats as fatal, gpufleet warns, since one read a few
  seconds apart is not a trend.

Other counters (``port_xmit_discards`` under congestion, ``VL15_dropped``, the constraint errors) are
reported in the details and not judged: they rise with traffic and configuration, not with a fault.
"""

from __future__ import annotations

from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks.core import (
    AZURE,
    FAIL,
    ISOLATE,
    MONITOR,
    PASS,
    SKIP,
    WARN,
    result,
    worst_action,
)

NVSENTINEL = "NVIDIA NVSentinel NIC health monitor (link counter detection)"
IBTA_BER = "IBTA bit error rate 10^-12 (120 symbol errors/hour), as used by " + NVSENTINEL

# counter -> the rate per second above which it is judged, the result, its action, what it means
# and the source of the threshold.
COUNTER_RULES = {
    "link_downed": {
        "above_per_s": 0.0,
        "status": FAIL,
        "action": ISOLATE,
        "means": "link went down and retrained",
        "source": AZURE + " (IB link flapping); " + NVSENTINEL,
    },
    "link_error_recovery": {
        "above_per_s": 0.0,
        "status": FAIL,
        "action": ISOLATE,
        "means": "link retrained to recover from errors",
        "source": AZURE + " (IB link flapping)",
    },
    "symbol_error": {
        "above_per_s": 120 / 3600,
        "status": WARN,
        "action": MONITOR,
        "means": "physical-layer symbol errors",
        "source": IBTA_BER,
    },
    "port_rcv_errors": {
        "above_per_s": 0.0,
        "status": WARN,
        "action": MONITOR,
        "means": "received packets with errors",
        "source": NVSENTINEL,
    },
    "local_link_integrity_errors": {
        "above_per_s": 0.0,
        "status": WARN,
        "action": MONITOR,
        "means": "physical errors beyond the link's integrity limit",
        "source": NVSENTINEL,
    },
    "excessive_buffer_overrun_errors": {
        "above_per_s": 0.0,
        "status": WARN,
        "action": MONITOR,
        "means": "receive buffer overruns",
        "source": NVSENTINEL,
    },
}
# Seconds between the two reads ``gpufleet verify`` asks ib_facts for, per tier (declared for the
# collection in ``registry.COLLECT_IB_COUNTER_INTERVAL_S``): quick stays one read; a few seconds of
# an idle link are enough to see a flap or a symbol error rate far above the IBTA limit.
FULL_TIER_INTERVAL_S = 5
SECOND_READ = (
    f"a second read is needed (gpufleet verify --tier full reads them twice, {FULL_TIER_INTERVAL_S} s apart)"
)
_RANK = {PASS: 0, WARN: 1, FAIL: 2}


def _totals(rails):
    listing = [
        f"{name} {counter} {value}"
        for name, port in rails
        for counter, value in sorted((port.get("counters") or {}).items())
        if value
    ]
    return f" (totals since boot or reset: {', '.join(listing)})" if listing else ""


def judge(rails, interval_s):
    """``rails``: ``[(port id, port)]`` with ``counters``/``counter_deltas`` as ``ib_facts`` reports
    them; ``interval_s``: the seconds between the reads (None after one read).

    Returns None when no rail has counters, else ``{"status", "summary", ...}``: status None when
    the counters were read once (reported, not judged), PASS when none rose above its threshold,
    else the worst of ``COUNTER_RULES`` that fired, with ``measured`` the highest rate per second.
    """
    rails = [(name, port) for name, port in rails if port.get("counters")]
    if not rails:
        return None
    deltas = [(name, port["counter_deltas"]) for name, port in rails if port.get("counter_deltas")]
    if not interval_s or interval_s <= 0 or not deltas:
        return {
            "status": None,
            "summary": f"error counters read once on {len(rails)} rail(s), not judged: {SECOND_READ}"
            + _totals(rails),
        }
    fired = []
    for name, delta in deltas:
        for counter, rule in COUNTER_RULES.items():
            rise = delta.get(counter) or 0
            rate = rise / interval_s
            if rise and rate > rule["above_per_s"]:
                fired.append((name, counter, rise, rate, rule))
    if not fired:
        return {
            "status": PASS,
            "summary": f"error counters steady over {interval_s:g} s on {len(deltas)} rail(s)",
        }
    worst = max(_RANK[rule["status"]] for *_rest, rule in fired)
    fired = [f for f in fired if _RANK[f[4]["status"]] == worst]
    listing = "; ".join(
        f"{name} {counter} +{rise} ({rate:.3g}/s, {rule['means']})"
        for name, counter, rise, rate, rule in fired
    )
    status = fired[0][4]["status"]
    what = "link flapping" if status == FAIL else "error counters rising"
    limits = sorted({f"{counter} above {rule['above_per_s']:.3g}/s" for _n, counter, _r, _t, rule in fired})
    return {
        "status": status,
        "summary": f"{what} during {interval_s:g} s between two counter reads: {listing} "
        f"(threshold: {', '.join(limits)})",
        "measured": round(max(rate for _n, _c, _r, rate, _rule in fired), 3),
        "expected": 0,
        "unit": "errors/s",
        "action": fired[0][4]["action"],
        "source": "; ".join(sorted({rule["source"] for *_rest, rule in fired})),
    }


def merge(res, judged):
    """``res`` (the rails' state verdict of ``ib_ports``) with the counters' verdict ``judged`` folded
    in: the worse of the two decides status and action, and both are said in the summary."""
    if judged is None or res["status"] == SKIP:
        return res
    status = judged["status"]
    if status in (None, PASS):
        return dict(res, summary=f"{res['summary']}; {judged['summary']}")
    if _RANK[status] > _RANK.get(res["status"], 0):
        return result(
            res["check"],
            status,
            f"{judged['summary']}; {res['summary']}",
            measured=judged["measured"],
            expected=judged["expected"],
            unit=judged["unit"],
            source=judged["source"],
            action=judged["action"],
            details=res["details"],
        )
    action = worst_action([res["action"], judged["action"]])
    return dict(res, summary=f"{res['summary']}; also {judged['summary']}", action=action)
