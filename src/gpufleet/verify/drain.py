"""Drain hosts from the scheduler around verification, and undrain only what gpufleet drained.

Two kinds: ``slurm`` (``scontrol``) and ``kubernetes`` (``kubectl``)::

    drainer = make_drainer("slurm", "/var/lib/gpufleet/drain-state.json")
    drainer.drain(["gpu01", "gpu02"], default_reason("quick"))
    ...                                   # verify
    drainer.undrain(["gpu01", "gpu02"])

The rules that keep an admin's work safe:

- ``drain`` never touches a node that is already out of service (Slurm: DRAIN/DOWN/FAIL/MAINT/REBOOT
  states; Kubernetes: cordoned) and does not record it: it is reported under ``already``.
- Every node gpufleet drains is recorded in the state file (JSON, written atomically, never deleted)
  with the reason (Slurm) or annotation (Kubernetes) it carries.
- ``undrain`` releases a node only when the state file records it *and* the node still carries
  gpufleet's reason/annotation. An admin who changed the reason keeps the node drained; gpufleet
  forgets it and says so.
- Each command has a timeout (30 s); a failing or hanging command is reported for its node under
  ``errors`` and never raised. Mapping inventory hosts to scheduler node names is the caller's job.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from datetime import UTC, datetime
from pathlib import Path

# The node-state knowledge lives once in the collection (the upgrade playbook's filters use it too);
# parse_slurm_node and SLURM_OUT_OF_SERVICE stay importable from here.
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.scheduler import (
    K8S_ANNOTATION,
    SchedulerOutputError,
    k8s_node_status,
    slurm_node_status,
    slurm_reason_is,
)
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.scheduler import (
    SLURM_OUT_OF_SERVICE as SLURM_OUT_OF_SERVICE,
)
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.scheduler import (
    parse_slurm_node as parse_slurm_node,
)

from gpufleet._io import write_atomic
from gpufleet.errors import GpufleetError

TIMEOUT_S = 30
DEFAULT_STATE_FILE = "/var/lib/gpufleet/drain-state.json"
STATE_SCHEMA = 1
K8S_ANNOTATION_VALUE = "gpufleet-verify"


class DrainError(GpufleetError):
    """The drain state file cannot be read; nothing was drained or undrained."""


def default_reason(tier: str, when: datetime | None = None) -> str:
    """``gpufleet verify <tier> <UTC timestamp>``: the Slurm reason gpufleet drains with."""
    when = when or datetime.now(UTC)
    return f"gpufleet verify {tier} {when.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"


def run_command(argv: list[str], timeout: float) -> tuple[int, str, str]:
    """Run ``argv`` in the C locale; (returncode, stdout, stderr). Raises TimeoutExpired/OSError.

    The command runs in its own process group, which is killed as a whole on timeout, so a child it
    left behind cannot hold the pipes open.
    """
    env = dict(os.environ, LC_ALL="C", LANG="C")
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return proc.returncode, out, err


class CommandFailed(Exception):
    """One command for one node failed; the message says which and why."""


class _Drainer:
    kind = ""
    default_executable = ""

    def __init__(self, state_file, runner=None, *, timeout: float = TIMEOUT_S, executable=None):
        self.state_file = Path(state_file)
        self.runner = runner or run_command
        self.timeout = timeout
        self.executable = str(executable or self.default_executable)

    # -- commands ------------------------------------------------------------------------------

    def _run(self, *args: str) -> str:
        argv = [self.executable, *args]
        shown = " ".join(argv)
        try:
            rc, out, err = self.runner(argv, self.timeout)
        except subprocess.TimeoutExpired:
            raise CommandFailed(f"'{shown}' timed out after {self.timeout:g} s") from None
        except OSError as exc:
            raise CommandFailed(f"'{shown}' could not run: {exc}") from None
        if rc != 0:
            msg = (err or out or "").strip().splitlines()
            raise CommandFailed(f"'{shown}' exited {rc}: {msg[-1] if msg else 'no output'}")
        return out

    # -- state file ----------------------------------------------------------------------------

    def _load(self) -> dict:
        try:
            text = self.state_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {"schema": STATE_SCHEMA, "drained": {}}
        except OSError as exc:
            raise DrainError(f"cannot read drain state file {self.state_file}: {exc}") from None
        try:
            state = json.loads(text)
            if not isinstance(state, dict) or not isinstance(state.get("drained", {}), dict):
                raise ValueError("not a gpufleet drain state object")
        except ValueError as exc:
            raise DrainError(
                f"drain state file {self.state_file} is not valid ({exc}); gpufleet cannot tell which "
                "nodes it drained. Inspect it, fix or move it aside, and undrain by hand if needed."
            ) from None
        state.setdefault("schema", STATE_SCHEMA)
        state.setdefault("drained", {})
        return state

    def _records(self, state) -> dict:
        return state["drained"].setdefault(self.kind, {})

    def _save(self, state) -> None:
        write_atomic(self.state_file, json.dumps(state, indent=2, sort_keys=True) + "\n", mode=0o600)

    # -- kind-specific -------------------------------------------------------------------------

    def _query(self, node: str) -> dict:
        """{"out": bool, "mark": str or None, "describe": str}: out of service? gpufleet's mark?"""
        raise NotImplementedError

    def _do_drain(self, node: str, reason: str) -> str:
        """Drain; returns the mark recorded (Slurm reason, Kubernetes annotation value)."""
        raise NotImplementedError

    def _after_failed_drain(self, node: str, mark: str) -> bool:
        """After a failed drain: True when the node does carry gpufleet's mark (so record it)."""
        raise NotImplementedError

    def _do_undrain(self, node: str) -> list[str]:
        """Undrain; returns notes (a non-fatal problem after the node was released)."""
        raise NotImplementedError

    def _mark_matches(self, current: str | None, recorded: str) -> bool:
        return current == recorded

    # -- API -----------------------------------------------------------------------------------

    def drain(self, nodes, reason: str) -> dict:
        """Drain ``nodes``; ``{"drained", "already", "errors", "notes"}``.

        ``already``: out of service before gpufleet came, left alone and not recorded. A node that
        gpufleet drained earlier and that still carries its mark counts as ``drained`` (idempotent).
        """
        result = {"drained": [], "already": [], "errors": {}, "notes": {}}
        state = self._load()
        records = self._records(state)
        for node in dict.fromkeys(nodes):
            try:
                current = self._query(node)
            except CommandFailed as exc:
                result["errors"][node] = str(exc)
                continue
            record = records.get(node)
            if current["out"]:
                if record and self._mark_matches(current["mark"], record["mark"]):
                    result["drained"].append(node)
                    result["notes"][node] = "already drained by gpufleet (recorded earlier)"
                else:
                    result["already"].append(node)
                    result["notes"][node] = f"already out of service, left alone: {current['describe']}"
                    if record:  # recorded, but someone else's now: forget it
                        del records[node]
                        self._save(state)
                continue
            mark = self._mark_for(reason)
            try:
                self._do_drain(node, reason)
            except CommandFailed as exc:
                result["errors"][node] = str(exc)
                if self._after_failed_drain(node, mark):
                    records[node] = self._record(mark, current)
                    self._save(state)
                    result["errors"][node] += "; the node does carry gpufleet's drain, recorded for undrain"
                continue
            records[node] = self._record(mark, current)
            self._save(state)
            result["drained"].append(node)
        return result

    def undrain(self, nodes) -> dict:
        """Undrain the nodes gpufleet drained; ``{"undrained", "kept", "not_drained", "errors", "notes"}``.

        ``kept``: left drained, because gpufleet has no record of draining it or because its
        reason/annotation is no longer gpufleet's. ``not_drained``: recorded, but someone already
        put it back in service; the record is dropped.
        """
        result = {"undrained": [], "kept": [], "not_drained": [], "errors": {}, "notes": {}}
        state = self._load()
        records = self._records(state)
        for node in dict.fromkeys(nodes):
            record = records.get(node)
            if not record:
                result["kept"].append(node)
                result["notes"][node] = "not drained by gpufleet (no record in the state file); left as is"
                continue
            try:
                current = self._query(node)
            except CommandFailed as exc:
                result["errors"][node] = str(exc)
                continue
            if not current["out"]:
                result["not_drained"].append(node)
                result["notes"][node] = f"already back in service: {current['describe']}"
                del records[node]
                self._save(state)
                continue
            if not self._mark_matches(current["mark"], record["mark"]):
                result["kept"].append(node)
                result["notes"][node] = (
                    f"left drained: gpufleet drained it with {record['mark']!r}, but it now shows "
                    f"{current['describe']}; someone else owns the drain now and gpufleet forgets it"
                )
                del records[node]
                self._save(state)
                continue
            try:
                notes = self._do_undrain(node)
            except CommandFailed as exc:
                result["errors"][node] = str(exc)
                continue
            del records[node]
            self._save(state)
            result["undrained"].append(node)
            if notes:
                result["notes"][node] = "; ".join(notes)
        return result

    def _mark_for(self, reason: str) -> str:
        return reason

    def _record(self, mark: str, before: dict) -> dict:
        return {
            "mark": mark,
            "drained_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "before": before["describe"],
        }


