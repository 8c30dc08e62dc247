"""nccl_tuning: the plan per fabric (InfiniBand, RoCE, Ethernet only), override checks with their
messages, and the rendered /etc/nccl.conf. Fabric detection and NCCL_IB_HCA messages: test_nccl_fabric.py."""

import pytest
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.nccl_tuning import (
    HEADER,
    NcclTuningError,
    nccl_conf_text,
    plan,
    settings,
)
from nccl_hosts import (
    DOCKER0,
    ETH0,
    IB_HOST,
    INTERFACES,
    LO,
    NO_RDMA,
    ROCE_HOST,
    hca,
    ib_fact,
    iface,
    port,
    roce_gids,
    values,
)


def test_ib_host_lists_active_ports_exactly_and_leaves_the_down_one_out():
    result = plan(IB_HOST, INTERFACES, peermem=True)
    assert result["fabric"] == "infiniband"
    assert result["problems"] == []
    assert values(result) == {"NCCL_IB_HCA": "=mlx5_0:1", "NCCL_SOCKET_IFNAME": "=eth0"}
    hca_entry = result["settings"]["NCCL_IB_HCA"]
    assert hca_entry["source"] == "computed"
    assert "mlx5_1:1 DOWN" in hca_entry["why"]
    assert "exact names" in hca_entry["why"]


def test_ib_host_multi_port_hca():
    host = ib_fact(hca("mlx5_0", port(1), port(2)), hca("mlx5_1", port(1), port(2, "DOWN")))
    assert values(plan(host, [ETH0]))["NCCL_IB_HCA"] == "=mlx5_0:1,mlx5_0:2,mlx5_1:1"


def test_ib_host_sets_no_gid_index_and_no_ib_disable():
    keys = plan(IB_HOST, [ETH0], peermem=True)["settings"]
    assert "NCCL_IB_GID_INDEX" not in keys
    assert "NCCL_IB_DISABLE" not in keys


def test_ib_host_with_peermem_leaves_gdr_level_to_nccl_with_a_note():
    result = plan(IB_HOST, [ETH0], peermem=True)
    assert "NCCL_NET_GDR_LEVEL" not in result["settings"]
    assert any("GPUDirect RDMA is available" in n and "nccl_net_gdr_level" in n for n in result["notes"])


def test_ib_host_without_peermem_sets_no_gdr_and_says_why():
    result = plan(IB_HOST, [ETH0], peermem=False)
    assert "NCCL_NET_GDR_LEVEL" not in result["settings"]
    assert result["problems"] == []
    assert any("nvidia-peermem is not loaded" in n for n in result["notes"])


def test_ib_host_with_roce_ports_too_lists_only_infiniband():
    host = ib_fact(hca("mlx5_0", port(1)), hca("mlx5_1", port(1, link_layer="Ethernet", gids=roce_gids())))
    result = plan(host, [ETH0])
    assert values(result)["NCCL_IB_HCA"] == "=mlx5_0:1"
    assert "NCCL_IB_GID_INDEX" not in result["settings"]
    assert any("RoCE ports" in n for n in result["notes"])


# --- RoCE hosts -------------------------------------------------------------------------------------


def test_roce_host_picks_ipv4_mapped_roce_v2_gid():
    result = plan(ROCE_HOST, INTERFACES, peermem=True)
    assert result["fabric"] == "roce"
    assert result["problems"] == []
    assert values(result) == {
        "NCCL_IB_HCA": "=mlx5_0:1,mlx5_1:1",
        "NCCL_SOCKET_IFNAME": "=eth0",
        "NCCL_IB_GID_INDEX": "3",
    }
    why = result["settings"]["NCCL_IB_GID_INDEX"]["why"]
    assert "IPv4-mapped" in why
    assert "mlx5_0:1, mlx5_1:1" in why


def test_roce_ignores_link_local_and_v1_gids():
    # Index 1 is RoCE v2 but link-local (fe80::), index 2 is IPv4-mapped but RoCE v1: neither counts.
    host = ib_fact(hca("mlx5_0", port(1, link_layer="Ethernet", gids=roce_gids(v2_index=5, v1_index=2))))
    assert values(plan(host, [ETH0]))["NCCL_IB_GID_INDEX"] == "5"


