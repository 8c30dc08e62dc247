"""FakeEngine: a test double of an OpenAI-compatible engine (vLLM, trtllm-serve, llama.cpp's server)
on 127.0.0.1, for the serving tests - never shipped or installed. /health (200, or 503 when
``healthy`` is False), /v1/models, /v1/completions (JSON with usage, or SSE events STREAM_DELAY apart
ending with usage) and /metrics. Its answer to a completion is ``answer`` (deterministic, as greedy
decoding is). It remembers the headers of every request it got."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STREAM_EVENTS = 5
STREAM_DELAY = 0.25


class FakeEngine(ThreadingHTTPServer):
    """Test double of an OpenAI-compatible engine on 127.0.0.1: /v1/models, /v1/completions (JSON with
    usage, or SSE events STREAM_DELAY apart ending with usage) and /metrics. Remembers the headers of
    every request it got."""

    daemon_threads = True

    def __init__(self, name, answer=None, healthy=True, port=0):
        self.name = name
        self.answer = answer if answer is not None else " tok" * STREAM_EVENTS
        self.healthy = healthy
        self.seen = []
        super().__init__(("127.0.0.1", port), FakeEngineHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @classmethod
    def on_port(cls, name, port, **kw):
        return cls(name, port=port, **kw)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


class FakeEngineHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, ctype="application/json"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Engine", self.server.name)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.server.seen.append(dict(self.headers))
        if self.path == "/health":
            self.reply(200 if self.server.healthy else 503, "{}")
        elif self.path == "/v1/models":
            self.reply(200, json.dumps({"object": "list", "data": [{"id": self.server.name}]}))
        elif self.path == "/metrics":
            self.reply(200, "vllm:num_requests_running 0\n", "text/plain")
        else:
            self.reply(404, '{"error": "not found"}')

    def do_POST(self):
        self.server.seen.append(dict(self.headers))
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        usage = {
            "prompt_tokens": len(str(body.get("prompt", "")).split()),
            "completion_tokens": STREAM_EVENTS,
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if not body.get("stream"):
            answer = {"object": "text_completion", "model": self.server.name, "engine": self.server.name}
            self.reply(200, json.dumps({**answer, "choices": [{"text": self.server.answer}], "usage": usage}))
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(text):
            data = text.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        for n in range(STREAM_EVENTS):
            chunk(f"data: {json.dumps({'choices': [{'text': f' tok{n}'}], 'usage': None})}\n\n")
            time.sleep(STREAM_DELAY)
        chunk(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\ndata: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
