"""Transport for the emulator: a threaded HTTP/1.1 keep-alive server, optionally TLS, with TCP-RST faults."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import struct
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: The largest request body the emulator reads (bytes); a larger one is answered 413 and the connection closed.
MAX_REQUEST_BODY = 1024 * 1024
#: Up to this size an oversized body is read and dropped before the 413; past it the connection just closes.
DRAIN_LIMIT = 8 * MAX_REQUEST_BODY


class BodyTooLarge(Exception):
    """A request body over :data:`MAX_REQUEST_BODY`, or one whose size cannot be read."""


class Streamed:
    """A JSON file of exactly ``size`` bytes, generated a chunk at a time while it is sent (a big artifact
    costs the emulator no memory): ``{"padding": "xxx..."}``."""

    CHUNK = 1 << 20

    def __init__(self, size: int) -> None:
        self.size = max(int(size), 15)

    def chunks(self) -> Iterator[bytes]:
        head, tail = b'{"padding": "', b'"}'
        yield head
        left = self.size - len(head) - len(tail)
        block = b"x" * self.CHUNK
        while left > 0:
            yield block[: min(left, self.CHUNK)]
            left -= self.CHUNK
        yield tail


class Handler(BaseHTTPRequestHandler):
    """Hands every request (any method) to the server's ``dispatch`` callback; never logs."""

    protocol_version = "HTTP/1.1"  # keep-alive: every response carries Content-Length
    wbufsize = -1  # buffered: headers and body leave together (flushed after each request)
    disable_nagle_algorithm = True
    server_version = "dbt-cloud-emulator"
    timeout = 120  # idle keep-alive connections are closed after this
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging."""

    def version_string(self) -> str:
        return self.server_version

    def handle_any(self) -> None:
        try:
            self.server.dispatch(self)
        except BodyTooLarge as exc:
            self.close_connection = True  # the rest of the body is never read
            self.send(413, {"detail": str(exc)}, {"Connection": "close"})
        except OSError:  # the client went away
            self.close_connection = True
        except Exception as exc:  # an emulator bug: say so loudly instead of dropping the connection
            traceback.print_exc()
            self.send(500, {"detail": f"emulator error: {exc!r}"})
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any

    def read_body(self) -> bytes:
        """The request body; :class:`BodyTooLarge` past :data:`MAX_REQUEST_BODY` (never read whole first)."""
        limit = MAX_REQUEST_BODY
        too_large = f"request body larger than {limit} bytes"
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, size = [], 0
            while True:
                try:
                    chunk_size = int(self.rfile.readline(100).split(b";")[0].strip() or b"0", 16)
                except ValueError:
                    raise BodyTooLarge("malformed chunk size") from None
                if not chunk_size:
                    break
                size += chunk_size
                if size > DRAIN_LIMIT:
                    raise BodyTooLarge(too_large)
                piece = self._drain(chunk_size) if size > limit else self.rfile.read(chunk_size)
                chunks.append(piece)
                self.rfile.readline(100)
            while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                pass
            if size > limit:
                raise BodyTooLarge(too_large)
            return b"".join(chunks)
        declared = (self.headers.get("Content-Length") or "0").strip()
        if not declared.isdigit():
            raise BodyTooLarge(f"malformed Content-Length {declared[:20]!r}")
        length = int(declared)
        if length > limit:
            if length <= DRAIN_LIMIT:
                self._drain(length)
            raise BodyTooLarge(too_large)
        return self.rfile.read(length) if length > 0 else b""

    def _drain(self, length: int) -> bytes:
        """Read and drop ``length`` bytes, so the client reads the 413 instead of a reset connection."""
        while length > 0:
            got = self.rfile.read(min(length, 65536))
            if not got:
                break
            length -= len(got)
        return b""

    def send(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        """Send ``body`` (bytes as they are, a :class:`Streamed` file chunk by chunk, anything else as JSON)
        with a Content-Length."""
        extra = dict(headers or {})
        if isinstance(body, Streamed):
            self.send_response(status)
            for key, value in extra.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(body.size))
            self.end_headers()
            for chunk in body.chunks():
                self.wfile.write(chunk)
            return
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
            extra.setdefault("Content-Type", "application/json")
        self.send_response(status)
        for key, value in extra.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def reset(self) -> None:
        """Abort the connection with a TCP RST (SO_LINGER 1,0 then close), writing nothing."""
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.close()


class Server(ThreadingHTTPServer):
    """One daemon thread per connection; the TLS handshake runs in that thread, not in the accept loop."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], dispatch: Callable[[Handler], None], tls: ssl.SSLContext | None
    ) -> None:
        self.dispatch, self.tls = dispatch, tls
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        sock: socket.socket = request
        if self.tls is not None:
            try:
                sock.settimeout(15)
                sock = self.tls.wrap_socket(sock, server_side=True)
            except (OSError, ValueError):
                return
        with self._open_lock:
            self._open.add(sock)
        try:
            Handler(sock, client_address, self)
        finally:
            with self._open_lock:
                self._open.discard(sock)
            if sock is not request:
                with contextlib.suppress(OSError):
                    sock.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about clients that vanish; report anything else."""
        if not isinstance(sys.exc_info()[1], (OSError, ValueError)):
            super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Shut down idle keep-alive connections so nothing answers after ``stop()``."""
        with self._open_lock:
            for sock in list(self._open):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
