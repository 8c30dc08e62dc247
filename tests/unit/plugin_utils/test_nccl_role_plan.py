"""What the nccl role installs and writes: source, matrix version, packages, settings, problems."""

from ansible_collections.gpufleet.cluster.plugins.plugin_utils import nccl_fabric
from ansible_collections.gpufleet.cluster.plugins.plugin_utils import nccl_tuning as nt

ETH = [
    {"name": "lo", "active": True, "ipv4": "127.0.0.1", "type": "loopback", "default_route": False},
    {"name": "eth0", "active": True, "ipv4": "172.18.0.2", "type": "ether", "default_route": True},
]
NO_IB = {"present": False, "hca_count": 0, "devices": []}
IB = {
    "present": True,
    "devices": [
        {"name": "mlx5_0", "ports": [{"port": 1, "state": "ACTIVE", "link_layer": "InfiniBand"}]},
        {"name": "mlx5_1", "ports": [{"port": 1, "state": "ACTIVE", "link_layer": "InfiniBand"}]},
    ],
}


def test_debian_lab_gets_the_cu11_wheel_and_ethernet_settings():
    plan = nt.nccl_role_plan(
        "auto", "Debian", "", "11.8", NO_IB, ETH, overrides={"extra": {"NCCL_DEBUG": "WARN"}}
    )
    assert plan["problems"] == []
    assert plan["source"] == "pip" and plan["version"] == "2.21.5"
    assert plan["packages"] == ["nvidia-nccl-cu11==2.21.5"]
    assert nt.nccl_values(plan["settings"]) == {
        "NCCL_IB_DISABLE": "1",
        "NCCL_SOCKET_IFNAME": "=eth0",
        "NCCL_DEBUG": "WARN",
    }


def test_ubuntu_uses_nvidias_packages_for_the_cuda_build():
    plan = nt.nccl_role_plan("auto", "Ubuntu", "", "12.4", IB, ETH)
    assert plan["source"] == "cuda_repo"
    assert plan["packages"] == ["libnccl2=2.21.5-1+cuda12.4", "libnccl-dev=2.21.5-1+cuda12.4"]
    assert nt.nccl_values(plan["settings"])["NCCL_IB_HCA"] == "=mlx5_0:1,mlx5_1:1"


def test_an_hca_the_host_lacks_is_a_problem_naming_the_variable():
    plan = nt.nccl_role_plan("pip", "Debian", "", "12.4", IB, ETH, overrides={"ib_hca": ["mlx5_0", "mlx5_9"]})
    (problem,) = plan["problems"]
    assert "nccl_ib_hca names mlx5_9, which this host does not have (it has: mlx5_0, mlx5_1)" in problem


def test_missing_or_bad_cuda_and_unknown_source():
    assert "set nccl_cuda" in nt.nccl_role_plan("pip", "Debian", "", "", NO_IB, ETH)["problems"][0]
    assert (
        "nccl_cuda 'twelve' is not a CUDA version"
        in nt.nccl_role_plan("pip", "Debian", "", "twelve", NO_IB, ETH)["problems"][0]
    )
    assert any(
        "nccl_source 'conda' is unknown" in p
        for p in nt.nccl_role_plan("conda", "Debian", "", "12.4", NO_IB, ETH)["problems"]
    )


def test_nccl_for_another_cuda_major_is_refused():
    plan = nt.nccl_role_plan("pip", "Debian", "2.23.4", "11.8", NO_IB, ETH)
    assert any("nccl_version" in p and "cuda_toolkit_versions" in p for p in plan["problems"])


def test_interfaces_from_ansible_facts():
    facts = {
        "interfaces": ["lo", "eth0", "docker0", "br-1f2e"],
        "default_ipv4": {"interface": "eth0"},
        "lo": {"active": True, "type": "loopback", "ipv4": {"address": "127.0.0.1"}},
        "eth0": {"active": True, "type": "ether", "ipv4": {"address": "10.0.0.5"}},
        "docker0": {"active": False, "type": "bridge"},
        "br_1f2e": {"active": True, "type": "bridge", "ipv4": {"address": "172.19.0.1"}},
    }
    got = nt.interfaces_from_facts(facts)
    assert got[1] == {
        "name": "eth0",
        "active": True,
        "ipv4": "10.0.0.5",
        "type": "ether",
        "default_route": True,
    }
    assert got[3]["ipv4"] == "172.19.0.1"  # ansible writes '-' in fact names as '_'
    assert nccl_fabric.socket_interface(got) == "eth0"
