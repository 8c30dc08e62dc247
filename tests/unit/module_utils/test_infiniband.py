"""module_utils.infiniband against recorded sysfs trees and ibstat reports (tests/fixtures/infiniband).

The recorded trees (prometheus/procfs, node_exporter) have no GIDs, LIDs or net interfaces, and no
recording of a RoCE port with ``gid_attrs`` was found in public repositories. Those cases are built
here in ``tmp_path`` with ``build_device`` and are marked CONSTRUCTED: they follow the kernel's sysfs
layout (Documentation/ABI/stable/sysfs-class-infiniband) but are not recordings.
"""

import os

import pytest
from ansible_collections.gpufleet.cluster.plugins.module_utils.infiniband import (
    ERROR_COUNTERS,
    add_counter_deltas,
    counter_delta,
    gid_interface_id,
    normalize_guid,
    parse_ibstat,
    rate_gbps,
    read_sysfs,
    roce_gid_index,
    split_code,
    summarize,
)
from conftest import FIXTURES

IB = FIXTURES / "infiniband"
ZERO_GID = "0000:0000:0000:0000:0000:0000:0000:0000"


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def build_device(root, name, ports, *, files=None, pci=None):
    """CONSTRUCTED sysfs device; ``ports``: port number -> {file: text, "gids": {i: (gid, type, ndev)}}."""
    device = root / name
    for fname, text in (files or {}).items():
        write(device / fname, text)
    for number, spec in ports.items():
        port = device / "ports" / str(number)
        for fname, text in spec.items():
            if fname != "gids":
                write(port / fname, text)
        for index, (gid, gid_type, ndev) in spec.get("gids", {}).items():
            write(port / "gids" / str(index), gid + "\n")
            if gid_type is not None:
                write(port / "gid_attrs" / "types" / str(index), gid_type + "\n")
            if ndev is not None:
                write(port / "gid_attrs" / "ndevs" / str(index), ndev + "\n")
    if pci is not None:
        os.symlink(pci, device / "device")
    return device


def add_netdev(net_root, name, pci, *, dev_port=0, dev_id="0x0"):
    iface = net_root / name
    write(iface / "dev_port", f"{dev_port}\n")
    write(iface / "dev_id", f"{dev_id}\n")
    os.symlink(pci, iface / "device")


@pytest.fixture
def sysfs(tmp_path):
    root = tmp_path / "class" / "infiniband"
    net = tmp_path / "class" / "net"
    pci = tmp_path / "devices" / "pci0000:00" / "0000:17:00.0"
    for path in (root, net, pci):
        path.mkdir(parents=True)
    return root, net, pci


def roce_host(sysfs):
    """CONSTRUCTED: one ConnectX RoCE port with the usual GID table (v1/v2 pairs per address)."""
    root, net, pci = sysfs
    link_local = "fe80:0000:0000:0000:0e42:a1ff:fe5e:0a2c"
    mapped = "0000:0000:0000:0000:0000:ffff:0a00:0b0b"  # ::ffff:10.0.11.11
    build_device(
        root,
        "mlx5_0",
        {
            1: {
                "state": "4: ACTIVE\n",
                "phys_state": "5: LinkUp\n",
                "rate": "100 Gb/sec (4X EDR)\n",
                "link_layer": "Ethernet\n",
                "lid": "0x0\n",
                "sm_lid": "0x0\n",
                "gids": {
                    0: (link_local, "IB/RoCE v1", "ens1f0np0"),
                    1: (link_local, "RoCE v2", "ens1f0np0"),
                    2: (mapped, "IB/RoCE v1", "ens1f0np0"),
                    3: (mapped, "RoCE v2", "ens1f0np0"),
                    4: (ZERO_GID, None, None),
                },
            }
        },
        files={"node_type": "1: CA\n", "node_guid": "0c42:a103:005e:0a2c\n", "fw_ver": "16.35.3006\n"},
        pci=pci,
    )
    add_netdev(net, "ens1f0np0", pci)
    return read_sysfs(str(root), str(net))


# --- recorded sysfs: prometheus/procfs and node_exporter fixtures --------------------------------


