"""After the power loss during the driver's DKMS build (converge.yml's first play), the next run
recovered the node without a manual step: nothing is left half done, the module is built, and the
node says what was repaired. The rest of this scenario's assertions (test_nvidia_driver.py and the
others) are those of a clean converge and run on this same node: the end state is the same."""

import json

testinfra_hosts = ["ansible://gpu_nodes"]
RECORD = "/var/lib/gpufleet/recovery.jsonl"


def test_nothing_is_left_half_done(host):
    assert host.check_output("dpkg --audit") == ""
    # half-installed, unpacked, half-configured, triggers awaited or pending (dpkg-query(1))
    half = host.run("dpkg-query -W -f '${db:Status-Abbrev} ${binary:Package}\\n' | grep '^.[HUFWt]'")
    assert half.stdout == "", half.stdout
    assert host.check_output("ls -A /var/lib/dpkg/updates") == ""


def test_the_interrupted_dkms_build_was_finished(host):
    status = host.check_output("dkms status")
    assert "nvidia-current/535.261.03" in status and ": installed" in status, status
    assert ": added" not in status, status


def test_the_node_records_the_recovery_of_the_interrupted_dpkg_run(host):
    record = host.file(RECORD)
    assert record.exists, "the recovery run wrote no record"
    entries = [json.loads(line) for line in record.content_string.splitlines()]
    assert len(entries) == 1, "one repair, once: the idempotence run repaired nothing"
    (dpkg,) = [r for r in entries[0]["repaired"] if r["what"] == "dpkg"]
    half = {p["package"]: p["state"] for p in dpkg["packages"]}
    assert half.get("nvidia-kernel-dkms") == "half-configured", half
    assert entries[0]["role"] in {"offline_repo", "nvidia_driver"}
