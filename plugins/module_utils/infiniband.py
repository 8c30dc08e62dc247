# Copyright: gpufleet developers
# Apache-2.0
"""InfiniBand / RoCE devices from the kernel's sysfs tree or from ``ibstat`` output.

Host code: stdlib only, Python >= 3.8 (Ansible ships it to hosts). ``read_sysfs`` reads
``/sys/class/infiniband/<device>/`` (what the kernel's RDMA core exposes: ``node_type``,
``node_guid``, ``fw_ver``, ``ports/<n>/{state,phys_state,rate,link_layer,lid,sm_lid}``,
``ports/<n>/gids/<i>`` and ``ports/<n>/gid_attrs/{types,ndevs}/<i>``; see the kernel's
``Documentation/ABI/stable/sysfs-class-infiniband``); ``parse_ibstat`` reads the text report of
``ibstat`` (infiniband-diags) into the same shape. ``summarize`` makes the facts the
``gpufleet.cluster.ib_facts`` module returns, and ``roce_gid_index`` picks the GID index NCCL wants in
``NCCL_IB_GID_INDEX`` on RoCE fabrics.

Every device is a dict with the same keys::

    name            "mlx5_0"
    node_type       "CA" (from "1: CA"), "RNIC" (iWARP), "switch"...; None when the kernel does not say
    node_guid       "0x248a07030049aee0" (always this form: sysfs prints 0a7f:bc12:..., ibstat 0x...)
    sys_image_guid  same form, or None
    fw_ver          "12.20.1010", or None
    hw_ver          "0" (ibstat "Hardware version", sysfs hw_rev), or None
    hca_type        "MT4099", or None
    board_id        "MT_0000000834" (sysfs only; None from ibstat)
    ports           list of ports, in port-number order

and every port::

    port            1
    state           "ACTIVE", "DOWN", "INIT", "ARMED", "ACTIVE_DEFER" (sysfs names; ibstat's
                    "Active"/"Initializing"/... are mapped to them)
    state_code      4 (from "4: ACTIVE"), None when unknown
    phys_state      "LinkUp", "Polling", "Disabled", ...
    phys_state_code 5, None when unknown
    rate_gbps       100.0 (from "100 Gb/sec (4X EDR)" or ibstat "Rate: 100")
    rate            the text as read
    link_layer      "InfiniBand" or "Ethernet" (RoCE)
    lid, sm_lid     integers (sysfs prints them in hex, ibstat in decimal), None when unknown
    lmc             integer or None
    port_guid       InfiniBand: the low 64 bits of GID 0 (sysfs) or "Port GUID" (ibstat); RoCE: None
    netdevs         net interfaces bound to the port ("ib0", "ens1f0np0"); [] when unknown
    gids            [{"index", "gid", "type", "ndev"}], all-zero GIDs left out; type is "IB",
                    "RoCE v1" or "RoCE v2"; ndev is the net interface of a RoCE GID, else None
    counters        {name: value} of the port's error counters (``ERROR_COUNTERS``) that sysfs has
                    under ``ports/<n>/counters/``; None when it has none (ibstat prints none)
    counter_deltas  {name: increase} between two reads (``add_counter_deltas``); None after one read

A file that is missing or cannot be read gives None for its key; nothing here raises on a
malformed or partial tree.
"""

from __future__ import annotations

import ipaddress
import os
import re

from ansible_collections.gpufleet.cluster.plugins.module_utils.versions import to_int

SYSFS_INFINIBAND = "/sys/class/infiniband"
SYSFS_NET = "/sys/class/net"