def test_roce_accepts_compressed_gid_and_v2_spelling():
    gids = [{"index": 7, "gid": "::ffff:10.200.1.10", "type": "v2"}]
    host = ib_fact(hca("mlx5_0", port(1, link_layer="Ethernet", gids=gids)))
    assert values(plan(host, [ETH0]))["NCCL_IB_GID_INDEX"] == "7"


def test_roce_ports_that_disagree_use_the_common_index():
    # Port A has IPv4 v2 GIDs at 3 and 5 (two addresses), port B only at 5: 5 works for both.
    gids_a = [*roce_gids("0ac8:010a", v2_index=3), {"index": 5, "gid": "::ffff:10.9.9.9", "type": "RoCE v2"}]
    gids_b = roce_gids("0ac8:020a", v2_index=5, v1_index=4)
    host = ib_fact(
        hca("mlx5_0", port(1, link_layer="Ethernet", gids=gids_a)),
        hca("mlx5_1", port(1, link_layer="Ethernet", gids=gids_b)),
    )
    assert values(plan(host, [ETH0]))["NCCL_IB_GID_INDEX"] == "5"


def test_roce_ports_with_no_common_index_are_a_problem():
    host = ib_fact(
        hca("mlx5_0", port(1, link_layer="Ethernet", gids=roce_gids(v2_index=3))),
        hca("mlx5_1", port(1, link_layer="Ethernet", gids=roce_gids(v2_index=5, v1_index=4))),
    )
    result = plan(host, [ETH0])
    assert "NCCL_IB_GID_INDEX" not in result["settings"]
    assert len(result["problems"]) == 1
    msg = result["problems"][0]
    assert "disagree" in msg
    assert "mlx5_0:1 has 3; mlx5_1:1 has 5" in msg
    assert "nccl_ib_gid_index: -1" in msg
    with pytest.raises(NcclTuningError) as err:
        settings(host, [ETH0])
    assert err.value.problems == result["problems"]
    assert isinstance(err.value, ValueError)


def test_roce_port_without_ipv4_gid_is_left_out_with_a_note():
    no_ip = [g for g in roce_gids() if g["index"] < 2]
    host = ib_fact(
        hca("mlx5_0", port(1, link_layer="Ethernet", gids=roce_gids())),
        hca("mlx5_1", port(1, link_layer="Ethernet", gids=no_ip)),
    )
    result = plan(host, [ETH0])
    assert result["problems"] == []
    assert values(result)["NCCL_IB_HCA"] == "=mlx5_0:1"
    assert values(result)["NCCL_IB_GID_INDEX"] == "3"
    assert any("left out of NCCL_IB_HCA: mlx5_1:1" in n for n in result["notes"])


def test_roce_host_with_no_ipv4_gid_at_all_is_a_problem():
    host = ib_fact(hca("mlx5_0", port(1, link_layer="Ethernet", gids=roce_gids()[:2])))
    result = plan(host, [ETH0])
    assert len(result["problems"]) == 1
    assert "no RoCE port in use (mlx5_0:1) has a RoCE v2 GID with an IPv4 address" in result["problems"][0]
    assert "nccl_ib_gid_index" in result["problems"][0]


def test_roce_gid_computed_over_the_ports_nccl_ib_hca_selects():
    # mlx5_1 disagrees, but the user excluded it: the index comes from mlx5_0 alone.
    host = ib_fact(
        hca("mlx5_0", port(1, link_layer="Ethernet", gids=roce_gids(v2_index=3))),
        hca("mlx5_1", port(1, link_layer="Ethernet", gids=roce_gids(v2_index=5, v1_index=4))),
    )
    result = plan(host, [ETH0], overrides={"ib_hca": "^=mlx5_1"})
    assert result["problems"] == []
    assert values(result)["NCCL_IB_HCA"] == "^=mlx5_1"
    assert values(result)["NCCL_IB_GID_INDEX"] == "3"


def test_roce_override_selecting_a_port_without_ipv4_gid_is_a_problem():
    host = ib_fact(
        hca("mlx5_0", port(1, link_layer="Ethernet", gids=roce_gids())),
        hca("mlx5_1", port(1, link_layer="Ethernet", gids=roce_gids()[:2])),
    )
    problems = plan(host, [ETH0], overrides={"ib_hca": ["mlx5_0:1", "mlx5_1:1"]})["problems"]
    assert len(problems) == 1
    assert problems[0].startswith(
        "nccl_ib_hca selects mlx5_1:1, which has no RoCE v2 GID with an IPv4 address"
    )


