# Copyright: gpufleet developers
# Apache-2.0
"""Parsers for the text reports of fabric benchmark tools: nccl-tests and perftest.

Host code: stdlib only, Python >= 3.8 (Ansible ships it to hosts), and self-contained (no imports from the
rest of the collection) because ``gpufleet verify`` also appends this file's source to the ``allreduce`` probe
program it sends to a GPU host (``gpufleet.verify.probes.script_text``). Keep it that way.

``parse_nccl_tests`` reads the report of an nccl-tests binary (``all_reduce_perf`` and friends):
the table whose header names ``size count type [redop] [root] time algbw busbw #wrong|error``,
once for out-of-place and once for in-place, plus the ``# Out of bounds values`` and
``# Avg bus bandwidth`` summary lines. Two layouts are in the wild:

- nccl-tests up to 2.10: ``size count type redop time algbw busbw error`` (``error`` is the
  largest numeric deviation, ``2e-06``; even older builds have no ``redop`` column);
- later releases: ``size count type redop root time algbw busbw #wrong`` (``#wrong`` is a count of
  wrong elements, ``N/A`` where the check does not apply).

The parser reads the column names from the header, so both layouts (and an out-of-place-only
table) work. Lines that ``mpirun --tag-output`` prefixes with ``[1,0]<stdout>:`` are unwrapped;
NCCL INFO lines and anything else that is not a table row are ignored.

Every row is::

    size            bytes (int)
    count           elements (int)
    type            "float", "half", ...
    redop           "sum", ... or None (old layouts, or collectives without one)
    root            int or None (-1 for rootless collectives)
    out_of_place    {"time_us", "algbw_gbps", "busbw_gbps", "wrong", "error"}
    in_place        the same, or None when the table has no in-place half

``wrong`` is the ``#wrong`` count (None when ``N/A`` or in the old layout); ``error`` is the old
layout's deviation (None in the new one).

``bus_bandwidth`` is the algorithm-bandwidth to bus-bandwidth factor that nccl-tests applies,
per its doc/PERFORMANCE.md: all-reduce 2(n-1)/n; all-gather, reduce-scatter and all-to-all
(n-1)/n; broadcast, reduce, send/recv 1.

``parse_ib_write_bw`` reads a perftest bandwidth report (``ib_write_bw``; ``ib_read_bw`` and
``ib_send_bw`` print the same table): ``#bytes #iterations BW peak[...] BW average[...]
MsgRate[Mpps]``. The unit in the header is ``Gb/sec`` with ``--report_gbits`` (10^9 bit/s) or
``MB/sec`` without it (perftest divides by 0x100000, so it is MiB/s); the result is always in
Gb/s. ``ib_write_bw_commands`` builds the server and client command lines.
"""

from __future__ import annotations

import math
import re

# gpufleet-probe: import-begin (removed by script_text; the program carries versions.py before this file)
from ansible_collections.gpufleet.cluster.plugins.module_utils.versions import to_int

# gpufleet-probe: import-end

# Lines that `mpirun --tag-output` (Open MPI) prefixes: "[1,0]<stdout>:".
# MPI rank prefixes: Open MPI --tag-output "[1,0]<stdout>:", Intel MPI / MPICH -prepend-rank "[0] ".
_MPI_TAG = re.compile(r"^\[\d+(?:,\d+)?\](?:<std(?:out|err)>:|\s)")
_AVG_BUSBW = re.compile(r"#\s*Avg bus bandwidth\s*:\s*([0-9.eE+-]+|nan|inf)", re.IGNORECASE)
_OUT_OF_BOUNDS = re.compile(r"#\s*Out of bounds values\s*:\s*(\d+)\s*(\w+)?")
_RANK_LINE = re.compile(r"^#?\s*Rank\s+(\d+)\b.*\bdevice\s+(\d+)")

