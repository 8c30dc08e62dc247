# Copyright: gpufleet developers
# Apache-2.0
"""Running a host tool from a module, written once: C locale, and coreutils ``timeout`` so a tool
that hangs on broken hardware (nvidia-smi on a GPU that fell off the bus, ibstat on a wedged HCA)
cannot hang the play."""

from __future__ import annotations

C_LOCALE = {"LANG": "C", "LC_ALL": "C"}
TIMEOUT_EXIT = 124  # coreutils timeout(1): the command timed out
OUTPUT_TAIL_MAX_CHARS = 2000


def output_tail(*texts, max_chars=OUTPUT_TAIL_MAX_CHARS):
    """The last ``max_chars`` characters of the non-empty texts joined, stripped; None if empty."""
    joined = "\n".join(t.strip() for t in texts if t and t.strip())
    if not joined:
        return None
    return joined[-max_chars:].strip()


def error_lines(text, max_chars=OUTPUT_TAIL_MAX_CHARS):
    """A tool's error output as whole lines, blank ones dropped; cut at the end, never mid-line at
    the front (the first error line is the one that says what went wrong). None if empty."""
    lines = [line.rstrip() for line in (text or "").splitlines() if line.strip()]
    kept, size = [], 0
    for line in lines:
        if kept and size + len(line) + 1 > max_chars:
            kept.append("...")
            break
        kept.append(line)
        size += len(line) + 1
    return "\n".join(kept) or None


def run_tool(module, command, timeout, name=None, partial=False):
    """Run ``command`` (argv list). Returns ``(out, error)``: stdout, or None and why there is none
    (timed out, or non-zero exit with the tail of its output).

    ``partial``: a tool that exits non-zero after printing part of its report (``ibstat`` stops at
    the first device it cannot read) returns what it printed as ``out`` and its error lines whole
    (``error_lines``) as ``error``, so the report is kept and the failure is said."""
    name = name or command[0]
    timeout_bin = module.get_bin_path("timeout") if timeout else None
    if timeout_bin:
        command = [timeout_bin, "-k", "5", str(timeout), *command]
    rc, out, err = module.run_command(command, environ_update=C_LOCALE)
    if timeout_bin and rc == TIMEOUT_EXIT:
        return None, output_tail(err, out, f"{name} did not answer within {timeout} seconds")
    if rc != 0 and partial:
        return out, error_lines(err) or f"{name} exited with status {rc}"
    if rc != 0:
        return None, output_tail(err, out) or f"{name} exited with status {rc}"
    return out, None