# --- Ethernet-only hosts ----------------------------------------------------------------------------


def test_ethernet_host_disables_ib_and_pins_socket():
    result = plan(NO_RDMA, INTERFACES, peermem=True)
    assert result["fabric"] == "ethernet"
    assert result["problems"] == []
    assert result["notes"] == []
    assert values(result) == {"NCCL_IB_DISABLE": "1", "NCCL_SOCKET_IFNAME": "=eth0"}
    assert "no RDMA device found" in result["settings"]["NCCL_IB_DISABLE"]["why"]


def test_host_with_only_down_hcas_is_ethernet_and_says_which():
    host = ib_fact(hca("mlx5_0", port(1, "DOWN")))
    result = plan(host, [ETH0])
    assert values(result)["NCCL_IB_DISABLE"] == "1"
    assert "mlx5_0:1 DOWN" in result["settings"]["NCCL_IB_DISABLE"]["why"]
    assert "NCCL_IB_HCA" not in result["settings"]


def test_no_usable_interface_leaves_socket_ifname_unset_with_a_note():
    result = plan(NO_RDMA, [LO, DOCKER0])
    assert "NCCL_SOCKET_IFNAME" not in result["settings"]
    assert result["problems"] == []
    assert any(n.startswith("NCCL_SOCKET_IFNAME not set") for n in result["notes"])


# --- overrides win -----------------------------------------------------------------------------------


def test_every_computed_value_can_be_overridden():
    overrides = {
        "ib_hca": ["mlx5_1:1", "mlx5_0:1"],
        "socket_ifname": "=ens1f0",
        "ib_gid_index": 2,
        "net_gdr_level": "pxb",
        "ib_disable": False,
        "extra": {"NCCL_IB_TC": 106, "NCCL_CROSS_NIC": 0},
    }
    ifaces = [ETH0, iface("ens1f0", "10.200.1.10")]
    result = plan(ROCE_HOST, ifaces, peermem=True, topo_file="/etc/nccl/topo.xml", overrides=overrides)
    assert result["problems"] == []
    assert values(result) == {
        "NCCL_IB_DISABLE": "0",
        "NCCL_IB_HCA": "=mlx5_1:1,mlx5_0:1",
        "NCCL_SOCKET_IFNAME": "=ens1f0",
        "NCCL_IB_GID_INDEX": "2",
        "NCCL_NET_GDR_LEVEL": "PXB",
        "NCCL_TOPO_FILE": "/etc/nccl/topo.xml",
        "NCCL_CROSS_NIC": "0",
        "NCCL_IB_TC": "106",
    }
    for key, entry in result["settings"].items():
        expected = "computed" if key == "NCCL_TOPO_FILE" else "override"
        assert entry["source"] == expected, key
    # settings() gives the same mapping when there is no problem.
    assert settings(ROCE_HOST, ifaces, True, "/etc/nccl/topo.xml", overrides) == result["settings"]


@pytest.mark.parametrize("auto", [None, "auto", "AUTO", "", []])
def test_auto_means_compute(auto):
    overrides = dict.fromkeys(
        ("ib_hca", "socket_ifname", "ib_gid_index", "net_gdr_level", "ib_disable"), auto
    )
    assert plan(ROCE_HOST, [ETH0], overrides=overrides) == plan(ROCE_HOST, [ETH0])


def test_ib_hca_nccl_string_is_passed_through():
    result = plan(IB_HOST, [ETH0], overrides={"ib_hca": "mlx5"})
    assert result["problems"] == []
    assert values(result)["NCCL_IB_HCA"] == "mlx5"


def test_ib_hca_rail_and_plane_fields_are_accepted():
    result = plan(IB_HOST, [ETH0], overrides={"ib_hca": ["mlx5_0:1:0:0"]})
    assert result["problems"] == []
    assert values(result)["NCCL_IB_HCA"] == "=mlx5_0:1:0:0"