def test_procfs_tree_devices_and_ports():
    devices = read_sysfs(str(IB / "sysfs-procfs"), "/nonexistent")
    assert [d["name"] for d in devices] == ["hfi1_0", "mlx4_0", "mlx5_0"]
    hfi, mlx4, mlx5 = devices
    assert hfi["board_id"] == "HPE 100Gb 1-port OP101 QSFP28 x16 PCIe Gen3 with Intel Omni-Path Adapter"
    assert hfi["fw_ver"] == "1.27.0"
    assert hfi["hca_type"] is None  # hfi1 has no hca_type file in the recording
    assert hfi["ports"][0]["rate_gbps"] == 100.0
    assert hfi["ports"][0]["rate"] == "100 Gb/sec (4X EDR)"
    assert mlx4["hca_type"] == "MT4099"
    assert [p["port"] for p in mlx4["ports"]] == [1, 2]
    # port 2's link_layer is "InfiniBand\n\n" in the recording: only the first line counts.
    assert mlx4["ports"][1]["link_layer"] == "InfiniBand"
    assert mlx5["fw_ver"] == "14.28.2006"


def test_procfs_tree_port_fields():
    port = read_sysfs(str(IB / "sysfs-procfs"), "/nonexistent")[1]["ports"][0]
    assert port == {
        "port": 1,
        "state": "ACTIVE",
        "state_code": 4,
        "phys_state": "LinkUp",
        "phys_state_code": 5,
        "rate_gbps": 40.0,
        "rate": "40 Gb/sec (4X QDR)",
        "link_layer": "InfiniBand",
        "lid": None,
        "sm_lid": None,
        "lmc": None,
        "port_guid": None,  # no gids/ in the recording
        "netdevs": [],
        "gids": [],
        # the error counters as recorded (all twelve, all zero); one read, so no increase
        "counters": dict.fromkeys(ERROR_COUNTERS, 0),
        "counter_deltas": None,
    }


def test_node_guid_without_trailing_newline_is_normalized():
    # The recorded mlx5_0/node_guid has no newline at the end ("EOF" in the ttar).
    mlx5 = read_sysfs(str(IB / "sysfs-procfs"), "/nonexistent")[2]
    assert mlx5["node_guid"] == "0x0a7fbc1245efd23b"
    assert mlx5["sys_image_guid"] is None
    assert mlx5["node_type"] is None


def test_procfs_summary():
    facts = summarize(read_sysfs(str(IB / "sysfs-procfs"), "/nonexistent"))
    assert facts["hca_count"] == 3
    assert facts["port_count"] == 4
    assert facts["active_ports"] == ["hfi1_0:1", "mlx4_0:1", "mlx4_0:2", "mlx5_0:1"]
    assert facts["ib_active"] is True
    assert facts["roce_active"] is False


def test_node_exporter_iwarp_device():
    (i40iw,) = read_sysfs(str(IB / "sysfs-node-exporter"), "/nonexistent")
    assert i40iw["name"] == "i40iw0"
    assert i40iw["hca_type"] == "I40IW"
    assert i40iw["board_id"] == "I40IW Board ID"
    assert i40iw["ports"][0]["rate_gbps"] == 10.0
    assert i40iw["ports"][0]["rate"] == "10 Gb/sec (4X)"


# --- constructed sysfs: IPoIB netdev, GIDs, down port, RoCE ---------------------------------------


def test_ib_port_with_gids_lids_and_ipoib_interface(sysfs):
    root, net, pci = sysfs
    build_device(
        root,
        "mlx5_0",
        {
            1: {
                "state": "4: ACTIVE\n",
                "phys_state": "5: LinkUp\n",
                "rate": "200 Gb/sec (4X HDR)\n",
                "link_layer": "InfiniBand\n",
                "lid": "0x30\n",
                "sm_lid": "0x30\n",
                "lid_mask_count": "0\n",
                "gids": {
                    0: ("fe80:0000:0000:0000:c470:bd03:00cf:4964", None, None),
                    1: (ZERO_GID, None, None),
                },
            }
        },
        files={"node_type": "1: CA\n", "node_guid": "c470:bd03:00cf:4964\n", "hw_rev": "0x0\n"},
        pci=pci,
    )  # CONSTRUCTED, values as in a ConnectX-7 ibstatus/ibv_devinfo report
    add_netdev(net, "ib0", pci)
    add_netdev(net, "eno1", str(sysfs[2].parent / "0000:01:00.0"))  # another device: not ours
    (device,) = read_sysfs(str(root), str(net))
    assert device["node_type"] == "CA"
    assert device["node_guid"] == "0xc470bd0300cf4964"
    assert device["hw_ver"] == "0x0"
    port = device["ports"][0]
    assert (port["lid"], port["sm_lid"], port["lmc"]) == (48, 48, 0)
    assert port["port_guid"] == "0xc470bd0300cf4964"
    assert port["netdevs"] == ["ib0"]
    assert port["gids"] == [
        {"index": 0, "gid": "fe80:0000:0000:0000:c470:bd03:00cf:4964", "type": "IB", "ndev": None}
    ]  # the all-zero GID 1 is left out


