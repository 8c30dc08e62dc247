"""The lab's pure parts: names, host lists, the inventory it writes, the image recipe and mirror,
and the messages when docker is missing or its daemon is down. Nothing here starts a container."""

import hashlib
import json
import stat

import pytest
import yaml

from gpufleet.errors import GpufleetError
from gpufleet.lab import docker as dk
from gpufleet.lab import fleet, image

# --- names and hosts ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["lab", "ci-1", "Lab2", "a"])
def test_valid_names(name):
    assert fleet.validate_name(name) == name


@pytest.mark.parametrize("name", ["", "-lab", "lab_1", "lab.1", "lab 1", "lab/1", "läb", "lab;rm"])
def test_invalid_names(name):
    with pytest.raises(fleet.LabError, match="invalid lab name") as exc:
        fleet.validate_name(name)
    assert "'lab'" in str(exc.value)
    assert isinstance(exc.value, GpufleetError)


def test_container_and_network_names():
    assert fleet.container_name("ci-1", "node3") == "gpufleet-ci-1-node3"
    assert fleet.network_name("ci-1") == "gpufleet-ci-1"


def test_wanted_hosts_nodes_only():
    assert fleet.wanted_hosts(2, False) == [("node1", "node"), ("node2", "node")]


def test_wanted_hosts_bastion_first():
    assert fleet.wanted_hosts(3, True) == [
        ("bastion", "bastion"),
        ("node1", "node"),
        ("node2", "node"),
        ("node3", "node"),
    ]


def test_wanted_hosts_limits():
    assert fleet.wanted_hosts(0, True) == [("bastion", "bastion")]
    assert fleet.wanted_hosts(0, False) == []
    assert len(fleet.wanted_hosts(32, False)) == 32


@pytest.mark.parametrize("nodes", [-1, 33, 100])
def test_wanted_hosts_out_of_range(nodes):
    with pytest.raises(fleet.LabError, match=f"--nodes {nodes} is out of range: the lab runs 0 to 32 nodes"):
        fleet.wanted_hosts(nodes, False)


# --- inventory ----------------------------------------------------------------------------------


def test_render_inventory_parses_to_groups():
    text = fleet.render_inventory("ci-1", fleet.wanted_hosts(2, True))
    assert text.splitlines()[0].startswith(fleet.INVENTORY_MARK)
    assert "(lab 'ci-1')" in text.splitlines()[0]
    data = yaml.safe_load(text)
    top = data["all"]
    assert top["vars"]["ansible_connection"] == "community.docker.docker"
    assert top["vars"]["ansible_python_interpreter"] == "/usr/bin/python3"
    assert top["vars"]["gpufleet_lab"] == "ci-1"
    assert set(top["children"]) == {"gpu_nodes", "bastion"}
    assert top["children"]["gpu_nodes"]["hosts"] == {
        "node1": {"ansible_host": "gpufleet-ci-1-node1"},
        "node2": {"ansible_host": "gpufleet-ci-1-node2"},
    }
    assert top["children"]["bastion"]["hosts"] == {"bastion": {"ansible_host": "gpufleet-ci-1-bastion"}}


def test_render_inventory_without_bastion_has_no_empty_group():
    data = yaml.safe_load(fleet.render_inventory("lab", fleet.wanted_hosts(1, False)))
    assert set(data["all"]["children"]) == {"gpu_nodes"}


def test_write_inventory_creates_parent_and_file(tmp_path):
    path = tmp_path / "inventories" / "lab" / "hosts.yml"
    fleet.write_inventory("lab", fleet.wanted_hosts(2, False), path)
    assert path.read_text() == fleet.render_inventory("lab", fleet.wanted_hosts(2, False))
    assert not path.with_suffix(".yml.tmp").exists()


