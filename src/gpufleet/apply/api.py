"""``gpufleet.apply.run``: a playbook on a fleet through ansible-runner, watched live, kept per run.

    from gpufleet import apply

    result = apply.run("gpufleet.cluster.site", "inventories/site", limit="gpu_nodes")
    for host in result.state.failures():
        print(host.host, host.state, host.failure.where, host.failure.message)
    raise SystemExit(result.exit_code)

The playbook runs through ``ansible_runner.run`` (its Python API and event stream — what AWX builds on),
never a shell-out of our own. Each run gets a directory ``runs/<id>/``: ansible-runner's private data
directory (its ``artifacts/<id>/`` — stdout, job_events, rc, status, command — stays there), plus
``events.jsonl`` (every event, one JSON object a line, written as it arrives) and ``summary.json``.
``gpufleet apply`` (``gpufleet.apply.cli``) only maps its options onto :func:`run`.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gpufleet._io import write_atomic
from gpufleet.apply.state import FAILED, UNREACHABLE, FleetState
from gpufleet.errors import GpufleetError

DEFAULT_RUNS_DIR = "runs"
# Exit codes of ``gpufleet apply`` (and ApplyResult.exit_code).
EXIT_OK = 0  # every host ran the playbook without a failure
EXIT_USAGE = 1  # bad input (missing playbook or inventory...): nothing was run
EXIT_FAILED = 2  # one or more hosts failed a task
EXIT_RUNNER = 3  # the runner itself failed, timed out or was cancelled; or Ansible stopped on an error
EXIT_UNREACHABLE = 4  # one or more hosts were unreachable (whether or not others failed)
EXIT_CODES = {
    EXIT_OK: "every host ran the playbook without a failure",
    EXIT_USAGE: "bad input (playbook or inventory missing, bad option): nothing was run",
    EXIT_FAILED: "one or more hosts failed a task",
    EXIT_RUNNER: "ansible-runner or Ansible itself failed (syntax error, timeout, cancelled): see runs/<id>/",
    EXIT_UNREACHABLE: "one or more hosts were unreachable (takes precedence over 2)",
}
_FQCN = re.compile(r"^([a-z_][a-z0-9_]*)\.([a-z_][a-z0-9_]*)\.([A-Za-z0-9_][A-Za-z0-9_.-]*)$")
# ansible-core's default COLLECTIONS_PATHS, kept behind the checkout's own when gpufleet sets the path
ANSIBLE_DEFAULT_COLLECTIONS_PATH = "~/.ansible/collections:/usr/share/ansible/collections"
_REPO = Path(__file__).resolve().parents[3]  # the checkout, when running from source

__all__ = [
    "DEFAULT_RUNS_DIR",
    "EXIT_CODES",
    "ApplyInputError",
    "ApplyResult",
    "ApplyRunnerError",
    "resolve_inventory",
    "resolve_playbook",
    "run",
]


class ApplyInputError(GpufleetError):
    """Bad input to :func:`run`: nothing was run."""

    exit_code = EXIT_USAGE


class ApplyRunnerError(GpufleetError):
    """ansible-runner cannot run the playbook at all (no ansible-playbook here)."""

    exit_code = EXIT_RUNNER


@dataclass
class ApplyResult:
    """What :func:`run` returns.

    ``id``: the run's id; ``run_dir``: ``runs/<id>/``; ``status``: ansible-runner's (``successful``,
    ``failed``, ``timeout``, ``canceled``...); ``rc``: ansible-playbook's exit status; ``exit_code``:
    gpufleet's (``EXIT_CODES``); ``state``: every host's state and counts; ``summary``: what
    ``summary.json`` holds.
    """

    id: str
    run_dir: Path
    status: str
    rc: int | None
    exit_code: int
    state: FleetState
    summary: dict
    seconds: float

    @property
    def ok(self) -> bool:
        return self.exit_code == EXIT_OK

    @property
    def events_file(self) -> Path:
        return self.run_dir / "events.jsonl"

    @property
    def summary_file(self) -> Path:
        return self.run_dir / "summary.json"


def _collection_root(namespace: str, name: str) -> Path | None:
    """Where collection ``namespace.name`` lives: this checkout for gpufleet.cluster, else an
    ``ansible_collections`` package on sys.path (a wheel, ``ansible-galaxy collection install``)."""
    if (namespace, name) == ("gpufleet", "cluster") and (_REPO / "galaxy.yml").is_file():
        return _REPO
    import importlib.util

    from gpufleet._collection import ensure_importable

    ensure_importable()
    try:
        spec = importlib.util.find_spec(f"ansible_collections.{namespace}.{name}")
    except ModuleNotFoundError:
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def resolve_playbook(playbook: str) -> Path:
    """The playbook file: a path, or a collection playbook name (``gpufleet.cluster.site`` ->
    ``playbooks/site.yml`` in the collection). Raises :class:`ApplyInputError` when there is none."""
    path = Path(playbook).expanduser()
    if path.is_file():
        return path.resolve()
    match = _FQCN.match(playbook) if "/" not in playbook else None
    if match and path.suffix not in (".yml", ".yaml"):
        namespace, name, book = match.groups()
        root = _collection_root(namespace, name)
        if root is None:
            raise ApplyInputError(
                f"playbook {playbook!r}: collection {namespace}.{name} is not installed "
                "(ansible-galaxy collection install, or pip install gpufleet for gpufleet.cluster)"
            )
        for suffix in (".yml", ".yaml"):
            candidate = root / "playbooks" / (book.replace(".", "/") + suffix)
            if candidate.is_file():
                return candidate.resolve()
        shipped = sorted(p.stem for p in (root / "playbooks").glob("*.y*ml"))
        raise ApplyInputError(
            f"playbook {playbook!r}: {namespace}.{name} has no playbooks/{book}.yml "
            f"(it has: {', '.join(shipped) or 'none'})"
        )
    raise ApplyInputError(
        f"playbook {playbook!r} not found: give a playbook file or a collection playbook such as "
        "gpufleet.cluster.site"
    )


def resolve_inventory(inventory: str) -> str:
    """The inventory as ansible-runner will get it: an absolute path (a file or a directory), or a
    comma-separated host list as Ansible takes it (``node1,node2,``)."""
    path = Path(inventory).expanduser()
    if path.exists():
        return str(path.resolve())
    if "," in inventory:
        return inventory
    raise ApplyInputError(f"inventory {inventory!r} not found (an inventory file or directory)")


def _new_id() -> str:
    """UTC time and a short random suffix: sorts by start, never collides between two runs at once."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def _ansible_playbook_dir() -> str:
    """The directory of the ``ansible-playbook`` next to this Python (a venv), else the one on PATH."""
    here = Path(sys.executable).parent
    if (here / "ansible-playbook").is_file():
        return str(here)
    found = shutil.which("ansible-playbook")
    if found:
        return str(Path(found).parent)
    raise ApplyRunnerError("ansible-playbook not found: install ansible-core in this environment")