def test_second_port_interface_found_by_dev_port(sysfs):
    root, net, pci = sysfs
    up = {"state": "4: ACTIVE\n", "link_layer": "InfiniBand\n"}
    build_device(root, "mlx4_0", {1: up, 2: up}, pci=pci)  # CONSTRUCTED dual-port ConnectX-3
    add_netdev(net, "ib0", pci, dev_port=0)
    add_netdev(net, "ib1", pci, dev_port=1)
    (device,) = read_sysfs(str(root), str(net))
    assert [p["netdevs"] for p in device["ports"]] == [["ib0"], ["ib1"]]


def test_older_kernels_dev_id_is_used_when_dev_port_is_zero(sysfs):
    root, net, pci = sysfs
    up = {"state": "4: ACTIVE\n", "link_layer": "InfiniBand\n"}
    build_device(root, "mlx4_0", {1: up, 2: up}, pci=pci)  # CONSTRUCTED
    add_netdev(net, "ib1", pci, dev_port=0, dev_id="0x1")
    (device,) = read_sysfs(str(root), str(net))
    assert [p["netdevs"] for p in device["ports"]] == [[], ["ib1"]]


def test_down_port_is_not_active(sysfs):
    root, net, _pci = sysfs
    build_device(
        root,
        "mlx5_1",
        {
            1: {
                "state": "1: DOWN\n",
                "phys_state": "3: Disabled\n",
                "rate": "10 Gb/sec (4X SDR)\n",
                "link_layer": "InfiniBand\n",
                "lid": "0xffff\n",
            }
        },
    )  # CONSTRUCTED
    facts = summarize(read_sysfs(str(root), str(net)))
    port = facts["devices"][0]["ports"][0]
    assert (port["state"], port["state_code"]) == ("DOWN", 1)
    assert (port["phys_state"], port["phys_state_code"]) == ("Disabled", 3)
    assert port["lid"] == 65535
    assert facts["active_ports"] == []
    assert facts["ib_active"] is False
    assert (facts["hca_count"], facts["port_count"]) == (1, 1)


def test_roce_port_gid_types_and_netdev(sysfs):
    (device,) = roce_host(sysfs)
    port = device["ports"][0]
    assert port["link_layer"] == "Ethernet"
    assert port["port_guid"] is None  # RoCE: GID 0 is derived from the MAC, not a port GUID
    assert port["netdevs"] == ["ens1f0np0"]
    assert [(g["index"], g["type"]) for g in port["gids"]] == [
        (0, "RoCE v1"),
        (1, "RoCE v2"),
        (2, "RoCE v1"),
        (3, "RoCE v2"),
    ]
    facts = summarize([device])
    assert facts["roce_active"] is True
    assert facts["ib_active"] is False


def test_roce_gid_index_prefers_v2_ipv4_mapped(sysfs):
    (device,) = roce_host(sysfs)
    port = device["ports"][0]
    assert roce_gid_index(port) == 3
    assert roce_gid_index(port, family="ipv6") == 1
    assert roce_gid_index(port, prefer="RoCE v1") == 2


def test_roce_gid_index_falls_back_to_first_v2_then_none():
    port = {
        "gids": [
            {"index": 0, "gid": "fe80:0000:0000:0000:0e42:a1ff:fe5e:0a2c", "type": "RoCE v1", "ndev": "e"},
            {"index": 1, "gid": "fe80:0000:0000:0000:0e42:a1ff:fe5e:0a2c", "type": "RoCE v2", "ndev": "e"},
        ]
    }  # CONSTRUCTED: no IPv4 address on the interface yet
    assert roce_gid_index(port) == 1
    assert roce_gid_index({"gids": port["gids"][:1]}) is None
    assert roce_gid_index({"gids": []}) is None
    ib_port = {"gids": [{"index": 0, "gid": "fe80::1", "type": "IB", "ndev": None}]}
    assert roce_gid_index(ib_port) is None


def test_no_infiniband_directory(tmp_path):
    assert read_sysfs(str(tmp_path / "absent"), str(tmp_path / "absent-net")) == []
    facts = summarize([])
    assert facts == {
        "hca_count": 0,
        "port_count": 0,
        "active_ports": [],
        "ib_active": False,
        "roce_active": False,
        "devices": [],
    }


