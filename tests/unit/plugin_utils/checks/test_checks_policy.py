"""The site's policy: defaults for a gpufleet-provisioned HGX/DGX node, validated with clear errors."""

import pytest
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import core, policy


def test_defaults_and_overlay():
    assert policy.validate(None) == policy.DEFAULTS
    assert policy.validate({"ecc_required": False})["ecc_required"] is False
    assert policy.validate({"pcie_min_width": 8})["pcie_min_width"] == 8


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "must be a mapping"),
        ({"ecc": True}, "unknown setting(s) ecc; known:"),
        ({"ecc_required": "yes"}, "ecc_required must be true or false"),
        ({"pcie_min_width": 12}, "pcie_min_width must be null"),
        ({"power_cap_tolerance_pct": 80}, "from 0 to 50"),
    ],
)
def test_errors_say_what_is_wrong(value, message):
    with pytest.raises(policy.PolicyError) as err:
        policy.validate(value)
    assert message in str(err.value)


def test_policy_result_never_reboots_and_never_degrades():
    with pytest.raises(ValueError, match="policy result"):
        core.result("x", core.POLICY_STATUS, "s", action=core.REBOOT)
    res = core.result("x", core.POLICY_STATUS, "s")
    assert res["action"] == core.RECONFIGURE
    folded = core.verdict([res, core.result("y", core.PASS, "ok")])
    assert (folded["verdict"], folded["action"], folded["policy"]) == ("healthy", core.RECONFIGURE, ["x"])
    folded = core.verdict([res, core.result("z", core.WARN, "w")])
    assert (folded["verdict"], folded["action"]) == ("degraded", core.MONITOR)
