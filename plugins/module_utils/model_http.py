# Copyright: gpufleet developers
# Apache-2.0
"""Ranged HTTP reads for the model fetch engine: one byte range of a URL, read block by block into a
reused per-thread buffer and handed to a sink (hash and write as it arrives, no chunk held in
memory), under a byte rate shared by every thread; URLs without credentials for messages.

Host code: stdlib only, Python >= 3.8.
"""

from __future__ import annotations

import threading
import time
from http.client import HTTPException
from urllib.error import HTTPError
from urllib.parse import quote, urlsplit
from urllib.request import Request, urlopen

USER_AGENT = "gpufleet-model-fetch"
_READ = 1024 * 1024


class Throttle:
    """A byte rate (bytes/s; 0 or None: no limit) shared by every thread: ``take(n)`` waits for n."""

    def __init__(self, rate):
        self.rate = rate or 0
        self.lock = threading.Lock()
        self.next_free = time.monotonic()

    def take(self, nbytes):
        if not self.rate:
            return
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next_free)
            self.next_free = start + nbytes / self.rate
            wait = self.next_free - now
        if wait > 0:
            time.sleep(wait)


NO_LIMIT = Throttle(0)


def source_url(source, path):
    return source.rstrip("/") + "/" + quote(path)


def redact(url):
    """A URL without user:password@ and without a query string (a presigned URL's signature), for
    messages and logs; an ``s3://`` URL never holds more than bucket and prefix."""
    parts = urlsplit(url)
    if "@" not in parts.netloc and not parts.query and not parts.fragment:
        return url
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1], query="", fragment="").geturl()


class TransferFailed(Exception):
    """A byte range not delivered ('transfer') or delivered wrong ('checksum')."""

    def __init__(self, kind, detail, status=None):
        super().__init__(detail)
        self.kind = kind  # "transfer" (keep partial data) or "checksum" (refuse the object)
        self.status = status  # the HTTP status when the source answered, else None


_BUFFERS = threading.local()


def _buffer():
    """This thread's read buffer, reused: a fresh large buffer per read costs a page fault per page."""
    view = getattr(_BUFFERS, "view", None)
    if view is None:
        view = _BUFFERS.view = memoryview(bytearray(_READ))
    return view


def get_range(url, start, length, timeout, throttle=NO_LIMIT, sink=None):
    """Bytes ``[start, start + length)`` of ``url``; TransferFailed('transfer', ...) when not delivered.

    With ``sink``, each block is handed to ``sink(view)`` as it arrives (the view is reused after the
    call returns) and the length is returned instead of the bytes.
    """
    end = start + length - 1
    headers = {"Range": f"bytes={start}-{end}", "User-Agent": USER_AGENT}
    request = Request(url, headers=headers)  # noqa: S310 - check_sources allows http(s) only
    try:
        with urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) only
            status = response.status
            if status != 206 and not (status == 200 and start == 0):
                raise TransferFailed(
                    "transfer", f"{redact(url)} answered HTTP {status} to a ranged request", status
                )
            data, got, buffer = bytearray(), 0, _buffer()
            while got < length:
                count = response.readinto(buffer[: min(_READ, length - got)])
                if not count:
                    break
                throttle.take(count)
                got += count
                if sink is None:
                    data += buffer[:count]
                else:
                    sink(buffer[:count])
    except HTTPError as exc:
        raise TransferFailed("transfer", f"{redact(url)}: HTTP {exc.code} {exc.reason}", exc.code) from None
    except (OSError, HTTPException, ValueError) as exc:
        raise TransferFailed("transfer", f"{redact(url)}: {exc.__class__.__name__}: {exc}") from None
    if got != length:
        raise TransferFailed("transfer", f"{redact(url)}: {got} of {length} bytes (the source went away?)")
    return data if sink is None else got
