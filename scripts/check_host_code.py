"""Check the collection's host code: what Ansible ships to managed hosts must run on the oldest host Python.

Host code is every file a module under plugins/modules imports from plugins/module_utils (followed
transitively), plus the module_utils files a benchmark probe carries (src/gpufleet/verify/probes). It
must import only the standard library, ansible.module_utils and other host code, never plugin_utils or
the gpufleet package; an import inside ``try: ... except ImportError:`` is optional (boto3 for s3://
model sources, guarded as amazon.aws guards it) and allowed. ruff (ruff-host.toml, target py38)
rejects newer syntax; it cannot see newer standard-library use (str.removeprefix, zip(strict=...),
int | str evaluated at run time), so with ``--python`` naming a Python 3.8 this script also compiles
and imports every host file under it and, when that Python has pytest, runs the host code's unit
tests under it, with ansible's module_utils on the path as Ansible ships them next to a module.

Usage: python scripts/check_host_code.py [--python /path/to/python3.8]
"""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODULES = REPO / "plugins" / "modules"
MODULE_UTILS = REPO / "plugins" / "module_utils"
HOST_PREFIX = "ansible_collections.gpufleet.cluster.plugins.module_utils."
# module_utils files a probe program carries (gpufleet.verify.probes._EXTRA_SOURCES).
PROBE_CARRIED = ("probe_output",)
# Controller code still in module_utils until its own move lands (health -> the checks package).
HOST_TESTS = REPO / "tests" / "unit"


def _optional(tree: ast.AST) -> set[int]:
    """ids of the import nodes in the body of a ``try`` that catches ImportError: optional imports,
    as amazon.aws guards boto3 (``HAS_BOTO3``); the code must work without them."""
    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        caught = set()
        for handler in node.handlers:
            types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
            caught |= {t.id for t in types if isinstance(t, ast.Name)}
        if caught & {"ImportError", "ModuleNotFoundError"}:
            found |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return found


def imports(path: Path, optional: bool = True) -> list[str]:
    """Names ``path`` imports; ``optional=False`` leaves out those guarded by ``except ImportError``."""
    names = []
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    skip = set() if optional else _optional(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [f"{node.module}.{a.name}" for a in node.names]
    return names


def host_files() -> dict[str, Path]:
    """name -> path of every module_utils file that reaches a host."""
    todo = [p for p in sorted(MODULES.glob("*.py"))] + [MODULE_UTILS / f"{n}.py" for n in PROBE_CARRIED]
    found: dict[str, Path] = {}
    while todo:
        path = todo.pop()
        for name in imports(path):
            if name.startswith(HOST_PREFIX):
                util = name[len(HOST_PREFIX) :].split(".")[0]
                if util not in found and (MODULE_UTILS / f"{util}.py").is_file():
                    found[util] = MODULE_UTILS / f"{util}.py"
                    todo.append(found[util])
    for name in PROBE_CARRIED:
        found[name] = MODULE_UTILS / f"{name}.py"
    return found


def import_problems(paths: list[Path]) -> list[str]:
    allowed = set(sys.stdlib_module_names) | {"__future__"}
    problems = []
    for path in paths:
        for name in imports(path, optional=False):
            top = name.split(".")[0]
            if top in allowed or name.startswith(("ansible.module_utils.", HOST_PREFIX)):
                continue
            problems.append(
                f"{path.relative_to(REPO)}: imports {name}: host code may import only the "
                "standard library, ansible.module_utils and plugins/module_utils"
            )
    return problems


def under_python(python: str, utils: dict[str, Path], sources: list[Path]) -> int:
    """Compile every host file and import every module_utils file with ``python``; then its tests.

    Both see the controller's ``ansible.module_utils`` as Ansible ships it next to a module (host code
    may use it: bundle_remote downloads with its open_url), and nothing else of the controller's."""
    import ansible  # the controller's copy: Ansible ships ansible.module_utils from it next to a module

    with tempfile.TemporaryDirectory() as shipped:
        os.symlink(Path(ansible.__file__).parent, Path(shipped) / "ansible")
        env = {**os.environ, "PYTHONPATH": shipped}
        return _under_python(python, utils, sources, env)


def _under_python(python: str, utils: dict[str, Path], sources: list[Path], env: dict) -> int:
    program = (
        "import importlib, sys\n"
        "for path in sys.argv[2:]:\n"
        "    compile(open(path, encoding='utf-8').read(), path, 'exec')\n"
        "sys.path.insert(0, sys.argv[1])\n"
        f"for name in {sorted(utils)!r}:\n"
        f"    importlib.import_module({HOST_PREFIX!r} + name)\n"
        "print('compiled %d files, imported %d modules under Python %s' % "
        f"(len(sys.argv) - 2, {len(utils)}, sys.version.split()[0]))\n"
    )
    collections = REPO / ".collections"
    cmd = [python, "-c", program, str(collections), *map(str, sources)]
    rc = subprocess.run(cmd, env=env, check=False).returncode
    if rc:
        return rc
    if subprocess.run([python, "-c", "import pytest"], capture_output=True, check=False).returncode:
        print(f"{python} has no pytest: host unit tests not run under it (compile and import checks passed)")
        return 0
    tests = [HOST_TESTS / "modules"] + [
        t for t in sorted((HOST_TESTS / "module_utils").glob("test_*.py")) if t.stem[len("test_") :] in utils
    ]
    tests += [HOST_TESTS / "module_utils" / f"test_{n}.py" for n in ("bundle_format", "host_env", "tool_run")]
    tests = sorted({t for t in tests if t.exists()})
    cmd = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *map(str, tests)]
    return subprocess.run(cmd, cwd=REPO, env=env, check=False).returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", help="an interpreter of the oldest host Python (3.8)")
    args = parser.parse_args()
    utils = host_files()
    sources = sorted(MODULES.glob("*.py")) + sorted(utils.values())
    problems = import_problems(sources)
    for path in sorted(MODULE_UTILS.glob("*.py")):
        if path.stem not in utils:
            problems.append(
                f"{path.relative_to(REPO)}: no module imports it and no probe carries it: "
                "controller code belongs in plugins/plugin_utils"
            )
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(f"host code: {len(sources)} files, imports stdlib / ansible.module_utils / module_utils only")
    if not args.python:
        print("no Python 3.8 given (--python): compile, import and test checks under it skipped")
        return 0
    return under_python(args.python, utils, sources)


if __name__ == "__main__":
    sys.exit(main())
