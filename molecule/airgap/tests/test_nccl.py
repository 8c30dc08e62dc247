"""State after the nccl role on the air-gapped nodes: NCCL 2.21.5 wheel, Ethernet-only nccl.conf.

(Formerly its own Molecule scenario; folded here with every assertion kept. The scenario sets
nccl_extra NCCL_DEBUG=WARN for the gpu_nodes group.)"""

import json

import pytest

testinfra_hosts = ["ansible://gpu_nodes"]


@pytest.fixture(scope="module")
def fact(host):
    return json.loads(host.file("/etc/ansible/facts.d/gpufleet_nccl.fact").content_string)


def default_interface(host):
    """The interface NCCL should use: the default route's, or (air-gapped: no default route) the
    first Ethernet interface with a global IPv4 address, as the role's rules say."""
    via_route = host.check_output("ip -o route show default | awk '{print $5}'").strip()
    if via_route:
        return via_route
    return host.check_output("ip -o -4 addr show scope global | awk '{print $2}' | head -1").strip()


def test_wheel_installed_at_the_matrix_version(host, fact):
    assert fact["source"] == "pip"
    assert fact["version"] == "2.21.5"
    assert fact["packages"] == ["nvidia-nccl-cu11==2.21.5"]
    out = host.check_output("/opt/gpufleet/venv/bin/pip show nvidia-nccl-cu11")
    assert "Version: 2.21.5" in out


def test_installed_library_reports_its_version(host, fact):
    code = (
        "import ctypes; v = ctypes.c_int(); "
        f"rc = ctypes.CDLL('{fact['library']}').ncclGetVersion(ctypes.byref(v)); print(rc, v.value)"
    )
    assert host.check_output(f'/opt/gpufleet/venv/bin/python -c "{code}"').split() == ["0", "22105"]


def test_nccl_conf_follows_the_ethernet_rules_for_this_host(host, fact):
    conf = host.file("/etc/nccl.conf")
    assert conf.mode == 0o644
    lines = [ln for ln in conf.content_string.splitlines() if ln and not ln.startswith("#")]
    iface = default_interface(host)
    assert lines == ["NCCL_IB_DISABLE=1", f"NCCL_SOCKET_IFNAME=={iface}", "NCCL_DEBUG=WARN"]
    # Every setting carries a comment saying why; comments never contain '=' (old NCCL parsers).
    comments = [ln for ln in conf.content_string.splitlines() if ln.startswith("#")]
    assert len(comments) >= 4
    assert all("=" not in c for c in comments)
    assert fact["fabric"] == "ethernet"
    assert fact["settings"]["NCCL_IB_DISABLE"] == "1"


def test_no_rdma_devices_in_the_lab(host):
    assert not host.file("/sys/class/infiniband").exists