# Port states as the kernel names them in sysfs ("4: ACTIVE"), by IB architecture code.
PORT_STATES = {0: "NOP", 1: "DOWN", 2: "INIT", 3: "ARMED", 4: "ACTIVE", 5: "ACTIVE_DEFER"}
# ibstat prints the state names of libibumad; map them onto the sysfs names.
_IBSTAT_STATES = {
    "down": "DOWN",
    "initializing": "INIT",
    "init": "INIT",
    "armed": "ARMED",
    "active": "ACTIVE",
    "activedefer": "ACTIVE_DEFER",
    "active_defer": "ACTIVE_DEFER",
}
PHYS_STATES = {
    1: "Sleep",
    2: "Polling",
    3: "Disabled",
    4: "PortConfigurationTraining",
    5: "LinkUp",
    6: "LinkErrorRecovery",
    7: "Phy Test",
}
ACTIVE = "ACTIVE"
INFINIBAND = "InfiniBand"
ETHERNET = "Ethernet"
INFINIBAND_GID = "IB"  # GID type on an InfiniBand port

_CODE_TEXT = re.compile(r"^\s*(\d+)\s*:\s*(.*?)\s*$")
_NUMBER = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)")
_HEX16 = re.compile(r"^[0-9a-f]{16}$")
_IBSTAT_CA = re.compile(r"^CA\s+'([^']+)'\s*$")
_IBSTAT_PORT = re.compile(r"^Port\s+(\d+)\s*:\s*$")
_ZERO_GID = "0000:0000:0000:0000:0000:0000:0000:0000"

DEVICE_KEYS = ("name", "node_type", "node_guid", "sys_image_guid", "fw_ver", "hw_ver", "hca_type", "board_id")
PORT_KEYS = (
    "port",
    "state",
    "state_code",
    "phys_state",
    "phys_state_code",
    "rate_gbps",
    "rate",
    "link_layer",
    "lid",
    "sm_lid",
    "lmc",
    "port_guid",
    "netdevs",
    "gids",
    "counters",
    "counter_deltas",
)
# The port error counters of the kernel's sysfs ABI (Documentation/ABI/stable/sysfs-class-infiniband,
# ports/<n>/counters/; the same names node_exporter's infiniband collector reads). A driver may lack
# some; those that exist are read. Traffic counters (port_rcv_data, ...) are not error counters.
ERROR_COUNTERS = (
    "symbol_error",
    "link_error_recovery",
    "link_downed",
    "port_rcv_errors",
    "port_rcv_remote_physical_errors",
    "port_rcv_switch_relay_errors",
    "port_xmit_discards",
    "local_link_integrity_errors",
    "excessive_buffer_overrun_errors",
    "port_rcv_constraint_errors",
    "port_xmit_constraint_errors",
    "VL15_dropped",
)


def _read(path):
    """First line of a sysfs file, stripped; None when missing, unreadable or empty."""
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            text = handle.read()
    except OSError:  # missing file, or EINVAL from an unpopulated gid_attrs entry
        return None
    text = text.strip()
    return text.splitlines()[0].strip() if text else None


def _listdir(path):
    try:
        return os.listdir(path)
    except OSError:
        return []


def _numeric_names(path):
    """Names of the entries of ``path`` that are integers, in numeric order."""
    return sorted((n for n in _listdir(path) if n.isdigit()), key=int)


def split_code(text):
    """``"4: ACTIVE"`` -> ``(4, "ACTIVE")``; ``"LinkUp"`` -> ``(None, "LinkUp")``; None -> (None, None)."""
    if text is None:
        return None, None
    match = _CODE_TEXT.match(text)
    if match:
        return int(match.group(1)), match.group(2) or None
    text = text.strip()
    return None, text or None


def rate_gbps(text):
    """``"100 Gb/sec (4X EDR)"``, ``"2.5 Gb/sec (1X SDR)"`` or ibstat's ``"100"`` -> float; else None."""
    if text is None:
        return None
    match = _NUMBER.match(text)
    return float(match.group(1)) if match else None


def normalize_guid(text):
    """A GUID as ``0x`` + 16 lower-case hex digits, from ``0a7f:bc12:45ef:d23b`` or ``0x0A7F...``.

    Returns None for None/empty text and the stripped text unchanged when it is not a GUID.
    """
    if text is None:
        return None
    raw = text.strip().lower()
    if not raw:
        return None
    digits = raw[2:] if raw.startswith("0x") else raw.replace(":", "")
    if _HEX16.match(digits.rjust(16, "0")) and len(digits) <= 16:
        return "0x" + digits.rjust(16, "0")
    return text.strip()


