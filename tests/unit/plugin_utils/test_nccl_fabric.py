"""nccl_fabric: fabric detection, natural sort, the bootstrap interface and every NCCL_IB_HCA
message (hca_problems)."""

import pytest
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.nccl_fabric import (
    fabric,
    hca_problems,
    natural_key,
    socket_interface,
)
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.nccl_tuning import (
    NcclTuningError,
    plan,
    settings,
)
from nccl_hosts import (
    DOCKER0,
    ETH0,
    IB_HOST,
    LO,
    NO_RDMA,
    ROCE_HOST,
    hca,
    ib_fact,
    iface,
    port,
    values,
)

# --- fabric ----------------------------------------------------------------------------------------


def test_fabric_infiniband_roce_and_ethernet():
    assert fabric(IB_HOST) == "infiniband"
    assert fabric(ROCE_HOST) == "roce"
    assert fabric(NO_RDMA) == "ethernet"


def test_fabric_ignores_ports_that_are_not_active():
    down = ib_fact(hca("mlx5_0", port(1, "DOWN"), port(2, "INIT")))
    assert fabric(down) == "ethernet"


def test_fabric_infiniband_wins_over_roce():
    mixed = ib_fact(hca("mlx5_0", port(1, link_layer="Ethernet")), hca("mlx5_1", port(1)))
    assert fabric(mixed) == "infiniband"


def test_fabric_reads_sysfs_state_form():
    # /sys/class/infiniband/*/ports/*/state reads "4: ACTIVE".
    assert fabric(ib_fact(hca("mlx5_0", port(1, "4: ACTIVE")))) == "infiniband"


@pytest.mark.parametrize(
    "ib",
    [None, {}, {"present": True}, {"devices": None}, {"devices": [{"name": "mlx5_0"}]}, {"devices": [{}]}],
)
def test_fabric_tolerates_missing_keys(ib):
    assert fabric(ib) == "ethernet"


def test_fabric_present_false_wins_over_stale_devices():
    assert fabric({"present": False, "devices": IB_HOST["devices"]}) == "ethernet"


# --- natural sort ------------------------------------------------------------------------------------


def test_natural_key_orders_numbers_by_value():
    names = ["mlx5_10", "mlx5_2", "mlx5_1", "mlx5_bond_0"]
    assert sorted(names, key=natural_key) == ["mlx5_1", "mlx5_2", "mlx5_10", "mlx5_bond_0"]


def test_ib_hca_is_sorted_naturally():
    host = ib_fact(*(hca(f"mlx5_{i}", port(1)) for i in (10, 2, 11, 0)))
    assert values(plan(host, [ETH0]))["NCCL_IB_HCA"] == "=mlx5_0:1,mlx5_2:1,mlx5_10:1,mlx5_11:1"


# --- socket_interface --------------------------------------------------------------------------------


def test_socket_interface_prefers_default_route():
    assert (
        socket_interface([iface("eth1", "10.1.0.5"), iface("bond0", "10.0.0.5", "bonding", True)]) == "bond0"
    )


def test_socket_interface_accepts_a_physical_bridge_as_default_route():
    assert socket_interface([iface("br0", "10.0.0.5", "bridge", True), iface("eth1", "10.1.0.5")]) == "br0"


@pytest.mark.parametrize("name", ["docker0", "veth1a2b", "virbr0", "br-3f2a1b", "lo", "cni0"])
def test_socket_interface_never_picks_virtual_default_route(name):
    kind = "loopback" if name == "lo" else "bridge"
    ifaces = [iface(name, "172.17.0.1", kind, True), iface("eth1", "10.1.0.5")]
    assert socket_interface(ifaces) == "eth1"


def test_socket_interface_skips_inactive_default_route():
    assert socket_interface(
        [iface("eth0", "10.0.0.5", default_route=True, active=False), iface("eth1", "10.1.0.5")]
    ) == ("eth1")


def test_socket_interface_fallback_is_first_ether_with_ipv4_in_natural_order():
    ifaces = [iface("eth10", "10.0.0.10"), iface("eth2", None), iface("eth9", "10.0.0.9"), LO, DOCKER0]
    assert socket_interface(ifaces) == "eth9"


def test_socket_interface_fallback_ignores_virtual_and_non_ether():
    ifaces = [iface("veth0", "10.0.0.1"), iface("ib0", "192.168.0.1", "infiniband"), LO, DOCKER0]
    assert socket_interface(ifaces) is None


@pytest.mark.parametrize("ifaces", [None, [], "eth0", [None, {"active": True}, {"name": ""}]])
def test_socket_interface_none_on_nothing_usable(ifaces):
    assert socket_interface(ifaces) is None


def test_socket_interface_accepts_ansible_ipv4_dict():
    assert socket_interface(
        [{"name": "eth3", "active": True, "ipv4": {"address": "10.0.0.3"}, "type": "ether"}]
    ) == ("eth3")


# --- hca_problems: every message ----------------------------------------------------------------------


HOST_2 = ib_fact(hca("mlx5_0", port(1)), hca("mlx5_1", port(1, "DOWN"), port(2)))


def test_hca_problems_none_for_valid_and_auto():
    assert hca_problems(HOST_2, ["mlx5_0", "mlx5_1:2"]) == []
    assert hca_problems(HOST_2, None) == []
    assert hca_problems(HOST_2, "auto") == []


