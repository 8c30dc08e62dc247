# Copyright: gpufleet developers
# Apache-2.0
"""What NCCL can use on a host, read from its facts: the fabric (InfiniBand, RoCE, Ethernet only), the
HCA ports an ``NCCL_IB_HCA`` value selects, the RoCE v2 GID indexes, and the bootstrap interface
for ``NCCL_SOCKET_IFNAME``; with the checks on a user's value for each.

Controller code (plugin_utils): runs in filters and the CLI, never on managed hosts. Split out of
``nccl_tuning`` (which builds the plan and /etc/nccl.conf from these answers and re-exports the public
names); the sources for every variable are cited there.
"""

from __future__ import annotations

import ipaddress
import re

from ansible_collections.gpufleet.cluster.plugins.module_utils.versions import to_int

# Override key -> the role variable it comes from (named in every message).
VARIABLES = {
    "ib_hca": "nccl_ib_hca",
    "socket_ifname": "nccl_socket_ifname",
    "ib_gid_index": "nccl_ib_gid_index",
    "net_gdr_level": "nccl_net_gdr_level",
    "ib_disable": "nccl_ib_disable",
    "extra": "nccl_extra",
}
# <hca>[:<port>[:<rail>[:<plane>]]]; the port may be empty only when a rail follows.
_HCA_TOKEN = re.compile(r"^(?P<hca>[A-Za-z0-9][A-Za-z0-9_.-]*)(?::(?P<port>\d*)(?P<rest>(?::-?\d+){1,2})?)?$")
# Linux interface names: 1-15 characters, no '/', ':' or whitespace (dev_valid_name).
_IFNAME = re.compile(r"^[^/:\s,=^]{1,15}$")
# Container, VM and overlay interfaces: never a bootstrap interface.
_VIRTUAL = re.compile(r"^(lo$|docker|veth|virbr|br-|cni|flannel|cali|tunl|vxlan|kube-|podman|lxcbr)")


