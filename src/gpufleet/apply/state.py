"""``FleetState``: what each host is doing and has done in a playbook run, built from runner events.

Pure Python, no I/O: :meth:`FleetState.feed` takes one ansible-runner event dict (the same events
``artifacts/<id>/job_events/`` keeps and AWX builds its live output on) and updates the host it is
about. The live view and the final table only read it; tests feed it recorded events.

Counts follow Ansible's recap: a failure with ``ignore_errors`` counts as ``ignored``, not ``failed``;
the ``playbook_on_stats`` event at the end is the recap itself and replaces the counts summed from the
per-task events (it knows about rescued failures, which the task events do not: a failure in a block
that a ``rescue`` then handles is a plain ``runner_on_failed``). A host's failures are kept in order;
the recap's ``rescued`` count says how many of the first ones were rescued, so the failure reported
is the first one that was not.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime

# Host states, in the order the summary lists them.
WAITING, RUNNING, DONE, FAILED, UNREACHABLE = "waiting", "running", "done", "failed", "unreachable"
STATES = (RUNNING, DONE, FAILED, UNREACHABLE, WAITING)
COUNTS = ("ok", "changed", "failed", "skipped", "unreachable", "rescued", "ignored")
# playbook_on_stats key -> our count name
_STATS_KEYS = {
    "ok": "ok",
    "changed": "changed",
    "failures": "failed",
    "skipped": "skipped",
    "dark": "unreachable",
    "rescued": "rescued",
    "ignored": "ignored",
}
# The check of site.yml --fast (module stack_receipt): its result says whether the host was trusted.
RECEIPT_ACTIONS = ("gpufleet.cluster.stack_receipt", "stack_receipt")
MESSAGE_LIMIT = 2000  # characters of a failure message kept (a module's stderr can be megabytes)


@dataclass
class Failure:
    """The task a host failed (or became unreachable) at, and what Ansible said."""

    task: str
    role: str | None
    play: str | None
    message: str

    @property
    def where(self) -> str:
        return f"{self.role} : {self.task}" if self.role else self.task


@dataclass
class HostState:
    """One host: its state, the task it is in, its counts, when it started and how it failed."""

    host: str
    state: str = WAITING
    play: str | None = None
    role: str | None = None
    task: str | None = None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    started: float | None = None  # epoch seconds of the host's first event
    ended: float | None = None  # epoch seconds when it failed, became unreachable or the run ended
    failure: Failure | None = None
    failures: list[Failure] = field(default_factory=list)  # every failed task (not ignored), in order
    # site.yml --fast: "held" where the GPU stack receipt held, else "full run: <why>"; None: no check
    receipt: str | None = None

    def elapsed(self, now: float | None = None) -> float:
        if self.started is None:
            return 0.0
        end = self.ended if self.ended is not None else (time.time() if now is None else now)
        return max(end - self.started, 0.0)

    @property
    def current(self) -> str:
        """``role : task`` (or the task alone) the host is in, or was in when it stopped."""
        if not self.task:
            return ""
        return f"{self.role} : {self.task}" if self.role else self.task


def event_time(event: dict) -> float:
    """The event's ``created`` time in epoch seconds (now when missing or unreadable)."""
    created = event.get("created")
    if created:
        try:
            return datetime.fromisoformat(created).timestamp()
        except ValueError:
            pass
    return time.time()


def failure_message(res: dict | None) -> str:
    """What a failed or unreachable task said: ``msg``, plus the last line of stderr when there is
    one, or the first failed item's message for a loop."""
    if not isinstance(res, dict):
        return ""
    msg = str(res.get("msg") or "").strip()
    if not msg and isinstance(res.get("results"), list):
        for item in res["results"]:
            if isinstance(item, dict) and item.get("failed"):
                return failure_message(item)
    stderr = str(res.get("stderr") or "").strip()
    if stderr:
        last = stderr.splitlines()[-1].strip()
        msg = f"{msg}: {last}" if msg and last not in msg else (msg or last)
    if not msg and res.get("rc") not in (None, 0):
        msg = f"rc={res['rc']}"
    return msg[:MESSAGE_LIMIT]


def event_failure(data: dict) -> Failure:
    """The failure a ``runner_on_failed``/``runner_on_unreachable`` event's ``event_data`` reports."""
    res = data.get("res") if isinstance(data.get("res"), dict) else {}
    return Failure(
        task=data.get("task") or "",
        role=data.get("role"),
        play=data.get("play"),
        message=failure_message(res),
    )