def test_hca_problems_unknown_hca():
    assert hca_problems(HOST_2, ["mlx5_0", "mlx5_9"]) == [
        "nccl_ib_hca names mlx5_9, which this host does not have (it has: mlx5_0, mlx5_1); "
        "remove it or set nccl_ib_hca: auto"
    ]


def test_hca_problems_unknown_hca_on_host_without_rdma():
    assert hca_problems(NO_RDMA, ["mlx5_0"]) == [
        "nccl_ib_hca names mlx5_0, which this host does not have (it has: none); "
        "remove it or set nccl_ib_hca: auto"
    ]


def test_hca_problems_port_not_active():
    assert hca_problems(HOST_2, ["mlx5_1:1"]) == [
        "nccl_ib_hca names mlx5_1:1, whose port is DOWN, not ACTIVE "
        "(ACTIVE ports on this host: mlx5_0:1, mlx5_1:2); remove it or set nccl_ib_hca: auto"
    ]


def test_hca_problems_port_that_does_not_exist():
    assert hca_problems(HOST_2, ["mlx5_0:2"]) == [
        "nccl_ib_hca names mlx5_0:2, but mlx5_0 has no port 2 (it has ports: 1); "
        "remove it or set nccl_ib_hca: auto"
    ]


def test_hca_problems_hca_with_no_active_port():
    host = ib_fact(hca("mlx5_0", port(1)), hca("mlx5_1", port(1, "DOWN"), port(2, "POLLING")))
    assert hca_problems(host, ["mlx5_1"]) == [
        "nccl_ib_hca names mlx5_1, which has no ACTIVE port (mlx5_1:1 DOWN, mlx5_1:2 POLLING; "
        "ACTIVE ports on this host: mlx5_0:1); remove it or set nccl_ib_hca: auto"
    ]


def test_hca_problems_prefix_matching_nothing():
    assert hca_problems(HOST_2, "mlx4") == [
        "nccl_ib_hca prefix mlx4 matches no HCA on this host (it has: mlx5_0, mlx5_1); "
        "remove it or set nccl_ib_hca: auto"
    ]


def test_hca_problems_exact_string_checks_each_name():
    assert hca_problems(HOST_2, "=mlx5_0:1,mlx5_10:1")[0].startswith(
        "nccl_ib_hca names mlx5_10:1, which this host"
    )


@pytest.mark.parametrize(
    "entry", ["mlx5_0:x", "mlx5_0:", "mlx5_0:0", "mlx5 0", ":1", "", 7, None, "mlx5_0:1:a"]
)
def test_hca_problems_malformed_entries(entry):
    assert hca_problems(HOST_2, ["mlx5_0", entry]) == [
        f"nccl_ib_hca entry {entry!r} is malformed; use <hca> or <hca>:<port> such as mlx5_0 or mlx5_0:1"
    ]


def test_hca_problems_malformed_token_in_string():
    assert hca_problems(HOST_2, "=mlx5_0,,mlx5_1") == [
        "nccl_ib_hca entry '' is malformed; use <hca> or <hca>:<port> such as mlx5_0 or mlx5_0:1"
    ]


def test_hca_problems_prefix_syntax_inside_a_list():
    assert hca_problems(HOST_2, ["^mlx5_1"]) == [
        "nccl_ib_hca list entry '^mlx5_1' uses NCCL's ^/= prefix, which applies to a whole list; "
        "give nccl_ib_hca as one string such as '^=mlx5_2' instead"
    ]


@pytest.mark.parametrize("value", [42, {"mlx5_0": 1}, True])
def test_hca_problems_wrong_type(value):
    assert hca_problems(HOST_2, value) == [
        "nccl_ib_hca must be auto, a list such as [mlx5_0, mlx5_1:1] or an NCCL string such as "
        f"'^=mlx5_2'; got {value!r}"
    ]


def test_hca_problems_bare_prefix_symbols():
    assert hca_problems(HOST_2, "^=") == [
        "nccl_ib_hca entry '' is malformed; use <hca> or <hca>:<port> such as mlx5_0 or mlx5_0:1"
    ]


def test_excluding_an_absent_hca_is_a_note_not_a_problem():
    assert hca_problems(HOST_2, "^=mlx5_7") == []
    result = plan(HOST_2, [ETH0], overrides={"ib_hca": "^=mlx5_7"})
    assert result["problems"] == []
    assert any("excludes mlx5_7, which this host does not have" in n for n in result["notes"])


def test_excluding_every_active_port_is_a_problem():
    problems = plan(HOST_2, [ETH0], overrides={"ib_hca": "^mlx5"})["problems"]
    assert problems == ["nccl_ib_hca ^mlx5 leaves no ACTIVE port for NCCL; set nccl_ib_hca: auto"]


def test_plan_reports_hca_problems():
    result = plan(HOST_2, [ETH0], overrides={"ib_hca": ["mlx5_9"]})
    assert result["problems"] == hca_problems(HOST_2, ["mlx5_9"])
    with pytest.raises(NcclTuningError, match="mlx5_9"):
        settings(HOST_2, [ETH0], overrides={"ib_hca": ["mlx5_9"]})
