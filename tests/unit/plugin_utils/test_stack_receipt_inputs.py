"""plugin_utils/stack_receipt.py and its filter: the inputs digest a receipt is recorded with."""

import pytest
from ansible_collections.gpufleet.cluster.plugins.filter.stack_receipt import FilterModule
from ansible_collections.gpufleet.cluster.plugins.plugin_utils import stack_receipt


@pytest.fixture
def collection(tmp_path, monkeypatch):
    (tmp_path / "roles" / "nccl" / "tasks").mkdir(parents=True)
    (tmp_path / "roles" / "nccl" / "tasks" / "main.yml").write_text("---\n")
    (tmp_path / "plugins").mkdir()
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "galaxy.yml").write_text("version: 0.4.0\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "apply.md").write_text("words\n")
    monkeypatch.setattr(stack_receipt, "COLLECTION", tmp_path)
    stack_receipt._content_cache.clear()
    yield tmp_path
    stack_receipt._content_cache.clear()


def test_key_order_does_not_matter_values_do(collection):
    a = stack_receipt.stack_receipt_inputs({"nccl_version": "2.21.5", "gpufleet_offline": False})
    b = stack_receipt.stack_receipt_inputs({"gpufleet_offline": False, "nccl_version": "2.21.5"})
    c = stack_receipt.stack_receipt_inputs({"gpufleet_offline": True, "nccl_version": "2.21.5"})
    assert a == b != c and len(a) == 64


def test_an_edited_role_changes_the_digest_documentation_does_not(collection):
    before = stack_receipt.stack_receipt_inputs({})
    (collection / "docs" / "apply.md").write_text("other words\n")
    stack_receipt._content_cache.clear()
    assert stack_receipt.stack_receipt_inputs({}) == before
    (collection / "roles" / "nccl" / "tasks" / "main.yml").write_text("---\n- name: new task\n")
    stack_receipt._content_cache.clear()
    assert stack_receipt.stack_receipt_inputs({}) != before


def test_the_installed_collection_has_a_content_digest():
    assert (stack_receipt.COLLECTION / "roles" / "nccl").is_dir()
    assert len(stack_receipt.content_digest()) == 64


def test_the_filter_refuses_what_is_not_a_mapping():
    inputs = FilterModule().filters()["stack_receipt_inputs"]
    assert len(inputs({"nccl_version": "2.21.5"})) == 64
    with pytest.raises(TypeError, match="expected a mapping of settings, got list"):
        inputs(["nccl_version"])
