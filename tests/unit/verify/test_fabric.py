"""ib_write_bw pairing and judging, with a clearly named test double for the two hosts.

TestDoubleHost answers the server command at once and the client command with the recorded real
ib_write_bw report tests/fixtures/probes/ib_write_bw-roce-4qp-gbits.txt (see PROVENANCE.md there).
"""

from pathlib import Path
from types import SimpleNamespace

import pytest

from gpufleet.verify import fabric

REPORT = (Path(__file__).parents[2] / "fixtures" / "probes" / "ib_write_bw-roce-4qp-gbits.txt").read_text()


class TestDoubleHost:
    __test__ = False

    def __init__(self, name, client_rc=0, client_out=REPORT):
        self.name, self.client_rc, self.client_out, self.commands = name, client_rc, client_out, []

    def run(self, cmd):
        self.commands.append(cmd)
        if cmd.rstrip().endswith("--report_gbits"):  # the server side: no peer address
            return SimpleNamespace(rc=0, stdout="", stderr="")
        return SimpleNamespace(
            rc=self.client_rc, stdout=self.client_out, stderr="Couldn't connect to 10.0.0.1"
        )


@pytest.fixture(autouse=True)
def no_wait(monkeypatch):
    monkeypatch.setattr(fabric, "STARTUP_S", 0)


def raw(sku="H100 SXM", ports=("mlx5_0:1",)):
    return {"reachable": True, "checks": [], "sku": sku, "ib_active_ports": list(ports)}


def test_pairs_cover_every_host():
    assert fabric.pairs(["a", "b", "c", "d"]) == [("a", "b"), ("c", "d")]
    assert fabric.pairs(["a", "b", "c"]) == [("a", "b"), ("a", "c")]
    assert fabric.pairs(["a"]) == []


def test_pair_measured_and_judged_against_the_sku_baseline():
    raws = {"a": raw(), "b": raw(), "c": raw(ports=())}
    hosts = {"a": TestDoubleHost("a"), "b": TestDoubleHost("b")}
    hv = {"a": {"ansible_host": "10.0.0.1"}, "b": {}, "c": {}}
    fabric.run_pairs(raws, hv, {}, hosts.__getitem__)
    a = next(c for c in raws["a"]["checks"] if c["check"] == fabric.CHECK)
    b = next(c for c in raws["b"]["checks"] if c["check"] == fabric.CHECK)
    c = next(c for c in raws["c"]["checks"] if c["check"] == fabric.CHECK)
    assert c["status"] == "skip" and "no active InfiniBand" in c["summary"]
    # The recorded RoCE run is far below an NDR port's 380 Gb/s threshold: both ends fail.
    assert a["status"] == b["status"] == "fail"
    assert a["expected"] == 380 and a["unit"] == "Gb/s" and a["action"] == "ISOLATE"
    assert a["measured"] == b["measured"] and a["measured"] > 0
    assert "with b" in a["summary"] and "with a" in b["summary"]
    client_cmd = hosts["b"].commands[0]
    assert "ib_write_bw -d mlx5_0 -i 1" in client_cmd and client_cmd.endswith("10.0.0.1")


def test_override_can_pass_the_same_measurement():
    raws = {"a": raw(), "b": raw()}
    hosts = {"a": TestDoubleHost("a"), "b": TestDoubleHost("b")}
    overrides = {h: {"H100 SXM": {"ib_write_bw_gbps": {"expected": 1.0}}} for h in raws}
    fabric.run_pairs(raws, {"a": {}, "b": {}}, overrides, hosts.__getitem__)
    assert raws["a"]["checks"][0]["status"] == "pass"
    assert "override" in raws["a"]["checks"][0]["source"]


def test_client_failure_is_probe_failed_never_a_pass():
    raws = {"a": raw(), "b": raw()}
    hosts = {"a": TestDoubleHost("a"), "b": TestDoubleHost("b", client_rc=1, client_out="")}
    fabric.run_pairs(raws, {"a": {}, "b": {}}, {}, hosts.__getitem__)
    res = raws["b"]["checks"][0]
    assert res["status"] == "fail" and res["summary"].startswith("probe failed with a")
    assert "Couldn't connect" in res["summary"]


def test_lonely_host_is_skipped_with_the_reason():
    raws = {"a": raw(), "b": raw(ports=())}
    fabric.run_pairs(raws, {"a": {}, "b": {}}, {}, lambda _h: pytest.fail("no host should be contacted"))
    assert raws["a"]["checks"][0]["summary"] == "no peer host with an active port in this run"
