"""Small generated models and a real HTTP server with Range support, for the model store tests.

The server runs in a thread on 127.0.0.1 and serves an in-memory directory; each server can be told
to corrupt what it sends for some paths, to drop the connection after some bytes (a source that
goes away mid-transfer) or to answer slowly, and counts what it was asked for.
"""

import hashlib
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

from ansible_collections.gpufleet.cluster.plugins.module_utils import model_manifest as mm

CHUNK = 1024


def make_files(seed=b"v1", shard_chunks=5):
    """A tiny model directory as {path: bytes}: two shards of several chunks, config, tokenizer."""

    def blob(tag, n):
        out = b""
        counter = 0
        while len(out) < n:
            out += hashlib.sha256(tag + str(counter).encode()).digest()
            counter += 1
        return out[:n]

    return {
        "config.json": b'{"hidden_size": 64, "num_hidden_layers": 2}\n',
        "tokenizer/tokenizer.json": blob(b"tok", 1500),
        "model-00001-of-00002.safetensors": blob(b"shard1" + seed, CHUNK * shard_chunks - 100),
        "model-00002-of-00002.safetensors": blob(b"shard2", CHUNK * shard_chunks),
        "empty.txt": b"",
    }


def manifest_for(files, name="tiny", version="1", signing_key="A" * 40, chunk=CHUNK):
    entries = []
    for path, data in files.items():
        chunks = [hashlib.sha256(data[i : i + chunk]).hexdigest() for i in range(0, len(data), chunk)]
        entries.append(
            {"path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "chunks": chunks}
        )
    return mm.new_manifest(name, version, entries, chunk, signing_key)


class Server:
    """``with Server(files) as s: s.url`` - a ranged HTTP server over ``files`` ({path: bytes})."""

    def __init__(self, files, corrupt=(), drop_after=None, ranges=True, http11=False, delay=0.0):
        self.files = dict(files)
        self.delay = delay  # seconds before each GET is answered: a slow source
        self.ranges = ranges  # False: ignore Range and send the whole file with 200, as some servers do
        self.corrupt = set(corrupt)  # paths whose bytes are sent flipped
        self.drop_after = drop_after  # close the connection after this many body bytes in total
        self.sent = 0
        self.requests = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            # http11: keep-alive connections, as aria2c uses them (it also asks HEAD and open ranges)
            protocol_version = "HTTP/1.1" if http11 else "HTTP/1.0"

            def log_message(self, *args):
                pass

            def _head(self):
                path = unquote(self.path.lstrip("/"))
                with server.lock:
                    server.requests.append((path, self.headers.get("Range")))
                data = server.files.get(path)
                if data is None:
                    self.send_error(404)
                    return None
                m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
                m = m if server.ranges else None
                start = int(m.group(1)) if m else 0
                end = min(int(m.group(2)), len(data) - 1) if m and m.group(2) else len(data) - 1
                body = data[start : end + 1]
                if path in server.corrupt:
                    body = bytes(b ^ 0xFF for b in body)
                self.send_response(206 if m else 200)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(body)))
                if m:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                self.end_headers()
                return body

            def do_HEAD(self):
                self._head()

            def do_GET(self):
                if server.delay:
                    time.sleep(server.delay)
                body = self._head()
                if body is None:
                    return
                with server.lock:
                    allowed = len(body)
                    if server.drop_after is not None:
                        allowed = max(0, min(len(body), server.drop_after - server.sent))
                    server.sent += allowed
                self.wfile.write(body[:allowed])
                if allowed < len(body):
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def paths_requested(self):
        return {path for path, _range in self.requests}
