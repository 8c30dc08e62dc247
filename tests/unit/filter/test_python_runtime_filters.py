"""gpufleet.cluster python_runtime filters (plugins/filter/python_runtime.py): the checks on
python_runtime_envs, the directory rules (never take over or remove a directory the role did not
make) and the local fact."""

from types import SimpleNamespace

import pytest
from ansible_collections.gpufleet.cluster.plugins.filter import python_runtime

# Called through the registry, by the names the role uses.
flt = SimpleNamespace(**python_runtime.FilterModule().filters())
ROOT = "/opt/gpufleet/envs"


def plan(envs, root=ROOT):
    return flt.python_runtime_plan(envs, root)


def only_problem(envs, root=ROOT):
    result = plan(envs, root)
    assert len(result["problems"]) == 1, result["problems"]
    return result["problems"][0]


# --- python_runtime_plan: what is accepted --------------------------------------------------------


def test_defaults_fill_path_state_marker_and_requirements():
    result = plan([{"name": "torch", "packages": ["torch==2.10.0", " numpy==2.1.3 "]}])
    assert result == {
        "problems": [],
        "miniforge": None,
        "envs": [
            {
                "name": "torch",
                "path": "/opt/gpufleet/envs/torch",
                "state": "present",
                "kind": "venv",
                "packages": ["torch==2.10.0", "numpy==2.1.3"],
                "marker": "/opt/gpufleet/envs/torch/.gpufleet-python-runtime",
                "requirements": "/opt/gpufleet/envs/torch/gpufleet-requirements.txt",
                "steps": ["venv", "pip_install"],
            }
        ],
    }
    offline = flt.python_runtime_plan([{"name": "torch", "packages": ["torch==2.10.0"]}], ROOT, offline=True)
    assert offline["envs"][0]["steps"] == ["venv", "pin_wheels", "pip_install"]


def test_given_path_and_state_are_kept_and_normalized():
    result = plan(
        [
            {"name": "vllm.0-6_x", "packages": ["vllm==0.6.3"], "path": "/srv/py/vllm/", "state": "present"},
            {"name": "old", "state": "absent"},
        ],
        root="/data/envs/",
    )
    assert result["problems"] == []
    assert [(e["name"], e["path"], e["state"]) for e in result["envs"]] == [
        ("vllm.0-6_x", "/srv/py/vllm", "present"),
        ("old", "/data/envs/old", "absent"),
    ]
    assert result["envs"][1]["packages"] == []


def test_a_package_with_extras_is_accepted_as_pinned():
    # The lab's engine: llama-cpp-python's OpenAI server comes with its 'server' extra.
    result = plan([{"name": "serve", "packages": ["llama-cpp-python[server]==0.3.36"]}], ROOT)
    assert result["problems"] == []
    assert result["envs"][0]["packages"] == ["llama-cpp-python[server]==0.3.36"]
    problem = only_problem(
        [{"name": "t", "packages": ["llama_cpp_python[server]==0.3.36", "llama-cpp-python==0.3.36"]}]
    )
    assert "package llama-cpp-python is listed twice" in problem


def test_an_empty_list_plans_nothing():
    assert plan([]) == {"envs": [], "problems": [], "miniforge": None}
    assert plan(None) == {"envs": [], "problems": [], "miniforge": None}


# --- python_runtime_plan: what is refused, and the message ----------------------------------------


@pytest.mark.parametrize("name", ["", "-x", ".hidden", "a/b", "a b", "../x", 7, None])
def test_bad_names_are_refused_with_the_rule(name):
    problem = only_problem([{"name": name, "packages": ["six==1.17.0"]}])
    assert problem.startswith("python_runtime_envs[0]: name ")
    assert "start with a letter or digit" in problem and repr(name) in problem