def test_ib_disable_true_on_ib_host_drops_computed_ib_settings():
    result = plan(ROCE_HOST, [ETH0], peermem=True, overrides={"ib_disable": True})
    assert values(result) == {"NCCL_IB_DISABLE": "1", "NCCL_SOCKET_IFNAME": "=eth0"}
    assert any("TCP sockets" in n for n in result["notes"])


@pytest.mark.parametrize(("given", "value"), [("yes", "1"), ("0", "0"), (1, "1"), ("false", "0")])
def test_ib_disable_accepts_ansible_booleans(given, value):
    assert values(plan(NO_RDMA, [ETH0], overrides={"ib_disable": given}))["NCCL_IB_DISABLE"] == value


def test_gid_index_minus_one_lets_nccl_pick():
    result = plan(ROCE_HOST, [ETH0], overrides={"ib_gid_index": -1})
    assert result["problems"] == []
    assert values(result)["NCCL_IB_GID_INDEX"] == "-1"


def test_gid_index_accepts_a_number_as_string():
    assert values(plan(ROCE_HOST, [ETH0], overrides={"ib_gid_index": "3"}))["NCCL_IB_GID_INDEX"] == "3"


def test_gdr_override_without_peermem_is_kept_with_a_note():
    result = plan(IB_HOST, [ETH0], peermem=False, overrides={"net_gdr_level": "SYS"})
    assert values(result)["NCCL_NET_GDR_LEVEL"] == "SYS"
    assert any("nvidia-peermem is not loaded" in n for n in result["notes"])


def test_gdr_override_on_ethernet_host_is_kept_with_a_note():
    result = plan(NO_RDMA, [ETH0], overrides={"net_gdr_level": "LOC"})
    assert values(result)["NCCL_NET_GDR_LEVEL"] == "LOC"
    assert any("will not use RDMA" in n for n in result["notes"])


def test_socket_ifname_exclusion_is_passed_through():
    result = plan(NO_RDMA, INTERFACES, overrides={"socket_ifname": "^docker,lo"})
    assert result["problems"] == []
    assert values(result)["NCCL_SOCKET_IFNAME"] == "^docker,lo"


def test_socket_ifname_prefix_is_kept_as_prefix():
    result = plan(NO_RDMA, INTERFACES, overrides={"socket_ifname": "eth"})
    assert result["problems"] == []
    assert values(result)["NCCL_SOCKET_IFNAME"] == "eth"


def test_topo_file_is_written_when_given():
    entry = plan(IB_HOST, [ETH0], topo_file="/etc/nccl/topo.xml")["settings"]["NCCL_TOPO_FILE"]
    assert entry["value"] == "/etc/nccl/topo.xml"


def test_extra_keys_follow_computed_keys_sorted_and_booleans_become_0_1():
    result = plan(
        IB_HOST, [ETH0], overrides={"extra": {"NCCL_IB_TIMEOUT": 22, "NCCL_DEBUG": "WARN", "NCCL_X": True}}
    )
    assert list(result["settings"]) == [
        "NCCL_IB_HCA",
        "NCCL_SOCKET_IFNAME",
        "NCCL_DEBUG",
        "NCCL_IB_TIMEOUT",
        "NCCL_X",
    ]
    assert values(result)["NCCL_X"] == "1"
    assert result["settings"]["NCCL_DEBUG"]["source"] == "override"


# --- other override problems -------------------------------------------------------------------------


def problems_for(host=ROCE_HOST, interfaces=(ETH0,), **overrides):
    return plan(host, list(interfaces), overrides=overrides)["problems"]


@pytest.mark.parametrize("value", ["ETH", "pxb2", -1, True, ["PXB"]])
def test_unknown_gdr_level(value):
    assert problems_for(net_gdr_level=value) == [
        f"nccl_net_gdr_level {value!r} is not a GPUDirect RDMA level; "
        "use one of LOC, PIX, PXB, PHB, SYS, or auto"
    ]


@pytest.mark.parametrize(("value", "name"), [(2, "PXB"), ("3", "PHB"), (5, "SYS"), (0, "LOC")])
def test_legacy_gdr_number_suggests_the_name(value, name):
    assert problems_for(net_gdr_level=value) == [
        f"nccl_net_gdr_level {value!r} is a legacy number, which NCCL's docs discourage (path types were "
        f"renumbered); use the name {name}"
    ]


