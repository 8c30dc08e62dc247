"""gpufleet.cluster preflight filters (plugins/filter/preflight.py): what they take from tasks
(slurp's base64, df's text) before the rules in plugin_utils/preflight.py judge it."""

import base64
from types import SimpleNamespace

from ansible_collections.gpufleet.cluster.plugins.filter import preflight

# Called through the registry, by the names roles use.
flt = SimpleNamespace(**preflight.FilterModule().filters())

DF_SEPARATE_VAR = """Filesystem     1048576-blocks  Used Available Capacity Mounted on
/dev/nvme0n1p2          95000 40000     50000      45% /
/dev/mapper/vg-var       9000  6000      3000      67% /var
"""


def test_secure_boot_state_reads_the_slurped_efi_variable():
    # The SecureBoot EFI variable: 4 attribute bytes, then the value byte.
    assert flt.secure_boot_state(base64.b64encode(b"\x06\x00\x00\x00\x01").decode()) == "enabled"
    assert flt.secure_boot_state(base64.b64encode(b"\x06\x00\x00\x00\x00").decode()) == "disabled"


def test_secure_boot_state_falls_back_to_mokutil():
    assert flt.secure_boot_state("", "SecureBoot enabled\n") == "enabled"
    assert flt.secure_boot_state() == "unknown"


def test_disk_problems_reads_df_text():
    (problem,) = flt.disk_problems(["cuda_toolkit_debian"], DF_SEPARATE_VAR)
    assert "not enough free disk on /var: 3000 MiB free" in problem
    assert flt.disk_problems(["nccl"], "", -1) == []


def test_preflight_report_numbers_the_problems():
    assert flt.preflight_report(["a; set x"], "node1").splitlines()[1] == "  1. a; set x"
