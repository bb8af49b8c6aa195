"""The simulator's HTTP/1.1 transport: connections, request parsing, faults on the wire.

:class:`HttpServer` is a threading HTTP server on loopback that tracks its keep-alive
connections so that the simulator can close them on stop. :class:`Handler` serves one
connection the way nginx in front of a Django REST Framework deployment does: every request, to
any path and with any method, draws its fault once (slow, dropped, 429, 5xx, truncated, invalid
JSON); the rest is routed (``APPEND_SLASH`` redirects, 404, 405, ``OPTIONS``), authenticated
and answered by the :class:`~omsframe.simulator.server.SimulatorServer`, then written with
gzip when asked.
"""

from __future__ import annotations

import email.utils
import socket
import sys
import threading
import time
import zlib
from contextlib import suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs

import orjson

from omsframe.simulator import faults as flt
from omsframe.simulator.endpoints import Route, resolve
from omsframe.simulator.query import HttpError, not_found

if TYPE_CHECKING:
    from omsframe.simulator.server import SimulatorServer

__all__ = ["Handler", "HttpServer"]

Json = dict[str, Any]


def _query_params(query: str) -> dict[str, str]:
    """Query parameters, the last value of a repeated one winning (Django's QueryDict.get)."""
    return {key: values[-1] for key, values in parse_qs(query, keep_blank_values=True).items()}


def _json_body(headers: Any, raw: bytes) -> Json:
    """Parse a JSON or form body as DRF's parsers do; 400 on malformed JSON."""
    if not raw:
        return {}
    if "application/x-www-form-urlencoded" in (headers.get("Content-Type") or ""):
        return dict(_query_params(raw.decode("utf-8", "replace")))
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise HttpError(400, {"detail": f"JSON parse error - {exc}"}) from None
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise HttpError(
            400, {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {kind}."]}
        )
    return data


class HttpServer(ThreadingHTTPServer):
    """A threading HTTP server that knows its simulator and its open connections."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # many concurrent clients connect at once

    def __init__(self, address: tuple[str, int], sim: SimulatorServer) -> None:
        self.sim = sim
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Track the connection, then serve it in its own thread."""
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        """Forget the connection, then close it."""
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (killed, timed out) is normal here: no traceback for it."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Shut every open keep-alive connection (their threads then end)."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class Handler(BaseHTTPRequestHandler):
    """One connection: parses requests and writes DRF-like answers (HTTP/1.1 keep-alive)."""

    protocol_version = "HTTP/1.1"
    server_version = "nginx"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 120

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr log."""

    def do_GET(self) -> None:
        """Serve any method: routing, faults, auth and errors are the same for all."""
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET  # noqa: N815

    def _dispatch(self) -> None:
        sim = cast(HttpServer, self.server).sim
        path, _, query = self.path.partition("?")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._send(sim, 400, {"detail": "Bad Content-Length."})
            return
        raw = self.rfile.read(length) if length else b""
        resolved = resolve(path)
        sim._count("_requests", resolved[0].template if resolved else path)
        decision = sim._drawer.draw()
        if decision.slow:
            sim._count("_faults", "slow")
            time.sleep(sim.faults.slow_seconds)
        if decision.kind in ("dropped", "429", "5xx"):
            sim._count("_faults", decision.kind)
            self._fail(sim, decision)
            return
        headers: tuple[tuple[str, str], ...] = ()
        try:
            status, payload = 200, self._answer(sim, resolved, query, raw)
        except HttpError as exc:
            status, payload, headers = exc.status, exc.body, exc.headers
        if isinstance(payload, _Redirect):
            self._send(sim, 301, b"", (("Location", payload.location),), content_type="text/html")
            return
        body = orjson.dumps(payload)
        if decision.kind == "invalid_json":
            sim._count("_faults", "invalid_json")
            status, body = 200, flt.cut(body, decision.fraction, text=True)
        if resolved is not None:
            headers = (*headers, ("Allow", ", ".join(resolved[0].methods)))
        truncate = decision.fraction if decision.kind == "truncated" else None
        if truncate is not None:
            sim._count("_faults", "truncated")
        self._send(sim, status, body, headers, truncate=truncate)

    def _answer(
        self, sim: SimulatorServer, resolved: tuple[Route, str] | None, query: str, raw: bytes
    ) -> object:
        path = self.path.partition("?")[0]
        if resolved is None:
            if not path.endswith("/") and resolve(path + "/") is not None:
                return _Redirect(path + "/" + (f"?{query}" if query else ""))  # APPEND_SLASH
            raise not_found()
        route, pk = resolved
        if route.name != "login":
            sim._authenticate(self.headers.get("Authorization"))
        if self.command not in route.methods:
            raise HttpError(405, {"detail": f'Method "{self.command}" not allowed.'})
        if self.command == "OPTIONS":
            return {
                "name": route.name.replace("_", " ").title(),
                "description": "",
                "renders": ["application/json"],
                "parses": ["application/json", "application/x-www-form-urlencoded"],
            }
        body = _json_body(self.headers, raw) if self.command == "POST" else {}
        if route.name == "login":
            return sim._login(body)
        host = self.headers.get("Host") or f"{sim.host}:{sim.port}"
        return sim._endpoint(route, pk, _query_params(query), f"http://{host}{self.path}", body)

    def _fail(self, sim: SimulatorServer, decision: flt.Decision) -> None:
        if decision.kind == "dropped":
            self.close_connection = True
            return
        if decision.kind == "429":
            retry_after, body = flt.throttled(sim.faults, decision)
            self._send(sim, 429, body, (("Retry-After", retry_after),))
            return
        content_type, body = flt.server_error(decision)
        self._send(sim, decision.status, body, content_type=content_type)

    def _send(
        self,
        sim: SimulatorServer,
        status: int,
        body: object,
        headers: tuple[tuple[str, str], ...] = (),
        *,
        content_type: str = "application/json",
        truncate: float | None = None,
    ) -> None:
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        lines = [
            f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}",
            "Server: nginx",
            f"Date: {email.utils.formatdate(usegmt=True)}",
            f"Content-Type: {content_type}",
        ]
        if data and "gzip" in (self.headers.get("Accept-Encoding") or ""):
            compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
            data = compressor.compress(data) + compressor.flush()
            lines += ["Content-Encoding: gzip", "Vary: Accept, Accept-Encoding"]
        elif content_type == "application/json":
            lines.append("Vary: Accept")
        lines += [f"{name}: {value}" for name, value in headers]
        lines.append(f"Content-Length: {len(data)}")
        if self.close_connection or truncate is not None:
            lines.append("Connection: close")
        sim._count("_statuses", status)
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if self.command == "HEAD":
            return
        if truncate is not None:
            self.close_connection = True
            data = flt.cut(data, truncate)
        self.wfile.write(data)


@dataclass(frozen=True)
class _Redirect:
    location: str
