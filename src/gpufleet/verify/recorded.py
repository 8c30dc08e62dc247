"""Read a directory of recorded tool outputs into the state ``gpufleet.verify.collect`` gathers.

``gpufleet diagnose`` judges outputs recorded elsewhere (a support case, an ``nvidia-bug-report``
excerpt, a host the controller cannot reach) with the very checks ``gpufleet verify`` runs. This
module is its collector: the same state keys (``collect.STATE_KEYS``), built from files found by
their well-known names (``FILES``) with the same host-side parsers the modules use. What a
directory does not hold is left out of ``recorded`` so that a check needing it skips with the
reason instead of guessing. Every other file in the directory is reported, never silently ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ansible_collections.gpufleet.cluster.plugins.module_utils import infiniband, nvidia_smi
from ansible_collections.gpufleet.cluster.plugins.module_utils.gpu_inventory import build_facts

from gpufleet.verify import collect

# File name -> what it holds. The order is the order of the --help text and of the report.
FILES = {
    "nvidia-smi-q.xml": "nvidia-smi -q -x",
    "nvidia-smi-q.txt": "nvidia-smi -q (plain text; used when there is no XML report)",
    "nvlink-s.txt": "nvidia-smi nvlink -s",
    "kernel.log": "journalctl -k or dmesg, with or without timestamps",
    "ibstat.txt": "ibstat",
    "sys-class-infiniband/": "a copy of /sys/class/infiniband (used before ibstat.txt)",
    "nccl-tests.txt": "an nccl-tests all_reduce_perf report; MPI rank prefixes ([0], [1,0]<stdout>:) allowed",
    "expect.yml": "the host's expectations: gpus, sku, rails, rail_rate_gbps, rail_ports, policy",
}
# A tool's own failure, next to its output: <name>.rc holds its exit status, <name>.stderr its
# error output (e.g. ibstat.rc, ibstat.stderr). They belong to the tool file of the same stem.
COMPANIONS = (".rc", ".stderr")
MAX_BYTES = 64 * 1024 * 1024  # a recorded file larger than this is reported, not read


@dataclass
class Recording:
    """What ``read`` found: ``state`` (collect's keys), ``recorded`` (the state keys a file gave),
    ``inputs`` (one entry per file or directory: name, what, status used/unused/unreadable, reason),
    ``nccl_tests`` (the report's text, or None) and ``expect_path`` (expect.yml, or None)."""

    state: dict
    recorded: set = field(default_factory=set)
    inputs: list = field(default_factory=list)
    nccl_tests: str | None = None
    expect_path: Path | None = None


def _read_text(path: Path) -> str:
    if path.stat().st_size > MAX_BYTES:
        raise OSError(f"larger than {MAX_BYTES // (1024 * 1024)} MiB")
    return path.read_bytes().decode("utf-8", "replace")


def _tool_failure(directory: Path, stem: str) -> tuple[int | None, str | None, list[str]]:
    """(exit status, error text, companion names) recorded next to ``stem``'s output."""
    rc = err = None
    names = []
    rc_path, err_path = directory / f"{stem}.rc", directory / f"{stem}.stderr"
    if rc_path.is_file():
        names.append(rc_path.name)
        text = rc_path.read_text(errors="replace").strip()
        rc = int(text) if text.lstrip("-").isdigit() else None
    if err_path.is_file():
        names.append(err_path.name)
        err = err_path.read_text(errors="replace")
    return rc, err, names


def _error_lines(text: str | None) -> str:
    """The tool's error lines, whole (never cut from the front), blank lines dropped."""
    return "\n".join(line.rstrip() for line in (text or "").splitlines() if line.strip())


def _base_state() -> dict:
    state: dict = dict.fromkeys(collect.STATE_KEYS)
    state.update(errors={}, local_facts={}, network={}, packages={}, services={}, collect_s=0.0)
    return state


def read(directory: str | os.PathLike) -> Recording:
    """The recording in ``directory`` (it must exist; ``diagnose`` checks). Never raises for a file."""
    directory = Path(directory)
    rec = Recording(state=_base_state())
    state, errors = rec.state, rec.state["errors"]
    rec.recorded.add("errors")  # what could not be read is known for every recording
    used: dict[str, tuple[str, str | None]] = {}  # name -> (status, reason)

    def note(name, status, reason=None):
        used[name] = (status, reason)

    def text_of(name):
        path = directory / name
        if not path.is_file():
            return None
        try:
            return _read_text(path)
        except (OSError, UnicodeError) as exc:
            note(name, "unreadable", str(exc))
            return None

    # --- GPUs: nvidia-smi -q -x, else nvidia-smi -q -------------------------------------------
    report = None
    for name, parse in (
        ("nvidia-smi-q.xml", nvidia_smi.parse_nvidia_smi_xml),
        ("nvidia-smi-q.txt", nvidia_smi.parse_nvidia_smi_text),
    ):
        text = text_of(name)
        if text is None:
            continue
        if report is not None:
            note(name, "unused", "nvidia-smi-q.xml was read instead")
            continue
        try:
            report = parse(text)
        except nvidia_smi.NvidiaSmiParseError as exc:
            note(name, "unreadable", str(exc))
            errors["gpus"] = f"{name}: {exc}"
            continue
        note(name, "used")
    if report is not None:
        state["gpus"] = build_facts(report, (), (), nvidia_smi_path="nvidia-smi (recorded)")
        rec.recorded.add("gpus")

    # --- nvidia-smi nvlink -s, kernel log --------------------------------------------------------
    for name, key in (("nvlink-s.txt", "nvlink"), ("kernel.log", "kernel_log")):
        text = text_of(name)
        if text is not None:
            state[key] = text
            rec.recorded.add(key)
            note(name, "used")

    # --- InfiniBand: a copy of /sys/class/infiniband, else ibstat -------------------------------
    devices, source = None, None
    sysfs = directory / "sys-class-infiniband"
    if sysfs.is_dir():
        devices, source = infiniband.read_sysfs(str(sysfs), str(directory / "sys-class-net")), "sysfs"
        note("sys-class-infiniband/", "used" if devices else "unreadable", None if devices else "no device")
    text = text_of("ibstat.txt")
    rc, err, companions = _tool_failure(directory, "ibstat")
    ibstat = infiniband.parse_ibstat(text) if text is not None else None
    if text is not None:
        note("ibstat.txt", "used" if devices is None else "unused", None if devices is None else "sysfs read")
    if devices is None and (ibstat or text is not None or rc):
        devices, source = ibstat or [], "ibstat"
    for name in companions:
        note(name, "used")
    if devices is not None:
        ib = {"source": source, "present": bool(devices), "kernel_support": None, "in_container": False}
        ib.update(infiniband.summarize(devices))
        ib["ibstat"] = ibstat
        ib["ibstat_error"] = None
        # ibstat's own error lines: its .stderr, or ibpanic/ibwarn lines pasted into its output.
        panic = "\n".join(
            line for line in (text or "").splitlines() if line.strip().startswith(("ibpanic:", "ibwarn:"))
        )
        failed = _error_lines("\n".join(t for t in (err, panic) if t))
        if rc or failed:
            # The tool failed: its error lines kept whole, and what it printed before still judged.
            ib["ibstat_error"] = failed or f"ibstat exited with status {rc}"
            status = f" with status {rc}" if rc else ""
            errors["ib"] = (
                f"ibstat failed{status} after printing {len(ibstat or [])} device(s): {ib['ibstat_error']}"
            )
        state["ib"] = ib
        rec.recorded.add("ib")

    # --- nccl-tests, expectations ---------------------------------------------------------------
    text = text_of("nccl-tests.txt")
    if text is not None:
        rec.nccl_tests = text
        note("nccl-tests.txt", "used")
    if (directory / "expect.yml").is_file():
        rec.expect_path = directory / "expect.yml"
        note("expect.yml", "used")

    # --- everything else is reported ------------------------------------------------------------
    known = {n.rstrip("/") for n in FILES}
    for entry in sorted(os.listdir(directory)):
        path = directory / entry
        name = entry + ("/" if path.is_dir() else "")
        if name in used:
            continue
        if entry in known and name not in used:
            note(name, "unreadable", "not a regular file" if not path.is_file() else "could not be read")
        elif entry == "sys-class-net" and path.is_dir():
            note(name, "used" if "ib" in rec.recorded else "unused", None)
        else:
            note(name, "unknown", "not a file name gpufleet diagnose knows (see --help)")
    rec.inputs = [
        {"file": name, "what": FILES.get(name) or FILES.get(name + "/"), "status": status, "reason": reason}
        for name, (status, reason) in sorted(used.items())
    ]
    return rec