def gid_interface_id(gid):
    """Low 64 bits of a GID (the port GUID of an InfiniBand port's GID 0), as ``normalize_guid``."""
    if not gid:
        return None
    groups = gid.strip().lower().split(":")
    if len(groups) != 8:
        return None
    return normalize_guid("".join(groups[4:]))


def _gid_type(raw, link_layer):
    """Kernel ``gid_attrs/types`` text -> "IB", "RoCE v1" or "RoCE v2" (None when unknown)."""
    if raw is None:
        return INFINIBAND_GID if link_layer == INFINIBAND else None
    lowered = raw.strip().lower()
    if "v2" in lowered:
        return "RoCE v2"
    if lowered in ("ib/roce v1", "ib", "roce v1", "roce"):
        # The kernel names type 0 "IB/RoCE v1": which of the two depends on the link layer.
        return INFINIBAND_GID if link_layer == INFINIBAND else "RoCE v1"
    return raw.strip()


def _read_gids(port_dir, link_layer):
    gids = []
    for name in _numeric_names(os.path.join(port_dir, "gids")):
        gid = _read(os.path.join(port_dir, "gids", name))
        if not gid or gid.lower() == _ZERO_GID:
            continue
        attrs = os.path.join(port_dir, "gid_attrs")
        gids.append(
            {
                "index": int(name),
                "gid": gid.lower(),
                "type": _gid_type(_read(os.path.join(attrs, "types", name)), link_layer),
                "ndev": _read(os.path.join(attrs, "ndevs", name)),
            }
        )
    return gids


def _realpath(path):
    try:
        return os.path.realpath(path) if os.path.exists(path) else None
    except OSError:
        return None


def _net_port(iface_dir):
    """1-based HCA port a net interface sits on, from ``dev_port`` (or the older ``dev_id``)."""
    dev_port = to_int(_read(os.path.join(iface_dir, "dev_port")))
    if dev_port:
        return dev_port + 1
    dev_id = to_int(_read(os.path.join(iface_dir, "dev_id")), 16)
    return (dev_id or 0) + 1


def _netdevs_by_device(device_dir, net_root):
    """``{port: [iface, ...]}`` for net interfaces whose ``device`` is the HCA's PCI device."""
    target = _realpath(os.path.join(device_dir, "device"))
    found = {}
    if target is None:
        return found
    for iface in sorted(_listdir(net_root)):
        iface_dir = os.path.join(net_root, iface)
        if _realpath(os.path.join(iface_dir, "device")) != target:
            continue
        found.setdefault(_net_port(iface_dir), []).append(iface)
    return found


def _empty_port(number):
    port = dict.fromkeys(PORT_KEYS)
    port.update(port=number, netdevs=[], gids=[])
    return port


def _read_counters(port_dir):
    """``{name: value}`` of the error counters present under ``port_dir/counters``, or None."""
    counters = {}
    for name in ERROR_COUNTERS:
        value = to_int(_read(os.path.join(port_dir, "counters", name)))
        if value is not None:
            counters[name] = value
    return counters or None


def _read_port(device_dir, number, netdevs_fallback):
    port_dir = os.path.join(device_dir, "ports", str(number))
    port = _empty_port(number)
    port["state_code"], port["state"] = split_code(_read(os.path.join(port_dir, "state")))
    port["phys_state_code"], port["phys_state"] = split_code(_read(os.path.join(port_dir, "phys_state")))
    port["rate"] = _read(os.path.join(port_dir, "rate"))
    port["rate_gbps"] = rate_gbps(port["rate"])
    port["link_layer"] = _read(os.path.join(port_dir, "link_layer"))
    port["lid"] = to_int(_read(os.path.join(port_dir, "lid")), 16)
    port["sm_lid"] = to_int(_read(os.path.join(port_dir, "sm_lid")), 16)
    port["lmc"] = to_int(_read(os.path.join(port_dir, "lid_mask_count")))
    port["gids"] = _read_gids(port_dir, port["link_layer"])
    if port["link_layer"] == INFINIBAND:
        first = next((g for g in port["gids"] if g["index"] == 0), None)
        port["port_guid"] = gid_interface_id(first["gid"]) if first else None
    ndevs = []
    for name in _numeric_names(os.path.join(port_dir, "gid_attrs", "ndevs")):
        ndev = _read(os.path.join(port_dir, "gid_attrs", "ndevs", name))
        if ndev and ndev not in ndevs:
            ndevs.append(ndev)
    port["netdevs"] = ndevs or list(netdevs_fallback.get(number, []))
    port["counters"] = _read_counters(port_dir)
    return port


