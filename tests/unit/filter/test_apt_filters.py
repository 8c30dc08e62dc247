"""gpufleet.cluster APT filters (plugins/filter/apt.py)."""

from types import SimpleNamespace

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.gpufleet.cluster.plugins.filter import apt

# Called through the registry, by the names roles use.
flt = SimpleNamespace(**apt.FilterModule().filters())


def test_debian_mirror_filter():
    files = {"/etc/apt/sources.list": "deb http://deb.debian.org/debian bookworm main\n"}
    assert flt.debian_mirror(files, "bookworm") == "http://deb.debian.org/debian"


def test_debian_mirror_filter_rejects_non_dict():
    with pytest.raises(AnsibleFilterError, match="dict of file name"):
        flt.debian_mirror(["deb http://deb.debian.org/debian bookworm main"], "bookworm")
