"""Errors the CLI reports as a clear message (no traceback) and a non-zero exit."""


class GpufleetError(Exception):
    """A problem the user can fix; the message says what was wrong and what to do."""

    exit_code = 2
