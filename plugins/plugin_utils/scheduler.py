# Copyright: gpufleet developers
# Apache-2.0
"""What a scheduler says about one node: in service, or out of service (by whom, why).

Controller code, written once for ``gpufleet verify``'s drain hooks (src/gpufleet/verify/drain.py)
and the rolling upgrade (plugin_utils/rollout.py, playbooks/upgrade.yml):

- Slurm: ``scontrol show node NAME --oneline`` (``-o``). A node is out of service when its state
  carries one of ``SLURM_OUT_OF_SERVICE``; the drain reason follows ``Reason=`` (Slurm appends
  ``[user@time]``).
- Kubernetes: ``kubectl get node NAME -o json``. A node is out of service when
  ``spec.unschedulable`` is true (cordoned); gpufleet marks the nodes it cordons with the
  ``K8S_ANNOTATION`` annotation.
"""

from __future__ import annotations

import json
import re

K8S_ANNOTATION = "gpufleet.io/drained-by"

# Slurm node state words that mean "out of service already": someone (an admin, slurmctld, a health
# check) took the node out, and gpufleet must neither touch it nor later resume it.
SLURM_OUT_OF_SERVICE = {
    "DRAIN",
    "DRAINING",
    "DRAINED",
    "DOWN",
    "FAIL",
    "FAILING",
    "MAINT",
    "REBOOT_REQUESTED",
    "REBOOT_ISSUED",
    "POWERED_DOWN",
    "POWERING_DOWN",
    "POWER_DOWN",
    "FUTURE",
}

_SLURM_STATE = re.compile(r"(?:^|\s)State=(\S+)")
_SLURM_REASON = re.compile(r"(?:^|\s)Reason=(.*)$", re.DOTALL)
_SLURM_NEXT_FIELD = re.compile(r"^\s+[A-Za-z_]+=")


class SchedulerOutputError(ValueError):
    """The scheduler's output does not say what state the node is in."""


def parse_slurm_node(text: str) -> dict:
    """``scontrol show node NAME --oneline`` -> {"state": "IDLE+DRAIN", "flags": {...}, "reason": str|None}.

    ``reason`` is the raw text after ``Reason=`` up to the end of the line (Slurm appends
    ``[user@time]`` and may follow it with more fields); use :func:`slurm_reason_is` to compare.
    """
    line = text.strip().splitlines()[0] if text.strip() else ""
    m = _SLURM_STATE.search(line)
    state = m.group(1) if m else ""
    flags = {w.strip("*~#!%$@^-") for w in state.split("+") if w}
    r = _SLURM_REASON.search(line)
    reason = r.group(1).rstrip() if r else None
    if reason in ("", "(null)", "none", "None"):
        reason = None
    return {"state": state, "flags": flags, "reason": reason}


def slurm_reason_is(raw: str | None, reason: str) -> bool:
    """Whether the raw ``Reason=`` text is exactly ``reason`` (plus Slurm's ``[user@time]``/fields)."""
    if not raw or not raw.startswith(reason):
        return False
    rest = raw[len(reason) :]
    return rest == "" or rest.startswith(" [") or bool(_SLURM_NEXT_FIELD.match(rest))


def slurm_reason_text(raw: str | None) -> str:
    """The reason without Slurm's ``[user@time]`` suffix; ``no reason`` when there is none."""
    if not raw:
        return "no reason"
    return raw.split(" [", 1)[0]


def slurm_node_status(text: str) -> dict:
    """{"out": bool, "mark": raw reason or None, "describe": str} from ``scontrol show node -o``.

    Raises :class:`SchedulerOutputError` when the output has no ``State=``.
    """
    info = parse_slurm_node(text)
    if not info["state"]:
        raise SchedulerOutputError("no State= in the output of scontrol show node")
    return {
        "out": bool(info["flags"] & SLURM_OUT_OF_SERVICE),
        "mark": info["reason"],
        "describe": f"State={info['state']} Reason={slurm_reason_text(info['reason'])}",
    }


def k8s_node_status(text: str) -> dict:
    """{"out": bool, "mark": gpufleet's annotation or None, "describe": str} from ``kubectl get node``.

    The output is ``kubectl get node NAME -o json``.

    Raises :class:`SchedulerOutputError` when the output is not a JSON object.
    """
    try:
        obj = json.loads(text)
    except ValueError:
        raise SchedulerOutputError("the output of kubectl get node is not JSON") from None
    if not isinstance(obj, dict):
        raise SchedulerOutputError("the output of kubectl get node is not a JSON object")
    unschedulable = bool((obj.get("spec") or {}).get("unschedulable"))
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    mark = annotations.get(K8S_ANNOTATION)
    describe = "cordoned" if unschedulable else "schedulable"
    describe += f", {K8S_ANNOTATION}={mark}" if mark is not None else f", no {K8S_ANNOTATION} annotation"
    return {"out": unschedulable, "mark": mark, "describe": describe}
