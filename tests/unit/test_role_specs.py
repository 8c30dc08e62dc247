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


# roles/_common is internal (prometheus-community's pattern): no defaults, every entry point's
# parameters passed explicitly and declared in meta/argument_specs.yml, and main refuses to run.
COMMON = ROLES / "_common"


def common_specs():
    return load(COMMON / "meta" / "argument_specs.yml")["argument_specs"]


def test_common_has_no_defaults_and_main_takes_nothing():
    assert not (COMMON / "defaults" / "main.yml").exists()
    assert (common_specs()["main"].get("options") or {}) == {}
    main = (COMMON / "tasks" / "main.yml").read_text()
    assert "ansible.builtin.fail" in main


def test_common_entry_points_are_task_files_with_required_prefixed_parameters():
    specs = common_specs()
    tasks = {p.stem for p in (COMMON / "tasks").glob("*.yml")}
    assert set(specs) == tasks, "every task file is an entry point with a spec, and only those"
    problems = [
        f"{entry}: {name}"
        for entry, spec in specs.items()
        for name, opt in (spec.get("options") or {}).items()
        if not name.startswith("_common_") or not opt.get("required") or not opt.get("description")
    ]
    assert problems == []


def test_common_entry_points_declare_every_parameter_they_read():
    # An entry point may read its own parameters and those of the entry points it includes.
    specs = common_specs()
    undeclared = {}
    for entry in specs:
        text = (COMMON / "tasks" / f"{entry}.yml").read_text()
        included = re.findall(r"include_tasks:\s*(\w+)\.yml", text)
        declared = set(specs[entry].get("options") or {})
        for inc in included:
            declared |= set(specs[inc].get("options") or {})
            text += (COMMON / "tasks" / f"{inc}.yml").read_text()
        if entry.startswith("debian_nonfree"):
            text += (COMMON / "templates" / "debian-nonfree.sources.j2").read_text()
        used = set(re.findall(r"(?<![\w])_common_\w+", text))
        if used - declared:
            undeclared[entry] = sorted(used - declared)
    assert undeclared == {}


def test_roles_call_common_entry_points_with_their_required_parameters():
    specs = common_specs()
    calls = []
    for path in ROLES.glob("*/tasks/*.yml"):
        for task in load(path) or []:
            inc = task.get("ansible.builtin.include_role") or {}
            if inc.get("name") == "gpufleet.cluster._common":
                calls.append((path, inc["tasks_from"], set(task.get("vars") or {})))
    assert calls, "the roles call _common"
    wrong = [
        f"{path.relative_to(ROLES)}: {entry} missing {sorted(required - given)}"
        for path, entry, given in calls
        for required in [{n for n, o in (specs[entry].get("options") or {}).items() if o.get("required")}]
        if required - given
    ]
    assert wrong == []


# Documented entry points still called across roles, to move into _common next.
CROSS_ROLE_ENTRY_POINTS = {"bundle_server/tasks/install.yml -> gpufleet.cluster.offline_repo"}


def test_no_role_runs_a_task_file_of_another_role():
    # Shared work lives in _common; a role never includes another user-facing role's task files.
    foreign = []
    for path in ROLES.glob("*/tasks/*.yml"):
        for task in load(path) or []:
            inc = task.get("ansible.builtin.include_role") or task.get("ansible.builtin.import_role") or {}
            if inc and inc.get("name") != "gpufleet.cluster._common":
                foreign.append(f"{path.relative_to(ROLES)} -> {inc.get('name')}")
    assert set(foreign) - CROSS_ROLE_ENTRY_POINTS == set()


def test_cuda_toolkit_writes_the_nonfree_source_with_the_driver_roles_components():
    # One source file, two writers: cuda_toolkit's fallback must be nvidia_driver's default, or the
    # roles would rewrite each other's file on every run.
    text = (ROLES / "cuda_toolkit" / "vars" / "main.yml").read_text()
    fallback = re.search(r"nvidia_driver_debian_components \| default\((\[[^\]]*\])\)", text)
    assert fallback, "cuda_toolkit takes the components from nvidia_driver_debian_components"
    assert yaml.safe_load(fallback.group(1)) == defaults("nvidia_driver")["nvidia_driver_debian_components"]
