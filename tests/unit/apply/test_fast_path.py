"""``gpufleet apply --fast`` in site.yml: it skips exactly the parts the GPU stack receipt covers,
checks the receipt before them and records it only after a full run (the option: test_apply_cli.py)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, playbook_env

RECEIPT_HELD = "not (__gpufleet_receipt['converged'] | default(false))"
# What the receipt covers (plugins/module_utils/stack_receipt.py); everything else always runs.
COVERED = {
    "offline_repo",
    "preflight",
    "nvidia_driver",
    "cuda_toolkit",
    "nccl",
    "infiniband",
    "container_runtime",
}


def plays(name):
    return yaml.safe_load((REPO / "playbooks" / name).read_text())


def role_of(item):
    ref = item.get("ansible.builtin.include_role", {}).get("name") or item.get("role", "")
    return ref.rsplit(".", 1)[-1]


def conditions(item):
    when = item.get("when", [])
    return when if isinstance(when, list) else [when]


def test_site_checks_the_receipt_before_any_covered_part_and_records_it_last():
    site = plays("site.yml")
    names = [p.get("name") or p.get("ansible.builtin.import_playbook") for p in site]
    check = names.index("GPU stack receipt (gpufleet apply --fast)")
    assert check < names.index("Offline package sources")
    assert names[-1] == "GPU stack receipt (gpufleet apply --fast)" and site[-1]["tags"] == ["always"]
    assert site[check]["tags"] == ["always"]  # --tags runs do not lose the check
    compare = next(t for t in site[check]["tasks"] if "gpufleet.cluster.stack_receipt" in t)
    assert compare["register"] == "__gpufleet_receipt" and compare["when"] == "__fast"
    record = site[-1]["tasks"][0]
    assert record["gpufleet.cluster.stack_receipt"]["state"] == "record"
    recorded, compared = record["gpufleet.cluster.stack_receipt"], compare["gpufleet.cluster.stack_receipt"]
    assert (recorded["inputs"], recorded["paths"]) == (compared["inputs"], compared["paths"])
    # Only after a full run: fast path on, receipt not already holding, no tags, not check mode.
    assert record["when"] == [
        "gpufleet_fast_path | default(false) | bool",
        RECEIPT_HELD,
        "ansible_run_tags | length == 1 and 'all' in ansible_run_tags",
        "ansible_skip_tags | length == 0",
        "not ansible_check_mode",
    ]


def test_exactly_the_covered_roles_are_skipped_where_the_receipt_holds():
    skipped, always = set(), set()
    for name in ("site.yml", "runtimes.yml", "models.yml", "serve.yml"):
        for play in plays(name):
            for item in [*play.get("roles", []), *play.get("tasks", [])]:
                role = role_of(item)
                if not role:
                    continue
                (skipped if RECEIPT_HELD in conditions(item) else always).add(role)
    assert skipped == COVERED
    assert not skipped & always


# --- for real: site.yml's own receipt plays through ansible-playbook on this machine ---------------

PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"


@pytest.mark.skipif(not PLAYBOOK.exists(), reason="ansible-playbook is not in this Python's environment")
def test_site_receipt_plays_skip_the_stack_only_while_the_receipt_holds(tmp_path):
    """site.yml's first and last receipt plays as they are, around a stand-in for the GPU stack with
    the roles' condition, on localhost: the real settings digest, tag and check-mode conditions and
    module. The managed tree is this machine's plus the moved /etc/nccl.conf of the inventory."""
    check, record = [
        p for p in plays("site.yml") if p.get("name") == "GPU stack receipt (gpufleet apply --fast)"
    ]
    stack = {
        "name": "GPU software stack (stand-in)",
        "hosts": "gpu_nodes",
        "gather_facts": False,
        "tasks": [
            {
                "name": "stack",
                "ansible.builtin.debug": {"msg": "stack ran"},
                "when": [RECEIPT_HELD],
                "tags": ["stack"],
            }
        ],
    }
    play = tmp_path / "site.yml"
    play.write_text(yaml.safe_dump([check, stack, record], sort_keys=False))
    conf = tmp_path / "nccl.conf"
    conf.write_text("NCCL_DEBUG=WARN\n")
    receipt = tmp_path / "stack-receipt.json"
    host = {
        "ansible_connection": "local",
        "ansible_become": False,
        "ansible_python_interpreter": sys.executable,
        "gpufleet_stack_receipt_file": str(receipt),
        "nccl_conf_path": str(conf),
    }
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"gpu_nodes": {"hosts": {"localhost": host}}}))
    # The default callback: its json sibling left ansible.builtin in ansible-core 2.21.
    env = playbook_env(
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default",
        ANSIBLE_DISPLAY_SKIPPED_HOSTS="true",
        ANSIBLE_NOCOLOR="true",
    )
    status = re.compile(r"^(ok|changed|skipping): \[localhost\]", re.MULTILINE)

    def site(*args):
        argv = [str(PLAYBOOK), "-i", str(inventory), str(play), *args]
        done = subprocess.run(argv, capture_output=True, text=True, check=False, env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        results = {}
        for block in done.stdout.split("\nTASK [")[1:]:
            name, _, rest = block.partition("]")
            found = status.search(rest)
            results[name] = {"skipping": "skipped"}.get(found.group(1), found.group(1)) if found else None
        return results["stack"], results["Record what this full run left on the host"]

    fast = ("-e", "gpufleet_fast_path=true")
    assert site(*fast) == ("ok", "changed") and receipt.is_file()  # no receipt yet: full, recorded
    assert site(*fast) == ("skipped", "skipped")  # holds: the stack is skipped
    assert site(*fast, "-e", "nccl_version=2.99.9") == ("ok", "changed")  # other settings: full
    assert site(*fast, "-e", "nccl_version=2.99.9") == ("skipped", "skipped")
    assert site() == ("ok", "skipped")  # without --fast nothing is checked or recorded
    conf.write_text("NCCL_DEBUG=INFO\nNCCL_IB_HCA=mlx5_0\n")  # drift in a managed file
    assert site(*fast, "-e", "nccl_version=2.99.9", "--tags", "stack") == (
        "ok",
        "skipped",
    )  # tags: not recorded
    assert not receipt.exists()  # the receipt that stopped holding is gone, so the next run is full
    assert site(*fast, "-e", "nccl_version=2.99.9", "--check") == ("ok", "skipped")
    assert not receipt.exists()