@pytest.mark.parametrize("value", [-2, -5, "x", 1.5, True])
def test_bad_gid_index(value):
    assert problems_for(ib_gid_index=value) == [
        f"nccl_ib_gid_index {value!r} is not a GID index; set a number from show_gids (0 or more), "
        "-1 to let NCCL pick, or auto"
    ]


def test_gid_index_not_in_the_port_table():
    assert problems_for(ib_gid_index=9) == [
        f"nccl_ib_gid_index 9 is not a GID index of {p} (it has: 0, 1, 2, 3); pick one of those or set auto"
        for p in ("mlx5_0:1", "mlx5_1:1")
    ]


@pytest.mark.parametrize("value", ["eth0/1", "a-very-long-interface-name", "eth 0", "eth0:1", "=eth0,,eth1"])
def test_bad_socket_ifname(value):
    problems = problems_for(socket_ifname=value)
    assert len(problems) == 1
    assert problems[0].startswith(f"nccl_socket_ifname {value!r} has a bad interface name")


@pytest.mark.parametrize("value", [5, ["eth0"], True])
def test_socket_ifname_wrong_type(value):
    assert problems_for(socket_ifname=value) == [
        "nccl_socket_ifname must be an interface name such as eth0 "
        "(or an NCCL list such as =eth0 or ^docker); "
        f"got {value!r}"
    ]


def test_socket_ifname_matching_no_interface():
    assert problems_for(interfaces=INTERFACES, socket_ifname="=ens1f0") == [
        "nccl_socket_ifname '=ens1f0' matches no active interface on this host "
        "(active: docker0, eth0, ib0, lo); name one of those or set nccl_socket_ifname: auto"
    ]


def test_bad_ib_disable():
    assert problems_for(ib_disable="maybe") == ["nccl_ib_disable must be true, false or auto; got 'maybe'"]


@pytest.mark.parametrize("path", ["topo.xml", "etc/nccl/topo.xml", "/etc/x\n.xml", 5])
def test_bad_topo_file(path):
    assert plan(IB_HOST, [ETH0], topo_file=path)["problems"] == [
        f"nccl_topo_file {path!r} must be an absolute path such as /etc/nccl/topo.xml"
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"nccl_ib_tc": 1},
            "nccl_extra key 'nccl_ib_tc' is not an NCCL variable; names look like NCCL_IB_TC",
        ),
        ({"UCX_TLS": "rc"}, "nccl_extra key 'UCX_TLS' is not an NCCL variable; names look like NCCL_IB_TC"),
        (
            {"NCCL_IB_HCA": "mlx5"},
            "nccl_extra sets NCCL_IB_HCA, which nccl_ib_hca controls (and checks); set nccl_ib_hca",
        ),
        (
            {"NCCL_TOPO_FILE": "/x.xml"},
            "nccl_extra sets NCCL_TOPO_FILE, which nccl_topo_file controls (and checks); set nccl_topo_file",
        ),
        ({"NCCL_IB_TC": [106]}, "nccl_extra NCCL_IB_TC must be a string or number, not list"),
        ({"NCCL_IB_TC": None}, "nccl_extra NCCL_IB_TC must be a string or number, not NoneType"),
        ({"NCCL_DEBUG": "WARN\nNCCL_X=1"}, "nccl_extra NCCL_DEBUG must be one non-empty line"),
        ({"NCCL_DEBUG": " "}, "nccl_extra NCCL_DEBUG must be one non-empty line"),
        (
            {"NCCL_DEBUG": "x" * 1024},
            "nccl_extra NCCL_DEBUG is 1024 characters; NCCL reads at most 1023 from nccl.conf",
        ),
        (
            ["NCCL_IB_TC=106"],
            "nccl_extra must be a mapping of NCCL_* names to values, such as {NCCL_IB_TC: 106}",
        ),
    ],
)
def test_bad_extra(extra, message):
    assert problems_for(extra=extra) == [message]


def test_unknown_override_key():
    assert problems_for(ib_hcas=["mlx5_0"]) == [
        "unknown nccl override 'ib_hcas'; "
        "known: ib_hca, socket_ifname, ib_gid_index, net_gdr_level, ib_disable, extra"
    ]


