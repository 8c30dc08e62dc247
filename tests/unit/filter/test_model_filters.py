"""gpufleet.cluster model filters (plugins/filter/models.py): where each model version comes from."""

from types import SimpleNamespace

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.gpufleet.cluster.plugins.filter import models

flt = SimpleNamespace(**models.FilterModule().filters())


def test_offline_models_default_to_the_bundle_and_keep_extra_sources_after_it():
    got = flt.model_sources(
        [{"name": "tiny-llama", "version": 1}, {"name": "big", "version": "2", "activate": False,
                                                "extra_sources": ["http://node2:8090/{name}/versions/{version}"]}],
        bundle_url="http://bastion/lab/",
        extra_sources=["http://mirror/{name}/{version}"],
    )  # fmt: skip
    assert got[0] == {
        "name": "tiny-llama",
        "version": "1",
        "manifest_url": "http://bastion/lab/models/tiny-llama/1.model.json",
        "sources": ["http://bastion/lab/models/tiny-llama/1", "http://mirror/tiny-llama/1"],
        "activate": True,
    }
    assert got[1]["sources"] == [
        "http://bastion/lab/models/big/2",
        "http://node2:8090/big/versions/2",
        "http://mirror/big/2",
    ]
    assert got[1]["activate"] is False


def test_online_entries_name_their_own_manifest_and_sources():
    m = {"name": "llama", "version": "3.1", "manifest_url": "https://m.example/llama-3.1.model.json",
         "sources": ["s3://models/llama/3.1", "https://m.example/llama/3.1"]}  # fmt: skip
    assert flt.model_sources([m])[0]["sources"] == m["sources"]


@pytest.mark.parametrize(
    ("models", "kw", "message"),
    [
        ([{"name": "tiny", "version": "1"}], {}, r"\[0\] \(tiny 1\): give manifest_url .* not offline"),
        ([{"name": "a b", "version": "1"}], {"bundle_url": "http://b/x"}, r"\[0\]\.name: 'a b' must be"),
        ([{"name": "a", "version": "1", "source": "x"}], {"bundle_url": "http://b"}, r"unknown keys source"),
        ([{"name": "a", "version": 1}, {"name": "a", "version": "1"}], {"bundle_url": "http://b"},
         r"\[1\]: a 1 is listed twice"),
        ([{"name": "a", "version": "1", "manifest_url": "http://m/a.json", "sources": ["ftp://x"]}], {},
         r"must be an http\(s\):// or file:// URL of a \.model\.json(.|\n)*source 'ftp://x' must be"),
        ("tiny", {}, r"must be a list"),
    ],
)  # fmt: skip
def test_bad_entries_are_named_and_nothing_is_returned(models, kw, message):
    with pytest.raises(AnsibleFilterError, match=message):
        flt.model_sources(models, **kw)


def test_every_bad_entry_is_reported_at_once():
    with pytest.raises(AnsibleFilterError) as err:
        flt.model_sources([{"name": "a"}, {"version": "1"}], bundle_url="http://b")
    assert "[0] (a).version: None" in str(err.value) and "[1].name: None" in str(err.value)


def test_peers_are_the_other_hosts_starting_after_this_one():
    hosts = ["node1", "node2", "node3", "node4"]
    addresses = ["10.0.0.1", "", "fd00::3", "10.0.0.4"]
    assert flt.model_peers(hosts, "node2", addresses, 8090) == [
        "http://[fd00::3]:8090",
        "http://10.0.0.4:8090",
        "http://10.0.0.1:8090",
    ]
    assert flt.model_peers(["only"], "only", [""], 8090) == []


def test_peers_need_one_address_per_host_and_this_host_among_them():
    with pytest.raises(AnsibleFilterError, match="one address per host"):
        flt.model_peers(["a", "b"], "a", [""], 8090)
    with pytest.raises(AnsibleFilterError, match="'c' is not one of the hosts"):
        flt.model_peers(["a", "b"], "c", ["", ""], 8090)