def test_write_inventory_refuses_a_foreign_file_and_leaves_it_byte_identical(tmp_path):
    path = tmp_path / "hosts.yml"
    original = b"# my production inventory\r\nall:\n  hosts:\n    gpu01: {}\n\xff\n"
    path.write_bytes(original)
    with pytest.raises(fleet.LabError) as exc:
        fleet.write_inventory("lab", fleet.wanted_hosts(2, False), path)
    assert "was not written by gpufleet" in str(exc.value)
    assert "--inventory" in str(exc.value)
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hosts.yml"]


def test_write_inventory_refuses_when_the_mark_is_not_on_the_first_line(tmp_path):
    path = tmp_path / "hosts.yml"
    original = f"all: {{}}\n{fleet.INVENTORY_MARK} (lab 'lab')\n"
    path.write_text(original)
    with pytest.raises(fleet.LabError):
        fleet.write_inventory("lab", fleet.wanted_hosts(1, False), path)
    assert path.read_text() == original


def test_write_inventory_overwrites_its_own(tmp_path):
    path = tmp_path / "hosts.yml"
    fleet.write_inventory("lab", fleet.wanted_hosts(2, False), path)
    fleet.write_inventory("lab", fleet.wanted_hosts(3, True), path)
    data = yaml.safe_load(path.read_text())
    assert set(data["all"]["children"]["gpu_nodes"]["hosts"]) == {"node1", "node2", "node3"}
    assert set(data["all"]["children"]["bastion"]["hosts"]) == {"bastion"}


# --- image recipe -------------------------------------------------------------------------------

MIRRORS = {"main": "http://deb.debian.org/debian", "security": "http://deb.debian.org/debian-security"}


def test_recipe_hash_is_stable():
    first = image.recipe_hash(image.recipe(dict(MIRRORS)))
    assert first == image.recipe_hash(image.recipe(dict(MIRRORS)))
    assert len(first) == 16
    int(first, 16)


def test_recipe_hash_changes_with_packages(monkeypatch):
    before = image.recipe_hash(image.recipe(MIRRORS))
    monkeypatch.setattr(image, "PACKAGES", (*image.PACKAGES, "strace"))
    assert image.recipe_hash(image.recipe(MIRRORS)) != before


def test_recipe_hash_changes_with_setup(monkeypatch):
    before = image.recipe_hash(image.recipe(MIRRORS))
    monkeypatch.setattr(image, "SETUP_SCRIPT", image.SETUP_SCRIPT + "true\n")
    assert image.recipe_hash(image.recipe(MIRRORS)) != before


def test_recipe_hash_changes_with_mirrors():
    before = image.recipe_hash(image.recipe(MIRRORS))
    assert image.recipe_hash(image.recipe({**MIRRORS, "main": "http://ftp.de.debian.org/debian"})) != before
    assert image.recipe_hash(image.recipe({**MIRRORS, "security": None})) != before


def test_sources_file_carries_both_mirrors_and_the_keyring():
    text = image.sources_file(MIRRORS)
    assert "URIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\n" in text
    assert "URIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n" in text
    assert text.count("Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg") == 2
    assert "trusted" not in text
    assert "debian-security" not in image.sources_file({"main": MIRRORS["main"], "security": None})


# --- host_mirror --------------------------------------------------------------------------------


@pytest.fixture
def apt_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("GPUFLEET_LAB_MIRROR", raising=False)
    monkeypatch.delenv("GPUFLEET_LAB_SECURITY_MIRROR", raising=False)
    root = tmp_path / "etc" / "apt"
    (root / "sources.list.d").mkdir(parents=True)
    return root


def test_host_mirror_reads_deb822(apt_dir):
    (apt_dir / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://deb.debian.org/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://deb.debian.org/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n"
    )
    assert image.host_mirror(str(apt_dir)) == MIRRORS


def test_host_mirror_reads_one_line_and_ignores_other_extensions(apt_dir):
    (apt_dir / "sources.list").write_text("deb http://ftp.de.debian.org/debian/ bookworm main\n")
    # Files apt itself ignores (e.g. renamed away) must not be read.
    (apt_dir / "sources.list.d" / "old.list.disabled").write_text(
        "deb http://security.debian.org/debian-security bookworm-security main\n"
    )
    assert image.host_mirror(str(apt_dir)) == {"main": "http://ftp.de.debian.org/debian", "security": None}


