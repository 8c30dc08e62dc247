"""``gpufleet.serve``: serving operations over playbooks/serve.yml (role llm_serve), run like
``gpufleet apply`` (ansible-runner, live view, runs/<id>/).

    from gpufleet.serve import rollback

    result = rollback("inventories/site", limit="node7")
    print(result.exit_code)

``rollback`` serves each model's previous version again on every node it reaches: the version is
verified against its signed manifest and must pass the readiness checks (health, /v1/models, one
token, its recorded golden answer) before the front switches back to it - at once where it kept running
(``llm_serve_keep_previous``) - and takes all of the model's traffic: a split between two versions is
dropped. Knowledge of versions and ports lives in the collection
(plugins/plugin_utils/serving_engine.py); this module only runs the playbook.
"""

from __future__ import annotations

from gpufleet.apply import api as apply_api

PLAYBOOK = "gpufleet.cluster.serve"


def rollback(inventory: str, limit: str | None = None, extra_vars: dict | None = None, **kwargs):
    """Run playbooks/serve.yml with ``llm_serve_rollback`` on; ``gpufleet.apply.api.run``'s result.

    ``kwargs``: the other keywords of ``gpufleet.apply.api.run`` (check, runs_dir, view, timeout)."""
    extra = {**(extra_vars or {}), "llm_serve_rollback": True}
    return apply_api.run(PLAYBOOK, inventory, limit=limit, extra_vars=extra, **kwargs)