class FleetState:
    """Every host seen in the run so far, in the order they first appeared.

    ``feed(event)`` is called from the runner's event handler; the live view reads
    :meth:`snapshot` from its refresh thread, so both hold a lock."""

    def __init__(self, hosts: list[str] | None = None):
        self.hosts: dict[str, HostState] = {h: HostState(h) for h in hosts or ()}
        self.play: str | None = None
        self.task: str | None = None
        self.started: float | None = None
        self.finished = False
        self.events = 0
        self._lock = threading.Lock()

    # -- updates ------------------------------------------------------------------------------
    def _host(self, name: str, when: float) -> HostState:
        host = self.hosts.get(name)
        if host is None:
            host = self.hosts[name] = HostState(name)
        if host.started is None:
            host.started = when
        return host

    def feed(self, event: dict) -> HostState | None:
        """Update from one runner event; return the host it changed (None for play-level events)."""
        with self._lock:
            return self._feed(event)

    def _feed(self, event: dict) -> HostState | None:
        self.events += 1
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        when = event_time(event)
        if self.started is None and kind != "verbose":
            self.started = when
        if kind == "playbook_on_play_start":
            self.play = data.get("play") or data.get("name")
            return None
        if kind == "playbook_on_task_start":
            self.task = data.get("task")
            return None
        if kind == "playbook_on_stats":
            self._recap(data, when)
            return None
        name = data.get("host")
        if not name or not kind.startswith("runner_"):
            return None
        host = self._host(name, when)
        self.play = data.get("play") or self.play
        if host.state in (FAILED, UNREACHABLE):
            # Ansible takes a failed host out of the play; a later event (a handler, a rescue) still
            # counts, but the host stays reported at the task that failed it.
            pass
        elif host.state in (WAITING, DONE):
            host.state = RUNNING
        host.play, host.role, host.task = data.get("play"), data.get("role"), data.get("task")
        res = data.get("res") if isinstance(data.get("res"), dict) else {}
        if kind == "runner_on_ok":
            host.counts["ok"] += 1
            if res.get("changed"):
                host.counts["changed"] += 1
            if data.get("task_action") in RECEIPT_ACTIONS and "converged" in res:
                why = "; ".join(str(r) for r in res.get("reasons") or [])
                host.receipt = "held" if res["converged"] else f"full run: {why}"[:MESSAGE_LIMIT]
        elif kind == "runner_on_skipped":
            host.counts["skipped"] += 1
        elif kind == "runner_on_failed":
            if data.get("ignore_errors"):
                host.counts["ignored"] += 1
            else:
                host.counts["failed"] += 1
                host.failures.append(event_failure(data))
                self._fail(host, FAILED, data, when)
        elif kind == "runner_on_unreachable":
            host.counts["unreachable"] += 1
            self._fail(host, UNREACHABLE, data, when)
        return host

    def _fail(self, host: HostState, state: str, data: dict, when: float) -> None:
        if host.state not in (FAILED, UNREACHABLE):
            host.state, host.ended = state, when
            host.failure = event_failure(data)

    def _recap(self, data: dict, when: float) -> None:
        """The play recap: final counts for every host, and its final state from them."""
        names = set()
        for key in _STATS_KEYS:
            if isinstance(data.get(key), dict):
                names.update(data[key])
        for name in sorted(names, key=lambda n: (n not in self.hosts, n)):
            host = self._host(name, when)
            for key, count in _STATS_KEYS.items():
                host.counts[count] = int((data.get(key) or {}).get(name, 0))
            if host.counts["unreachable"]:
                host.state = UNREACHABLE
            elif host.counts["failed"]:
                host.state = FAILED
                # A rescued failure leaves the host in the play; the first one not rescued takes it out,
                # so the first ``rescued`` failures are the rescued ones and the next is what failed it.
                rescued = host.counts["rescued"]
                if len(host.failures) > rescued:
                    host.failure = host.failures[rescued]
            else:  # a rescued failure: the host recovered
                host.state, host.failure = DONE, None
            if host.ended is None or host.state == DONE or host.counts["rescued"]:
                host.ended = when  # a host went on past a rescued failure: it ended with the play
        self.finished = True

    # -- reading ------------------------------------------------------------------------------
    def snapshot(self) -> list[HostState]:
        """A copy of every host, safe to read while the run goes on."""
        with self._lock:
            return [replace(h, counts=dict(h.counts), failures=list(h.failures)) for h in self.hosts.values()]

    def by_state(self) -> dict[str, int]:
        """{state: number of hosts}, every state listed (zeros included), in ``STATES`` order."""
        counts = dict.fromkeys(STATES, 0)
        for host in self.snapshot():
            counts[host.state] += 1
        return counts

    def failures(self) -> list[HostState]:
        """Hosts that failed or were unreachable, unreachable first, then by name."""
        bad = [h for h in self.snapshot() if h.state in (FAILED, UNREACHABLE)]
        return sorted(bad, key=lambda h: (h.state != UNREACHABLE, h.host))

    def receipts(self) -> tuple[int, int]:
        """(hosts whose GPU stack receipt held, hosts it was checked on): site.yml --fast."""
        with self._lock:
            checked = [h.receipt for h in self.hosts.values() if h.receipt is not None]
        return sum(r == "held" for r in checked), len(checked)

    def totals(self) -> dict[str, int]:
        """Counts summed over every host (``ok``, ``changed``, ``failed``...)."""
        totals = dict.fromkeys(COUNTS, 0)
        for host in self.snapshot():
            for key, value in host.counts.items():
                totals[key] += value
        return totals
