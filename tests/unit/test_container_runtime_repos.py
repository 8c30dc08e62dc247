"""container_runtime's package sources: Docker's and NVIDIA's APT repositories (online only), their keys
pinned by fingerprint, and the refusal to swap docker.io/containerd for docker-ce/containerd.io (or back).
The role's own expressions (defaults, vars, the preflight checks, the source template) are evaluated
here by Ansible's templating engine with the collection's real filters. Those are handed to each Templar's
Jinja environment by their gpufleet.cluster names, not looked up through Ansible's collection finder and
plugin loader: that state is per process and another test in the same xdist worker may have set it up
differently ("No filter named gpufleet.cluster.pgp_fingerprint")."""

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template
from conftest import REPO, collection_filters

ROLE = REPO / "roles" / "container_runtime"
FILTERS = {f"gpufleet.cluster.{name}": func for name, (_stem, func) in collection_filters().items()}

DOCKER_FPR = "9DC858229FC7DD38854AE2D88D81803C0EBFCD88"  # docs.docker.com, "Install Docker Engine on Debian"
NVIDIA_FPR = "C95B321B61E88C1809C4F759DDCAE044F796ECB0"  # nvidia.github.io/libnvidia-container/gpgkey

# A real ed25519 key made by gpg (the one tests/unit/filter/test_bundle_filters.py documents).
TEST_KEY_FPR = "2F173C5CB4120B0D1C028E34128F7BAC8776D15E"
TEST_KEY_ASC = """-----BEGIN PGP PUBLIC KEY BLOCK-----

mDMEawF9DBYJKwYBBAHaRw8BAQdAsLq6TCecQpb2Xf/9NvEk0RtqLG5Jt475fO1s
GAZMEH60GHRlc3QgPHRAZXhhbXBsZS5pbnZhbGlkPoiPBBMWCAA4FiEELxc8XLQS
Cw0cAo40Eo97rId20V4FAmsBfQwCGwMFCwkIBwIGFQoJCAsCBBYCAwECHgECF4AA
CgkQEo97rId20V7j3QD2IJkl7VE4NUuJLI0E7JEih+Jx1cQwL+fVprLmBMRAKQD8
CI+V6RqEa2WKhkqluc/XZe4niO0tgroPFgWJ7YNdfAU=
=j97Q
-----END PGP PUBLIC KEY BLOCK-----
"""

FACTS = {
    "debian": {"distribution": "Debian", "distribution_release": "bookworm", "os_family": "Debian"},
    "ubuntu": {"distribution": "Ubuntu", "distribution_release": "noble", "os_family": "Debian"},
    "rocky": {"distribution": "Rocky", "distribution_release": "Blue Onyx", "os_family": "RedHat"},
}


PACKAGES = "__container_runtime_packages[container_runtime_docker_source][container_runtime_engine]"


def load(path):
    with open(path) as fh:
        return yaml.safe_load(fh)