def test_malformed_and_missing_files_give_none(sysfs):
    root, net, _pci = sysfs
    build_device(
        root,
        "mlx5_0",
        {
            1: {
                "state": "garbage\n",
                "phys_state": "\n",
                "rate": "unknown\n",
                "lid": "zz\n",
                "gids": {0: ("", None, None)},
            }
        },
        files={"node_guid": "not-a-guid\n", "node_type": "\n"},
    )  # CONSTRUCTED damage
    write(root / "mlx5_0" / "ports" / "lost+found", "")  # not a port number: ignored
    write(root / "stray-file", "x")  # a file, not a device directory: ignored
    (device,) = read_sysfs(str(root), str(net))
    assert device["node_guid"] == "not-a-guid"
    assert device["node_type"] is None
    assert device["fw_ver"] is None
    (port,) = device["ports"]
    assert (port["state"], port["state_code"]) == ("garbage", None)
    assert (port["phys_state"], port["phys_state_code"]) == (None, None)
    assert (port["rate"], port["rate_gbps"]) == ("unknown", None)
    assert port["lid"] is None
    assert port["link_layer"] is None
    assert port["gids"] == []
    assert port["netdevs"] == []  # no device link: no way to match interfaces
    assert summarize([device])["active_ports"] == []


def test_device_without_ports_directory(sysfs):
    root, net, _pci = sysfs
    (root / "rxe0").mkdir()  # CONSTRUCTED: a half-registered device
    (device,) = read_sysfs(str(root), str(net))
    assert device["ports"] == []
    assert summarize([device])["port_count"] == 0


# --- ibstat: recorded reports ---------------------------------------------------------------------


def test_ibstat_connectx3_active():
    (ca,) = parse_ibstat((IB / "ibstat-connectx3-active.txt").read_text())
    assert ca["name"] == "mlx4_0"
    assert ca["node_type"] == "CA"
    assert ca["hca_type"] == "MT4099"
    assert ca["fw_ver"] == "2.42.5000"
    assert ca["hw_ver"] == "1"
    assert ca["node_guid"] == "0x7cfe900300c40490"
    assert ca["sys_image_guid"] == "0x7cfe900300c40493"
    assert ca["board_id"] is None
    (port,) = ca["ports"]
    assert port["port"] == 1
    assert (port["state"], port["state_code"]) == ("ACTIVE", 4)
    assert (port["phys_state"], port["phys_state_code"]) == ("LinkUp", 5)
    assert (port["rate"], port["rate_gbps"]) == ("40", 40.0)
    assert (port["lid"], port["sm_lid"], port["lmc"]) == (49, 1, 0)
    assert port["port_guid"] == "0x7cfe900300c40491"
    assert port["link_layer"] == "InfiniBand"
    assert summarize([ca])["active_ports"] == ["mlx4_0:1"]


def test_ibstat_connectx4_initializing_without_ca_type():
    (ca,) = parse_ibstat((IB / "ibstat-connectx4-initializing.txt").read_text())
    assert ca["name"] == "mlx5_0"
    assert ca["hca_type"] is None  # this ibstat printed no "CA type" line
    assert ca["fw_ver"] == "12.20.1010"
    (port,) = ca["ports"]
    assert (port["state"], port["state_code"]) == ("INIT", 2)  # no subnet manager yet
    assert port["phys_state"] == "LinkUp"
    assert port["rate_gbps"] == 100.0
    assert port["lid"] == 65535
    facts = summarize([ca])
    assert facts["active_ports"] == []
    assert facts["ib_active"] is False


def test_ibstat_without_devices_is_empty():
    assert parse_ibstat((IB / "ibstat-no-device.txt").read_text()) == []
    assert parse_ibstat("") == []
    assert parse_ibstat(None) == []


def test_ibstat_and_sysfs_share_the_shape():
    (from_ibstat,) = parse_ibstat((IB / "ibstat-connectx3-active.txt").read_text())
    from_sysfs = read_sysfs(str(IB / "sysfs-procfs"), "/nonexistent")[1]
    assert set(from_ibstat) == set(from_sysfs)
    assert set(from_ibstat["ports"][0]) == set(from_sysfs["ports"][0])


