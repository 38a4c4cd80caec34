"""A small HTTP server on 127.0.0.1 serving a folder, with misbehaving routes for failure tests.

Used by the demo (serves the bundled sample as HTML pages) and by the tests (real images over real HTTP). Every
request is logged (`requests`, `count(prefix)`), and `max_in_flight` records the most requests served at once.
It also answers as an HTTP proxy (absolute request URLs), which lets tests stand in for public hosts.

Routes besides plain files (<path> is a file in the folder):
  /status/<code>/<anything>           answers that HTTP status
  /slow/<seconds>/<path>              waits, then serves <path> (timeouts)
  /optout/<directive>/<path>          serves <path> with `X-Robots-Tag: <directive>`
  /as/<content-type>/<path>           serves <path> with that Content-Type ("text~html" for "text/html")
  /redirect/<url-quoted URL>          answers 302 to that URL (redirect guards)
  /chain/<n>/<path>                   n redirects, then <path>
  /loop/<name>                        redirects to itself; /pingpong/<a|b> redirect to each other
  /trickle/<bytes per s>/<path>       headers at once, then the body at that rate
  /header-trickle/<bytes per s>/<path>  the status line and headers at that rate
  /endless[/<content-type>]           200 with a body that never ends (no Content-Length)
  /wrong-length/<declared>/<path>     serves <path> with `Content-Length: <declared>`, then closes
  /gzip/<path>                        serves <path> gzip-compressed (Content-Encoding: gzip)
  /gzip-bomb/<MiB>                    Content-Encoding: gzip, <MiB> of zeros once decoded (~1 KiB per MiB sent)
  /throttle/<code>/<retry-after>/<times>/<path>  answers <code> (429, 503) with `Retry-After: <retry-after>`
                                      ("none": no header) to the first <times> requests of this URL, then <path>
  /hangup/<anything>                  closes the connection without an answer
  /garbage/<anything>                 answers bytes that are not HTTP
"""

from __future__ import annotations

import functools
import gzip
import mimetypes
import threading
import time
from collections import Counter
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

_GZIP_BOMBS: dict[int, bytes] = {}


def gzip_bomb(mebibytes: int) -> bytes:
    if mebibytes not in _GZIP_BOMBS:
        _GZIP_BOMBS[mebibytes] = gzip.compress(b"\0" * (mebibytes << 20), compresslevel=9)
    return _GZIP_BOMBS[mebibytes]