def test_host_mirror_env_overrides(apt_dir, monkeypatch):
    (apt_dir / "sources.list").write_text("deb http://ftp.de.debian.org/debian bookworm main\n")
    monkeypatch.setenv("GPUFLEET_LAB_MIRROR", "http://mirror.lab.example/debian")
    monkeypatch.setenv("GPUFLEET_LAB_SECURITY_MIRROR", "http://mirror.lab.example/debian-security")
    assert image.host_mirror(str(apt_dir)) == {
        "main": "http://mirror.lab.example/debian",
        "security": "http://mirror.lab.example/debian-security",
    }


def test_host_mirror_env_needs_no_apt_sources(apt_dir, monkeypatch):
    monkeypatch.setenv("GPUFLEET_LAB_MIRROR", "http://mirror.lab.example/debian")
    assert image.host_mirror(str(apt_dir))["main"] == "http://mirror.lab.example/debian"


def test_host_mirror_none_found(apt_dir):
    (apt_dir / "sources.list").write_text("# nothing here\n")
    (apt_dir / "sources.list.d" / "nodesource.sources").write_text(
        "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\nComponents: main\n"
    )
    with pytest.raises(image.ImageError) as exc:
        image.host_mirror(str(apt_dir))
    assert "no Debian 'bookworm' mirror found" in str(exc.value)
    assert "GPUFLEET_LAB_MIRROR" in str(exc.value)


# --- docker -------------------------------------------------------------------------------------


def fake_docker(bin_dir, body):
    exe = bin_dir / "docker"
    exe.write_text("#!/bin/sh\n" + body)
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return exe


