"""Every role's meta/argument_specs.yml is kept identical to its defaults/main.yml (keys and default
values), and its README.md documents every public variable - the prometheus-community/ansible check."""

import re

import pytest
import yaml
from conftest import REPO

ROLES = REPO / "roles"
ALL_ROLES = (
    sorted(p.name for p in ROLES.iterdir() if p.is_dir() and not p.name.startswith("."))
    if ROLES.is_dir()
    else []
)
SPEC_ROLES = [r for r in ALL_ROLES if (ROLES / r / "meta" / "argument_specs.yml").is_file()]

# argument_specs types -> the Python types a YAML default of that type loads as.
TYPES = {
    "str": str,
    "bool": bool,
    "int": int,
    "float": (int, float),
    "list": list,
    "dict": dict,
    "path": str,
}


def load(path):
    with open(path) as fh:
        return yaml.safe_load(fh)


def defaults(role):
    path = ROLES / role / "defaults" / "main.yml"
    return (load(path) or {}) if path.is_file() else {}


def options(role):
    spec = load(ROLES / role / "meta" / "argument_specs.yml")
    return spec["argument_specs"]["main"].get("options") or {}


def test_roles_found():
    assert "nvidia_driver" in ALL_ROLES
    assert "nvidia_driver" in SPEC_ROLES


@pytest.mark.parametrize("role", SPEC_ROLES)
def test_spec_options_equal_defaults_keys(role):
    spec_keys = set(options(role))
    default_keys = set(defaults(role))
    assert spec_keys - default_keys == set(), "in meta/argument_specs.yml but not in defaults/main.yml"
    assert default_keys - spec_keys == set(), "in defaults/main.yml but not in meta/argument_specs.yml"


@pytest.mark.parametrize("role", SPEC_ROLES)
def test_spec_defaults_equal_defaults_values(role):
    values = defaults(role)
    wrong = {
        name: (opt.get("default"), values[name])
        for name, opt in options(role).items()
        if name in values and opt.get("default") != values[name]
    }
    assert wrong == {}, "option: (argument_specs default, defaults/main.yml value)"


@pytest.mark.parametrize("role", SPEC_ROLES)
def test_defaults_have_the_declared_type_and_choice(role):
    values = defaults(role)
    problems = []
    for name, opt in options(role).items():
        if name not in values:
            continue
        value, kind = values[name], opt.get("type", "str")
        expected = TYPES.get(kind)
        # bool is an int subclass: an int option must not default to true/false.
        if expected and (
            not isinstance(value, expected) or (kind in ("int", "float") and isinstance(value, bool))
        ):
            problems.append(f"{name}: type {kind} but default {value!r}")
        if kind == "list" and "elements" in opt and isinstance(value, list):
            elem = TYPES.get(opt["elements"])
            problems += [
                f"{name}: element {v!r} is not {opt['elements']}"
                for v in value
                if elem and not isinstance(v, elem)
            ]
        if "choices" in opt and value not in opt["choices"]:
            problems.append(f"{name}: default {value!r} not in choices {opt['choices']}")
    assert problems == []


@pytest.mark.parametrize("role", SPEC_ROLES)
def test_every_option_is_described(role):
    assert [name for name, opt in options(role).items() if not opt.get("description")] == []


@pytest.mark.parametrize("role", ALL_ROLES)
def test_readme_mentions_every_public_variable(role):
    readme = ROLES / role / "README.md"
    assert readme.is_file(), f"roles/{role}/README.md is missing"
    text = readme.read_text()
    public = [name for name in defaults(role) if not name.startswith("_")]
    missing = [name for name in public if not re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", text)]
    assert missing == []


# Fleet-wide variables that more than one role reads (the offline bundle): the same name and the
# same default in each role that declares them.
SHARED = {"gpufleet_offline", "gpufleet_bundle_fingerprint", "gpufleet_bundle_name"}


@pytest.mark.parametrize("role", ALL_ROLES)
def test_public_variables_are_prefixed_with_the_role_name(role):
    # linux-system-roles style: public variables are '<role>_*', internal ones '__<role>_*'.
    assert [name for name in defaults(role) if not name.startswith(f"{role}_") and name not in SHARED] == []


def test_shared_variables_have_one_default_everywhere():
    seen: dict[str, dict] = {}
    for role in ALL_ROLES:
        for name, value in defaults(role).items():
            if name in SHARED:
                seen.setdefault(name, {})[role] = value
    differ = {name: by_role for name, by_role in seen.items() if len({repr(v) for v in by_role.values()}) > 1}
    assert differ == {}
