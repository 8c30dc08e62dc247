"""Bring the lab fleet up and down, report it, and write its Ansible inventory."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import yaml

from gpufleet._io import write_atomic
from gpufleet._progress import sayer
from gpufleet.errors import GpufleetError
from gpufleet.lab import docker as dk
from gpufleet.lab.image import IMAGE, ensure_image

LAB_LABEL = "io.gpufleet.lab"
ROLE_LABEL = "io.gpufleet.role"
DEFAULT_NAME = "lab"
DEFAULT_INVENTORY = Path("inventories/lab/hosts.yml")
DEFAULT_NODES = 2  # GPU-node stand-ins
INVENTORY_MARK = "# Written by 'gpufleet lab up'"
# --airgap: the lab network has no route out; the bastion carries the bundle as a read-only disk.
AIRGAP_LABEL = "io.gpufleet.airgap"
BUNDLE_LABEL = "io.gpufleet.bundle"
BUNDLE_NAME_LABEL = "io.gpufleet.bundle-name"
FINGERPRINT_LABEL = "io.gpufleet.fingerprint"
# --ssh: the inventory reaches the hosts over SSH as the operator (see gpufleet.lab.ssh).
SSH_LABEL = "io.gpufleet.ssh"
BUNDLE_MOUNT = "/media/gpufleet-bundle"
BASTION_ALIAS = "bastion"
# systemd in a container without --privileged (which fails here: CAP_SYS_RESOURCE is not in
# the bounding set). Containers still cannot load kernel modules: a property of the lab.
RUN_FLAGS = (
    "--cap-add",
    "SYS_ADMIN",
    "--cgroupns=host",
    "--volume",
    "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs",
    "/run",
    "--tmpfs",
    "/run/lock",
    "--security-opt",
    "seccomp=unconfined",
    "--stop-signal",
    "SIGRTMIN+3",
)

# A node from a committed layer image (--node-image) gets /var/lib/docker on a volume of its own,
# filled from the image when the container is made: dockerd renames directories there at start
# (runtimes -> runtimes-old), which overlayfs refuses for a directory of an image's lower layer
# ("invalid cross-device link"), so the node's docker would not start. Removed with the container
# (docker rm -v).
LAYER_NODE_FLAGS = ("--volume", "/var/lib/docker")


class LabError(GpufleetError):
    pass


_say = sayer("lab")


def validate_name(name: str) -> str:
    # ASCII only: str.isalnum() also accepts letters such as 'ä', which docker refuses in names.
    if not name or not all((c.isascii() and c.isalnum()) or c == "-" for c in name) or name.startswith("-"):
        raise LabError(f"invalid lab name {name!r}: use letters, digits and '-' (e.g. 'lab', 'ci-1')")
    return name


def container_name(lab: str, host: str) -> str:
    return f"gpufleet-{lab}-{host}"


def network_name(lab: str) -> str:
    return f"gpufleet-{lab}"


def wanted_hosts(nodes: int, bastion: bool) -> list[tuple[str, str]]:
    if nodes < 0 or nodes > 32:
        raise LabError(f"--nodes {nodes} is out of range: the lab runs 0 to 32 nodes")
    hosts = [(f"node{i}", "node") for i in range(1, nodes + 1)]
    if bastion:
        hosts.insert(0, ("bastion", "bastion"))
    return hosts


def airgap_settings(airgap: bool, bundle: str | Path | None, fingerprint: str | None) -> dict | None:
    """Check the --airgap arguments (before anything is created) and return what the lab needs:
    the bundle directory (absolute), its name (from its manifest.json) and the pinned fingerprint.
    None without --airgap."""
    if not airgap:
        extra = [flag for flag, value in (("--bundle", bundle), ("--fingerprint", fingerprint)) if value]
        if extra:
            raise LabError(
                f"{' and '.join(extra)} only go with --airgap "
                "(an air-gapped lab whose bastion serves a bundle)"
            )
        return None
    if not bundle:
        raise LabError(
            "--airgap needs --bundle DIR: the offline bundle directory (written by 'gpufleet bundle build') "
            "that the bastion is given as its carried disk"
        )
    if not fingerprint:
        raise LabError(
            "--airgap needs --fingerprint FPR: the bundle signing key's fingerprint, as printed by "
            "'gpufleet bundle key --fingerprint' on the build machine "
            "(the lab does not take it from the bundle)"
        )
    pin = "".join(fingerprint.split()).upper()
    if not re.fullmatch(r"[0-9A-F]{40}", pin):
        raise LabError(
            f"--fingerprint {fingerprint!r} is not a 40-hex-digit key fingerprint; "
            "use what 'gpufleet bundle key --fingerprint' prints"
        )
    path = Path(bundle).expanduser().resolve()
    manifest = path / "manifest.json"
    if not path.is_dir():
        raise LabError(f"--bundle {bundle}: no such directory")
    if not manifest.is_file():
        raise LabError(
            f"--bundle {bundle} has no manifest.json: give the directory 'gpufleet bundle build -o' wrote"
        )
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError) as exc:
        raise LabError(f"--bundle {bundle}: manifest.json cannot be read ({exc})") from None
    name = data.get("name") if isinstance(data, dict) else None
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise LabError(f"--bundle {bundle}: manifest.json has no usable 'name' (got {name!r})")
    if "," in str(path) or ":" in str(path):
        raise LabError(f"--bundle {path}: docker cannot mount a path with ',' or ':' in it; move the bundle")
    # The models the bundle carries are what the lab's nodes place in their model store (what to
    # fetch only: trust still comes from the pinned fingerprint, never from the bundle).
    # Of several versions of one model, the first listed becomes current (and is served); the others
    # are placed beside it, ready for a rollout.
    carried = ((data.get("profile") or {}).get("models") or []) if isinstance(data, dict) else []
    models, seen = [], set()
    for m in carried:
        if isinstance(m, dict) and "name" in m:
            entry = {"name": m["name"], "version": str(m["version"])}
            if m["name"] in seen:
                entry["activate"] = False
            seen.add(m["name"])
            models.append(entry)
    return {
        "bundle": str(path),
        "name": name,
        "fingerprint": pin,
        "models": models,
        "serve": lab_serving(data, models),
    }


def lab_serving(manifest: dict, models: list[dict]) -> dict | None:
    """What the air-gapped lab serves when its bundle carries the lab engine's wheel (gpufleet lab
    engine-wheel) and the lab's tiny model: the first version of the model, with llama.cpp's server
    from a 'serve' venv, behind the front (role llm_serve). None otherwise."""
    from gpufleet.lab import engine_wheel, tiny_model

    prefix = engine_wheel.PACKAGE.replace("-", "_") + "-" + engine_wheel.VERSION + "-"
    files = manifest.get("files") or []
    if not any(Path(str(f.get("path", ""))).name.startswith(prefix) for f in files if isinstance(f, dict)):
        return None
    tiny = next((m for m in models if m["name"] == tiny_model.NAME), None)
    if tiny is None:
        return None
    return {
        "python_runtime_envs": [
            {"name": "serve", "packages": [f"{engine_wheel.PACKAGE}[server]=={engine_wheel.VERSION}"]}
        ],
        "llm_serve_models": [
            {"name": tiny["name"], "version": tiny["version"], "engine": "llamacpp",
             "gguf": tiny_model.GGUF_FILE, "max_model_len": tiny_model.CONFIG["max_position_embeddings"],
             "threads": 1}
        ],
    }  # fmt: skip


def api_key(lab: str, create: bool = True) -> tuple[Path, str]:
    """The lab's API key for its serving front: (its file, made once, mode 0600; its sha256). Only the
    digest goes into the inventory; the file stays outside the repository, beside the lab's SSH key.
    ``create``: make the key when there is none (the lab's inventory is being written); False: a
    missing key is a LabError and nothing is written (a lab that was never brought up has none)."""
    import hashlib
    import secrets

    from gpufleet.lab import ssh as lab_ssh

    path = lab_ssh.default_dir(lab).parent / "api-key"
    if not path.is_file() and not create:
        raise LabError(
            f"lab {lab!r} has no API key ({path}): it is made when the lab comes up"
            f" (gpufleet lab up --name {lab}, or make demo)"
        )
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
    key = path.read_text().strip()
    return path, hashlib.sha256(key.encode()).hexdigest()


def _airgap_run_flags(airgap: dict) -> list[str]:
    """docker run flags of the bastion of an air-gapped lab: the bundle as a read-only carried disk,
    the name 'bastion' on the lab network, and labels that let 'lab inventory' rewrite the inventory."""
    return [
        "--volume",
        f"{airgap['bundle']}:{BUNDLE_MOUNT}:ro",
        "--network-alias",
        BASTION_ALIAS,
        "--label",
        f"{BUNDLE_LABEL}={airgap['bundle']}",
        "--label",
        f"{BUNDLE_NAME_LABEL}={airgap['name']}",
        "--label",
        f"{FINGERPRINT_LABEL}={airgap['fingerprint']}",
    ]


def _carries_bundle(info: dict, airgap: dict) -> bool:
    mounts = info.get("Mounts") or []
    return (
        any(m.get("Destination") == BUNDLE_MOUNT and m.get("Source") == airgap["bundle"] for m in mounts)
        and ((info.get("Config") or {}).get("Labels") or {}).get(FINGERPRINT_LABEL) == airgap["fingerprint"]
    )


def check_network(net: str, info: dict | None, airgap: bool) -> None:
    """Refuse to reuse a lab network whose 'internal' flag is not the one asked for."""
    if info is None:
        return
    internal = bool(info.get("Internal"))
    if internal != airgap:
        now = "internal (air-gapped)" if internal else "not internal (it has a route out)"
        asked = "an air-gapped lab (--airgap)" if airgap else "a lab with a route out (no --airgap)"
        lab = net.removeprefix("gpufleet-")
        raise LabError(
            f"the lab network {net} is {now}, but {asked} was asked for; "
            f"a network cannot be changed in place: run 'gpufleet lab down --name {lab}' first"
        )


def lab_containers(lab: str) -> list[dict]:
    return dk.containers(f"{LAB_LABEL}={lab}")


def _wait_for_systemd(name: str, timeout: float = 90.0) -> str:
    deadline = time.monotonic() + timeout
    state = "unknown"
    while time.monotonic() < deadline:
        proc = subprocess.run(
            ["docker", "exec", name, "systemctl", "is-system-running"],
            capture_output=True,
            text=True,
            check=False,
        )
        state = proc.stdout.strip() or "unknown"
        if state in ("running", "degraded"):
            return state
        time.sleep(1)
    raise LabError(
        f"{name}: systemd did not finish booting within {timeout:.0f} s (state '{state}'); "
        f"look with 'docker logs {name}' and 'docker exec {name} systemctl --failed'"
    )


def up(
    nodes: int = DEFAULT_NODES,
    bastion: bool = False,
    name: str = DEFAULT_NAME,
    inventory: Path | None = DEFAULT_INVENTORY,
    airgap: bool = False,
    bundle: str | Path | None = None,
    fingerprint: str | None = None,
    ssh: bool = False,
    node_image: str | None = None,
) -> dict:
    """Create or start the lab; with ``ssh`` the inventory reaches the hosts over SSH as the
    operator, with their host keys pinned (gpufleet.lab.ssh), instead of through docker.

    ``node_image``: create the GPU-node stand-ins from this image (a converged node that
    ``gpufleet lab layer commit`` made, e.g. ``gpufleet-lab-node:current``) instead of the bare lab
    image; the bastion always starts from the lab image. Containers that exist already are kept."""
    validate_name(name)
    offline = airgap_settings(airgap, bundle, fingerprint)
    hosts = wanted_hosts(nodes, bastion or offline is not None)
    if inventory is not None:
        check_inventory_writable(Path(inventory))
    dk.require_daemon()
    net = network_name(name)
    check_network(net, dk.inspect("network", net), offline is not None)
    image = ensure_image()
    if node_image is not None and dk.inspect("image", node_image) is None:
        raise LabError(
            f"no image {node_image!r} here: 'make test' commits the converged airgap node as "
            "gpufleet-lab-node:current, or name an image 'docker images' lists"
        )
    if dk.inspect("network", net) is None:
        if offline is None:
            dk.docker("network", "create", "--label", f"{LAB_LABEL}={name}", net)
        else:
            # --internal: no route out of the lab; the nodes' only reachable peer is the bastion.
            dk.docker(
                "network", "create", "--internal",
                "--label", f"{LAB_LABEL}={name}", "--label", f"{AIRGAP_LABEL}=true",
                net,
            )  # fmt: skip
    existing = {c["Name"].lstrip("/"): c for c in lab_containers(name)}
    wanted = {container_name(name, h): (h, role) for h, role in hosts}
    for cname in sorted(set(existing) - set(wanted)):
        _say(f"removing {cname} (not part of a {nodes}-node lab)")
        dk.docker("rm", "-f", "-v", cname)
    for cname, (host, role) in wanted.items():
        info = existing.get(cname)
        if info and offline is not None and role == "bastion" and not _carries_bundle(info, offline):
            _say(f"recreating {cname}: it does not carry bundle {offline['bundle']} with that fingerprint")
            dk.docker("rm", "-f", "-v", cname)
            info = None
        if info and info["State"]["Running"]:
            _say(f"{cname} already running")
            continue
        if info:
            _say(f"starting {cname}")
            dk.docker("start", cname)
            continue
        _say(f"creating {cname}")
        dk.docker(
            "run",
            "--detach",
            "--name",
            cname,
            "--hostname",
            host,
            "--network",
            net,
            "--label",
            f"{LAB_LABEL}={name}",
            "--label",
            f"{ROLE_LABEL}={role}",
            *(_airgap_run_flags(offline) if offline is not None and role == "bastion" else []),
            *(["--label", f"{SSH_LABEL}=1"] if ssh else []),
            *RUN_FLAGS,
            *(LAYER_NODE_FLAGS if node_image is not None and role != "bastion" else ()),
            node_image if node_image is not None and role != "bastion" else image,
        )
    for cname in wanted:
        state = _wait_for_systemd(cname)
        _say(f"{cname}: systemd {state}")
    result = {
        "name": name,
        "hosts": [{"host": h, "role": r, "container": container_name(name, h)} for h, r in hosts],
    }
    if offline is not None:
        result["airgap"] = offline
    access = None
    if ssh:
        from gpufleet.lab import ssh as lab_ssh

        directory = lab_ssh.default_dir(name)
        addresses = lab_ssh.grant(list(wanted), directory)
        access = {"dir": directory, "addresses": {wanted[c][0]: a[0] for c, a in addresses.items() if a}}
        _say(f"SSH as '{lab_ssh.USER}' with sudo; host keys pinned in {directory / lab_ssh.KNOWN_HOSTS}")
        result["ssh"] = {"dir": str(directory), "user": lab_ssh.USER}
    if inventory is not None:
        write_inventory(name, hosts, Path(inventory), offline, access)
        _say(f"inventory written to {inventory}")
        result["inventory"] = str(inventory)
    return result


def inventory_data(
    lab: str, hosts: list[tuple[str, str]], airgap: dict | None = None, ssh: dict | None = None
) -> dict:
    """The lab's inventory; ``ssh`` ({"dir": ..., "addresses": {host: ip}}) switches it from the
    docker connection to SSH as the operator."""
    groups: dict[str, dict] = {"gpu_nodes": {"hosts": {}}, "bastion": {"hosts": {}}}
    for host, role in hosts:
        group = "bastion" if role == "bastion" else "gpu_nodes"
        address = (ssh or {}).get("addresses", {}).get(host)
        groups[group]["hosts"][host] = {"ansible_host": address or container_name(lab, host)}
    lab_vars = {
        "ansible_connection": "community.docker.docker",
        "ansible_python_interpreter": "/usr/bin/python3",
        "gpufleet_lab": lab,
        # Lab containers have no GPU: gpufleet verify expects none, so its GPU checks
        # report "no GPU present" as skips instead of failing the count.
        "gpufleet_expected_gpus": 0,
        # dockerd inside a lab container: no NET_ADMIN (no iptables, no bridge), overlayfs below (vfs).
        "container_runtime_daemon_json": {
            "iptables": False,
            "ip6tables": False,
            "bridge": "none",
            "storage-driver": "vfs",
        },
    }
    if airgap is not None:
        # The nodes reach the bastion by its inventory name, 'bastion' (a network alias), the
        # offline_repo role's default. The fingerprint is the one given to 'lab up' (from the build
        # machine), never read from the bundle it is meant to check.
        lab_vars.update(
            {
                "gpufleet_offline": True,
                "gpufleet_bundle_fingerprint": airgap["fingerprint"],
                "gpufleet_bundle_name": airgap["name"],
                "bundle_server_src": BUNDLE_MOUNT,
            }
        )
        if airgap.get("models"):
            lab_vars["model_store_models"] = airgap["models"]
        if airgap.get("serve"):
            _path, digest = api_key(lab)
            lab_vars.update(airgap["serve"])
            lab_vars["llm_serve_keys"] = [
                {"name": "lab", "sha256": digest, "models": ["*"], "scopes": ["inference", "metrics"]}
            ]
    if ssh is not None:
        from gpufleet.lab import ssh as lab_ssh

        lab_vars.update(lab_ssh.inventory_vars(Path(ssh["dir"])))
    return {"all": {"vars": lab_vars, "children": {k: v for k, v in groups.items() if v["hosts"]}}}


def render_inventory(
    lab: str, hosts: list[tuple[str, str]], airgap: dict | None = None, ssh: dict | None = None
) -> str:
    how = "over SSH as the operator (host keys pinned)" if ssh is not None else "with community.docker.docker"
    header = (
        f"{INVENTORY_MARK} (lab '{lab}'); rewritten on every 'lab up'.\n"
        f"# Hosts are docker containers reached {how}; group_vars/ beside\n"
        "# this file holds the lab's settings.\n"
    )
    if airgap is not None:
        header += (
            f"# Air-gapped: the lab network has no route out; the bastion carries bundle {airgap['bundle']}\n"
            f"# at {BUNDLE_MOUNT} (read-only) and serves it to the nodes.\n"
        )
    return header + yaml.safe_dump(inventory_data(lab, hosts, airgap, ssh), sort_keys=False)


def check_inventory_writable(path: Path) -> None:
    """Refuse, before anything is created, to overwrite an inventory gpufleet did not write."""
    if path.exists() and INVENTORY_MARK not in path.read_text(errors="replace").split("\n", 1)[0]:
        raise LabError(
            f"{path} exists and was not written by gpufleet; it is left untouched. "
            "Pass --inventory PATH to write the lab inventory elsewhere."
        )


def write_inventory(
    lab: str, hosts: list[tuple[str, str]], path: Path, airgap: dict | None = None, ssh: dict | None = None
) -> None:
    check_inventory_writable(path)
    write_atomic(path, render_inventory(lab, hosts, airgap, ssh))


def current_hosts(lab: str) -> list[tuple[str, str]]:
    hosts = []
    for c in lab_containers(lab):
        labels = c["Config"].get("Labels") or {}
        cname = c["Name"].lstrip("/")
        host = cname.removeprefix(f"gpufleet-{lab}-")
        hosts.append((host, labels.get(ROLE_LABEL, "node")))
    return sorted(hosts, key=lambda hr: (hr[1] != "bastion", len(hr[0]), hr[0]))


def current_airgap(lab: str) -> dict | None:
    """The air-gap settings of a running lab, from its bastion's labels (None when not air-gapped)."""
    for c in lab_containers(lab):
        labels = c["Config"].get("Labels") or {}
        if labels.get(ROLE_LABEL) == "bastion" and labels.get(FINGERPRINT_LABEL):
            return {
                "bundle": labels.get(BUNDLE_LABEL, ""),
                "name": labels.get(BUNDLE_NAME_LABEL, ""),
                "fingerprint": labels[FINGERPRINT_LABEL],
            }
    return None


def current_ssh(lab: str) -> dict | None:
    """The SSH access of a lab started with --ssh (its containers' addresses and the lab's key
    directory), or None for a lab reached through docker."""
    containers = lab_containers(lab)
    if not any(((c["Config"].get("Labels") or {}).get(SSH_LABEL)) for c in containers):
        return None
    from gpufleet.lab import ssh as lab_ssh

    addresses = {}
    for c in containers:
        nets = (c.get("NetworkSettings") or {}).get("Networks") or {}
        ip = next((n.get("IPAddress") for n in nets.values() if n.get("IPAddress")), None)
        if ip:
            addresses[c["Name"].lstrip("/").removeprefix(f"gpufleet-{lab}-")] = ip
    return {"dir": lab_ssh.default_dir(lab), "addresses": addresses}


def down(name: str = DEFAULT_NAME, inventory: Path | None = DEFAULT_INVENTORY) -> list[str]:
    validate_name(name)
    dk.require_daemon()
    removed = []
    for c in lab_containers(name):
        cname = c["Name"].lstrip("/")
        dk.docker("rm", "-f", "-v", cname)
        removed.append(cname)
        _say(f"removed {cname}")
    net = network_name(name)
    info = dk.inspect("network", net)
    if info and (info.get("Labels") or {}).get(LAB_LABEL) == name:
        dk.docker("network", "rm", net)
    if inventory is not None:
        path = Path(inventory)
        if path.exists():
            first = path.read_text(errors="replace").split("\n", 1)[0]
            if INVENTORY_MARK in first and f"(lab '{name}')" in first:
                path.unlink()
                _say(f"removed {path}")
    if not removed:
        _say(f"no containers of lab '{name}' were running")
    return removed


def status(name: str = DEFAULT_NAME) -> list[dict]:
    validate_name(name)
    dk.require_daemon()
    rows = []
    for host, role in current_hosts(name):
        cname = container_name(name, host)
        info = dk.inspect("container", cname) or {}
        running = (info.get("State") or {}).get("Running", False)
        systemd = "-"
        if running:
            proc = subprocess.run(
                ["docker", "exec", cname, "systemctl", "is-system-running"],
                capture_output=True,
                text=True,
                check=False,
            )
            systemd = proc.stdout.strip() or "unknown"
        nets = (info.get("NetworkSettings") or {}).get("Networks") or {}
        ip = next((n.get("IPAddress") for n in nets.values() if n.get("IPAddress")), "-")
        rows.append(
            {
                "host": host,
                "role": role,
                "container": cname,
                "state": (info.get("State") or {}).get("Status", "missing"),
                "systemd": systemd,
                "ip": ip,
                "image": IMAGE,
            }
        )
    return rows