class _Handler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, format, *args):  # noqa: A002 - keep the test output clean
        pass

    def _file(self, rel: str) -> bytes | None:
        path = (Path(self.directory) / unquote(rel)).resolve()
        if not path.is_file() or Path(self.directory).resolve() not in path.parents:
            return None
        return path.read_bytes()

    def _send_file(self, rel: str, extra_headers: dict[str, str] | None = None, content_type: str | None = None):
        body = self._file(rel)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        ctype = content_type or mimetypes.guess_type(rel)[0] or "application/octet-stream"
        if ctype.startswith("text/"):
            ctype += "; charset=utf-8" if "charset" not in ctype else ""
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra_headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _plain(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        if code < 200 or code in (204, 304):
            body = b""  # these answers have no body (RFC 9110)
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):  # noqa: N802
        self.do_GET()

    def do_GET(self):  # noqa: N802
        self.server.record(self)
        try:
            self._route()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True
        finally:
            self.server.leave()

    def _route(self):  # noqa: C901 - one branch per route, read top to bottom
        parts = urlsplit(self.path).path.lstrip("/").split("/")
        head, rest = parts[0], "/".join(parts[1:])
        if head == "robots.txt" and self.server.robots_status is not None:
            self._plain(self.server.robots_status, b"robots.txt unavailable")
        elif head == "status" and len(parts) >= 2:
            code = int(parts[1])
            self._plain(code, f"status {code}".encode())
        elif head == "slow" and len(parts) >= 3:
            time.sleep(float(parts[1]))
            self._send_file("/".join(parts[2:]))
        elif head == "optout" and len(parts) >= 3:
            self._send_file("/".join(parts[2:]), {"X-Robots-Tag": unquote(parts[1])})
        elif head == "redirect" and len(parts) >= 2:
            self._redirect(unquote(rest))
        elif head == "as" and len(parts) >= 3:
            self._send_file("/".join(parts[2:]), content_type=unquote(parts[1]).replace("~", "/"))
        elif head == "chain" and len(parts) >= 3:
            n = int(parts[1])
            target = "/".join(parts[2:])
            self._redirect(f"/chain/{n - 1}/{target}" if n > 0 else f"/{target}")
        elif head == "loop":
            self._redirect(self.path)
        elif head == "pingpong":
            self._redirect("/pingpong/b" if rest == "a" else "/pingpong/a")
        elif head == "trickle" and len(parts) >= 3:
            self._trickle(float(parts[1]), "/".join(parts[2:]))
        elif head == "header-trickle" and len(parts) >= 3:
            self._header_trickle(float(parts[1]), "/".join(parts[2:]))
        elif head == "endless":
            self._endless(unquote(rest).replace("~", "/") or "image/jpeg")
        elif head == "wrong-length" and len(parts) >= 3:
            body = self._file("/".join(parts[2:])) or b""
            self.close_connection = True
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", parts[1])
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        elif head in ("gzip", "gzip-bomb") and len(parts) >= 2:
            body = gzip_bomb(int(parts[1])) if head == "gzip-bomb" else gzip.compress(self._file(rest) or b"")
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif head == "throttle" and len(parts) >= 5:
            code, retry_after, times = int(parts[1]), unquote(parts[2]), int(parts[3])
            if self.server.bump(self.path) <= times:
                self._plain(code, b"slow down", {} if retry_after == "none" else {"Retry-After": retry_after})
            else:
                self._send_file("/".join(parts[4:]))
        elif head == "hangup":
            self.close_connection = True
        elif head == "garbage":
            self.close_connection = True
            self.wfile.write(b"\x00\x01 this is not HTTP\r\n\r\n")
        else:
            self._send_file("/".join(parts))

    def _trickle(self, rate: float, rel: str) -> None:
        body = self._file(rel) or b"\xff\xd8" + b"\0" * 1000
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.flush()
        self._dribble(body, rate)

    def _header_trickle(self, rate: float, rel: str) -> None:
        body = self._file(rel) or b""
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {len(body)}\r\n"
                + "".join(f"X-Padding-{i}: {'x' * 40}\r\n" for i in range(50)) + "\r\n").encode()
        self.close_connection = True
        self._dribble(head, rate)
        self.wfile.write(body)

    def _dribble(self, data: bytes, rate: float) -> None:
        step = max(1, int(rate / 10))
        for i in range(0, len(data), step):
            if self.server.stopping.is_set():
                return
            self.wfile.write(data[i:i + step])
            self.wfile.flush()
            time.sleep(step / rate)

    def _endless(self, content_type: str) -> None:
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Connection", "close")
        self.end_headers()
        chunk = b"\xff\xd8\xff\xe0" + b"\0" * (64 << 10)
        for _ in range(1 << 16):  # 4 GiB at most, if a client never stops
            if self.server.stopping.is_set():
                return
            self.wfile.write(chunk)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # socketserver's default of 5 drops connects when many clients start at once

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lock = threading.Lock()
        self.log: list[dict] = []
        self.counts: Counter = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.stopping = threading.Event()
        self.robots_status: int | None = None

    def record(self, handler: _Handler) -> None:
        with self.lock:
            self.log.append({"path": urlsplit(handler.path).path, "url": handler.path, "time": time.monotonic(),
                             "headers": dict(handler.headers.items())})
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def bump(self, key: str) -> int:
        with self.lock:
            self.counts[key] += 1
            return self.counts[key]


class LoopbackServer:
    """`with LoopbackServer(folder) as server: server.url("a.jpg")` — bound to 127.0.0.1 on a free port."""

    def __init__(self, directory: str | Path, port: int = 0, robots_status: int | None = None):
        """robots_status: answer /robots.txt with this HTTP status instead of the folder's file."""
        self.directory = Path(directory)
        handler = functools.partial(_Handler, directory=str(self.directory))
        self.httpd = _Server(("127.0.0.1", port), handler)
        self.httpd.robots_status = robots_status
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="fairsift-loopback", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "") -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    @property
    def requests(self) -> list[dict]:
        """Every request so far: path, url (absolute when asked as a proxy), monotonic time, headers."""
        with self.httpd.lock:
            return list(self.httpd.log)

    def count(self, prefix: str = "/") -> int:
        """Requests whose path starts with prefix."""
        return sum(1 for r in self.requests if r["path"].startswith(prefix))

    @property
    def max_in_flight(self) -> int:
        return self.httpd.max_in_flight

    def reset_log(self) -> None:
        with self.httpd.lock:
            self.httpd.log.clear()
            self.httpd.max_in_flight = self.httpd.in_flight

    def start(self) -> "LoopbackServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> "LoopbackServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