# nccl-tests doc/PERFORMANCE.md: busbw = algbw * factor(n)
_BUS_FACTORS = {
    "all_reduce": lambda n: 2.0 * (n - 1) / n,
    "all_gather": lambda n: (n - 1) / n,
    "reduce_scatter": lambda n: (n - 1) / n,
    "alltoall": lambda n: (n - 1) / n,
    "broadcast": lambda n: 1.0,
    "reduce": lambda n: 1.0,
    "sendrecv": lambda n: 1.0,
}
_COLLECTIVE_ALIASES = {
    "allreduce": "all_reduce",
    "allgather": "all_gather",
    "reducescatter": "reduce_scatter",
}

# perftest: MB/sec is bytes / 0x100000 per second; Gb/sec is bytes / 125000000 per second.
_MIB = 1048576
MB_PER_SEC_TO_GBPS = _MIB * 8 / 1e9


def bus_bandwidth(algbw, nranks, collective="all_reduce"):
    """Bus bandwidth from algorithm bandwidth, as nccl-tests computes it (same unit as ``algbw``)."""
    name = _COLLECTIVE_ALIASES.get(collective, collective)
    if name.endswith("_perf"):
        name = name[: -len("_perf")]
    if name not in _BUS_FACTORS:
        raise ValueError(f"unknown collective {collective!r}; known: {', '.join(sorted(_BUS_FACTORS))}")
    n = int(nranks)
    if n < 1:
        raise ValueError(f"nranks must be at least 1, got {nranks!r}")
    return float(algbw) * _BUS_FACTORS[name](n)


def _unwrap(line):
    return _MPI_TAG.sub("", line.rstrip("\r\n"))


def _number(token):
    try:
        value = float(token)
    except ValueError:
        return None
    return value


def _header_columns(line):
    """Column names of an nccl-tests table header, or None when the line is not one."""
    tokens = line.lstrip("#").split()
    if len(tokens) < 6 or tokens[:3] != ["size", "count", "type"]:
        return None
    if "time" not in tokens or "busbw" not in tokens:
        return None
    return tokens


def _half(tokens, names):
    half = {"time_us": None, "algbw_gbps": None, "busbw_gbps": None, "wrong": None, "error": None}
    for i, name in enumerate(names[: len(tokens)]):
        token = tokens[i]
        if name == "time":
            half["time_us"] = _number(token)
        elif name == "algbw":
            half["algbw_gbps"] = _number(token)
        elif name == "busbw":
            half["busbw_gbps"] = _number(token)
        elif name == "#wrong":
            half["wrong"] = to_int(token)
        elif name == "error":
            half["error"] = _number(token)
    return half


def _parse_row(tokens, columns):
    """One table row against the header's columns, or None when the line is not a row."""
    lead = [c for c in columns if c in ("size", "count", "type", "redop", "root")]
    groups = columns[len(lead) :]
    per_half = groups.index("time", 1) if groups.count("time") > 1 else len(groups)
    if len(tokens) < len(lead) + per_half:
        return None
    size = to_int(tokens[0])
    count = to_int(tokens[1])
    if size is None or count is None or tokens[2][:1].isdigit():
        return None
    row = {"size": size, "count": count, "type": tokens[2], "redop": None, "root": None}
    pos = 3
    if "redop" in lead:
        row["redop"] = tokens[pos]
        pos += 1
    if "root" in lead:
        row["root"] = to_int(tokens[pos])
        pos += 1
    first = tokens[pos : pos + per_half]
    if _number(first[0]) is None or _number(first[2]) is None:
        return None
    row["out_of_place"] = _half(first, groups[:per_half])
    second = tokens[pos + per_half : pos + 2 * per_half]
    if len(groups) > per_half and len(second) == per_half and _number(second[0]) is not None:
        row["in_place"] = _half(second, groups[per_half : 2 * per_half])
    else:
        row["in_place"] = None
    return row


def _best_busbw(row):
    values = [
        half["busbw_gbps"]
        for half in (row["out_of_place"], row["in_place"])
        if half is not None and half["busbw_gbps"] is not None and math.isfinite(half["busbw_gbps"])
    ]
    return max(values) if values else None