def runner_env() -> dict[str, str]:
    """Environment for the playbook run.

    ansible-runner starts ansible-playbook in the run directory, so the ``ansible.cfg`` Ansible
    would find in the current directory is named explicitly: ``$ANSIBLE_CONFIG`` if set, else
    ``./ansible.cfg``, else (a source checkout) the repository's. The checkout's collection link
    goes first on the collections path. Host keys stay checked: ansible-runner turns checking off
    unless told otherwise, and gpufleet never does.
    """
    env = {
        "PATH": os.pathsep.join([_ansible_playbook_dir(), os.environ.get("PATH", "")]),
        "ANSIBLE_HOST_KEY_CHECKING": os.environ.get("ANSIBLE_HOST_KEY_CHECKING", "True"),
        "ANSIBLE_NOCOLOR": "1",  # artifacts/<id>/stdout and each event's stdout stay plain text
    }
    checkout = (_REPO / "galaxy.yml").is_file()
    candidates = [Path.cwd() / "ansible.cfg"] + ([_REPO / "ansible.cfg"] if checkout else [])
    config = os.environ.get("ANSIBLE_CONFIG") or next((str(c) for c in candidates if c.is_file()), None)
    if config:
        env["ANSIBLE_CONFIG"] = str(Path(config).expanduser().resolve())
    if checkout:
        from gpufleet._collection import ensure_importable

        ensure_importable()  # creates .collections/ansible_collections/gpufleet/cluster
        paths = os.environ.get("ANSIBLE_COLLECTIONS_PATH") or ANSIBLE_DEFAULT_COLLECTIONS_PATH
        env["ANSIBLE_COLLECTIONS_PATH"] = os.pathsep.join([str(_REPO / ".collections"), paths])
    return env


def exit_code_for(state: FleetState, status: str, rc: int | None) -> int:
    """gpufleet's exit code from the hosts' states, and ansible-runner's status and rc.

    Decided from the hosts, not from ansible-playbook's rc alone: its 4 means unreachable hosts
    *or* a parser error."""
    states = {h.state for h in state.snapshot()}
    if UNREACHABLE in states:
        return EXIT_UNREACHABLE
    if FAILED in states:
        return EXIT_FAILED
    if status != "successful" or rc not in (0, None):
        return EXIT_RUNNER
    return EXIT_OK