def test_a_name_used_twice_names_both_entries():
    problem = only_problem(
        [{"name": "a", "packages": ["six==1.17.0"]}, {"name": "a", "packages": ["six==1.16.0"]}]
    )
    assert problem.startswith(
        "python_runtime_envs[1] (a): the name a is already used by python_runtime_envs[0]"
    )
    assert "its own name" in problem


@pytest.mark.parametrize(
    ("packages", "says"),
    [
        (None, "(it is missing)"),
        ([], "(not an empty list)"),
        ("torch==2.10.0", "(not the string 'torch==2.10.0')"),
        ({"torch": "2.10.0"}, "(not dict)"),
    ],
)
def test_packages_must_be_a_non_empty_list(packages, says):
    problem = only_problem([{"name": "t", "packages": packages}])
    assert problem.startswith(
        "python_runtime_envs[0] (t): packages must be a non-empty list of NAME==VERSION"
    )
    assert says in problem and "packages: ['torch==2.10.0']" in problem


@pytest.mark.parametrize(
    "spec", ["torch", "torch>=2", "torch==", "torch[]==2.1", "torch[cuda]", "torch==2.1 --pre", 5]
)
def test_every_package_needs_an_exact_version(spec):
    problem = only_problem([{"name": "t", "packages": ["six==1.17.0", spec]}])
    assert problem.startswith("python_runtime_envs[0] (t): package ")
    assert repr(spec) in problem and "==VERSION" in problem


def test_a_package_listed_twice_is_found_by_its_normalized_name():
    problem = only_problem([{"name": "t", "packages": ["Foo_Bar==1.0", "foo.bar==2.0"]}])
    assert "package foo-bar is listed twice ('Foo_Bar==1.0' and 'foo.bar==2.0')" in problem


@pytest.mark.parametrize("path", ["envs/t", "~/t", "/", "/opt/../t", 3])
def test_paths_must_be_absolute_directories(path):
    problem = only_problem([{"name": "t", "packages": ["six==1.17.0"], "path": path}])
    assert problem.startswith("python_runtime_envs[0] (t): path ") and repr(path) in problem


def test_a_relative_root_is_one_problem_and_entries_with_a_path_still_plan():
    result = plan(
        [
            {"name": "a", "packages": ["six==1.17.0"]},
            {"name": "b", "packages": ["six==1.17.0"], "path": "/b"},
        ],
        root="envs",
    )
    assert result["problems"] == [
        "python_runtime_root 'envs' is not an absolute directory below /; set e.g. python_runtime_root: "
        "/opt/gpufleet/envs"
    ]
    assert [e["name"] for e in result["envs"]] == ["b"]


def test_unknown_keys_and_states_are_refused():
    result = plan([{"name": "t", "package": ["six==1.17.0"], "state": "latest"}])
    assert result["envs"] == []
    assert result["problems"] == [
        "python_runtime_envs[0] (t): unknown key(s) package; the keys are name, kind, packages, pack, url, "
        "sha256, path, state",
        "python_runtime_envs[0] (t): state 'latest' is not one of present, absent",
        "python_runtime_envs[0] (t): packages must be a non-empty list of NAME==VERSION strings (it is "
        "missing); write e.g. packages: ['torch==2.10.0']",
    ]


@pytest.mark.parametrize("envs", ["torch", {"name": "t"}, 3])
def test_envs_must_be_a_list(envs):
    assert only_problem(envs).startswith("python_runtime_envs must be a list of environments")


def test_an_entry_that_is_not_a_mapping_is_refused_and_the_others_still_plan():
    result = plan(["torch==2.10.0", {"name": "b", "packages": ["six==1.17.0"]}])
    assert result["problems"] == [
        "python_runtime_envs[0] is str, not an environment; write e.g. "
        "{name: torch, packages: ['torch==2.10.0']}"
    ]
    assert [e["name"] for e in result["envs"]] == ["b"]


