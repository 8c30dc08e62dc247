"""Fault-injection suite (`make faults`): lab nodes interrupted at chosen points of a run, then run
again. Each case records (fault, point, first run, recovery run, idempotent re-run, seconds); the
session ends with that table printed and written to reports/faults.json.

Needs root, docker and the lab layer image `gpufleet-lab-node` that `make test` (the airgap scenario)
commits: every case starts from a node a real converge provisioned, so only the step under test is
redone. Each case is bounded in time and removes its container.
"""

import json
import time

import pytest
from faultlab import CASES, REPO, node_up, run

ROWS = []


@pytest.fixture(scope="session", autouse=True)
def _layer():
    """The cases need a node a real converge provisioned: the layer image. One made from other
    inputs than this checkout's still is one (the roles under test come from this checkout), so
    that is said, not refused; a missing image is refused."""
    if run(["docker", "image", "inspect", "gpufleet-lab-node:current"]).returncode != 0:
        pytest.fail(
            "the fault suite starts from the lab layer image gpufleet-lab-node:current, which does not "
            "exist: run 'make test' (or 'molecule test -s airgap') first"
        )
    proc = run([*CASES.gpufleet, "lab", "layer", "check", "node", "--root", REPO])
    if proc.returncode != 0:
        print(f"\nnote: {proc.stderr.strip() or proc.stdout.strip()}\n(the cases run on it all the same)")


@pytest.fixture
def node(request):
    name = f"gpufleet-faults-{request.node.name.removeprefix('test_').replace('_', '-')[:40]}"
    with node_up(name) as container:
        yield container


@pytest.fixture
def record(request):
    row = {"case": request.node.name.removeprefix("test_"), "started": time.monotonic()}

    def _record(**fields):
        row.update(fields)

    yield _record
    row["seconds"] = round(time.monotonic() - row.pop("started"))
    row["result"] = "passed" if not getattr(request.node, "_failed", False) else "failed"
    ROWS.append(row)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        item._failed = True


def pytest_sessionfinish(session):
    if not ROWS:
        return
    cols = ["case", "fault", "point", "first_run", "recovery_run", "rerun", "seconds", "result"]
    widths = {c: max(len(c), *(len(str(r.get(c, "-"))) for r in ROWS)) for c in cols}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in cols)]
    lines += ["  ".join(str(r.get(c, "-")).ljust(widths[c]) for c in cols) for r in ROWS]
    text = "\n".join(lines)
    out = REPO / "reports" / "faults.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(ROWS, indent=2) + "\n")
    print("\n\n" + text + f"\n\nwritten to {out}")
