"""Every filter is documented on its own, named as its function, and the docs match the code.

Filters live one file per domain in plugins/filter/*.py; each filter's documentation is
plugins/filter/<name>.yml (DOCUMENTATION / EXAMPLES / RETURN), as ansible-core and
community.general do it. These tests fail when a filter is added, renamed or removed without its
doc (or the other way round), and they read the docs through ansible-doc itself, the way a user
does (``ansible-doc -t filter -l gpufleet.cluster``, ``ansible-doc -t filter gpufleet.cluster.NAME``).
"""

import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import COLLECTIONS, REPO, collection_filters

FILTER_DIR = REPO / "plugins" / "filter"
PREFIX = "gpufleet.cluster."


REGISTERED = collection_filters()


def _ansible_doc(*args):
    env = dict(
        os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_CONFIG=str(REPO / "ansible.cfg")
    )
    done = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-doc")), "-t", "filter", "--json", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0 and "[WARNING]" not in done.stderr, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def listed():
    return _ansible_doc("-l", "gpufleet.cluster")


@pytest.fixture(scope="module")
def docs():
    return _ansible_doc(*(PREFIX + name for name in sorted(REGISTERED)))


def test_each_filter_is_named_as_its_function():
    for name, (_stem, func) in REGISTERED.items():
        assert func.__name__ == name, f"filter {name} calls {func.__name__}: name one after the other"


def test_every_filter_has_a_doc_file_and_every_doc_file_a_filter():
    doc_files = {p.stem for p in FILTER_DIR.glob("*.yml")}
    assert sorted(set(REGISTERED) - doc_files) == [], "filters without plugins/filter/<name>.yml"
    assert sorted(doc_files - set(REGISTERED)) == [], "plugins/filter/*.yml without a filter of that name"


def test_the_list_shows_each_filter_with_its_own_description(listed):
    assert set(listed) == {PREFIX + name for name in REGISTERED}
    descriptions = list(listed.values())
    assert all(d and d != "UNDOCUMENTED" for d in descriptions), listed
    assert len(set(descriptions)) == len(descriptions), "two filters share a short_description"


def test_each_doc_matches_its_function(docs):
    assert set(docs) == {PREFIX + name for name in REGISTERED}
    for name, (_stem, func) in REGISTERED.items():
        entry = docs[PREFIX + name]
        doc = entry["doc"]
        assert doc["name"] == name
        assert doc["short_description"] and doc["description"], name
        # Options are the function's parameters: the piped value is _input, then the arguments.
        params = list(inspect.signature(func).parameters.values())
        expected = ["_input"] + [p.name for p in params[1:]]
        assert [p.strip() for p in doc["positional"].split(",")] == expected, name
        assert set(doc["options"]) == set(expected), name
        for option, param in zip(expected, params, strict=True):
            required = param.default is inspect.Parameter.empty
            assert bool(doc["options"][option].get("required")) == required, f"{name}: {option}"
        assert f"gpufleet.cluster.{name}" in entry["examples"], name
        assert "_value" in entry["return"], name


def test_every_filter_used_in_the_collection_exists():
    # A renamed or removed filter fails only when its task runs; find every use up front.
    used = re.compile(r"""(?:\|\s*|map\(\s*['"])gpufleet\.cluster\.(\w+)""")
    unknown = []
    for top in ("roles", "playbooks", "molecule", "docs", "inventories"):
        for path in sorted((REPO / top).rglob("*")):
            if path.is_file() and path.suffix in (".yml", ".yaml", ".j2", ".md"):
                names = set(used.findall(path.read_text()))
                unknown += [f"{path.relative_to(REPO)}: {n}" for n in sorted(names - set(REGISTERED))]
    assert unknown == []


WRAPS = re.compile(r"C\((\w+)\)\s+in\s+C\(([\w/.]+\.py)\)")


def test_each_doc_names_the_file_that_defines_the_function():
    """A doc that says "Wraps C(fn) in C(path)" points at a file that exists and defines fn (the
    docs went stale once when controller code moved from module_utils to plugin_utils)."""
    stale = []
    for doc in sorted(FILTER_DIR.glob("*.yml")):
        for fn, path in WRAPS.findall(doc.read_text()):
            source = REPO / path
            text = source.read_text() if source.is_file() else ""
            if not re.search(rf"^def {fn}\b|^{fn} = ", text, re.M):
                stale.append(f"{doc.name}: {fn} is not defined in {path}")
    assert not stale, "\n".join(stale)
