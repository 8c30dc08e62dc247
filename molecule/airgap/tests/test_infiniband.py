"""Real state after the infiniband role converged on the air-gapped nodes (Debian 12, no InfiniBand).

(Formerly its own Molecule scenario; folded here with every assertion kept. Each node gets one
IPoIB interface definition, host_vars in molecule.yml: node1 10.99.0.11.)"""

import json

import pytest

testinfra_hosts = ["ansible://gpu_nodes"]
IPOIB_ADDRESS = {"node1": "10.99.0.11/24"}

PACKAGES = ["rdma-core", "infiniband-diags", "ibverbs-utils", "perftest"]


@pytest.mark.parametrize("name", PACKAGES)
def test_inbox_packages_installed(host, name):
    assert host.package(name).is_installed, name


@pytest.mark.parametrize("binary", ["ibstat", "ibv_devinfo", "ib_write_bw"])
def test_rdma_binaries_present(host, binary):
    assert host.exists(binary), binary


def test_perftest_runs(host):
    result = host.run("ib_write_bw --help")
    output = result.stdout + result.stderr
    # perftest prints its usage and exits 1 after --help; the binary and its libraries load and run.
    assert result.rc in (0, 1), output
    assert "usage" in output.lower(), output
    assert "ib_write_bw" in output, output


def test_ibv_devinfo_sees_no_device(host):
    # Real userspace on a kernel without InfiniBand: libibverbs reports that, it does not crash.
    # It exits 255 then, which testinfra's OpenSSH backend takes for a lost connection: the status
    # is carried in the output instead.
    output = host.check_output("ibv_devinfo 2>&1; echo exit=$?")
    assert "Failed to get IB devices list" in output or "No IB devices found" in output, output
    assert "exit=0" not in output, output


def test_memlock_limits_file(host):
    limits = host.file("/etc/security/limits.d/90-gpufleet-rdma.conf")
    assert limits.exists
    assert limits.mode == 0o644
    lines = [line.split() for line in limits.content_string.splitlines() if line and not line.startswith("#")]
    assert lines == [["*", "soft", "memlock", "unlimited"], ["*", "hard", "memlock", "unlimited"]]


def test_kernel_modules_listed_for_boot(host):
    conf = host.file("/etc/modules-load.d/gpufleet-infiniband.conf")
    assert conf.exists
    modules = [line for line in conf.content_string.splitlines() if line and not line.startswith("#")]
    assert modules == ["ib_umad", "ib_ipoib", "rdma_ucm"]


def test_ipoib_ifupdown_file(host):
    conf = host.file("/etc/network/interfaces.d/ib0")
    assert conf.exists
    # Whole lines (testinfra over SSH returns the file without its final newline).
    lines = conf.content_string.splitlines()
    assert "auto ib0" in lines
    assert "iface ib0 inet static" in lines
    assert f"    address {IPOIB_ADDRESS[host.check_output('hostname')]}" in lines
    assert "    mtu 2044" in lines
    assert "    pre-up echo datagram > /sys/class/net/$IFACE/mode" in lines


def test_ib0_not_brought_up_in_container(host):
    assert not host.interface("ib0").exists


def test_local_fact(host):
    fact = json.loads(host.file("/etc/ansible/facts.d/gpufleet_infiniband.fact").content_string)
    assert fact["stack"] == "inbox"
    assert fact["packages"] == PACKAGES
    assert fact["in_container"] is True
    assert fact["hca_count"] == 0
    assert fact["hcas"] == []
    assert fact["active_ports"] == []
    assert fact["network_backend"] == "ifupdown"
    assert fact["ipoib_interfaces"] == ["ib0"]
    assert fact["ipoib_applied"] is False
    assert fact["modules_loaded"] is False
    assert fact["opensm"] is False


def test_ib_facts_reports_no_infiniband(host):
    result = host.ansible("gpufleet.cluster.ib_facts", "ibstat=true", check=False)
    facts = result["ansible_facts"]["gpufleet_ib"]
    assert facts["present"] is False
    assert facts["kernel_support"] is False  # CONFIG_INFINIBAND is not set on the lab's kernel
    assert facts["hca_count"] == 0
    assert facts["devices"] == []
    assert facts["in_container"] is True
    assert facts["ibstat"] == []  # ibstat is installed, runs, and lists no CA
    assert facts["ibstat_error"] is None


def test_opensm_not_installed(host):
    assert not host.package("opensm").is_installed
