# Copyright: gpufleet developers
# Apache-2.0
"""Preflight filters: whole-stack compatibility, Secure Boot, free disk and the one failure
message. The rules live in plugin_utils/preflight.py and plugin_utils/compat.py; each filter has
the name of the function it exposes and its own documentation (``<name>.yml`` next to this file)."""

from __future__ import annotations

import base64

from ansible_collections.gpufleet.cluster.plugins.plugin_utils import compat, preflight


def secure_boot_state(efivar_b64="", mokutil_output=""):
    """The SecureBoot EFI variable as ansible.builtin.slurp returns it (base64) -> bytes."""
    raw = base64.b64decode(efivar_b64) if efivar_b64 else None
    return preflight.secure_boot_state(raw, mokutil_output)


def disk_problems(components, df_output, reserve_mib=1024):
    """``df_output``: the text of ``df -Pm / /usr /var /opt`` on the host."""
    return preflight.disk_problems(components, preflight.parse_df(df_output), reserve_mib)


class FilterModule:
    def filters(self):
        return {
            "stack_problems": compat.stack_problems,
            "secure_boot_state": secure_boot_state,
            "secure_boot_problems": preflight.secure_boot_problems,
            "disk_problems": disk_problems,
            "preflight_report": preflight.preflight_report,
        }