def read_device(root, name, net_root=SYSFS_NET):
    """One device of the sysfs tree at ``root`` (``/sys/class/infiniband``), as described above."""
    device_dir = os.path.join(root, name)
    device = dict.fromkeys(DEVICE_KEYS)
    device["name"] = name
    device["node_type"] = split_code(_read(os.path.join(device_dir, "node_type")))[1]
    device["node_guid"] = normalize_guid(_read(os.path.join(device_dir, "node_guid")))
    device["sys_image_guid"] = normalize_guid(_read(os.path.join(device_dir, "sys_image_guid")))
    device["fw_ver"] = _read(os.path.join(device_dir, "fw_ver"))
    device["hw_ver"] = _read(os.path.join(device_dir, "hw_rev"))
    device["hca_type"] = _read(os.path.join(device_dir, "hca_type"))
    device["board_id"] = _read(os.path.join(device_dir, "board_id"))
    fallback = _netdevs_by_device(device_dir, net_root)
    device["ports"] = [
        _read_port(device_dir, int(number), fallback)
        for number in _numeric_names(os.path.join(device_dir, "ports"))
    ]
    return device


def read_sysfs(root=SYSFS_INFINIBAND, net_root=SYSFS_NET):
    """Every RDMA device under ``root``, sorted by name; [] when ``root`` does not exist."""
    names = sorted(n for n in _listdir(root) if os.path.isdir(os.path.join(root, n)))
    return [read_device(root, name, net_root) for name in names]


def counter_delta(before, after):
    """Increase of a counter between two reads. A value lower than before means the counter was
    reset in between (driver reload, ``perfquery -R``): what it counts now happened since, so the
    new value is the increase (never negative)."""
    return after - before if after >= before else after


def add_counter_deltas(first, second):
    """Set ``counter_deltas`` on every port of ``second`` (a later ``read_sysfs`` of the same host)
    from the counters both reads have; ports or counters only one read has are left out."""
    earlier = {(d["name"], p["port"]): p.get("counters") or {} for d in first for p in d["ports"]}
    for device in second:
        for port in device["ports"]:
            before = earlier.get((device["name"], port["port"]))
            now = port.get("counters") or {}
            if before is None or not now:
                continue
            port["counter_deltas"] = {
                name: counter_delta(before[name], value) for name, value in now.items() if name in before
            }
    return second


# --- ibstat -------------------------------------------------------------------------------------

_IBSTAT_DEVICE_FIELDS = {
    "ca type": "hca_type",
    "firmware version": "fw_ver",
    "hardware version": "hw_ver",
    "node guid": "node_guid",
    "system image guid": "sys_image_guid",
}


def _ibstat_state(text):
    if text is None:
        return None, None
    name = _IBSTAT_STATES.get(text.strip().lower().replace(" ", ""))
    if name is None:
        return None, text.strip() or None
    code = next(code for code, value in PORT_STATES.items() if value == name)
    return code, name


def _ibstat_phys_state(text):
    if text is None:
        return None, None
    code, value = split_code(text)
    if code is None and value is not None:
        code = next((c for c, v in PHYS_STATES.items() if v.lower() == value.lower()), None)
    return code, value


