"""How ``gpufleet verify`` calls the registered health checks: each need resolved from the run.

``registry.CHECKS`` declares every check with the inputs it needs; this module is the only place
that knows where those inputs live in a verify run (the collected state, the host's inventory
variables, the baseline overrides). ``problems`` lists every need nothing here provides, so a
check can not be registered and then silently dropped: the unit tests fail on it.
"""

from __future__ import annotations

import inspect
from typing import Any

from ansible_collections.gpufleet.cluster.plugins.plugin_utils.checks import core, registry

from gpufleet.verify import collect, settings


def _provided(need: registry.Need) -> str | None:
    """Why ``need`` cannot be provided in a verify run, or None when it can."""
    if need.source in (registry.STATE, registry.ERROR):
        if need.key not in collect.STATE_KEYS:
            return f"collection gathers no {need.key!r} (gpufleet.verify.collect.STATE_KEYS)"
    elif need.source == registry.HOSTVAR:
        if need.key not in settings.HOSTVAR_DEFAULTS:
            return f"hostvar {need.key!r} is not one verify reads (gpufleet.verify.settings.HOSTVAR_DEFAULTS)"
    elif need.source == registry.LOCAL_FACT:
        if need.key not in collect.LOCAL_FACTS:
            return f"local fact {need.key!r} is not collected (gpufleet.verify.collect.LOCAL_FACTS)"
    elif need.source != registry.BASELINES:
        return f"unknown source {need.source!r}; known: {', '.join(registry.SOURCES)}"
    return None


def collect_options(tier: str) -> dict[str, Any]:
    """Keyword arguments for ``collect.collect`` at ``tier`` (``registry.COLLECT_OPTIONS``)."""
    return dict(registry.COLLECT_OPTIONS[tier])


def problems(checks=None) -> list[str]:
    """Every way a check in ``checks`` (default: the registry) could not be called by verify, and
    every collection option the registry declares that ``collect.collect`` does not take."""
    out = []
    accepted = inspect.signature(collect.collect).parameters
    for tier, options in registry.COLLECT_OPTIONS.items():
        missing = [name for name in options if name not in accepted]
        out.extend(f"collect options ({tier}): collect.collect() takes no {name!r}" for name in missing)
    for name, check in (registry.CHECKS if checks is None else checks).items():
        if name != check.name:
            out.append(f"{name}: registered under another name ({check.name})")
        for arg, need in check.needs.items():
            why = _provided(need)
            if why:
                out.append(f"{name}: {arg}: {why}")
        try:
            inspect.signature(check.func).bind(**dict.fromkeys(check.needs))
        except TypeError as exc:
            out.append(f"{name}: {check.func.__name__}() cannot be called with {sorted(check.needs)}: {exc}")
    return out


def resolve(need: registry.Need, state: dict, hostvars: dict, overrides: Any) -> Any:
    if need.source == registry.STATE:
        value = state[need.key]
    elif need.source == registry.ERROR:
        value = (state.get("errors") or {}).get(need.key)
    elif need.source == registry.HOSTVAR:
        value = settings.hostvar(hostvars, need.key)
    elif need.source == registry.LOCAL_FACT:
        value = (state.get("local_facts") or {}).get(need.key)
    elif need.source == registry.BASELINES:
        value = overrides
    else:
        raise KeyError(f"unknown source {need.source!r}")
    return need.convert(value) if need.convert else value


def run(check: registry.Check, state: dict, hostvars: dict, overrides: Any) -> dict:
    """One check's result on one host. GPU checks fail when the GPU facts could not be read (a
    missing answer is never a pass); other checks see a host without GPUs."""
    gpus = state.get("gpus")
    if gpus is None and check.kind == "gpu":
        return core.result(
            check.name,
            core.FAIL,
            f"GPU facts unavailable: {state['errors'].get('gpus', 'no data')}",
            action=core.MONITOR,
        )
    state = dict(state, gpus=gpus or {"gpu_count": 0, "gpus": []})
    return call(check, state, hostvars, overrides)


def call(check: registry.Check, state: dict, hostvars: dict, overrides: Any) -> dict:
    """``check`` called with each need resolved from ``state``/``hostvars``/``overrides`` as they are
    (``run`` adds verify's rule for missing GPU facts; ``gpufleet diagnose`` calls this directly)."""
    args = {arg: resolve(need, state, hostvars, overrides) for arg, need in check.needs.items()}
    return check.func(**args)