def parse_nccl_tests(text):
    """The report of an nccl-tests ``*_perf`` run as a dict.

    Keys: ``rows`` (see the module docstring), ``columns`` (the header's names), ``layout``
    (``"wrong"`` for the ``#wrong`` layout, ``"error"`` for the old one, None without a header),
    ``ranks`` (number of ``Rank N ... device M`` lines, None when none), ``avg_busbw_gbps`` (the
    ``# Avg bus bandwidth`` line, None when absent, as in a crashed run), ``out_of_bounds`` (the
    count on the ``# Out of bounds values`` line, or None), ``wrong_total`` (sum of the numeric
    ``#wrong`` cells), ``largest`` (the row of the largest size, or None), ``largest_busbw_gbps``
    (the better of its out-of-place / in-place busbw) and ``max_busbw_gbps`` (the best busbw in
    any row). Never raises on malformed text: what cannot be read is left out.
    """
    columns = None
    rows = []
    avg = None
    out_of_bounds = None
    ranks = set()
    for raw in (text or "").splitlines():
        line = _unwrap(raw)
        stripped = line.strip()
        if not stripped:
            continue
        match = _AVG_BUSBW.search(stripped)
        if match:
            avg = _number(match.group(1))
            continue
        match = _OUT_OF_BOUNDS.search(stripped)
        if match:
            out_of_bounds = int(match.group(1))
            continue
        match = _RANK_LINE.match(stripped)
        if match:
            ranks.add(int(match.group(1)))
            continue
        header = _header_columns(stripped)
        if header is not None:
            columns = header
            continue
        if columns is None or stripped.startswith("#"):
            continue
        row = _parse_row(stripped.split(), columns)
        if row is not None:
            rows.append(row)

    layout = None
    if columns is not None:
        layout = "wrong" if "#wrong" in columns else ("error" if "error" in columns else None)
    wrong_total = 0
    for row in rows:
        for half in (row["out_of_place"], row["in_place"]):
            if half is not None and half["wrong"] is not None:
                wrong_total += half["wrong"]
    largest = max(rows, key=lambda r: r["size"]) if rows else None
    busbws = [b for b in (_best_busbw(r) for r in rows) if b is not None]
    return {
        "columns": columns,
        "layout": layout,
        "ranks": len(ranks) or None,
        "rows": rows,
        "avg_busbw_gbps": avg,
        "out_of_bounds": out_of_bounds,
        "wrong_total": wrong_total,
        "largest": largest,
        "largest_busbw_gbps": _best_busbw(largest) if largest else None,
        "max_busbw_gbps": max(busbws) if busbws else None,
    }


_IB_HEADER = re.compile(r"#bytes\s+#?iterations\s+BW peak\[([^\]]+)\]\s+BW average\[([^\]]+)\]")
_IB_FIELD = re.compile(r"^\s*([A-Za-z][A-Za-z .*/-]*?)\s*:\s*(\S+)")


def _to_gbps(value, unit):
    if value is None:
        return None
    if unit == "Gb/sec":
        return value
    if unit == "MB/sec":
        return value * MB_PER_SEC_TO_GBPS
    return None