def _set_port_field(port, key, value):
    if key == "state":
        port["state_code"], port["state"] = _ibstat_state(value)
    elif key == "physical state":
        port["phys_state_code"], port["phys_state"] = _ibstat_phys_state(value)
    elif key == "rate":
        port["rate"] = value or None
        port["rate_gbps"] = rate_gbps(value)
    elif key == "base lid":
        port["lid"] = to_int(value)
    elif key == "sm lid":
        port["sm_lid"] = to_int(value)
    elif key == "lmc":
        port["lmc"] = to_int(value)
    elif key == "port guid":
        port["port_guid"] = normalize_guid(value)
    elif key == "link layer":
        port["link_layer"] = value or None


def parse_ibstat(text):
    """Parse ``ibstat`` output (all CAs, or one) into the device list described above.

    Indentation may be tabs (as ibstat prints) or spaces (as copied into documents). Lines that
    are not ``key: value`` pairs (an ``ibpanic`` message, say) are ignored, so text without any
    ``CA '...'`` header gives [].
    """
    devices = []
    device = port = None
    for raw in (text or "").splitlines():
        line = raw.strip()
        if not line:
            continue
        match = _IBSTAT_CA.match(line)
        if match:
            device = dict.fromkeys(DEVICE_KEYS)
            device.update(name=match.group(1), node_type="CA", ports=[])
            devices.append(device)
            port = None
            continue
        if device is None:
            continue
        match = _IBSTAT_PORT.match(line)
        if match:
            port = _empty_port(int(match.group(1)))
            device["ports"].append(port)
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if port is not None:
            _set_port_field(port, key, value)
        elif key in _IBSTAT_DEVICE_FIELDS:
            field = _IBSTAT_DEVICE_FIELDS[key]
            device[field] = normalize_guid(value) if field.endswith("guid") else (value or None)
    for dev in devices:
        dev["ports"].sort(key=lambda p: p["port"])
        for item in dev["ports"]:
            if item["link_layer"] != INFINIBAND and item["link_layer"] is not None:
                item["port_guid"] = None
    return devices


# --- facts --------------------------------------------------------------------------------------


def port_id(device, port):
    """``"mlx5_0:1"``: the form NCCL_IB_HCA and ``ibv_devinfo -d/-i`` use."""
    return f"{device['name']}:{port['port']}"


def summarize(devices):
    """The facts ``ib_facts`` returns: counts, the active ports, and the devices themselves."""
    active = [(d, p) for d in devices for p in d["ports"] if p["state"] == ACTIVE]
    return {
        "hca_count": len(devices),
        "port_count": sum(len(d["ports"]) for d in devices),
        "active_ports": [port_id(d, p) for d, p in active],
        "ib_active": any(p["link_layer"] == INFINIBAND for _d, p in active),
        "roce_active": any(p["link_layer"] == ETHERNET for _d, p in active),
        "devices": devices,
    }


def _is_ipv4_mapped(gid):
    try:
        return ipaddress.IPv6Address(gid).ipv4_mapped is not None
    except ValueError:
        return False


def roce_gid_index(port, prefer="RoCE v2", family="ipv4"):
    """GID index for NCCL_IB_GID_INDEX on a RoCE port, or None.

    First choice: a GID of type ``prefer`` whose address family is ``family`` (``ipv4``: an
    IPv4-mapped address ``::ffff:a.b.c.d``; ``ipv6``: any other address, link-local ``fe80::``
    last). Then the first GID of type ``prefer`` at all. None when the port has no such GID (an
    InfiniBand port, or RoCE with no address configured on its interface).
    """
    typed = sorted((g for g in port.get("gids") or [] if g.get("type") == prefer), key=lambda g: g["index"])
    if not typed:
        return None
    if family == "ipv4":
        wanted = [g for g in typed if _is_ipv4_mapped(g["gid"])]
    elif family == "ipv6":
        wanted = [g for g in typed if not _is_ipv4_mapped(g["gid"])]
        wanted.sort(key=lambda g: (g["gid"].startswith("fe80:"), g["index"]))
    else:
        wanted = []
    return (wanted or typed)[0]["index"]
