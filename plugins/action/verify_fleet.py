# Copyright: gpufleet developers
# Apache-2.0
"""Action plugin for ``gpufleet.cluster.verify_fleet``: gpufleet.verify.run on the controller.

Documentation: plugins/modules/verify_fleet.py. The task's options are the API's parameters, one for
one (plus ``verbose`` for the table); nothing runs on the task's host, the checks reach each inventory
host themselves. Check mode calls ``gpufleet.verify.preview``: which hosts would be verified and
drained, touching nothing.
"""

from __future__ import annotations

import dataclasses

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()

# Options that are not gpufleet.verify.run parameters.
TASK_ONLY = ("verbose",)
# run's parameters that preview does not take (they change how a run goes, not what it would touch).
RUN_ONLY = ("host_timeout_s",)


def _api():
    """gpufleet.verify, or a failure that says how to get it."""
    try:
        from gpufleet import verify
    except ImportError as exc:
        raise AnsibleActionFail(
            "gpufleet.cluster.verify_fleet needs the gpufleet Python package in the Python that runs "
            f"ansible-playbook (pip install gpufleet, or 'make venv' in a checkout): {exc}"
        ) from None
    return verify


def argument_spec(verify) -> dict:
    """The task's options, with choices and defaults taken from the API (never written twice)."""
    return {
        "inventory": {"type": "path", "required": True},
        "limit": {"type": "str"},
        "tier": {"type": "str", "choices": list(verify.TIERS), "default": verify.DEFAULT_TIER},
        "jobs": {"type": "int", "default": verify.DEFAULT_JOBS},
        "baselines": {"type": "path"},
        "host_timeout_s": {"type": "int"},
        "drain": {"type": "str", "choices": list(verify.DRAIN_KINDS)},
        "drain_state": {"type": "path"},
        "assume_drained": {"type": "bool", "default": False},
        "json_report": {"type": "path"},
        "junit_report": {"type": "path"},
        "prometheus_report": {"type": "path"},
        "verbose": {"type": "bool", "default": False},
    }


def api_kwargs(args: dict, *, check_mode: bool = False) -> dict:
    """The ``gpufleet.verify.run`` (or, in check mode, ``preview``) keywords for validated task ``args``."""
    skip = TASK_ONLY + (RUN_ONLY if check_mode else ())
    return {name: value for name, value in args.items() if name not in skip}


def check_result(plan) -> dict:
    """The task result for a ``VerifyPlan``: what a run would do."""
    what = f"would verify {len(plan.hosts)} host(s) at tier {plan.tier}: {', '.join(plan.hosts)}"
    if plan.drain:
        what += f"; would drain them from {plan.drain} first"
    result = {"changed": False, "msg": what, "would_verify": plan.hosts, "reports": plan.reports}
    if plan.drain:
        result["would_drain"] = plan.drain_nodes
    return result


def run_result(outcome, table: str) -> dict:
    """The task result for a ``VerifyResult``; ``changed`` when the run drained scheduler nodes."""
    result = {
        "changed": bool(outcome.drained),
        "exit_code": outcome.exit_code,
        "verdicts": outcome.verdicts,
        "summary": outcome.summary,
        "hosts": [
            {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(h).items()}
            for h in outcome.hosts
        ],
        "table": table,
        "table_lines": table.splitlines(),
        "reports": {kind: str(path) for kind, path in outcome.written.items()},
        "msg": ", ".join(f"{n} {verdict}" for verdict, n in outcome.summary.items() if n) or "no hosts",
    }
    if "drain" in outcome.report:
        result["drain"] = outcome.report["drain"]
    return result


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp  # nothing is copied to the host
        verify = _api()
        from gpufleet.errors import GpufleetError
        from gpufleet.verify import report as render

        _, args = self.validate_argument_spec(argument_spec=argument_spec(verify))
        check_mode = bool(self._task.check_mode)
        try:
            if check_mode:
                result.update(check_result(verify.preview(**api_kwargs(args, check_mode=True))))
                return result
            outcome = verify.run(
                **api_kwargs(args), progress=lambda msg: display.v(f"gpufleet verify: {msg}")
            )
        except GpufleetError as exc:
            raise AnsibleActionFail(f"gpufleet verify: {exc}") from None
        result.update(run_result(outcome, render.render_table(outcome.report, verbose=args["verbose"])))
        return result