def test_require_daemon_without_docker(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(dk.DockerError) as exc:
        dk.require_daemon()
    assert "docker is not installed" in str(exc.value)
    assert "apt-get install docker.io" in str(exc.value)


def test_docker_command_without_docker(monkeypatch):
    monkeypatch.setattr(dk.shutil, "which", lambda name: None)
    with pytest.raises(dk.DockerError, match=r"apt-get install docker\.io"):
        dk.docker("ps")


def test_require_daemon_daemon_down(tmp_path, monkeypatch):
    fake_docker(
        tmp_path,
        "echo 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
        "Is the docker daemon running?' >&2\nexit 1\n",
    )
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(dk.DockerError) as exc:
        dk.require_daemon()
    msg = str(exc.value)
    assert "the docker daemon is not reachable" in msg
    assert "Cannot connect to the Docker daemon" in msg
    assert "systemctl start docker" in msg


def test_require_daemon_returns_server_version(tmp_path, monkeypatch):
    fake_docker(tmp_path, 'test "$1" = version || exit 2\necho 20.10.24+dfsg1\n')
    monkeypatch.setenv("PATH", str(tmp_path))
    assert dk.require_daemon() == "20.10.24+dfsg1"


def test_docker_failure_carries_stderr(tmp_path, monkeypatch):
    fake_docker(tmp_path, "echo 'Error: No such container: gpufleet-lab-node9' >&2\nexit 1\n")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(dk.DockerError, match="No such container: gpufleet-lab-node9"):
        dk.docker("rm", "-f", "gpufleet-lab-node9")
    assert dk.docker("rm", "-f", "gpufleet-lab-node9", check=False) == ""


# --- air-gapped lab (--airgap --bundle DIR --fingerprint FPR) ----------------------------------

FPR = "0123456789ABCDEF0123456789ABCDEF01234567"
OTHER_FPR = "FEDCBA9876543210FEDCBA9876543210FEDCBA98"


@pytest.fixture
def bundle_dir(tmp_path):
    path = tmp_path / "bundle-2025.06"
    path.mkdir()
    # signing_key is what the bundle says about itself: the lab must not take the pin from it.
    (path / "manifest.json").write_text(
        '{"name": "gpufleet-2025.06-bookworm", "signing_key": "' + OTHER_FPR + '", "files": []}'
    )
    return path


@pytest.fixture
def no_docker(monkeypatch):
    """Any docker call fails the test: argument errors must come before anything is created."""

    def forbidden(*args, **kwargs):
        raise AssertionError(f"docker was called: {args}")

    monkeypatch.setattr(dk, "require_daemon", forbidden)
    monkeypatch.setattr(dk, "docker", forbidden)
    monkeypatch.setattr(dk, "inspect", forbidden)
    monkeypatch.setattr(fleet, "ensure_image", forbidden)


def test_airgap_settings_reads_the_name_and_takes_the_pin_from_the_argument(bundle_dir):
    got = fleet.airgap_settings(True, str(bundle_dir), FPR.lower()[:20] + " " + FPR.lower()[20:])
    assert got == {
        "bundle": str(bundle_dir.resolve()),
        "name": "gpufleet-2025.06-bookworm",
        "fingerprint": FPR,
        "models": [],
        "serve": None,
    }


def test_an_airgapped_lab_serves_the_tiny_model_when_its_bundle_carries_the_engine(
    bundle_dir, tmp_path, monkeypatch
):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    manifest = {
        "name": "lab",
        "files": [{"path": "wheels/llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl"}],
        "profile": {
            "models": [{"name": "tiny-llama", "version": "1"}, {"name": "tiny-llama", "version": "2"}]
        },
    }
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest))
    got = fleet.airgap_settings(True, str(bundle_dir), FPR)
    assert got["models"] == [
        {"name": "tiny-llama", "version": "1"},
        {"name": "tiny-llama", "version": "2", "activate": False},
    ], "the first version is current; the second is placed beside it"
    lab_vars = fleet.inventory_data("demo", [("node1", "node")], got)["all"]["vars"]
    assert lab_vars["python_runtime_envs"] == [
        {"name": "serve", "packages": ["llama-cpp-python[server]==0.3.36"]}
    ]
    (model,) = lab_vars["llm_serve_models"]
    assert (model["name"], model["version"], model["engine"], model["gguf"]) == (
        "tiny-llama", "1", "llamacpp", "tiny-llama-f16.gguf"
    )  # fmt: skip
    key_file = tmp_path / "data" / "gpufleet" / "lab" / "demo" / "api-key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    key = key_file.read_text().strip()
    (entry,) = lab_vars["llm_serve_keys"]
    assert entry["sha256"] == hashlib.sha256(key.encode()).hexdigest() and key not in json.dumps(lab_vars)
    again = fleet.inventory_data("demo", [("node1", "node")], got)["all"]["vars"]["llm_serve_keys"]
    assert again == lab_vars["llm_serve_keys"], "the key is made once"
    # a bundle without the engine's wheel: nothing is served
    manifest["files"] = []
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest))
    assert fleet.airgap_settings(True, str(bundle_dir), FPR)["serve"] is None


def test_airgap_settings_makes_a_relative_bundle_path_absolute(bundle_dir, monkeypatch):
    monkeypatch.chdir(bundle_dir.parent)
    assert fleet.airgap_settings(True, bundle_dir.name, FPR)["bundle"] == str(bundle_dir.resolve())


def test_airgap_settings_without_airgap():
    assert fleet.airgap_settings(False, None, None) is None


@pytest.mark.parametrize(
    ("bundle", "fingerprint", "message"),
    [
        (None, FPR, "--airgap needs --bundle DIR"),
        ("BUNDLE", None, "--airgap needs --fingerprint FPR"),
        ("BUNDLE", "", "gpufleet bundle key --fingerprint"),
        ("BUNDLE", FPR[:39], "is not a 40-hex-digit key fingerprint"),
        ("BUNDLE", FPR[:39] + "G", "is not a 40-hex-digit key fingerprint"),
        ("MISSING", FPR, "no such directory"),
        ("EMPTY", FPR, "has no manifest.json"),
    ],
)
def test_airgap_argument_errors(bundle_dir, tmp_path, bundle, fingerprint, message):
    (tmp_path / "empty").mkdir()
    paths = {"BUNDLE": str(bundle_dir), "MISSING": str(tmp_path / "nope"), "EMPTY": str(tmp_path / "empty")}
    with pytest.raises(fleet.LabError, match=message) as exc:
        fleet.airgap_settings(True, paths.get(bundle, bundle), fingerprint)
    assert isinstance(exc.value, GpufleetError)


