#!/usr/bin/env python3
"""The whole test suite (`make test`) as timed stages, with a budget.

Every stage is declared once in ``STAGES``; the runner runs them in order (stages of one
``group`` run side by side), streams their output, and ends with a timing table (stage, item,
seconds, share of the total) that is also written to ``reports/test-timings.json``. Integration
test files and Molecule scenarios get one row each, so the table shows where the time goes; a
unit test (tests/unit/test_suite_budget.py) fails when a scenario or an integration test file
exists that no stage accounts for.

Runs on the system Python before the venv exists: standard library only.

    python3 tests/suite.py            # everything (what CI runs)
    python3 tests/suite.py --list     # the stages, without running them
    python3 tests/suite.py --only lint,unit
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUDGET_S = 30 * 60
REPORTS = REPO / "reports"
TIMINGS = REPORTS / "test-timings.json"
JUNIT_DIR = REPORTS / "junit"
BIN = REPO / ".venv" / "bin"

# Integration test files, each a row of the table (timed from pytest's JUnit report).
INTEGRATION = (
    "test_lab.py",
    "test_driver_preflight.py",
    "test_stack_preflight.py",
    "test_nccl_tests_pin.py",
    "test_wheel.py",
    "test_verify.py",
    "test_bundle.py",
)
# Molecule scenarios, each a stage of its own, with the lane it runs in, in this order within a lane:
# the air-gapped whole stack follows the lab bundle in lane 1 (the longest path); in lane 0,
# monitoring runs in the time nvidia_driver would spend waiting for its layer image, and
# nvidia_driver ends the lane.
SCENARIOS = {"airgap": 1, "monitoring": 0, "model_s3": 0, "nvidia_driver": 0}
# Scenarios that start from a lab layer image (gpufleet.lab.layers) another scenario commits: each
# waits until `gpufleet lab layer check LAYER` accepts the image (made from this checkout's inputs),
# or until the producing stage has ended. nvidia_driver starts from the node the air-gapped converge
# provisioned, so the run builds the driver's DKMS module once.
LAYER_WAITS = {"nvidia_driver": ("airgap", "node")}
BESIDE_THE_CONVERGE = 10  # niceness of lane 0's checks (Stage.nice)
WAIT_POLL_S = 10
# A failed stage's last lines of output and its failed tests are repeated under the timing table,
# so the end of a long CI log says what failed without scrolling through the lanes' interleaving.
TAIL_LINES = 25
FAILURES_SHOWN = 10


@dataclass
class Stage:
    name: str
    argv: list[str]
    why: str
    group: str = ""  # consecutive stages of one non-empty group run at the same time...
    lane: int = 0  # ...one thread per lane; the stages of one lane run one after the other
    junit: str = ""  # a JUnit report the stage writes, read for per-file rows and test counts
    rows_from_junit: bool = False
    env: dict = field(default_factory=dict)
    # (producing stage, layer): start only once that stage has committed the layer image
    waits_for: tuple[str, str] | None = None
    # niceness of the stage's processes: lane 0's checks have slack (nvidia_driver waits for the
    # layer anyway), the air-gapped converge beside them is the longest path; on two cores they
    # yield the CPU to it instead of stretching its DKMS build
    nice: int = 0


def _pytest(*args: str) -> list[str]:
    return [str(BIN / "pytest"), *args]


# What every stage runs with, the same whether the suite is started by `make test` or directly:
# the venv's tools first on PATH, the repository's Ansible configuration, no colour codes in logs.
ENV = {
    "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
    "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
    "ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections"),
    "ANSIBLE_FORCE_COLOR": "0",
    "ANSIBLE_NOCOLOR": "1",
    "PY_COLORS": "0",
    "NO_COLOR": "1",
}


def stages() -> list[Stage]:
    """Setup, the lab image (the lab stages need it), then everything else in one group: lane 0 runs
    the checks that need no bundle while lane 1 builds the lab bundle and converges the whole stack
    from it (the longest path)."""
    lab = "lab"
    out = [
        Stage("host-deps", ["bash", "scripts/host-deps.sh"], "apt packages, docker daemon"),
        Stage("venv", ["make", "--no-print-directory", "venv"], "Python venv with the dev tools"),
        Stage(
            "lab image", [str(BIN / "gpufleet"), "lab", "image"], "debootstrap image, cached by recipe hash"
        ),
        Stage(
            "lint",
            ["make", "--no-print-directory", "lint"],
            "ruff (controller + host code), ansible-lint",
            group=lab,
            lane=0,
            nice=BESIDE_THE_CONVERGE,
        ),
        Stage(
            "unit",
            _pytest(
                "tests/unit", "-q", "-p", "no:cacheprovider", "-n", "auto", f"--junitxml={JUNIT_DIR}/unit.xml"
            ),
            "unit tests on recorded outputs",
            group=lab,
            lane=0,
            nice=BESIDE_THE_CONVERGE,
            junit="unit.xml",
        ),
        Stage(
            "lab bundle",
            [
                "sh",
                "-c",
                f"{BIN / 'gpufleet'} lab bundle-inputs && "
                f"{BIN / 'gpufleet'} bundle build bundles/lab.yml -o .cache/bundles/lab",
            ],
            "the signed lab bundle (with the lab's tiny model): the one package source of the run",
            group=lab,
            lane=1,
        ),
        Stage(
            "integration",
            _pytest(
                *(f"tests/integration/{f}" for f in INTEGRATION),
                "-q",
                "-p",
                "no:cacheprovider",
                f"--junitxml={JUNIT_DIR}/integration.xml",
            ),
            "real commands against a one-node lab",
            group=lab,
            lane=0,
            nice=BESIDE_THE_CONVERGE,
            junit="integration.xml",
            rows_from_junit=True,
        ),
        Stage(
            "newest ansible-core",
            ["make", "--no-print-directory", "newest"],
            "unit tests, ansible-doc and syntax checks on the newest ansible-core",
            group=lab,
            lane=0,
            nice=BESIDE_THE_CONVERGE,
            junit="newest.xml",
            env={"PYTEST_ADDOPTS": f"--junitxml={JUNIT_DIR}/newest.xml"},
        ),
    ]
    for name, lane in SCENARIOS.items():
        scenario = Stage(
            f"molecule {name}",
            [str(BIN / "molecule"), "test", "-s", name],
            "converge, idempotence, testinfra verify",
            group=lab,
            lane=lane,
            junit=f"molecule-{name}.xml",
            env={"PYTEST_ADDOPTS": f"--junitxml={JUNIT_DIR}/molecule-{name}.xml"},
        )
        if name in LAYER_WAITS:
            producer, layer = LAYER_WAITS[name]
            scenario.waits_for = (f"molecule {producer}", layer)
        out.append(scenario)
    return out


def _fmt(seconds: float) -> str:
    return f"{int(seconds) // 60:d}:{int(seconds) % 60:02d}"


def junit_counts(path: Path) -> dict:
    """passed/failed/skipped counts and seconds per test file from a pytest JUnit report."""
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    files: dict[str, float] = {}
    failures: list[str] = []
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return {"counts": None, "files": {}, "failures": []}
    for case in root.iter("testcase"):
        kinds = {child.tag for child in case}
        if kinds & {"failure", "error"}:
            counts["failed"] += 1
            bad = next(child for child in case if child.tag in ("failure", "error"))
            message = (bad.get("message") or bad.text or "").strip().splitlines()
            failures.append(
                f"{case.get('classname')}::{case.get('name')}: {message[0] if message else bad.tag}"
            )
        elif "skipped" in kinds:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
        module = (case.get("classname") or "").split(".")
        name = next((f"{p}.py" for p in module if p.startswith("test_")), case.get("file") or "?")
        files[name] = files.get(name, 0.0) + float(case.get("time") or 0)
    return {"counts": counts, "files": files, "failures": failures}


def _layer_ready(layer: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "gpufleet"), "lab", "layer", "check", layer, "--root", str(REPO)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def wait_for_layer(stage: Stage, finished: set, env: dict) -> tuple[bool, float, str]:
    """Poll until the layer image is accepted, or its producer has ended without making it."""
    producer, layer = stage.waits_for
    started = time.monotonic()
    announced = False
    while True:
        ended = producer in finished
        proc = _layer_ready(layer, env)
        if proc.returncode == 0:
            return True, time.monotonic() - started, proc.stdout.strip()
        if ended:
            why = (proc.stderr or proc.stdout).strip().splitlines()
            return False, time.monotonic() - started, why[-1] if why else "no answer"
        if not announced:
            print(f"=== {stage.name}: waiting for lab layer '{layer}' ({producer} commits it)", flush=True)
            announced = True
        time.sleep(WAIT_POLL_S)


def run_stage(stage: Stage, results: list, lock: threading.Lock, finished: set | None = None) -> int:
    env = {**os.environ, **ENV, **stage.env}
    waited = 0.0
    if stage.waits_for:
        ok, waited, detail = wait_for_layer(stage, finished if finished is not None else set(), env)
        if not ok:
            print(f"=== {stage.name}: not started, the lab layer is missing: {detail}", flush=True)
            with lock:
                results.append(
                    {
                        "stage": stage.name,
                        "item": "",
                        "seconds": 0.0,
                        "rc": 3,
                        "group": stage.group,
                        "waited_s": round(waited, 1),
                    }
                )
            return 3
        print(f"=== {stage.name}: lab layer ready after {_fmt(waited)} of waiting: {detail}", flush=True)
    started = time.monotonic()
    prefix = f"[{stage.name}] " if stage.group else ""
    print(f"\n=== {stage.name}: {stage.why}\n$ {' '.join(stage.argv)}", flush=True)
    # nice(1), not preexec_fn: the lanes are threads, and preexec_fn is unsafe in a threaded parent
    argv = ["nice", "-n", str(stage.nice), *stage.argv] if stage.nice else stage.argv
    proc = subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    for line in proc.stdout:
        sys.stdout.write(prefix + line)
        sys.stdout.flush()
        tail.append(line.rstrip("\n"))
    rc = proc.wait()
    seconds = time.monotonic() - started
    row = {"stage": stage.name, "item": "", "seconds": round(seconds, 1), "rc": rc, "group": stage.group}
    if rc:
        row["tail"] = list(tail)
    if stage.waits_for:
        row["waited_s"] = round(waited, 1)
    rows = [row]
    if stage.junit:
        parsed = junit_counts(JUNIT_DIR / stage.junit)
        row["tests"] = parsed["counts"]
        if parsed["failures"]:
            row["failures"] = parsed["failures"]
        if stage.rows_from_junit:
            for name, secs in sorted(parsed["files"].items(), key=lambda kv: -kv[1]):
                rows.append({"stage": stage.name, "item": name, "seconds": round(secs, 1), "part": True})
    with lock:
        results.extend(rows)
    print(f"=== {stage.name}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} in {_fmt(seconds)}", flush=True)
    return rc


def _run_lane(
    lane: list[Stage], results: list, lock: threading.Lock, rcs: list, keep_going: bool, finished: set
) -> None:
    for st in lane:
        try:
            rc = run_stage(st, results, lock, finished)
        finally:
            finished.add(st.name)
        rcs.append(rc)
        if rc and not keep_going:
            # The lane's later stages never run: count them as ended for any stage waiting on them.
            finished.update(s.name for s in lane)
            return


def table(results: list, total: float) -> str:
    lines = [
        f"{'STAGE':<20} {'ITEM':<28} {'TIME':>7} {'SHARE':>6}  RESULT",
    ]
    for r in results:
        share = 100 * r["seconds"] / total if total else 0
        if r.get("part"):
            lines.append(f"{'':<20} {r['item']:<28} {_fmt(r['seconds']):>7} {share:5.1f}%")
            continue
        result = "ok" if r["rc"] == 0 else f"FAILED ({r['rc']})"
        tests = r.get("tests")
        if tests:
            result += f"  {tests['passed']} passed, {tests['failed']} failed, {tests['skipped']} skipped"
        par = " (parallel)" if r.get("group") else ""
        if r.get("waited_s"):
            par = f" (parallel, waited {_fmt(r['waited_s'])})"
        lines.append(f"{r['stage']:<20} {par:<28} {_fmt(r['seconds']):>7} {share:5.1f}%  {result}")
    verdict = "within" if total <= BUDGET_S else "OVER"
    budget = f"{verdict} the budget of {_fmt(BUDGET_S)}"
    lines.append(f"{'total (wall clock)':<20} {'':<28} {_fmt(total):>7} 100.0%  {budget}")
    return "\n".join(lines)


def why_failed(results: list) -> str:
    """For each failed stage: its failed tests (from its JUnit report) or else its last lines."""
    out = []
    for r in results:
        if r.get("part") or not r.get("rc"):
            continue
        out.append(f"--- {r['stage']}: exit {r['rc']}")
        failures = r.get("failures") or []
        for failure in failures[:FAILURES_SHOWN]:
            out.append(f"    FAILED {failure}")
        if len(failures) > FAILURES_SHOWN:
            out.append(f"    ... and {len(failures) - FAILURES_SHOWN} more (reports/junit)")
        if not failures:
            out.extend(f"    | {line}" for line in r.get("tail") or ["(no output)"])
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", action="store_true", help="print the stages and exit")
    ap.add_argument("--only", help="comma-separated stage names to run (default: all)")
    ap.add_argument("--keep-going", action="store_true", help="run later stages after a failure")
    args = ap.parse_args(argv)
    todo = stages()
    if args.list:
        for s in todo:
            where = f"  [parallel group {s.group}, lane {s.lane}]" if s.group else ""
            print(f"{s.name:<20} {s.why}{where}")
        return 0
    if args.only:
        wanted = {w.strip() for w in args.only.split(",") if w.strip()}
        unknown = wanted - {s.name for s in todo}
        if unknown:
            ap.error(f"unknown stage(s): {', '.join(sorted(unknown))}; see --list")
        todo = [s for s in todo if s.name in wanted]
    JUNIT_DIR.mkdir(parents=True, exist_ok=True)
    for stale in JUNIT_DIR.glob("*.xml"):
        stale.unlink()
    results: list = []
    lock = threading.Lock()
    started = time.monotonic()
    failed = False
    i = 0
    while i < len(todo):
        batch = [todo[i]]
        while todo[i].group and i + 1 < len(todo) and todo[i + 1].group == todo[i].group:
            i += 1
            batch.append(todo[i])
        i += 1
        lanes: dict[int, list[Stage]] = {}
        for st in batch:
            lanes.setdefault(st.lane, []).append(st)
        rcs: list[int] = []
        finished: set[str] = set()
        threads = [
            threading.Thread(target=_run_lane, args=(lane, results, lock, rcs, args.keep_going, finished))
            for lane in lanes.values()
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if any(rcs):
            failed = True
            if not args.keep_going:
                break
    total = time.monotonic() - started
    order = {s.name: n for n, s in enumerate(stages())}
    results.sort(key=lambda r: (order.get(r["stage"], 99), bool(r.get("part"))))
    REPORTS.mkdir(exist_ok=True)
    tally = {"passed": 0, "failed": 0, "skipped": 0}
    for r in results:
        for k in tally:
            tally[k] += (r.get("tests") or {}).get(k, 0)
    TIMINGS.write_text(
        json.dumps(
            {
                "budget_s": BUDGET_S,
                "total_s": round(total, 1),
                "within_budget": total <= BUDGET_S,
                "ok": not failed,
                "tests": tally,
                "rows": results,
            },
            indent=2,
        )
        + "\n"
    )
    print("\n" + table(results, total))
    if failed:
        print("\nwhat failed:\n" + why_failed(results))
    print(f"timings written to {TIMINGS.relative_to(REPO)}")
    print(f"suite: {tally['passed']} passed, {tally['failed']} failed, {tally['skipped']} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
