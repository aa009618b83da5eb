"""A real, small OpenAI-compatible HTTP server on 127.0.0.1 that misbehaves on purpose.

Why it exists: the studio's OpenAI path must be tested over real HTTP (the ``openai`` client,
httpx, sockets, SSE) with faults a real endpoint only shows now and then: 429 bursts with
Retry-After, 500s, hangs past the timeout, garbage bodies, wrong keys, dropped connections.
It also serves as the loopback endpoint with a fixed per-request latency and a fixed capacity
for throughput benchmarks (``python -m tests.fake_openai_server --latency 0.2 --capacity 16``).

It speaks ``POST /v1/chat/completions`` (also ``stream: true`` as server-sent events) and
``GET /v1/models``. Replies are deterministic: ``echo #<n>: <last user message>`` with a
``usage`` block counting whitespace-separated words, unless ``Behavior.reply`` scripts the answer
from the request (tests of the generation pipeline answer task lists, responses and judge JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


@dataclass
class Behavior:
    """What the server does with the next requests; tests set it per case."""

    latency_s: float = 0.0              # fixed time each request takes once admitted
    capacity: int | None = None         # most requests served at once; the excess waits
    fail_429_first: int = 0             # the first N chat requests get 429 ...
    retry_after: float | None = None    # ... with this Retry-After header (seconds), if set
    fail_500_first: int = 0             # the first N chat requests (after the 429s) get 500
    close_first: int = 0                # the first N chat requests: connection closed, no answer
    hang_s: float = 0.0                 # sleep this long before answering (set past the client timeout)
    garbage: bool = False               # answer 200 with a body that is not JSON
    missing_choices: bool = False       # answer 200 with JSON that has no ``choices``
    omit_usage: bool = False            # leave the ``usage`` block out
    required_key: str | None = None     # if set, any other bearer token gets 401 (echoing it, like some servers)
    reject_marker: str | None = None    # a last user message containing this gets 400
    fail_500_after: int | None = None   # chat requests numbered above N get 500 (an endpoint dying mid-run)
    reply: Callable[[dict], str | None] | None = None  # scripted answer text from the request; None = echo
    model: str = "fake-model"
    finish_reason: str = "stop"


@dataclass
class Stats:
    requests: int = 0                   # chat-completion requests received (every attempt)
    by_status: dict[int, int] = field(default_factory=dict)
    in_flight: int = 0
    max_in_flight: int = 0              # most chat requests the server held at once
    served: int = 0                     # 200 answers sent
    connections: int = 0                # TCP connections accepted (keep-alive reuses them)


class FakeOpenAIServer:
    """Start with ``start()`` (or as a context manager); ``base_url`` ends with ``/v1``."""

    def __init__(self, port: int = 0, behavior: Behavior | None = None, host: str = "127.0.0.1"):
        self.behavior = behavior or Behavior()
        self.stats = Stats()
        self._lock = threading.Lock()
        self._capacity: threading.Semaphore | None = None
        self._capacity_for: int | None = None
        self._httpd = _Server((host, port), _Handler)
        self._httpd.owner = self
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "FakeOpenAIServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> "FakeOpenAIServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def configure(self, **changes: Any) -> Behavior:
        """Set a new behaviour (defaults plus ``changes``, e.g. ``configure(fail_429_first=2)``)
        and reset the counters, so each case starts from a well-behaved server."""
        with self._lock:
            self.behavior = replace(Behavior(), **changes)
            self.stats = Stats()
        return self.behavior

    # -- bookkeeping used by the handler --------------------------------------------------------
    def _admit(self) -> tuple[int, Behavior]:
        with self._lock:
            self.stats.requests += 1
            self.stats.in_flight += 1
            self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
            return self.stats.requests, self.behavior

    def _leave(self, status: int | None) -> None:
        with self._lock:
            self.stats.in_flight -= 1
            if status is not None:
                self.stats.by_status[status] = self.stats.by_status.get(status, 0) + 1
                self.stats.served += status == 200

    def _capacity_gate(self, capacity: int | None) -> threading.Semaphore | None:
        if not capacity:
            return None
        with self._lock:
            if self._capacity_for != capacity:
                self._capacity, self._capacity_for = threading.Semaphore(capacity), capacity
            return self._capacity


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512    # many clients connect at once; the default backlog of 5 drops SYNs
    owner: FakeOpenAIServer


def _words(text: str) -> int:
    return len(text.split())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True   # headers and body go out in separate writes; no 40 ms delayed-ACK stall
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        owner = self.server.owner
        with owner._lock:
            owner.stats.connections += 1

    # -- plumbing --------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str = "application/json", headers: dict | None = None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, kind: str, headers: dict | None = None) -> int:
        body = json.dumps({"error": {"message": message, "type": kind, "code": status}}).encode()
        self._send(status, body, headers=headers)
        return status

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            model = self.server.owner.behavior.model
            self._send(200, json.dumps({"object": "list", "data": [{"id": model, "object": "model"}]}).encode())
        else:
            self._error(404, f"no route {self.path}", "not_found")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._error(404, f"no route {self.path}", "not_found")
            return
        owner = self.server.owner
        number, behavior = owner._admit()
        status: int | None = None
        gate = owner._capacity_gate(behavior.capacity)
        try:
            if gate:
                gate.acquire()
            try:
                status = self._chat(number, behavior, raw)
            finally:
                if gate:
                    gate.release()
        finally:
            owner._leave(status)

    # -- the chat endpoint ---------------------------------------------------------------------------
    def _chat(self, number: int, b: Behavior, raw: bytes) -> int | None:
        if b.required_key is not None:
            given = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
            if given != b.required_key:
                return self._error(401, f"Incorrect API key provided: {given}.", "invalid_request_error")
        if number <= b.close_first:
            self.close_connection = True
            self.connection.shutdown(2)
            return None
        if number <= b.fail_429_first:
            headers = {"Retry-After": f"{b.retry_after:g}"} if b.retry_after is not None else None
            return self._error(429, "Rate limit reached; slow down.", "rate_limit_exceeded", headers)
        if number <= b.fail_429_first + b.fail_500_first or (b.fail_500_after is not None and number > b.fail_500_after):
            return self._error(500, "The server had an error while processing your request.", "server_error")
        if b.hang_s:
            time.sleep(b.hang_s)
        if b.latency_s:
            time.sleep(b.latency_s)
        try:
            request = json.loads(raw)
            messages = request["messages"]
        except (ValueError, KeyError, TypeError):
            return self._error(400, "body is not a chat-completion request", "invalid_request_error")
        last_user = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
        if b.reject_marker and b.reject_marker in last_user:
            return self._error(400, "this prompt is refused on purpose", "invalid_request_error")
        if b.garbage:
            self._send(200, b"<html>502 upstream gone \x00\xff</html>", content_type="text/html")
            return 200
        scripted = b.reply(request) if b.reply is not None else None
        text = scripted if scripted is not None else f"echo #{number}: {last_user}"
        prompt_tokens = sum(_words(str(m.get("content", ""))) for m in messages)
        if request.get("stream"):
            self._stream(text, b)
            return 200
        body: dict[str, Any] = {
            "id": f"chatcmpl-{number}", "object": "chat.completion", "created": int(time.time()),
            "model": b.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": b.finish_reason}],
        }
        if b.missing_choices:
            body.pop("choices")
        if not b.omit_usage:
            body["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": _words(text),
                             "total_tokens": prompt_tokens + _words(text)}
        self._send(200, json.dumps(body).encode())
        return 200

    def _stream(self, text: str, b: Behavior) -> None:
        """Server-sent events, one word per chunk; the connection closes at the end."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        pieces = [w + " " for w in text.split(" ")]
        pieces[-1] = pieces[-1].rstrip(" ")
        for i, piece in enumerate(pieces):
            chunk = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": int(time.time()),
                     "model": b.model,
                     "choices": [{"index": 0, "delta": {"content": piece} if i else {"role": "assistant", "content": piece},
                                  "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        final = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": int(time.time()), "model": b.model,
                 "choices": [{"index": 0, "delta": {}, "finish_reason": b.finish_reason}]}
        self.wfile.write(f"data: {json.dumps(final)}\n\ndata: [DONE]\n\n".encode())
        self.wfile.flush()


def main() -> None:
    """Run it standalone (benchmarks run it in its own process so it does not share our GIL)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    parser.add_argument("--capacity", type=int, default=None, help="most requests served at once")
    args = parser.parse_args()
    server = FakeOpenAIServer(args.port, Behavior(latency_s=args.latency, capacity=args.capacity)).start()
    print(f"READY {server.port}", flush=True)
    try:
        for line in sys.stdin:  # "stats" prints the counters; end of input stops the server
            if line.strip() == "stats":
                print(json.dumps(asdict(server.stats)), flush=True)
    except KeyboardInterrupt:
        pass
    server.stop()


if __name__ == "__main__":
    main()