@pytest.mark.parametrize("manifest", ['{"files": []}', '{"name": "../x"}', '{"name": 3}', "[]", "not json"])
def test_airgap_refuses_a_manifest_without_a_usable_name(bundle_dir, manifest):
    (bundle_dir / "manifest.json").write_text(manifest)
    with pytest.raises(fleet.LabError, match=r"manifest\.json"):
        fleet.airgap_settings(True, str(bundle_dir), FPR)


@pytest.mark.parametrize(
    ("bundle", "fingerprint", "flags"),
    [
        (True, None, "--bundle only"),
        (None, FPR, "--fingerprint only"),
        (True, FPR, "--bundle and --fingerprint only"),
    ],
)
def test_bundle_and_fingerprint_need_airgap(bundle_dir, bundle, fingerprint, flags):
    with pytest.raises(fleet.LabError, match=f"{flags} go with --airgap"):
        fleet.airgap_settings(False, str(bundle_dir) if bundle else None, fingerprint)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"airgap": True, "fingerprint": FPR},
        {"airgap": True, "bundle": "BUNDLE"},
        {"airgap": True, "bundle": "BUNDLE", "fingerprint": "abc"},
        {"bundle": "BUNDLE", "fingerprint": FPR},
    ],
)
def test_up_refuses_bad_airgap_arguments_before_touching_docker(no_docker, bundle_dir, tmp_path, kwargs):
    kwargs = {k: (str(bundle_dir) if v == "BUNDLE" else v) for k, v in kwargs.items()}
    inventory = tmp_path / "hosts.yml"
    with pytest.raises(fleet.LabError):
        fleet.up(nodes=1, inventory=inventory, **kwargs)
    assert not inventory.exists()


def test_cli_airgap_without_bundle_is_an_error(no_docker, tmp_path, capsys):
    from gpufleet import cli

    inventory = tmp_path / "hosts.yml"
    rc = cli.main(["lab", "up", "--airgap", "--fingerprint", FPR, "--inventory", str(inventory)])
    assert rc == 2
    assert "--airgap needs --bundle DIR" in capsys.readouterr().err
    assert not inventory.exists()


def test_cli_bundle_without_airgap_is_an_error(no_docker, bundle_dir, capsys):
    from gpufleet import cli

    assert cli.main(["lab", "up", "--bundle", str(bundle_dir), "--no-inventory"]) == 2
    assert "go with --airgap" in capsys.readouterr().err


def test_airgap_inventory_sets_the_offline_variables(bundle_dir):
    airgap = fleet.airgap_settings(True, str(bundle_dir), FPR)
    text = fleet.render_inventory("ci-1", fleet.wanted_hosts(2, True), airgap)
    assert text.splitlines()[0].startswith(fleet.INVENTORY_MARK)
    assert "Air-gapped" in text
    top = yaml.safe_load(text)["all"]
    assert top["vars"]["gpufleet_offline"] is True
    assert top["vars"]["bundle_server_src"] == "/media/gpufleet-bundle"
    assert top["vars"]["gpufleet_bundle_name"] == "gpufleet-2025.06-bookworm"
    # The pin given on the command line, not the manifest's own signing_key.
    assert top["vars"]["gpufleet_bundle_fingerprint"] == FPR
    assert OTHER_FPR not in text
    # The nodes reach the bastion by its inventory name (offline_repo_url's default): 'bastion'.
    assert list(top["children"]["bastion"]["hosts"]) == ["bastion"]
    assert top["vars"]["ansible_connection"] == "community.docker.docker"
    assert top["vars"]["gpufleet_lab"] == "ci-1"
    assert "model_store_models" not in top["vars"], "this bundle carries no model"