def test_ibstat_several_cas_and_roce():
    text = (
        (IB / "ibstat-connectx4-initializing.txt").read_text()
        + (IB / "ibstat-connectx3-active.txt").read_text()
        + "CA 'rxe0'\n\tCA type: \n\tNumber of ports: 1\n\tPort 1:\n\t\tState: Active\n"
        "\t\tPhysical state: LinkUp\n\t\tRate: 2.5\n\t\tPort GUID: 0x4a51c5fffef6e159\n"
        "\t\tLink layer: Ethernet\n"
    )  # the rxe0 block is CONSTRUCTED (soft-RoCE shape, as quoted on linux-rdma)
    cas = parse_ibstat(text)
    assert [c["name"] for c in cas] == ["mlx5_0", "mlx4_0", "rxe0"]
    rxe = cas[2]
    assert rxe["hca_type"] is None
    assert rxe["ports"][0]["rate_gbps"] == 2.5
    assert rxe["ports"][0]["port_guid"] is None
    assert summarize(cas)["roce_active"] is True


# --- helpers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4: ACTIVE", (4, "ACTIVE")),
        ("5: LinkUp", (5, "LinkUp")),
        ("LinkUp", (None, "LinkUp")),
        (None, (None, None)),
    ],
)
def test_split_code(text, expected):
    assert split_code(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("100 Gb/sec (4X EDR)", 100.0), ("2.5 Gb/sec (1X SDR)", 2.5), ("400", 400.0), ("", None), (None, None)],
)
def test_rate_gbps(text, expected):
    assert rate_gbps(text) == expected


def test_guid_forms():
    assert normalize_guid("0a7f:bc12:45ef:d23b") == "0x0a7fbc1245efd23b"
    assert normalize_guid("0x248A07030049AEE0") == "0x248a07030049aee0"
    assert normalize_guid("  ") is None
    assert gid_interface_id("fe80:0000:0000:0000:c470:bd03:00cf:4964") == "0xc470bd0300cf4964"
    assert gid_interface_id("fe80::1") is None


# --- error counters ------------------------------------------------------------------------------


def test_recorded_counters_on_every_port():
    devices = read_sysfs(str(IB / "sysfs-procfs"), "/nonexistent")
    for device in devices:
        for port in device["ports"]:
            assert port["counters"] == dict.fromkeys(ERROR_COUNTERS, 0), (device["name"], port["port"])
            assert port["counter_deltas"] is None
    # the node_exporter tree was kept without its counters/ directory: no counters, not zeros
    (iwarp,) = read_sysfs(str(IB / "sysfs-node-exporter"), "/nonexistent")
    assert iwarp["ports"][0]["counters"] is None


def test_counters_read_are_only_those_present_and_numeric(sysfs):
    # CONSTRUCTED: a driver with two of the counters, one of them unreadable text
    root, _net, _pci = sysfs
    build_device(root, "mlx5_0", {1: {"state": "4: ACTIVE"}})
    counters = root / "mlx5_0" / "ports" / "1" / "counters"
    write(counters / "link_downed", "3\n")
    write(counters / "symbol_error", "n/a\n")
    write(counters / "port_rcv_data", "123456\n")  # a traffic counter: not read
    (port,) = read_sysfs(str(root), "/nonexistent")[0]["ports"]
    assert port["counters"] == {"link_downed": 3}


def test_counter_deltas_between_two_reads():
    first = read_sysfs(str(IB / "sysfs-procfs"), "/nonexistent")
    second = read_sysfs(str(IB / "sysfs-procfs"), "/nonexistent")
    # CONSTRUCTED: the second read edited -- mlx4_0:2 flapped twice and gained symbol errors
    second[1]["ports"][1]["counters"].update(link_downed=2, symbol_error=40)
    del second[2]["ports"][0]["counters"]["VL15_dropped"]  # gone in the second read: left out
    add_counter_deltas(first, second)
    assert second[1]["ports"][0]["counter_deltas"] == dict.fromkeys(ERROR_COUNTERS, 0)
    assert second[1]["ports"][1]["counter_deltas"]["link_downed"] == 2
    assert second[1]["ports"][1]["counter_deltas"]["symbol_error"] == 40
    assert "VL15_dropped" not in second[2]["ports"][0]["counter_deltas"]
    assert first[1]["ports"][1]["counter_deltas"] is None  # the first read is not changed


def test_counter_reset_between_reads_counts_the_new_value():
    assert counter_delta(10, 15) == 5
    assert counter_delta(65535, 7) == 7  # reset (or wrapped): 7 since
    assert counter_delta(4, 4) == 0
