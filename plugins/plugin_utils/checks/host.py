# Copyright: gpufleet developers
# Apache-2.0
"""Host checks: free disk and available memory (thresholds are gpufleet policy), and whether the
host's state could be collected at all."""

from __future__ import annotations

from ansible_collections.gpufleet.cluster.plugins.plugin_utils import preflight
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks.core import (
    FAIL,
    MONITOR,
    PASS,
    POLICY,
    WARN,
    result,
)

# --- disk_headroom -------------------------------------------------------------------------

# Below both of these the host cannot write logs or unpack a package: fail instead of warn.
DISK_CRITICAL_MIB = 1024
DISK_CRITICAL_PCT = 1


def _df_sizes(text):
    """{mount point: size MiB} from the same ``df -P -m`` text ``preflight.parse_df`` reads."""
    out = {}
    for line in (text or "").splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 6 and fields[1].isdigit():
            out[" ".join(fields[5:])] = int(fields[1])
    return out


def disk_headroom(df_text, min_free_mib=10240, min_free_pct=5):
    """Free disk per mount point of ``df -P -m`` output (``preflight.parse_df``).

    Below ``min_free_mib`` or ``min_free_pct`` warns MONITOR: no gpufleet action frees disk, an
    operator does (model files, container images, logs). Below 1 GiB and 1 % fails MONITOR: the
    host can no longer write logs or install anything. Thresholds are gpufleet policy.
    """
    check = "disk_headroom"
    free = preflight.parse_df(df_text)
    sizes = _df_sizes(df_text)
    if not free:
        return result(check, WARN, "df -P -m gave no file systems to judge", source=POLICY, action=MONITOR)
    details, low, critical = [], [], []
    for mount, mib in free.items():
        size = sizes.get(mount) or 0
        pct = round(100.0 * mib / size, 1) if size else None
        details.append({"mount": mount, "free_mib": mib, "size_mib": size, "free_pct": pct})
        if mib < min_free_mib or (pct is not None and pct < min_free_pct):
            low.append(f"{mount} {mib} MiB free ({pct if pct is not None else '?'} %)")
        if mib < DISK_CRITICAL_MIB and (pct is None or pct < DISK_CRITICAL_PCT):
            critical.append(f"{mount} {mib} MiB")
    least = min(free.values())
    common = {
        "measured": least,
        "expected": f">= {min_free_mib} MiB and >= {min_free_pct} %",
        "unit": "MiB",
        "source": POLICY,
        "details": details,
    }
    if critical:
        return result(
            check,
            FAIL,
            f"disk almost full: {', '.join(critical)} free; free space now",
            action=MONITOR,
            **common,
        )
    if low:
        return result(
            check,
            WARN,
            f"low free disk: {'; '.join(low)}; {min_free_mib} MiB and {min_free_pct} % expected",
            action=MONITOR,
            **common,
        )
    return result(
        check,
        PASS,
        f"free disk fine on {', '.join(free)} (least {least} MiB; "
        f"{min_free_mib} MiB and {min_free_pct} % expected)",
        **common,
    )


# --- memory_headroom -----------------------------------------------------------------------


def memory_headroom(meminfo_text, min_available_pct=10):
    """MemAvailable / MemTotal from /proc/meminfo: below ``min_available_pct`` warns MONITOR (a
    leftover process or a leak; burn-in and model loading need the memory). Unreadable warns."""
    check = "memory_headroom"
    values = {}
    for line in (meminfo_text or "").splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            values[key.strip()] = int(fields[0])
    total, available = values.get("MemTotal"), values.get("MemAvailable")
    if not total or available is None:
        return result(
            check, WARN, "/proc/meminfo has no MemTotal/MemAvailable", source=POLICY, action=MONITOR
        )
    pct = round(100.0 * available / total, 1)
    details = [{"mem_total_kib": total, "mem_available_kib": available, "available_pct": pct}]
    common = {
        "measured": pct,
        "expected": min_available_pct,
        "unit": "%",
        "source": POLICY,
        "details": details,
    }
    text = (
        f"{available // 1024} MiB of {total // 1024} MiB available ({pct} %), {min_available_pct} % expected"
    )
    if pct < min_available_pct:
        return result(check, WARN, f"low memory: {text}", action=MONITOR, **common)
    return result(check, PASS, text, **common)


# --- collection ----------------------------------------------------------------------------


def collection(errors):
    """Every tool whose output could not be read whole, with its error lines kept whole.

    ``errors``: {source: what the tool said}, as collection (``gpufleet verify``) or a recording
    (``gpufleet diagnose``: ``<tool>.rc``/``<tool>.stderr``, an ``ibpanic`` line) recorded it. A
    tool that failed part-way (ibstat stops at the first device it cannot read) warns MONITOR: what
    it printed is still judged by its checks, and this result says the picture is incomplete.
    None collected passes.
    """
    check = "collection"
    errors = {k: v for k, v in (errors or {}).items() if v}
    details = [{"source": k, "error": str(v)} for k, v in sorted(errors.items())]
    if errors:
        listing = "; ".join(f"{k}: {' | '.join(str(v).splitlines())}" for k, v in sorted(errors.items()))
        return result(
            check,
            WARN,
            f"{len(errors)} source(s) not read whole: {listing}",
            measured=len(errors),
            expected=0,
            unit="sources",
            source=POLICY,
            action=MONITOR,
            details=details,
        )
    return result(check, PASS, "every source read", measured=0, expected=0, unit="sources", source=POLICY)
