"""The one integer reader, version sort key and driver version pattern (module_utils/versions.py)."""

import pytest
from ansible_collections.gpufleet.cluster.plugins.module_utils import versions


@pytest.mark.parametrize(
    ("value", "base", "expected"),
    [
        (5, 10, 5),
        ("  -3 ", 10, -3),
        ("4\n", 10, 4),  # sysfs values end in a newline
        ("0x1a", 16, 26),  # sysfs dev_id / lid
        ("1a", 16, 26),
        (True, 10, None),  # a bool is no count
        (None, 10, None),
        (2.5, 10, None),
        ("", 10, None),
        ("12 MiB", 10, None),
        ("N/A", 10, None),
    ],
)
def test_to_int(value, base, expected):
    assert versions.to_int(value, base) == expected


def test_version_key_orders_driver_cuda_and_package_versions():
    assert versions.version_key("535.261.03") == (535, 261, 3)
    assert versions.version_key("12.4") == (12, 4)
    assert versions.version_key("1:550.54.15-0ubuntu1") == (550, 54, 15, 0, 1)
    assert versions.version_key(None) == () and versions.version_key("latest") == ()
    ordered = ["535.54.03", "535.161.07", "535.261.03-1~deb12u1", "550.54.15"]
    assert sorted(reversed(ordered), key=versions.version_key) == ordered


@pytest.mark.parametrize("text", ["535.261.03", "550.54", "470.256.02"])
def test_driver_version_accepts(text):
    assert versions.is_driver_version(text) and versions.DRIVER_VERSION.fullmatch(text)


@pytest.mark.parametrize("text", ["535", "53.1", "535.x", "r535", "535.261.03-1", "", None])
def test_driver_version_rejects(text):
    assert not versions.is_driver_version(text)
