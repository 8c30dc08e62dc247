# Copyright: gpufleet developers
# Apache-2.0
"""Rolling upgrade knowledge (playbooks/upgrade.yml, ``gpufleet upgrade``), written once.

Controller code: the ``gpufleet.cluster`` rollout filters expose it to the playbook, the CLI imports
it directly.

- **Batches**: the ``serial`` list (``[1, "10%", "25%"]``): positive whole numbers or percentages in
  (0, 100]; Ansible repeats the last one until every host had its turn.
- **Drain backends** as data (``BACKENDS``): ``slurm`` (scontrol), ``kubernetes`` (kubectl),
  ``command`` (the user's own status/drain/undrain commands) and ``none``. Each says how to read a
  node's state, drain it and return it to service; :func:`drain_status` turns the status command's
  output into "in service" or "already out of service (by whom, why)".
- **Undrain only what we drained**: a node is returned to service only when this run's record says
  it drained it (``drained_by`` = this run's id) *and* the scheduler still shows this run's mark
  (Slurm reason / Kubernetes annotation). A node that was out of service before the run, or whose
  drain someone else has taken over since, stays out.
- **State record** (``/var/lib/gpufleet/upgrade-state.json`` on each host): run id, step, result,
  when, drained_by, already_out_of_service, reason. :func:`rollout_resume_plan` says which step an
  interrupted run continues from.
"""

from __future__ import annotations

import re
import shlex

from ansible_collections.gpufleet.cluster.plugins.plugin_utils import scheduler

# The steps of one host, in order. "connect" (reach the host, read its record) always runs first.
# "reboot" is decided and done by the nvidia_driver role inside "upgrade" (only when the kernel
# module changed, never in a container); it is recorded on its own. "start_serving" serves again
# what "stop_serving" stopped, before "verify" (whose serving checks must see it running): a run
# interrupted anywhere between the two still has it due when resumed.
STEPS = (
    "connect", "drain", "stop_serving", "upgrade", "reboot", "start_serving", "verify", "undrain", "done",
)  # fmt: skip
# Results a step can record: started (begun, not known to have finished), ok, failed.
RESULTS = ("started", "ok", "failed")
# A step that did not finish is done again from here (a reboot belongs to the upgrade that asked for it).
REDO_FROM = {"connect": "drain", "reboot": "upgrade"}
DEFAULT_BATCHES = (1, "10%", "25%")
STATE_FILE = "/var/lib/gpufleet/upgrade-state.json"
RECORD_SCHEMA = 1
DRAIN_TIMEOUT_S = 600
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


class RolloutError(ValueError):
    """Bad rollout input (batches, backend, run id, record); the message says what to set instead."""


# --- batches ---------------------------------------------------------------------------------------


def _batch(item) -> int | str:
    if isinstance(item, bool):
        raise RolloutError(f"batch {item!r} is not a number of hosts or a percentage")
    if isinstance(item, int):
        if item < 1:
            raise RolloutError(f"batch {item} must be at least 1 host")
        return item
    text = str(item).strip()
    if re.fullmatch(r"-?\d+", text):
        return _batch(int(text))
    m = _PERCENT.match(text)
    if not m:
        raise RolloutError(f"batch {item!r} is neither a number of hosts (1, 10) nor a percentage ('25%')")
    value = float(m.group(1))
    if not 0 < value <= 100:
        raise RolloutError(f"batch {text!r} must be a percentage above 0% and at most 100%")
    return f"{m.group(1)}%"


