"""Host shapes for the NCCL tests: the gpufleet_ib fact and the interface list as the facts describe
them (shared by test_nccl_fabric.py and test_nccl_tuning.py)."""

# --- host shapes, as the gpufleet_ib fact and the interface list describe them -------------------


def port(number=1, state="ACTIVE", link_layer="InfiniBand", gids=(), netdevs=()):
    return {
        "port": number,
        "state": state,
        "link_layer": link_layer,
        "rate_gbps": 200.0,
        "netdevs": list(netdevs),
        "gids": list(gids),
    }


def ib_fact(*devices):
    return {"present": bool(devices), "hca_count": len(devices), "devices": list(devices)}


def hca(name, *ports):
    return {"name": name, "ports": list(ports)}


def roce_gids(ip_hex="0ac8:010a", ndev="ens1f0", v2_index=3, v1_index=2):
    """A ConnectX RoCE GID table as show_gids prints it: link-local v1/v2 at 0/1, then the
    IPv4-mapped address as v1 and v2 (indexes movable to model ports that disagree)."""
    return [
        {"index": 0, "gid": "fe80:0000:0000:0000:a288:c2ff:fe3b:506a", "type": "IB/RoCE v1", "ndev": ndev},
        {"index": 1, "gid": "fe80:0000:0000:0000:a288:c2ff:fe3b:506a", "type": "RoCE v2", "ndev": ndev},
        {
            "index": v1_index,
            "gid": f"0000:0000:0000:0000:0000:ffff:{ip_hex}",
            "type": "IB/RoCE v1",
            "ndev": ndev,
        },
        {
            "index": v2_index,
            "gid": f"0000:0000:0000:0000:0000:ffff:{ip_hex}",
            "type": "RoCE v2",
            "ndev": ndev,
        },
    ]


def iface(name, ipv4=None, kind="ether", default_route=False, active=True):
    return {"name": name, "active": active, "ipv4": ipv4, "type": kind, "default_route": default_route}


LO = iface("lo", "127.0.0.1", "loopback")
ETH0 = iface("eth0", "10.0.0.5", default_route=True)
DOCKER0 = iface("docker0", "172.17.0.1", "bridge")
INTERFACES = [LO, DOCKER0, ETH0, iface("ib0", "192.168.10.5", "infiniband")]

# Two ConnectX HCAs, InfiniBand; mlx5_1 port 1 is down.
IB_HOST = ib_fact(
    hca("mlx5_0", port(1, netdevs=["ib0"])),
    hca("mlx5_1", port(1, "DOWN", netdevs=["ib1"])),
)
# Two RoCE ports with the same GID layout (IPv4-mapped RoCE v2 at index 3).
ROCE_HOST = ib_fact(
    hca("mlx5_0", port(1, link_layer="Ethernet", gids=roce_gids("0ac8:010a", "ens1f0"))),
    hca("mlx5_1", port(1, link_layer="Ethernet", gids=roce_gids("0ac8:020a", "ens1f1"))),
)
NO_RDMA = {"present": False, "hca_count": 0, "devices": []}


def values(result):
    return {k: v["value"] for k, v in result["settings"].items()}
