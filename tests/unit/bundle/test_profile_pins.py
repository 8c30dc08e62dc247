"""apt.pins in a bundle profile: validated with clear errors, rendered as the APT preferences the
build container resolves with (so the bundle carries the pinned versions, not the newest)."""

from pathlib import Path

import pytest

from gpufleet.bundle import BundleBuildError, aptrepo, profile

BASE = {
    "schema": 1,
    "name": "t",
    "target": {"os": "debian-12", "arch": "amd64"},
    "apt": {"packages": ["nginx"]},
}


def _with_pins(pins):
    data = {**BASE, "apt": {**BASE["apt"], "pins": pins}}
    return profile.validate(data, "t.yml")


def test_pins_are_kept_and_default_to_none():
    assert profile.validate(BASE, "t.yml")["apt"]["pins"] == []
    prof = _with_pins([{"packages": ["nvidia-*", "libcuda1"], "version": "535.261.03-1"}])
    assert prof["apt"]["pins"] == [{"packages": ["nvidia-*", "libcuda1"], "version": "535.261.03-1"}]


@pytest.mark.parametrize(
    ("pins", "message"),
    [
        ("nvidia-*", "apt.pins: must be a list"),
        ([["nvidia-*"]], "apt.pins[0]: must be a mapping with packages and version"),
        ([{"packages": ["nvidia-*"]}], "apt.pins[0].version: None is not an APT version"),
        ([{"packages": ["nvidia-*"], "version": "535 261"}], "apt.pins[0].version: '535 261'"),
        ([{"packages": [], "version": "1"}], "apt.pins[0].packages: name at least one package"),
        ([{"packages": ["Bad Name"], "version": "1"}], "apt.pins[0].packages[0]: 'Bad Name' is not a valid"),
        ([{"packages": ["a"], "version": "1", "priority": 5}], "apt.pins[0]: unknown key 'priority'"),
    ],
)
def test_bad_pins_say_what_is_wrong(pins, message):
    with pytest.raises(BundleBuildError) as err:
        _with_pins(pins)
    assert message in str(err.value)
    assert "t.yml is not a valid bundle profile" in str(err.value)


def test_pins_render_as_apt_preferences_at_priority_1001():
    text = aptrepo.pin_preferences(
        [
            {"packages": ["nvidia-*", "libcuda1"], "version": "535.261.03-1"},
            {"packages": ["cuda-*"], "version": "12.4*"},
        ]
    )
    stanzas = text.strip().split("\n\n")
    assert stanzas == [
        "Package: nvidia-* libcuda1\nPin: version 535.261.03-1\nPin-Priority: 1001",
        "Package: cuda-*\nPin: version 12.4*\nPin-Priority: 1001",
    ]


def test_no_pins_write_nothing_in_the_build_container():
    class Recorder:
        def __init__(self):
            self.scripts = []

        def sh(self, script, check=True):
            self.scripts.append(script)

    rec = Recorder()
    aptrepo.apply_pins(rec, [])
    assert rec.scripts == []
    aptrepo.apply_pins(rec, [{"packages": ["nvidia-*"], "version": "535.261.03-1"}])
    assert (
        rec.scripts and aptrepo.PIN_FILE in rec.scripts[0] and "Pin: version 535.261.03-1" in rec.scripts[0]
    )


def test_the_lab_bundle_pins_the_lab_driver_version():
    """The lab inventory pins the driver and the lab bundle must carry exactly that version."""
    from pathlib import Path

    import yaml

    repo = Path(__file__).resolve().parents[3]
    prof = profile.load(repo / "bundles" / "lab.yml")
    lab = yaml.safe_load((repo / "inventories" / "lab" / "group_vars" / "all.yml").read_text())
    (pin,) = [p for p in prof["apt"]["pins"] if "nvidia-*" in p["packages"]]
    assert pin["version"].startswith(lab["nvidia_driver_version"] + "-")


def test_a_profile_may_name_every_role_the_collection_has():
    """KNOWN_ROLES is the collection's roles, less the internal _common: a new role can be carried."""
    roles = {p.name for p in (Path(__file__).resolve().parents[3] / "roles").iterdir() if p.is_dir()}
    assert set(profile.KNOWN_ROLES) == roles - {"_common"}