def rollout_batches(value) -> list:
    """The ``serial`` list for ``value``: a list, or a string such as ``"1,10%,25%"``.

    Numbers of hosts stay ints, percentages become ``"N%"``. Raises :class:`RolloutError` for an
    empty list, 0, a negative number, a percentage outside (0, 100] or anything else.
    """
    if value is None:
        return list(DEFAULT_BATCHES)
    if isinstance(value, str):
        items = [part for part in value.split(",") if part.strip()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        items = [value]
    if not items:
        raise RolloutError("batches is empty: give at least one batch size, e.g. 1,10%,25%")
    return [_batch(item) for item in items]


# --- drain backends ----------------------------------------------------------------------------------

# Each backend as data: how to read a node's state, drain it and return it to service (argv lists;
# {node}, {reason}, {timeout} are filled in), how to read the status output, and whether the
# scheduler carries a mark of who drained it (then undrain also needs the mark to still be ours).
BACKENDS = {
    "slurm": {
        "status": ["scontrol", "show", "node", "{node}", "-o"],
        "drain": [["scontrol", "update", "NodeName={node}", "State=DRAIN", "Reason={reason}"]],
        "undrain": [["scontrol", "update", "NodeName={node}", "State=RESUME"]],
        "parse": scheduler.slurm_node_status,
        "marks": True,
    },
    "kubernetes": {
        "status": ["kubectl", "get", "node", "{node}", "-o", "json"],
        "drain": [
            ["kubectl", "cordon", "{node}"],
            ["kubectl", "annotate", "node", "{node}", scheduler.K8S_ANNOTATION + "={reason}", "--overwrite"],
            [
                "kubectl",
                "drain",
                "{node}",
                "--ignore-daemonsets",
                "--delete-emptydir-data",
                "--timeout={timeout}s",
            ],
        ],
        "undrain": [
            ["kubectl", "uncordon", "{node}"],
            ["kubectl", "annotate", "node", "{node}", scheduler.K8S_ANNOTATION + "-"],
        ],
        "parse": scheduler.k8s_node_status,
        "marks": True,
    },
    "command": {"status": None, "drain": None, "undrain": None, "parse": None, "marks": False},
    "none": {"status": None, "drain": [], "undrain": [], "parse": None, "marks": False},
}
# What a ``command`` backend's status command prints for a node in service (first word, any case);
# anything else is "out of service" and shown as the reason.
COMMAND_IN_SERVICE = ("in_service", "in-service", "available", "up", "ok")


def check_run_id(run_id) -> str:
    """``run_id`` when it is a usable rollout id (letters, digits, ``_.:-``; at most 64)."""
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        raise RolloutError(
            f"run id {run_id!r} is not a rollout id (letters, digits and _.:- only, at most 64 characters)"
        )
    return run_id


def drain_reason(run_id: str) -> str:
    """The mark gpufleet drains with: the Slurm reason / the Kubernetes annotation value."""
    return f"gpufleet upgrade {check_run_id(run_id)}"


def _argv(command, fields: dict) -> list[str]:
    words = shlex.split(command) if isinstance(command, str) else [str(w) for w in command]
    return [w.format(**fields) for w in words]


def drain_commands(
    backend: str, node: str, run_id: str, commands: dict | None = None, timeout: int = DRAIN_TIMEOUT_S
) -> dict:
    """{"status": argv or None, "drain": [argv...], "undrain": [argv...]} for one node.

    ``commands`` (backend ``command``): ``{"status": ..., "drain": ..., "undrain": ...}``, each a
    command line or a list of them; ``{node}``, ``{reason}`` and ``{timeout}`` are filled in. With
    ``none`` nothing is run.
    """
    if backend not in BACKENDS:
        raise RolloutError(f"drain backend {backend!r} is unknown; known: {', '.join(BACKENDS)}")
    if not node:
        raise RolloutError("drain needs the node's scheduler name")
    fields = {"node": node, "reason": drain_reason(run_id), "timeout": int(timeout)}
    spec = dict(BACKENDS[backend])
    if backend == "command":
        commands = commands or {}
        missing = [k for k in ("status", "drain", "undrain") if not commands.get(k)]
        if missing:
            raise RolloutError(
                "drain backend 'command' needs gpufleet_drain_commands with status, drain and undrain "
                f"command lines; missing: {', '.join(missing)}"
            )
        for key in ("drain", "undrain"):
            value = commands[key]
            spec[key] = [value] if isinstance(value, str) else list(value)
        spec["status"] = commands["status"]
    return {
        "status": _argv(spec["status"], fields) if spec["status"] else None,
        "drain": [_argv(c, fields) for c in spec["drain"]],
        "undrain": [_argv(c, fields) for c in spec["undrain"]],
    }


def drain_status(output: str, backend: str, run_id: str) -> dict:
    """What the status command's ``output`` says about the node.

    {"in_service": bool, "out_of_service": bool, "ours": bool, "marks": bool, "describe": str}:
    ``ours`` when the node carries this run's mark; ``marks`` whether the backend marks its drains
    at all (slurm, kubernetes; not command, none). Backend ``none``
    always reports in service. Raises :class:`RolloutError` when the output says nothing usable.
    """
    if backend not in BACKENDS:
        raise RolloutError(f"drain backend {backend!r} is unknown; known: {', '.join(BACKENDS)}")
    if backend == "none":
        return {
            "in_service": True,
            "out_of_service": False,
            "ours": False,
            "marks": False,
            "describe": "no scheduler",
        }
    text = output or ""
    if backend == "command":
        first = text.strip().split(None, 1)
        if not first:
            raise RolloutError("the drain status command printed nothing")
        out = first[0].lower() not in COMMAND_IN_SERVICE
        return {
            "in_service": not out,
            "out_of_service": out,
            "ours": False,
            "marks": False,
            "describe": text.strip(),
        }
    try:
        status = BACKENDS[backend]["parse"](text)
    except scheduler.SchedulerOutputError as exc:
        raise RolloutError(f"{backend}: {exc}") from None
    reason = drain_reason(run_id)
    if backend == "slurm":
        ours = status["out"] and scheduler.slurm_reason_is(status["mark"], reason)
    else:
        ours = status["out"] and status["mark"] == reason
    return {
        "in_service": not status["out"],
        "out_of_service": status["out"],
        "ours": bool(ours),
        "marks": True,
        "describe": status["describe"],
    }


def rollout_drain_decision(status: dict, backend: str, record, run_id: str) -> dict:
    """Whether to drain the node now, and who owns its drain.

    {"drain_now": bool, "drained_by": run id or None, "already_out_of_service": bool}.

    In service: drain it now; this run owns the drain. Out of service with this run's mark (Slurm
    reason, Kubernetes annotation), or - on a backend without marks - recorded as drained by this
    run: a resumed run's own drain, not done again. Anything else out of service was out before the
    run came: left alone, never returned to service by it. Backend ``none`` drains nothing and owns
    nothing.
    """
    check_run_id(run_id)
    if backend == "none":
        return {"drain_now": False, "drained_by": None, "already_out_of_service": False}
    if status.get("in_service"):
        return {"drain_now": True, "drained_by": run_id, "already_out_of_service": False}
    recorded = (
        isinstance(record, dict) and record.get("run_id") == run_id and record.get("drained_by") == run_id
    )
    if status.get("ours") or (not status.get("marks", True) and recorded):
        return {"drain_now": False, "drained_by": run_id, "already_out_of_service": False}
    return {"drain_now": False, "drained_by": None, "already_out_of_service": True}


# --- the state record ----------------------------------------------------------------------------------


def rollout_record(
    previous,
    run_id: str,
    step: str,
    result: str,
    when: str,
    drained_by=None,
    already_out_of_service=None,
    reason=None,
    detail=None,
) -> dict:
    """The host's record after ``step`` reached ``result`` at ``when`` (an ISO time) in run ``run_id``.

    ``drained_by``, ``already_out_of_service`` and ``detail`` are kept from ``previous`` when it is
    this run's record and not given (a resumed run still owns the drain it made); another run's
    record is not carried over. ``reason`` (why the step failed) is this step's only.
    """
    check_run_id(run_id)
    if step not in STEPS:
        raise RolloutError(f"step {step!r} is unknown; steps: {', '.join(STEPS)}")
    if result not in RESULTS:
        raise RolloutError(f"result {result!r} is unknown; results: {', '.join(RESULTS)}")
    same_run = isinstance(previous, dict) and previous.get("run_id") == run_id
    kept = previous if same_run else {}

    def pick(name, given):
        return given if given is not None else kept.get(name)

    return {
        "schema": RECORD_SCHEMA,
        "run_id": run_id,
        "step": step,
        "result": result,
        "time": str(when),
        "drained_by": pick("drained_by", drained_by),
        "already_out_of_service": pick("already_out_of_service", already_out_of_service),
        "reason": reason,
        "detail": pick("detail", detail),
        "history": [*(kept.get("history") or []), [step, result, str(when)]],
    }


def rollout_resume_plan(record, run_id: str, resume: bool = False) -> dict:
    """Which steps this host still runs: {"start": step, "due": [steps], "why": str}.

    ``connect`` is never in ``due``: it always runs. A new run (``resume`` false, or no record of
    ``run_id`` on the host) starts at ``drain``. A
    resumed run continues after the last step that finished (``ok``) and redoes one that was
    ``started`` or ``failed`` (a reboot from its upgrade; every step is idempotent). A host whose
    record says ``done`` in this run has nothing left.
    """
    check_run_id(run_id)
    if not resume or not isinstance(record, dict) or record.get("run_id") != run_id:
        why = "new run" if not resume else f"no record of run {run_id} on this host: starting afresh"
        return {"start": "drain", "due": list(STEPS[1:]), "why": why}
    step, result = record.get("step"), record.get("result")
    if step not in STEPS or result not in RESULTS:
        raise RolloutError(f"the host's upgrade record is not readable (step {step!r}, result {result!r})")
    if result == "ok":
        if step == "done":
            return {"start": "done", "due": [], "why": f"run {run_id} already finished this host"}
        start = STEPS[STEPS.index(step) + 1]
        why = f"resuming after {step} (finished)" if step != "connect" else "resuming at drain"
    else:
        start = REDO_FROM.get(step, step)
        why = f"resuming at {start} ({step} was {result})"
    return {"start": start, "due": list(STEPS[STEPS.index(start) :]), "why": why}


def rollout_should_undrain(record, run_id: str, status: dict | None = None) -> bool:
    """Whether the node goes back into service now: only when this run drained it.

    ``record`` must say ``drained_by`` = ``run_id``; with ``status`` (from :func:`drain_status`) the
    node must also still be out of service, and on a backend that marks its drains still carry this
    run's mark (``ours``) - a node whose drain someone else took over stays drained.
    """
    check_run_id(run_id)
    if not isinstance(record, dict) or record.get("drained_by") != run_id:
        return False
    if record.get("already_out_of_service"):
        return False
    if status is None:
        return True
    if not status.get("out_of_service"):
        return False  # already back in service: nothing to undo
    return bool(status.get("ours")) or not status.get("marks", True)


def rollout_verify_problem(verify_result: dict, host: str) -> str:
    """Why ``host`` failed ``gpufleet verify`` (the verify_fleet task result), or "" when fit.

    Unfit is what gpufleet verify exits 1 for (unhealthy, unreachable); the reason names the
    verdict, the failing checks, the error and the suggested action.
    """
    if not isinstance(verify_result, dict):
        return f"{host}: no verify result"
    entries = [h for h in verify_result.get("hosts") or [] if h.get("host") == host]
    if not entries:
        if verify_result.get("exit_code", 0) == 0:
            return ""
        return f"{host}: gpufleet verify did not report this host"
    entry = entries[0]
    if verify_result.get("exit_code", 0) == 0:  # gpufleet verify's own rule: 1 = unhealthy/unreachable
        return ""
    parts = [f"verdict {entry.get('verdict')}"]
    if entry.get("failing"):
        parts.append("failing: " + ", ".join(entry["failing"]))
    if entry.get("error"):
        parts.append(str(entry["error"]))
    if entry.get("action"):
        parts.append(f"suggested action: {entry['action']}")
    return "; ".join(parts)