def test_airgap_inventory_places_the_models_the_bundle_carries(bundle_dir):
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    model = {"name": "tiny-llama", "version": "1", "path": "/x", "chunk_size": 1024}
    manifest["profile"] = {"models": [model]}
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest))
    airgap = fleet.airgap_settings(True, str(bundle_dir), FPR)
    top = yaml.safe_load(fleet.render_inventory("ci-1", fleet.wanted_hosts(1, True), airgap))["all"]
    assert top["vars"]["model_store_models"] == [{"name": "tiny-llama", "version": "1"}]


def test_inventory_without_airgap_is_unchanged():
    data = yaml.safe_load(fleet.render_inventory("lab", fleet.wanted_hosts(2, True)))
    assert set(data["all"]["vars"]) == {
        "ansible_connection",
        "ansible_python_interpreter",
        "gpufleet_lab",
        "gpufleet_expected_gpus",
        "container_runtime_daemon_json",
    }
    assert "Air-gapped" not in fleet.render_inventory("lab", fleet.wanted_hosts(2, True))


def test_write_inventory_with_airgap(bundle_dir, tmp_path):
    airgap = fleet.airgap_settings(True, str(bundle_dir), FPR)
    path = tmp_path / "hosts.yml"
    fleet.write_inventory("lab", fleet.wanted_hosts(1, True), path, airgap)
    assert yaml.safe_load(path.read_text())["all"]["vars"]["gpufleet_offline"] is True


def test_bastion_run_flags_carry_the_bundle_read_only(bundle_dir):
    airgap = fleet.airgap_settings(True, str(bundle_dir), FPR)
    flags = fleet._airgap_run_flags(airgap)
    assert flags[flags.index("--volume") + 1] == f"{bundle_dir.resolve()}:/media/gpufleet-bundle:ro"
    assert flags[flags.index("--network-alias") + 1] == "bastion"
    assert f"{fleet.FINGERPRINT_LABEL}={FPR}" in flags


def test_carries_bundle(bundle_dir):
    airgap = fleet.airgap_settings(True, str(bundle_dir), FPR)
    info = {
        "Mounts": [{"Source": airgap["bundle"], "Destination": "/media/gpufleet-bundle"}],
        "Config": {"Labels": {fleet.FINGERPRINT_LABEL: FPR}},
    }
    assert fleet._carries_bundle(info, airgap)
    assert not fleet._carries_bundle({**info, "Mounts": []}, airgap)
    assert not fleet._carries_bundle(
        {**info, "Config": {"Labels": {fleet.FINGERPRINT_LABEL: OTHER_FPR}}}, airgap
    )


def test_check_network_accepts_a_matching_or_missing_network():
    fleet.check_network("gpufleet-lab", None, True)
    fleet.check_network("gpufleet-lab", {"Internal": True}, True)
    fleet.check_network("gpufleet-lab", {"Internal": False}, False)


@pytest.mark.parametrize(
    ("internal", "airgap", "now"),
    [(False, True, "is not internal"), (True, False, "is internal (air-gapped)")],
)
def test_check_network_refuses_a_network_of_the_other_kind(internal, airgap, now):
    with pytest.raises(fleet.LabError) as exc:
        fleet.check_network("gpufleet-ci-1", {"Internal": internal}, airgap)
    assert now in str(exc.value)
    assert "gpufleet lab down --name ci-1" in str(exc.value)


