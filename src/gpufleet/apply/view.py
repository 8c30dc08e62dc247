"""How a run looks while it goes and when it ends, drawn from a :class:`FleetState`.

On a terminal (:class:`LiveView`): a ``rich`` Live display, one line per host — state, ``role :
task`` it is in, ok/changed/failed/unreachable counts, elapsed — redrawn a few times a second. When
the fleet has more hosts than the screen has lines, it collapses to a summary: hosts per state and
the failing hosts only (a 500-host redraw is what freezes AWX's live output, awx #10211).
Elsewhere (:class:`PlainView`, CI logs): one plain line per event of note — a task failed, a host
unreachable, a host's recap — and no escape codes.
Both end with :func:`final_table`: the failed and unreachable hosts with the failing task and message.
"""

from __future__ import annotations

import sys
import time

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from gpufleet.apply.state import (
    DONE,
    FAILED,
    RUNNING,
    UNREACHABLE,
    WAITING,
    FleetState,
    HostState,
    event_failure,
)

STYLE = {RUNNING: "cyan", DONE: "green", FAILED: "bold red", UNREACHABLE: "bold magenta", WAITING: "dim"}
# Lines the per-host table needs besides its rows: title, header, blank lines, the totals caption.
CHROME_LINES = 5


def elapsed(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def fits(state: FleetState, height: int) -> bool:
    """Whether one line per host fits in a screen ``height`` lines high."""
    return len(state.hosts) <= max(height - CHROME_LINES, 0)


def _title(state: FleetState, title: str) -> str:
    where = f" — {state.play}" if state.play else ""
    return f"{title}{where}"


def host_table(state: FleetState, title: str = "gpufleet apply", now: float | None = None) -> Table:
    """One row per host: host, state, role : task, ok/changed/failed/unreachable, elapsed."""
    table = Table(title=_title(state, title), title_justify="left", expand=True, box=None, pad_edge=False)
    table.add_column("host", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("role : task", overflow="ellipsis", no_wrap=True, ratio=1)
    for col in ("ok", "chg", "fail", "unr"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("elapsed", justify="right", no_wrap=True)
    for h in state.snapshot():
        c = h.counts
        table.add_row(
            h.host,
            Text(h.state, style=STYLE[h.state]),
            h.current,
            str(c["ok"]),
            str(c["changed"]),
            str(c["failed"]),
            str(c["unreachable"]),
            elapsed(h.elapsed(now)),
        )
    return table


def summary_panel(state: FleetState, height: int, title: str = "gpufleet apply") -> Panel:
    """Hosts per state, then the failing hosts only, as many as the screen has room for."""
    by_state = state.by_state()
    total = sum(by_state.values())
    counts = Text(f"{total} hosts: ")
    counts.append_text(Text(", ").join(Text(f"{n} {s}", style=STYLE[s]) for s, n in by_state.items() if n))
    totals = state.totals()
    lines: list = [
        counts,
        Text(
            f"tasks: ok={totals['ok']} changed={totals['changed']} "
            f"failed={totals['failed']} unreachable={totals['unreachable']}",
            style="dim",
        ),
    ]
    failing = state.failures()
    room = max(height - 6, 1)
    for h in failing[:room]:
        msg = h.failure.message if h.failure else ""
        where = h.failure.where if h.failure else h.current
        lines.append(
            Text(
                f"{h.host}  {h.state}  {where}: {msg}",
                style=STYLE[h.state],
                overflow="ellipsis",
                no_wrap=True,
            )
        )
    if len(failing) > room:
        lines.append(Text(f"... and {len(failing) - room} more failing hosts", style="dim"))
    return Panel(Group(*lines), title=_title(state, title), title_align="left")


def render(state: FleetState, height: int, now: float | None = None) -> Table | Panel:
    """The live view for a screen ``height`` lines high: the host table when it fits, else the summary."""
    return host_table(state, now=now) if fits(state, height) else summary_panel(state, height)


def final_table(state: FleetState) -> Table | None:
    """The failed and unreachable hosts with the task that failed them and its message (None: none)."""
    failing = state.failures()
    if not failing:
        return None
    table = Table(title="failed and unreachable hosts", title_justify="left")
    table.add_column("host", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("task")
    table.add_column("message", overflow="fold")
    for h in failing:
        f = h.failure
        table.add_row(
            h.host, Text(h.state, style=STYLE[h.state]), f.where if f else h.current, f.message if f else ""
        )
    return table


def recap_line(state: FleetState) -> str:
    by_state = state.by_state()
    total = sum(by_state.values())
    parts = [f"{n} {s}" for s, n in by_state.items() if n]
    line = f"{total} hosts: " + (", ".join(parts) if parts else "none matched")
    held, checked = state.receipts()
    if checked:
        line += f"; --fast: GPU stack receipt held on {held} of {checked}"
        if held < checked:
            line += f", {checked - held} ran the stack in full"
    return line


def print_final(state: FleetState, console: Console, run_dir: str | None = None) -> None:
    """The final table (when a host failed) and one recap line, on ``console``."""
    table = final_table(state)
    if table is not None:
        console.print(table)
    line = recap_line(state)
    if run_dir:
        line += f"  (events, summary: {run_dir})"
    console.print(line, highlight=False, soft_wrap=True)


class PlainView:
    """Non-terminal output: one line per event of note, ``gpufleet apply: ...``, no escape codes."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr

    def _say(self, msg: str) -> None:
        print(f"gpufleet apply: {msg}", file=self.stream, flush=True)

    def start(self, state: FleetState) -> None:
        pass

    def event(self, state: FleetState, event: dict, host: HostState | None) -> None:
        kind = event.get("event")
        if kind == "playbook_on_play_start":
            self._say(f"play {state.play!r}")
        elif host is not None and kind in ("runner_on_failed", "runner_on_unreachable"):
            data = event.get("event_data") or {}
            if data.get("ignore_errors"):
                return
            # this event's own failure: the host's first one may be stale (rescued, or failed earlier)
            failure = event_failure(data)
            what = "unreachable" if kind == "runner_on_unreachable" else "FAILED"
            self._say(f"{host.host} {what} at {failure.where}: {failure.message}")
        elif kind == "playbook_on_stats":
            for h in state.snapshot():
                c = h.counts
                receipt = {None: "", "held": " (receipt held)"}.get(h.receipt, f" ({h.receipt})")
                self._say(
                    f"{h.host} {h.state} ok={c['ok']} changed={c['changed']} failed={c['failed']} "
                    f"skipped={c['skipped']} unreachable={c['unreachable']} rescued={c['rescued']} "
                    f"ignored={c['ignored']} in {elapsed(h.elapsed())}{receipt}"
                )

    def stop(self) -> None:
        pass


class LiveView:
    """Terminal output: a rich Live display of :func:`render`, redrawn 4 times a second."""

    def __init__(self, console: Console | None = None, refresh_per_second: float = 4):
        self.console = console or Console(stderr=True)
        self.refresh_per_second = refresh_per_second
        self._live: Live | None = None

    def start(self, state: FleetState) -> None:
        self._live = Live(
            console=self.console,
            refresh_per_second=self.refresh_per_second,
            get_renderable=lambda: render(state, self.console.size.height, time.time()),
            transient=False,
        )
        self._live.start()

    def event(self, state: FleetState, event: dict, host: HostState | None) -> None:
        pass  # the Live display redraws from ``state`` on its own

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def default_view(stream=None):
    """:class:`LiveView` on a terminal, else :class:`PlainView`."""
    stream = stream or sys.stderr
    if getattr(stream, "isatty", lambda: False)():
        return LiveView(Console(file=stream))
    return PlainView(stream)