def test_two_environments_in_one_directory_or_one_inside_another_are_refused():
    same = plan(
        [
            {"name": "a", "packages": ["six==1.17.0"]},
            {"name": "b", "packages": ["six==1.17.0"], "path": f"{ROOT}/a"},
        ]
    )
    assert same["problems"] == [
        "python_runtime_envs (b): path /opt/gpufleet/envs/a is also the path of a; give each environment "
        "its own directory"
    ]
    nested = plan(
        [{"name": "a", "state": "absent"}, {"name": "b", "packages": ["six==1.17.0"], "path": f"{ROOT}/a/b"}]
    )
    assert len(nested["problems"]) == 1 and "one inside the other" in nested["problems"][0]
    sibling = plan([{"name": "a", "state": "absent"}, {"name": "ab", "packages": ["six==1.17.0"]}])
    assert sibling["problems"] == []


# --- python_runtime_dir_problems -------------------------------------------------------------------


def listing(env, exists=True, isdir=True, files=()):
    """One result of the role's find loop over its stat loop (the shapes Ansible registers)."""
    stat_result = {"item": env, "stat": {"exists": exists, "isdir": isdir} if exists else {"exists": False}}
    if not (exists and isdir):
        return {"item": stat_result, "skipped": True, "changed": False}
    return {"item": stat_result, "files": [{"path": f"{env['path']}/{name}"} for name in files]}


ENVS = plan(
    [{"name": "new", "packages": ["six==1.17.0"]}, {"name": "gone", "state": "absent"}],
)["envs"]
NEW, GONE = ENVS


def test_missing_empty_or_marked_directories_are_fine():
    assert (
        flt.python_runtime_dir_problems(ENVS, [listing(NEW, exists=False), listing(GONE, exists=False)]) == []
    )
    assert (
        flt.python_runtime_dir_problems(
            ENVS, [listing(NEW), listing(GONE, files=[".gpufleet-python-runtime"])]
        )
        == []
    )
    marked = [".gpufleet-python-runtime", "bin", "lib", "pyvenv.cfg"]
    assert (
        flt.python_runtime_dir_problems(ENVS, [listing(NEW, files=marked), listing(GONE, files=marked)]) == []
    )


def test_removing_a_directory_the_role_did_not_make_is_refused():
    (problem,) = flt.python_runtime_dir_problems(
        ENVS, [listing(NEW, exists=False), listing(GONE, files=["data.db"])]
    )
    assert problem.startswith(
        "python_runtime_envs (gone): state is absent but /opt/gpufleet/envs/gone was not made"
    )
    assert "nothing was removed; delete it yourself or drop the entry" in problem
    # Even an empty unmarked directory is not the role's to remove.
    assert len(flt.python_runtime_dir_problems(ENVS, [listing(GONE)])) == 1


def test_taking_over_a_directory_that_holds_something_is_refused():
    (problem,) = flt.python_runtime_dir_problems(ENVS, [listing(NEW, files=["bin", "pyvenv.cfg"])])
    assert "/opt/gpufleet/envs/new already exists and was not made by this role" in problem
    assert "set path to a new directory" in problem


def test_a_file_where_the_directory_should_be_is_refused_for_either_state():
    problems = flt.python_runtime_dir_problems(ENVS, [listing(NEW, isdir=False), listing(GONE, isdir=False)])
    assert [p.split(":")[0] for p in problems] == ["python_runtime_envs (new)", "python_runtime_envs (gone)"]
    assert all("exists and is not a directory" in p for p in problems)


# --- python_runtime_fact ---------------------------------------------------------------------------


def test_the_fact_names_each_present_environment():
    new = {"path": "/opt/gpufleet/envs/new", "kind": "venv", "packages": ["six==1.17.0"]}
    assert flt.python_runtime_fact(ENVS, ["3.11\n"]) == {"new": {**new, "python": "3.11"}}
    assert flt.python_runtime_fact(ENVS, []) == {"new": {**new, "python": ""}}