def test_ssh_inventory_reaches_hosts_by_address_as_the_operator(tmp_path):
    hosts = fleet.wanted_hosts(2, bastion=True)
    access = {"dir": tmp_path, "addresses": {"bastion": "10.1.0.2", "node1": "10.1.0.3", "node2": "10.1.0.4"}}
    text = fleet.render_inventory("lab", hosts, ssh=access)
    assert "reached over SSH as the operator" in text.splitlines()[1]
    data = yaml.safe_load(text)["all"]
    assert data["children"]["gpu_nodes"]["hosts"]["node2"] == {"ansible_host": "10.1.0.4"}
    assert data["children"]["bastion"]["hosts"]["bastion"] == {"ansible_host": "10.1.0.2"}
    v = data["vars"]
    assert v["ansible_connection"] == "ansible.builtin.ssh"
    assert v["ansible_user"] == "ops" and v["ansible_become"] is True
    assert f"UserKnownHostsFile={tmp_path}/known_hosts" in v["ansible_ssh_common_args"]
    assert "StrictHostKeyChecking=yes" in v["ansible_ssh_common_args"]


def test_ssh_inventory_keeps_the_container_name_when_a_host_has_no_address(tmp_path):
    text = fleet.render_inventory("lab", fleet.wanted_hosts(1, False), ssh={"dir": tmp_path, "addresses": {}})
    assert yaml.safe_load(text)["all"]["children"]["gpu_nodes"]["hosts"]["node1"] == {
        "ansible_host": "gpufleet-lab-node1"
    }


def test_docker_inventory_is_unchanged_without_ssh():
    v = yaml.safe_load(fleet.render_inventory("lab", fleet.wanted_hosts(1, False)))["all"]["vars"]
    assert v["ansible_connection"] == "community.docker.docker"
    assert "ansible_user" not in v


# --- nodes from a layer image (--node-image; benchmarks/controller.py) ---------------------------


@pytest.fixture
def recorded_docker(monkeypatch):
    """A docker stand-in that knows one image and records every command; systemd is 'running'."""
    calls = []

    def inspect(kind, name):
        calls.append(("inspect", kind, name))
        return {"Id": "sha256:1"} if (kind, name) == ("image", "gpufleet-lab-node:current") else None

    def docker(*args, check=True):
        calls.append(args)
        return ""

    monkeypatch.setattr(dk, "require_daemon", lambda: "20.10")
    monkeypatch.setattr(dk, "inspect", inspect)
    monkeypatch.setattr(dk, "docker", docker)
    monkeypatch.setattr(fleet, "ensure_image", lambda: fleet.IMAGE)
    monkeypatch.setattr(fleet, "lab_containers", lambda lab: [])
    monkeypatch.setattr(fleet, "_wait_for_systemd", lambda name, timeout=90.0: "running")
    return calls


def test_up_creates_nodes_from_the_node_image_and_the_bastion_from_the_lab_image(recorded_docker):
    fleet.up(nodes=2, bastion=True, name="bench", inventory=None, node_image="gpufleet-lab-node:current")
    runs = {c[c.index("--name") + 1]: c[-1] for c in recorded_docker if c and c[0] == "run"}
    assert runs == {
        "gpufleet-bench-bastion": fleet.IMAGE,
        "gpufleet-bench-node1": "gpufleet-lab-node:current",
        "gpufleet-bench-node2": "gpufleet-lab-node:current",
    }
    # docker on a node from a layer image needs /var/lib/docker off the image's overlay (fleet.py)
    volumes = {
        c[c.index("--name") + 1]: [c[i + 1] for i, a in enumerate(c) if a == "--volume"]
        for c in recorded_docker
        if c and c[0] == "run"
    }
    assert "/var/lib/docker" in volumes["gpufleet-bench-node1"]
    assert "/var/lib/docker" not in volumes["gpufleet-bench-bastion"]


def test_up_refuses_a_missing_node_image_before_creating_anything(recorded_docker, tmp_path):
    inventory = tmp_path / "hosts.yml"
    with pytest.raises(fleet.LabError, match=r"no image 'gpufleet-lab-node:nope'.*make test"):
        fleet.up(nodes=1, inventory=inventory, node_image="gpufleet-lab-node:nope")
    assert not [c for c in recorded_docker if c and c[0] in ("run", "network")]
    assert not inventory.exists()
