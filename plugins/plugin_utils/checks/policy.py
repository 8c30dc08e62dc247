# Copyright: gpufleet developers
# Apache-2.0
"""What a site intends its GPU hosts to be: the policy the checks compare settings with.

Health says something is broken; policy says a host differs from what this site wants (see
``core``: a ``policy`` result, action RECONFIGURE, never a fault). The defaults fit a node gpufleet
provisioned on HGX/DGX-class hardware; a site running other hardware (cloud VMs with GPU
pass-through, workstations) says what it accepts in ``gpufleet_verify_policy`` (inventory) or the
``policy:`` of a diagnose ``expect.yml``:

- ``ecc_required`` (default true): ECC disabled is a policy result; false accepts it.
- ``persistence_required`` (default true): persistence mode off is a policy result (the
  nvidia_driver role runs nvidia-persistenced); false accepts it.
- ``pcie_min_width`` (default null: the GPU's own maximum): the narrowest PCIe link accepted, in
  lanes. A link narrower than this on bare metal is a fault (the link trained down).
- ``pcie_passthrough_narrow_ok`` (default false): in a VM with GPU pass-through a link narrower
  than the maximum is what the hypervisor's virtual topology shows, not a trained-down link; with
  false it is a policy result, with true it passes.
- ``power_cap_tolerance_pct`` (default 5): the software power cap holding the clocks of a GPU
  drawing within this many percent of its power limit is the limit at work (pass); a power limit
  set more than this many percent below the GPU's default limit is a policy result.
"""

from __future__ import annotations

DEFAULTS = {
    "ecc_required": True,
    "persistence_required": True,
    "pcie_min_width": None,
    "pcie_passthrough_narrow_ok": False,
    "power_cap_tolerance_pct": 5,
}
PCIE_WIDTHS = (1, 2, 4, 8, 16, 32)


class PolicyError(ValueError):
    """A site policy that is not a mapping of known settings with values of the right type."""


def validate(value=None, where="gpufleet_verify_policy"):
    """The site's policy: ``DEFAULTS`` with ``value`` (a mapping, or None) laid over it.

    Raises ``PolicyError`` naming ``where``, the setting, what was given and what is accepted.
    """
    if value is None:
        return dict(DEFAULTS)
    if not isinstance(value, dict):
        raise PolicyError(f"{where} must be a mapping of settings, got {type(value).__name__} {value!r}")
    unknown = sorted(str(k) for k in value if k not in DEFAULTS)
    if unknown:
        raise PolicyError(
            f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(DEFAULTS))}"
        )
    out = dict(DEFAULTS)
    for key, given in value.items():
        if key in ("ecc_required", "persistence_required", "pcie_passthrough_narrow_ok"):
            if not isinstance(given, bool):
                raise PolicyError(f"{where}.{key} must be true or false, got {given!r}")
        elif key == "pcie_min_width":
            if given is not None and (isinstance(given, bool) or given not in PCIE_WIDTHS):
                raise PolicyError(
                    f"{where}.pcie_min_width must be null (the GPU's maximum) or a link width in "
                    f"lanes ({', '.join(str(w) for w in PCIE_WIDTHS)}), got {given!r}"
                )
        elif key == "power_cap_tolerance_pct" and (
            isinstance(given, bool) or not isinstance(given, (int, float)) or not 0 <= given <= 50
        ):
            raise PolicyError(f"{where}.power_cap_tolerance_pct must be a number from 0 to 50, got {given!r}")
        out[key] = given
    return out