def natural_key(text):
    """Sort key that orders numbers by value: mlx5_2 < mlx5_10."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in re.split(r"(\d+)", str(text)) if p]


def _is_auto(value):
    return value is None or (isinstance(value, str) and value.strip().lower() in ("auto", "")) or value == []


# --- the gpufleet_ib fact ------------------------------------------------------------------------


def _state(raw):
    """'ACTIVE', '4: ACTIVE' (sysfs) -> 'ACTIVE'; missing -> 'UNKNOWN'."""
    text = str(raw or "").split(":")[-1].strip().upper()
    return text or "UNKNOWN"


def _ports(ib):
    """Every port of the fact, normalised: {hca, port, state, link_layer, gids}; missing keys tolerated."""
    if not isinstance(ib, dict) or ib.get("present") is False:
        return []
    devices = ib.get("devices")
    out = []
    for dev in devices if isinstance(devices, list) else []:
        if not isinstance(dev, dict) or not isinstance(dev.get("name"), str) or not dev["name"]:
            continue
        ports = dev.get("ports")
        for p in ports if isinstance(ports, list) else []:
            if not isinstance(p, dict) or to_int(p.get("port")) is None:
                continue
            link = str(p.get("link_layer") or "").strip().lower()
            gids = p.get("gids")
            out.append(
                {
                    "hca": dev["name"],
                    "port": to_int(p.get("port")),
                    "state": _state(p.get("state")),
                    "link_layer": "infiniband" if link == "infiniband" else "ethernet" if link else "",
                    "gids": [g for g in gids if isinstance(g, dict)] if isinstance(gids, list) else [],
                }
            )
    out.sort(key=lambda p: (natural_key(p["hca"]), p["port"]))
    return out


def _hcas(ib):
    """HCA names on the host, naturally sorted (devices without ports included)."""
    if not isinstance(ib, dict) or ib.get("present") is False or not isinstance(ib.get("devices"), list):
        return []
    names = {
        d["name"]
        for d in ib["devices"]
        if isinstance(d, dict) and isinstance(d.get("name"), str) and d["name"]
    }
    return sorted(names, key=natural_key)


def _label(port):
    return f"{port['hca']}:{port['port']}"


def _listing(items):
    return ", ".join(items) if items else "none"


def fabric(ib):
    """'infiniband', 'roce' or 'ethernet', from the ACTIVE ports: an ACTIVE InfiniBand port wins over
    RoCE (Ethernet link layer on an RDMA device); no ACTIVE port means plain Ethernet."""
    active = [p for p in _ports(ib) if p["state"] == "ACTIVE"]
    if any(p["link_layer"] == "infiniband" for p in active):
        return "infiniband"
    if any(p["link_layer"] == "ethernet" for p in active):
        return "roce"
    return "ethernet"


def _fabric_layer(kind):
    return {"infiniband": "infiniband", "roce": "ethernet"}.get(kind)


# --- NCCL_IB_HCA ---------------------------------------------------------------------------------


def _parse_hca(requested):
    """(spec, problems). spec: {exclude, exact, tokens: [(hca, port|None, raw)], text}; None when auto.

    A list gives exact names (rendered with '='); a string is NCCL syntax, passed through as written.
    """
    var = VARIABLES["ib_hca"]
    if _is_auto(requested):
        return None, []
    if isinstance(requested, (list, tuple)):
        exclude, exact, raw_tokens = False, True, list(requested)
        for tok in raw_tokens:
            if isinstance(tok, str) and tok.strip()[:1] in ("^", "="):
                return None, [
                    f"{var} list entry '{tok}' uses NCCL's ^/= prefix, which applies to a whole list; "
                    f"give {var} as one string such as '^=mlx5_2' instead"
                ]
    elif isinstance(requested, str):
        text = requested.strip()
        exclude = text.startswith("^")
        text = text[1:] if exclude else text
        exact = text.startswith("=")
        text = text[1:] if exact else text
        raw_tokens = text.split(",")
    else:
        return None, [
            f"{var} must be auto, a list such as [mlx5_0, mlx5_1:1] or an NCCL string such as "
            f"'^=mlx5_2'; got {requested!r}"
        ]
    tokens, problems = [], []
    for raw in raw_tokens:
        tok = raw.strip() if isinstance(raw, str) else raw
        m = _HCA_TOKEN.match(tok) if isinstance(tok, str) else None
        port = m.group("port") if m else None
        if not m or (port == "" and not m.group("rest")) or (port and int(port) < 1):
            problems.append(
                f"{var} entry {raw!r} is malformed; use <hca> or <hca>:<port> such as mlx5_0 or mlx5_0:1"
            )
            continue
        tokens.append((m.group("hca"), int(port) if port else None, tok))
    if not tokens and not problems:
        problems.append(f"{var} {requested!r} names no HCA; list HCAs such as mlx5_0:1 or set {var}: auto")
    if problems:
        return None, problems
    text = ("^" if exclude else "") + ("=" if exact else "") + ",".join(t[2] for t in tokens)
    return {"exclude": exclude, "exact": exact, "tokens": tokens, "text": text}, []


def _token_matches(token, exact, port):
    hca, want_port, _ = token
    name_ok = port["hca"] == hca if exact else port["hca"].startswith(hca)
    return name_ok and (want_port is None or want_port == port["port"])


def hca_problems(ib, requested):
    """Every problem with the HCAs named in ``nccl_ib_hca`` (``requested``): names this host does not
    have, ports that do not exist or are not ACTIVE, malformed entries. Each message names the
    variable and lists what the host has. Exclusions of absent HCAs are harmless (see :func:`plan`)."""
    return _hca_check(ib, requested)[0]


def _hca_check(ib, requested):
    """(problems, notes, spec)."""
    var = VARIABLES["ib_hca"]
    spec, problems = _parse_hca(requested)
    if spec is None:
        return problems, [], None
    ports = _ports(ib)
    hcas = _hcas(ib)
    active = [_label(p) for p in ports if p["state"] == "ACTIVE"]
    fix = f"remove it or set {var}: auto"
    notes = []
    for token in spec["tokens"]:
        hca, want_port, raw = token
        named = [h for h in hcas if (h == hca if spec["exact"] else h.startswith(hca))]
        matching = [p for p in ports if _token_matches(token, spec["exact"], p)]
        if spec["exclude"]:
            if not named:
                notes.append(
                    f"{var} excludes {raw}, which this host does not have; the exclusion does nothing here"
                )
            continue
        if not named and spec["exact"]:
            problems.append(
                f"{var} names {raw}, which this host does not have (it has: {_listing(hcas)}); {fix}"
            )
        elif not named:
            problems.append(
                f"{var} prefix {raw} matches no HCA on this host (it has: {_listing(hcas)}); {fix}"
            )
        elif want_port is not None and not matching:
            have = sorted({p["port"] for p in ports if p["hca"] in named})
            problems.append(
                f"{var} names {raw}, but {hca} has no port {want_port} "
                f"(it has ports: {_listing([str(n) for n in have])}); {fix}"
            )
        elif want_port is not None and not any(p["state"] == "ACTIVE" for p in matching):
            problems.append(
                f"{var} names {raw}, whose port is {matching[0]['state']}, not ACTIVE "
                f"(ACTIVE ports on this host: {_listing(active)}); {fix}"
            )
        elif not any(p["state"] == "ACTIVE" for p in matching):
            states = ", ".join(f"{_label(p)} {p['state']}" for p in matching) or "no ports reported"
            problems.append(
                f"{var} names {raw}, which has no ACTIVE port ({states}; "
                f"ACTIVE ports on this host: {_listing(active)}); {fix}"
            )
    return problems, notes, spec


def _selected(ports, spec, layer):
    """ACTIVE ports NCCL will use under ``spec`` (None: computed, all ACTIVE ports of ``layer``)."""
    active = [p for p in ports if p["state"] == "ACTIVE"]
    if spec is None:
        return [p for p in active if p["link_layer"] == layer]
    if spec["exclude"]:
        return [
            p
            for p in active
            if p["link_layer"] == layer
            and not any(_token_matches(t, spec["exact"], p) for t in spec["tokens"])
        ]
    return [p for p in active if any(_token_matches(t, spec["exact"], p) for t in spec["tokens"])]


# --- NCCL_IB_GID_INDEX ---------------------------------------------------------------------------


def _roce_v2(gid):
    kind = str(gid.get("type") or "").lower().replace(" ", "")
    return "v2" in kind


def _ipv4_mapped(address):
    try:
        return ipaddress.IPv6Address(str(address).strip()).ipv4_mapped is not None
    except ValueError:
        return False


def ipv4_roce_v2_indexes(port):
    """GID indexes of ``port`` whose GID is RoCE v2 with an IPv4-mapped address (::ffff:a.b.c.d)."""
    out = set()
    for gid in port["gids"]:
        index = to_int(gid.get("index"))
        if index is not None and index >= 0 and _roce_v2(gid) and _ipv4_mapped(gid.get("gid")):
            out.add(index)
    return out


# --- NCCL_SOCKET_IFNAME --------------------------------------------------------------------------


def _interfaces(interfaces):
    out = []
    for i in interfaces if isinstance(interfaces, list) else []:
        if not isinstance(i, dict) or not isinstance(i.get("name"), str) or not i["name"]:
            continue
        ipv4 = i.get("ipv4")
        if isinstance(ipv4, dict):
            ipv4 = ipv4.get("address")
        out.append(
            {
                "name": i["name"],
                "active": i.get("active") is True,
                "ipv4": ipv4 if isinstance(ipv4, str) and ipv4 else None,
                "type": str(i.get("type") or "").lower(),
                "default_route": i.get("default_route") is True,
            }
        )
    out.sort(key=lambda i: natural_key(i["name"]))
    return out


def _usable(iface):
    return iface["active"] and iface["type"] != "loopback" and not _VIRTUAL.match(iface["name"])


def _pick_socket(interfaces):
    """(interface, reason) for the bootstrap interface, or (None, reason)."""
    ifaces = _interfaces(interfaces)
    for i in ifaces:
        if i["default_route"] and _usable(i):
            return i, "the default-route interface"
    for i in ifaces:
        if _usable(i) and i["type"] in ("ether", "bonding") and i["ipv4"]:
            return i, "the first active Ethernet interface with IPv4 (no usable default-route interface)"
    return None, "no active, non-virtual interface with a default route or an IPv4 address"


def socket_interface(interfaces):
    """The interface NCCL should bootstrap over: the default-route interface when it is active and not
    loopback, docker, veth or a virtual bridge; else the first (natural order) active Ethernet interface
    with IPv4. Never lo, docker0, veth*, virbr*, br-*. None when there is none."""
    iface, _ = _pick_socket(interfaces)
    return iface["name"] if iface else None


def _ifname_problems(value, interfaces):
    var = VARIABLES["socket_ifname"]
    if not isinstance(value, str) or not value.strip():
        return [
            f"{var} must be an interface name such as eth0 (or an NCCL list such as =eth0 or ^docker); "
            f"got {value!r}"
        ]
    text = value.strip()
    exclude = text.startswith("^")
    text = text[1:] if exclude else text
    exact = text.startswith("=")
    text = text[1:] if exact else text
    tokens = [t.strip() for t in text.split(",")]
    bad = [t for t in tokens if not _IFNAME.match(t)]
    if bad:
        return [
            f"{var} {value!r} has a bad interface name {bad[0]!r}: names are 1-15 characters without "
            f"'/', ':', ',' or spaces; use e.g. eth0, =eth0 or ^docker, or set {var}: auto"
        ]
    ifaces = _interfaces(interfaces)
    if exclude or not ifaces:
        return []
    active = [i["name"] for i in ifaces if i["active"]]
    if not any((n == t if exact else n.startswith(t)) for n in active for t in tokens):
        return [
            f"{var} {value!r} matches no active interface on this host "
            f"(active: {_listing(active)}); name one of those or set {var}: auto"
        ]
    return []
