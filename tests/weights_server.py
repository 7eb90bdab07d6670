"""A loopback HTTP server that serves weight files with injected faults, for the zoo tests.

Each path has a body and a queue of behaviours, one consumed per request (the last one
repeats): "ok" (honours Range), "norange" (ignores Range), "cut" (declares the full length,
sends half, closes), "short" (no Content-Length, half the body), "500", "404", "slow"
(waits before answering), "trickle" (sends the body slowly), "drip" (one byte per ``delay``, without end),
"endless" (no Content-Length, the body then zeros without end), "redirect:<location>" (302). HEAD requests
and the Hugging Face headers (X-Repo-Commit, ETag) are answered too.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    body: bytes
    plan: list[str] = field(default_factory=lambda: ["ok"])
    delay: float = 1.5

    def next(self) -> str:
        return self.plan.pop(0) if len(self.plan) > 1 else self.plan[0]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _answer(self, head: bool) -> None:
        server: WeightsServer = self.server.owner  # type: ignore[attr-defined]
        path = self.path.split("?")[0]
        with server.lock:
            server.requests.append((self.command, path, self.headers.get("Range")))
            route = server.routes.get(path)
            behaviour = route.next() if route else "404"
        if behaviour == "404":
            return self._status(404)
        if behaviour == "500":
            return self._status(500)
        if behaviour.startswith("redirect:"):
            self.send_response(302)
            self.send_header("Location", behaviour[len("redirect:") :])
            self.send_header("Content-Length", "0")
            return self.end_headers()
        if behaviour == "slow":
            time.sleep(route.delay)
        body, start = route.body, 0
        rng = self.headers.get("Range")
        if rng and behaviour not in ("norange", "short") and rng.startswith("bytes=") and not head:
            start = int(rng[6:].split("-")[0])
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        if behaviour not in ("short", "endless"):
            self.send_header("Content-Length", str(len(body) - start))
        self.send_header("ETag", '"' + hashlib.sha256(body).hexdigest() + '"')
        self.send_header("X-Repo-Commit", "0" * 40)
        self.send_header("Accept-Ranges", "bytes")
        if behaviour in ("cut", "short", "endless", "drip"):
            self.send_header("Connection", "close")
        self.end_headers()
        if head:
            return
        payload = body[start:]
        if behaviour in ("cut", "short"):
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if behaviour in ("endless", "drip"):
            return self._without_end(server, payload, route.delay if behaviour == "drip" else 0.0)
        if behaviour == "trickle":
            for i in range(0, len(payload), len(payload) // 8 + 1):
                self.wfile.write(payload[i : i + len(payload) // 8 + 1])
                self.wfile.flush()
                time.sleep(route.delay / 8)
            return
        self.wfile.write(payload)

    def _without_end(self, server: WeightsServer, payload: bytes, pause: float) -> None:
        """Send ``payload`` then zeros until the client goes away: in 64 KiB blocks, or one byte
        per ``pause`` seconds."""
        self.close_connection = True
        step = 1 if pause else 1 << 16
        data, sent = payload, 0
        try:
            while not server.stopping.is_set():
                block = data[sent : sent + step] if sent < len(data) else bytes(step)
                self.wfile.write(block)
                self.wfile.flush()
                sent += len(block)
                if pause:
                    time.sleep(pause)
        except OSError:  # the client hung up: what it is meant to do
            pass

    def _status(self, code: int) -> None:
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        try:
            self._answer(head=False)
        except ConnectionError:  # the client hung up mid-body (e.g. it refused the rest)
            self.close_connection = True

    def do_HEAD(self) -> None:
        self._answer(head=True)


class WeightsServer:
    """``with WeightsServer() as srv: srv.add("/a.pt", data, ["cut", "ok"]); srv.url("/a.pt")``."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def add(self, path: str, body: bytes, plan: list[str] | None = None, delay: float = 1.5) -> str:
        self.routes[path] = Route(body, list(plan or ["ok"]), delay)
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def gets(self, path: str) -> list[str | None]:
        """The Range header of every GET of ``path`` so far (None for a plain GET)."""
        with self.lock:
            return [rng for method, p, rng in self.requests if method == "GET" and p == path]

    def __enter__(self) -> WeightsServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