# ---------------------------------------------------------------------------------------------------
# Slurm


class SlurmDrainer(_Drainer):
    kind = "slurm"
    default_executable = "scontrol"

    def _query(self, node):
        out = self._run("show", "node", node, "--oneline")
        try:
            return slurm_node_status(out)
        except SchedulerOutputError:
            raise CommandFailed(f"scontrol show node {node}: no State= in its output") from None

    def _mark_matches(self, current, recorded):
        return slurm_reason_is(current, recorded)

    def _do_drain(self, node, reason):
        self._run("update", f"NodeName={node}", "State=DRAIN", f"Reason={reason}")

    def _after_failed_drain(self, node, mark):
        try:
            now = self._query(node)
        except CommandFailed:
            return False
        return now["out"] and slurm_reason_is(now["mark"], mark)

    def _do_undrain(self, node):
        self._run("update", f"NodeName={node}", "State=RESUME")
        return []


# ---------------------------------------------------------------------------------------------------
# Kubernetes


class KubernetesDrainer(_Drainer):
    """Cordon (not evict): verification needs the node free of new work, not emptied by force."""

    kind = "kubernetes"
    default_executable = "kubectl"

    def _query(self, node):
        out = self._run("get", "node", node, "-o", "json")
        try:
            return k8s_node_status(out)
        except SchedulerOutputError:
            raise CommandFailed(f"kubectl get node {node}: output is not JSON") from None

    def _mark_for(self, reason):
        return K8S_ANNOTATION_VALUE

    def _do_drain(self, node, reason):
        self._run("cordon", node)
        try:
            self._run("annotate", "node", node, f"{K8S_ANNOTATION}={K8S_ANNOTATION_VALUE}", "--overwrite")
        except CommandFailed as exc:
            # The node was schedulable before gpufleet cordoned it: put it back, or say it is stuck.
            try:
                self._run("uncordon", node)
            except CommandFailed as undo:
                raise CommandFailed(f"{exc}; rolling back the cordon failed too: {undo}") from None
            raise CommandFailed(f"{exc}; the cordon was rolled back") from None

    def _after_failed_drain(self, node, mark):
        try:
            now = self._query(node)
        except CommandFailed:
            return False
        if now["out"] and now["mark"] == mark:
            return True
        if now["out"] and now["mark"] is None:
            # Cordoned by our command (it was schedulable a moment ago) without the annotation:
            # undo it rather than leave a cordon nobody owns.
            with contextlib.suppress(CommandFailed):
                self._run("uncordon", node)
        return False

    def _do_undrain(self, node):
        self._run("uncordon", node)
        try:
            self._run("annotate", "node", node, f"{K8S_ANNOTATION}-")
        except CommandFailed as exc:
            return [f"uncordoned, but removing the {K8S_ANNOTATION} annotation failed: {exc}"]
        return []


KINDS = {"slurm": SlurmDrainer, "kubernetes": KubernetesDrainer}


def make_drainer(kind: str, state_file, runner=None, *, timeout: float = TIMEOUT_S, executable=None):
    """A drainer for ``kind`` ("slurm" or "kubernetes") that records its drains in ``state_file``.

    ``runner(argv, timeout) -> (returncode, stdout, stderr)`` runs one command (default:
    :func:`run_command`); it may raise ``subprocess.TimeoutExpired`` or ``OSError``.
    ``executable`` overrides the ``scontrol``/``kubectl`` command.
    """
    try:
        cls = KINDS[kind]
    except KeyError:
        raise DrainError(f"unknown drain kind {kind!r}; known: {', '.join(KINDS)}") from None
    return cls(state_file, runner, timeout=timeout, executable=executable)