def test_every_problem_is_reported_at_once():
    problems = problems_for(ib_hca=["mlx5_9"], socket_ifname="eth/0", net_gdr_level="far", ib_gid_index=-3)
    assert [p.split(" ")[0] for p in problems] == [
        "nccl_ib_hca",
        "nccl_socket_ifname",
        "nccl_ib_gid_index",
        "nccl_net_gdr_level",
    ]


# --- plan never raises -------------------------------------------------------------------------------


GARBAGE = [
    None,
    5,
    "x",
    [1],
    {"devices": "x"},
    {"devices": [None, {"name": 3}, {"name": "m", "ports": [None, {}]}]},
]


@pytest.mark.parametrize("ib", GARBAGE)
@pytest.mark.parametrize("interfaces", [None, "eth0", [None, 5, {"name": None}]])
@pytest.mark.parametrize("overrides", [None, 5, {"ib_hca": object()}, {"extra": {"NCCL_A": object()}}])
def test_plan_never_raises(ib, interfaces, overrides):
    result = plan(ib, interfaces, peermem="?", topo_file=None, overrides=overrides)
    assert set(result) == {"fabric", "settings", "problems", "notes"}
    assert result["fabric"] == "ethernet"
    nccl_conf_text(result["settings"])


def test_ports_with_missing_keys_are_tolerated():
    host = {
        "devices": [{"name": "mlx5_0", "ports": [{"port": 1, "state": "ACTIVE", "link_layer": "InfiniBand"}]}]
    }
    assert values(plan(host, [ETH0]))["NCCL_IB_HCA"] == "=mlx5_0:1"


# --- render ------------------------------------------------------------------------------------------


def test_render_exact_text_for_an_ib_host():
    text = nccl_conf_text(settings(IB_HOST, INTERFACES, peermem=True, topo_file="/etc/nccl/topo.xml"))
    assert text == (
        "# Generated by gpufleet (nccl role) from this host's facts; see 'why' comments.\n"
        "# ACTIVE InfiniBand ports, exact names (a bare mlx5_1 would also match mlx5_10 to mlx5_19); "
        "not used: mlx5_1:1 DOWN\n"
        "NCCL_IB_HCA==mlx5_0:1\n"
        "# bootstrap over eth0 (10.0.0.5), the default-route interface; exact name, so interfaces that "
        "only start with eth0 are not used\n"
        "NCCL_SOCKET_IFNAME==eth0\n"
        "# topology file given to the nccl role; NCCL loads it before detecting the topology\n"
        "NCCL_TOPO_FILE=/etc/nccl/topo.xml\n"
    )


def test_render_is_deterministic():
    assert nccl_conf_text(settings(ROCE_HOST, INTERFACES)) == nccl_conf_text(
        settings(ROCE_HOST, list(reversed(INTERFACES)))
    )


def test_render_empty():
    assert nccl_conf_text({}) == HEADER + "\n"


def scenarios():
    yield plan(IB_HOST, INTERFACES, peermem=True, topo_file="/etc/nccl/topo.xml")
    yield plan(ROCE_HOST, INTERFACES, peermem=False)
    yield plan(NO_RDMA, INTERFACES)
    yield plan(ROCE_HOST, INTERFACES, overrides={"ib_hca": "^=mlx5_1", "extra": {"NCCL_IB_TC": 106}})


@pytest.mark.parametrize("result", list(scenarios()))
def test_comments_never_contain_equals(result):
    # NCCL before 2.2x reads every line with '=' as a variable, '#' lines included.
    for line in nccl_conf_text(result["settings"]).splitlines():
        assert line.startswith("# ") != ("=" in line)


def test_render_sanitises_why_and_rejects_broken_values():
    text = nccl_conf_text({"NCCL_X": {"value": "1", "why": "a=b\nc", "source": "override"}})
    assert text.splitlines()[1] == "# a equals b c"
    with pytest.raises(ValueError, match="cannot write"):
        nccl_conf_text({"NCCL_X": {"value": "1\nNCCL_Y=2", "why": "", "source": "override"}})
    with pytest.raises(ValueError, match="cannot write"):
        nccl_conf_text({"bad key": {"value": "1", "why": "", "source": "override"}})