def _summary(result: dict, state: FleetState) -> dict:
    hosts = {}
    for h in state.snapshot():
        hosts[h.host] = {
            "state": h.state,
            "counts": h.counts,
            "seconds": round(h.elapsed(), 3),
            "task": h.current or None,
            "receipt": h.receipt,
            "failure": None
            if h.failure is None
            else {
                "task": h.failure.task,
                "role": h.failure.role,
                "play": h.failure.play,
                "message": h.failure.message,
            },
        }
    failures = [
        {
            "host": h.host,
            "state": h.state,
            "task": h.failure.where if h.failure else h.current,
            "message": h.failure.message if h.failure else "",
        }
        for h in state.failures()
    ]
    return {
        **result,
        "hosts": hosts,
        "by_state": state.by_state(),
        "totals": state.totals(),
        "failures": failures,
    }


def run(
    playbook: str,
    inventory: str,
    limit: str | None = None,
    tags: str | None = None,
    check: bool = False,
    extra_vars: dict | None = None,
    runs_dir: str = DEFAULT_RUNS_DIR,
    view=None,
    timeout: int | None = None,
) -> ApplyResult:
    """Run ``playbook`` on the hosts of ``inventory`` through ansible-runner and return the result.

    Validates the inputs first (:class:`ApplyInputError`, exit code 1, nothing run), creates
    ``runs_dir/<id>/`` and runs the playbook there with ansible-runner; every event updates a
    :class:`~gpufleet.apply.state.FleetState`, is appended to ``events.jsonl`` and shown by
    ``view``. Writes ``summary.json`` atomically at the end (also when interrupted).

    Parameters:
        playbook: a playbook file, or a collection playbook such as ``gpufleet.cluster.site``.
        inventory: an inventory file or directory (or a comma-separated host list).
        limit: only hosts matching this Ansible pattern (``--limit``); None for all.
        tags: only tasks with these tags, comma-separated (``--tags``); None for all.
        check: Ansible check mode (``--check``): report what would change, change nothing.
        extra_vars: variables given to the play with the highest precedence (``-e``); they are
            written to ``runs/<id>/env/extravars``: no secrets here, use Ansible Vault.
        runs_dir: where run directories are made (default ``runs``).
        view: what shows the run: an object with ``start(state)``, ``event(state, event, host)`` and
            ``stop()`` (``gpufleet.apply.view.LiveView`` or ``PlainView``); None shows nothing.
        timeout: seconds the whole run may take before ansible-runner stops it (exit code 3).
    """
    book = resolve_playbook(playbook)
    inv = resolve_inventory(inventory)
    if extra_vars is not None and not isinstance(extra_vars, dict):
        raise ApplyInputError("extra_vars must be a mapping of variable names to values")
    if timeout is not None and timeout <= 0:
        raise ApplyInputError(f"timeout must be a positive number of seconds, not {timeout}")
    envvars = runner_env()
    import ansible_runner

    run_id = _new_id()
    run_dir = (Path(runs_dir).expanduser() / run_id).resolve()
    # 0700: artifacts/<id>/command records the whole environment ansible-playbook ran with
    run_dir.mkdir(parents=True, mode=0o700)
    state = FleetState()
    started = time.time()
    record = {
        "id": run_id,
        "playbook": str(book),
        "inventory": inv,
        "limit": limit,
        "tags": tags,
        "check": check,
        "extra_vars": sorted(extra_vars or {}),
        "started": datetime.fromtimestamp(started, UTC).isoformat(),
        "artifacts": f"artifacts/{run_id}",
    }
    status, rc = "interrupted", None
    with open(run_dir / "events.jsonl", "a", encoding="utf-8") as log:

        def on_event(event: dict) -> bool:
            log.write(json.dumps(event, default=str, sort_keys=True) + "\n")
            log.flush()
            host = state.feed(event)
            if view is not None:
                view.event(state, event, host)
            return True  # keep it in artifacts/<id>/job_events too

        if view is not None:
            view.start(state)
        try:
            runner = ansible_runner.run(
                private_data_dir=str(run_dir),
                ident=run_id,
                playbook=str(book),
                inventory=inv,
                limit=limit,
                tags=tags,
                cmdline="--check" if check else None,
                extravars=extra_vars or None,
                envvars=envvars,
                event_handler=on_event,
                quiet=True,
                timeout=timeout,
            )
            status, rc = runner.status, runner.rc
        finally:
            if view is not None:
                view.stop()
            seconds = round(time.time() - started, 3)
            code = exit_code_for(state, status, rc)
            summary = _summary(
                {**record, "status": status, "rc": rc, "exit_code": code, "seconds": seconds}, state
            )
            write_atomic(run_dir / "summary.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return ApplyResult(run_id, run_dir, status, rc, code, state, summary, seconds)
