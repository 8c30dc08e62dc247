"""The front's routes (plugin_utils/serving_front.py, front_routes) and routes.conf as the role's
template renders them: one upstream per engine, a split model's choice by $request_id (split_clients),
and the version of the engine that answered for the audit line."""

from pathlib import Path

import jinja2
from ansible_collections.gpufleet.cluster.plugins.plugin_utils.serving_front import front_routes

TEMPLATE = Path(__file__).resolve().parents[3] / "roles/llm_serve/templates/front-routes.conf.j2"
A = "http://127.0.0.1:8101"
B = "http://127.0.0.1:8102"


def render(routes):
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True)
    env.filters["gpufleet.cluster.front_routes"] = front_routes
    return env.from_string(TEMPLATE.read_text()).render(
        __llm_serve_front_routes=routes, ansible_managed="managed"
    )


def split_route(percent, version="2"):
    return {
        "model": "m",
        "url": A,
        "version": "1",
        "split": {"url": B, "version": version, "percent": percent},
    }


def test_a_model_without_a_split_has_one_upstream_and_its_version():
    front = front_routes(
        [{"model": "m", "url": A + "/", "version": "1", "split": None}, {"model": "n", "url": B}]
    )
    assert front["upstreams"] == [
        {"name": "gpufleet_engine_1", "server": "127.0.0.1:8101", "model": "m"},
        {"name": "gpufleet_engine_2", "server": "127.0.0.1:8102", "model": "n"},
    ]
    assert front["splits"] == [] and front["default"] == "gpufleet_engine_1"
    assert front["models"] == [
        {"model": "m", "target": "gpufleet_engine_1"},
        {"model": "n", "target": "gpufleet_engine_2"},
    ]
    assert front["versions"] == [{"server": "127.0.0.1:8101", "version": "1"}], (
        "an upstream without one: none"
    )


def test_a_split_chooses_by_request_id_between_the_two_versions():
    front = front_routes([split_route(10)])
    assert [u["name"] for u in front["upstreams"]] == ["gpufleet_engine_1", "gpufleet_engine_1_split"]
    assert front["splits"] == [
        {
            "variable": "$gpufleet_split_1",
            "percent": 10,
            "split": "gpufleet_engine_1_split",
            "rest": "gpufleet_engine_1",
            "model": "m",
        }
    ]
    assert front["models"] == [{"model": "m", "target": "$gpufleet_split_1"}]
    assert front["default"] == "gpufleet_engine_1", "requests without a model are never split"
    assert front["versions"] == [
        {"server": "127.0.0.1:8101", "version": "1"},
        {"server": "127.0.0.1:8102", "version": "2"},
    ]
    text = render([split_route(10)])
    assert 'split_clients "${request_id}" $gpufleet_split_1 {\n    10% gpufleet_engine_1_split;\n' in text
    assert "    * gpufleet_engine_1;\n}" in text
    assert '    "m" $gpufleet_split_1;' in text
    assert 'map $upstream_addr $gpufleet_version {\n    default "";\n' in text
    assert '    "127.0.0.1:8101" "1";\n    "127.0.0.1:8102" "2";\n' in text
    assert "upstream gpufleet_engine_1_split {\n    # m\n    server 127.0.0.1:8102;" in text


def test_zero_and_a_hundred_percent_need_no_choice():
    for percent, target in ((0, "gpufleet_engine_1"), (100, "gpufleet_engine_1_split")):
        front = front_routes([split_route(percent)])
        assert front["splits"] == [] and front["models"] == [{"model": "m", "target": target}], percent
        text = render([split_route(percent)])
        assert 'split_clients "' not in text and f'    "m" {target};' in text
        # both engines stay known: the audit names the version of either
        assert '"127.0.0.1:8102" "2";' in text


def test_the_catch_all_upstream_renders_as_before():
    text = render([{"model": "*", "url": "http://10.0.0.5:8000"}])
    assert "server 10.0.0.5:8000;" in text and "default gpufleet_engine_1;" in text
    assert '"*"' not in text and 'split_clients "' not in text