def trusted(value):
    """Role files are trusted templates, as Ansible treats the files it loads."""
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return {k: trusted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [trusted(v) for v in value]
    return value


def new_templar(variables):
    """A Templar whose environment has the collection's filters under their gpufleet.cluster names (set
    through Ansible's own hook, which wraps them as the plugin loader wraps a loaded filter). The
    environment is the templar's own; the public `environment` attribute is deprecated in ansible-core
    2.19, hence `_engine`."""
    t = Templar(loader=DataLoader(), variables=variables)
    filters = t._engine.environment.filters
    for name, func in FILTERS.items():
        filters[name] = func
    return t


def templar(facts="debian", **overrides):
    variables = {**load(ROLE / "defaults" / "main.yml"), **load(ROLE / "vars" / "main.yml")}
    variables = trusted(variables)
    variables.update(
        inventory_hostname="gpu01", ansible_facts=FACTS[facts], ansible_managed="Ansible managed", **overrides
    )
    return new_templar(variables)


def ev(t, expr, **local):
    """Evaluate an expression (a task's `that` or a templated value) as Ansible would."""
    if local:
        t = new_templar({**t.available_variables, **local})
    text = expr if "{{" in expr else "{{ " + expr + " }}"
    return t.template(trust_as_template(text))


def task(file, name_start):
    return next(t for t in load(ROLE / "tasks" / file) if t["name"].startswith(name_start))


def that(t, file, name_start, **local):
    conditions = task(file, name_start)["ansible.builtin.assert"]["that"]
    conditions = [conditions] if isinstance(conditions, str) else conditions
    return [bool(ev(t, c, **local)) for c in conditions]


def repo_line(t, name):
    repo = ev(t, f"__container_runtime_repos['{name}']")
    text = ev(t, (ROLE / "templates" / "apt-repo.list.j2").read_text(), __container_runtime_repo=repo)
    return [line for line in text.splitlines() if not line.startswith("#")], repo


# --- which repositories, which lines --------------------------------------------------------------


def test_by_default_no_repository_is_added_and_the_distribution_packages_install():
    t = templar()
    assert ev(t, "__container_runtime_repos_wanted") == []
    assert ev(t, PACKAGES) == ["docker.io"]
    # Files of a repository an earlier run added are removed again.
    assert sorted(ev(t, "__container_runtime_repos_unwanted_files")) == [
        "/etc/apt/keyrings/gpufleet-docker.asc",
        "/etc/apt/keyrings/gpufleet-nvidia-container-toolkit.asc",
        "/etc/apt/sources.list.d/gpufleet-docker.list",
        "/etc/apt/sources.list.d/gpufleet-nvidia-container-toolkit.list",
    ]


@pytest.mark.parametrize(
    ("facts", "line"),
    [
        ("debian", "https://download.docker.com/linux/debian bookworm stable"),
        ("ubuntu", "https://download.docker.com/linux/ubuntu noble stable"),
    ],
)
def test_dockers_repository_for_the_hosts_distribution_signed_by_its_own_keyring(facts, line):
    t = templar(facts, container_runtime_docker_source="docker")
    assert ev(t, "__container_runtime_repos_wanted") == ["docker"]
    lines, repo = repo_line(t, "docker")
    assert lines == [f"deb [signed-by=/etc/apt/keyrings/gpufleet-docker.asc] {line}"]
    assert repo["key_url"] == line.split()[0] + "/gpg"
    assert repo["keyring"].startswith("/etc/apt/keyrings/")
    assert ev(t, "__container_runtime_repos_unwanted_files") == [
        "/etc/apt/sources.list.d/gpufleet-nvidia-container-toolkit.list",
        "/etc/apt/keyrings/gpufleet-nvidia-container-toolkit.asc",
    ]


def test_a_docker_mirror_is_used_for_the_list_and_the_key():
    t = templar(
        container_runtime_docker_source="docker", container_runtime_docker_repo_url="https://m.example/d/"
    )
    lines, repo = repo_line(t, "docker")
    assert lines == ["deb [signed-by=" + repo["keyring"] + "] https://m.example/d bookworm stable"]
    assert repo["key_url"] == "https://m.example/d/gpg"


def test_docker_source_installs_docker_ce_or_containerd_io():
    t = templar(container_runtime_docker_source="docker")
    expr = PACKAGES
    assert ev(t, expr) == ["docker-ce", "docker-ce-cli", "containerd.io"]
    t = templar(container_runtime_docker_source="docker", container_runtime_engine="containerd")
    assert ev(t, expr) == ["containerd.io"]
    # The install task uses exactly that expression.
    install = task("install.yml", "Install the container engine")["ansible.builtin.apt"]
    assert install["name"] == "{{ " + expr + " }}"


def test_nvidias_flat_repository_per_architecture():
    t = templar(container_runtime_nvidia_toolkit_repo=True)
    assert ev(t, "__container_runtime_repos_wanted") == ["nvidia_toolkit"]
    lines, repo = repo_line(t, "nvidia_toolkit")
    assert lines == [
        "deb [signed-by=/etc/apt/keyrings/gpufleet-nvidia-container-toolkit.asc] "
        "https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH) /"
    ]
    assert repo["key_url"] == "https://nvidia.github.io/libnvidia-container/gpgkey"


# --- the key pins ------------------------------------------------------------------------------------


def test_the_pins_are_the_vendors_release_keys():
    t = templar()
    assert ev(t, "__container_runtime_repos['docker']['fingerprint']") == DOCKER_FPR
    assert ev(t, "__container_runtime_repos['nvidia_toolkit']['fingerprint']") == NVIDIA_FPR


def fetched(name, content):
    """One result of the preflight key fetch (uri, looped with loop_var __container_runtime_repo_name)."""
    return {"__container_runtime_repo_name": name, "content": content, "status": 200}


@pytest.mark.parametrize("name", ["docker", "nvidia_toolkit"])
def test_a_key_with_another_fingerprint_is_refused_naming_both(name):
    t = templar(container_runtime_docker_source="docker", container_runtime_nvidia_toolkit_repo=True)
    spec = task("preflight.yml", "Trust each key only when its fingerprint is the pinned one")
    local = {k: trusted(v) for k, v in spec["vars"].items()}
    local["__container_runtime_key"] = fetched(name, TEST_KEY_ASC)
    assert ev(t, spec["ansible.builtin.assert"]["that"], **local) is False
    message = ev(t, spec["ansible.builtin.assert"]["fail_msg"], **local)
    assert TEST_KEY_FPR in message
    assert (DOCKER_FPR if name == "docker" else NVIDIA_FPR) in message
    # The loop covers every fetched key.
    assert spec["loop"] == "{{ __container_runtime_repo_keys['results'] | default([]) }}"


def test_a_key_with_the_pinned_fingerprint_is_trusted():
    t = templar(container_runtime_docker_source="docker")
    repos = ev(t, "__container_runtime_repos")
    repos["docker"]["fingerprint"] = TEST_KEY_FPR
    t = templar(container_runtime_docker_source="docker", __container_runtime_repos=repos)
    spec = task("preflight.yml", "Trust each key only when its fingerprint is the pinned one")
    local = {k: trusted(v) for k, v in spec["vars"].items()}
    local["__container_runtime_key"] = fetched("docker", TEST_KEY_ASC)
    assert ev(t, spec["ansible.builtin.assert"]["that"], **local) is True


def test_the_key_written_is_the_text_that_was_checked():
    spec = task("install.yml", "Install the repository keys")
    assert spec["loop"] == "{{ __container_runtime_repo_keys['results'] | default([]) }}"
    assert spec["ansible.builtin.copy"]["content"] == "{{ __container_runtime_key['content'] }}"
    fetch = task("preflight.yml", "Fetch the signing keys")
    assert fetch["register"] == "__container_runtime_repo_keys"
    assert fetch["loop"] == "{{ __container_runtime_repos_wanted }}"


# --- conflicts and bad combinations --------------------------------------------------------------


def dpkg(*lines):
    return {"rc": 1, "stdout_lines": list(lines)}


@pytest.mark.parametrize(
    ("source", "lines", "conflicting"),
    [
        ("docker", ["installed docker.io", "installed containerd", "installed runc"],
         ["containerd", "docker.io", "runc"]),
        ("docker", ["config-files docker.io", "not-installed containerd"], []),
        ("docker", ["installed docker-ce", "installed containerd.io"], []),
        ("distribution", ["installed docker-ce", "installed docker-ce-cli", "installed containerd.io"],
         ["containerd.io", "docker-ce", "docker-ce-cli"]),
        ("distribution", ["installed docker.io", "half-configured containerd"], []),
        ("distribution", ["half-configured containerd.io"], ["containerd.io"]),
    ],
)  # fmt: skip
def test_the_other_sources_installed_packages_are_refused(source, lines, conflicting):
    t = templar(container_runtime_docker_source=source, __container_runtime_dpkg=dpkg(*lines))
    assert ev(t, "__container_runtime_conflicting") == conflicting
    refused = that(t, "preflight.yml", "Refuse to replace the installed engine")
    assert refused == [not conflicting]
    if conflicting:
        msg = ev(t, task("preflight.yml", "Refuse to replace")["ansible.builtin.assert"]["fail_msg"])
        assert "apt-get remove " + " ".join(conflicting) in msg
        assert f"container_runtime_docker_source: {'distribution' if source == 'docker' else 'docker'}" in msg


def test_dpkg_query_asks_for_every_package_of_both_sources():
    spec = task("preflight.yml", "Read which Docker and containerd packages")
    argv = ev(templar(), spec["ansible.builtin.command"]["argv"])
    assert argv[:3] == ["dpkg-query", "--show", "--showformat=${db:Status-Status} ${Package}\\n"]
    assert set(argv[3:]) == {
        "docker.io", "containerd", "runc", "podman-docker", "docker-ce", "docker-ce-cli", "containerd.io",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("facts", "overrides", "ok"),
    [
        ("debian", {}, True),
        ("debian", {"gpufleet_offline": True}, True),
        ("debian", {"container_runtime_docker_source": "docker"}, True),
        ("ubuntu", {"container_runtime_nvidia_toolkit_repo": True}, True),
        ("debian", {"container_runtime_docker_source": "docker", "gpufleet_offline": True}, False),
        ("debian", {"container_runtime_nvidia_toolkit_repo": True, "gpufleet_offline": True}, False),
        ("rocky", {"container_runtime_docker_source": "docker"}, False),
        ("rocky", {"container_runtime_nvidia_toolkit_repo": True}, False),
        ("debian", {"container_runtime_docker_source": "snap"}, False),
        ("debian", {"container_runtime_docker_source": "docker",
                    "container_runtime_docker_repo_url": "file:///srv/docker"}, False),
    ],
)  # fmt: skip
def test_bad_combinations_are_refused_in_preflight(facts, overrides, ok):
    t = templar(facts, **overrides)
    if overrides.get("container_runtime_docker_source") == "snap":
        # Not a source: nothing else can be worked out, the first condition fails.
        first = task("preflight.yml", "Check the package source options")["ansible.builtin.assert"]["that"][0]
        assert ev(t, first) is False
        return
    assert all(that(t, "preflight.yml", "Check the package source options")) is ok
