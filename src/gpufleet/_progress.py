"""Progress on stderr, for people watching a long command and for CI logs.

``say``/``sayer``: one ``gpufleet <command>: message`` line each. ``Bar``: a transfer bar with sizes,
rate and ETA that redraws in place on a terminal and prints a plain line every 10 % elsewhere.
stdout stays for results (tables, JSON), so progress never mixes into what a script reads.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable


def say(command: str, msg: str, stream=None) -> None:
    """Print ``gpufleet COMMAND: MSG`` on stderr (or ``stream``) at once."""
    print(f"gpufleet {command}: {msg}", file=stream or sys.stderr, flush=True)


def sayer(command: str, quiet: bool = False) -> Callable[[str], None]:
    """A ``progress(msg)`` callback for ``command`` that says each line, or nothing when ``quiet``."""
    if quiet:
        return lambda _msg: None
    return lambda msg: say(command, msg)


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


class Bar:
    """``Bar(label, total)``; call ``update(done)`` or ``add(n)``; ``close()`` prints the summary.

    On a terminal the bar redraws in place; elsewhere (CI logs) it prints a line every 10 %."""

    def __init__(self, label: str, total: int | None, stream=None, width: int = 28):
        self.label, self.total, self.width = label, total, width
        self.stream = stream or sys.stderr
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.start = time.monotonic()
        self.done = 0
        self._last_draw = 0.0
        self._last_decile = -1
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        self.update(self.done + n)

    def _line(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-6)
        rate = self.done / elapsed
        if self.total:
            frac = min(self.done / self.total, 1.0)
            filled = int(frac * self.width)
            eta = (self.total - self.done) / rate if rate > 0 else 0
            return (
                f"{self.label:<8} [{'#' * filled}{'.' * (self.width - filled)}] {frac * 100:5.1f}%  "
                f"{human(self.done)}/{human(self.total)}  {human(rate)}/s  eta {eta:.0f}s"
            )
        return f"{self.label:<8} {human(self.done)}  {human(rate)}/s"

    def update(self, done: int) -> None:
        with self._lock:
            self.done = done
            now = time.monotonic()
            if self.tty:
                if now - self._last_draw >= 0.2:
                    self._last_draw = now
                    self.stream.write("\r" + self._line() + "\x1b[K")
                    self.stream.flush()
            elif self.total:
                decile = int(min(done / self.total, 1.0) * 10)
                if decile > self._last_decile and decile < 10:
                    self._last_decile = decile
                    self.stream.write(self._line() + "\n")
                    self.stream.flush()

    def close(self, summary: str = "") -> None:
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0
        end = f"{self.label:<8} {human(self.done)} in {elapsed:.1f}s ({human(rate)}/s){summary}"
        self.stream.write(("\r" + end + "\x1b[K\n") if self.tty else end + "\n")
        self.stream.flush()


def watch(
    measure: Callable[[], int], bar: Bar, stop: threading.Event, every: float = 0.5
) -> threading.Thread:
    """Poll ``measure()`` (bytes done so far) into ``bar`` until ``stop`` is set."""

    def loop():
        while not stop.wait(every):
            bar.update(measure())

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return t