def parse_ib_write_bw(text):
    """A perftest bandwidth report (``ib_write_bw`` and its siblings) as a dict.

    Keys: ``unit`` (``"Gb/sec"`` or ``"MB/sec"`` as in the header, None without one), ``rows``
    (``bytes``, ``iterations``, ``bw_peak``, ``bw_average``, ``msg_rate_mpps`` in the report's
    unit), ``bw_average_gbps`` / ``bw_peak_gbps`` (of the last row, the largest message with
    ``-a``, in Gb/s whatever the report's unit), ``peak_measured`` (False when perftest printed
    0.00 for the peak, which it does in ``-D`` duration runs), and the report's settings where
    printed: ``test`` ("RDMA_Write BW Test"), ``device``, ``qps``, ``transport``, ``connection``,
    ``link_type``, ``mtu``. None values where the report does not say.
    """
    unit = None
    rows = []
    info = {
        "test": None,
        "device": None,
        "qps": None,
        "transport": None,
        "connection": None,
        "link_type": None,
        "mtu": None,
    }
    for raw in (text or "").splitlines():
        line = raw.rstrip("\r\n")
        stripped = line.strip()
        if not stripped:
            continue
        header = _IB_HEADER.search(stripped)
        if header:
            unit = header.group(2)
            continue
        if stripped.endswith("BW Test") and info["test"] is None:
            info["test"] = stripped
            continue
        # Settings lines can hold two fields: "Dual-port : OFF    Device : mlx5_0".
        for part in re.split(r"\t+|\s{3,}(?=[A-Z])", stripped):
            field = _IB_FIELD.match(part)
            if not field:
                continue
            key, value = field.group(1).strip(), field.group(2)
            if key == "Device":
                info["device"] = value
            elif key == "Number of qps":
                info["qps"] = to_int(value)
            elif key == "Transport type":
                info["transport"] = value
            elif key == "Connection type":
                info["connection"] = value
            elif key == "Link type":
                info["link_type"] = value
            elif key == "Mtu":
                info["mtu"] = to_int(value.split("[", 1)[0])
        if unit is None:
            continue
        tokens = stripped.split()
        if len(tokens) < 4:
            continue
        size, iters = to_int(tokens[0]), to_int(tokens[1])
        peak, average = _number(tokens[2]), _number(tokens[3])
        if size is None or iters is None or peak is None or average is None:
            continue
        rows.append(
            {
                "bytes": size,
                "iterations": iters,
                "bw_peak": peak,
                "bw_average": average,
                "msg_rate_mpps": _number(tokens[4]) if len(tokens) > 4 else None,
            }
        )
    last = rows[-1] if rows else None
    result = {
        "unit": unit,
        "rows": rows,
        "bw_average_gbps": _to_gbps(last["bw_average"], unit) if last else None,
        "bw_peak_gbps": _to_gbps(last["bw_peak"], unit) if last else None,
        "peak_measured": bool(last and last["bw_peak"] > 0),
    }
    result.update(info)
    return result


def ib_write_bw_commands(
    device,
    port=1,
    server_address=None,
    size=1048576,
    duration=10,
    qps=4,
    gid_index=None,
    tcp_port=None,
    binary="ib_write_bw",
):
    """The argv of the ``ib_write_bw`` server and client for one HCA port.

    Returns ``{"server": [...], "client": [...] or None}``; the client needs the server's
    address (``server_address``), so it is None without one. Both sides get the same settings,
    as perftest requires: ``-d`` device, ``-i`` port, ``-s`` message size in bytes, ``-D``
    duration in seconds (perftest then reports no peak), ``-q`` queue pairs, ``-F`` (do not fail
    on a CPU frequency warning) and ``--report_gbits`` (report in Gb/s). ``gid_index`` adds ``-x``
    (RoCE); ``tcp_port`` adds ``-p`` (the out-of-band exchange port, for several tests at once).
    """
    if not device or not re.match(r"^[A-Za-z0-9_.:-]+$", str(device)):
        raise ValueError(f"invalid RDMA device name {device!r}")
    for name, value in (("port", port), ("size", size), ("duration", duration), ("qps", qps)):
        if int(value) < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    argv = [
        binary,
        "-d",
        str(device),
        "-i",
        str(int(port)),
        "-s",
        str(int(size)),
        "-D",
        str(int(duration)),
        "-q",
        str(int(qps)),
        "-F",
        "--report_gbits",
    ]
    if gid_index is not None:
        argv += ["-x", str(int(gid_index))]
    if tcp_port is not None:
        argv += ["-p", str(int(tcp_port))]
    client = [*argv, str(server_address)] if server_address else None
    return {"server": list(argv), "client": client}
