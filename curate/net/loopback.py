"""A small HTTP server on 127.0.0.1 serving a folder, with a few misbehaving routes for failure tests.

Used by the demo (serves the bundled sample as HTML pages) and by the tests (real images over real HTTP).
Routes besides plain files:
  /status/<code>/<anything>   answers that HTTP status
  /slow/<seconds>/<path>      waits, then serves <path> (timeouts)
  /optout/<directive>/<path>  serves <path> with `X-Robots-Tag: <directive>`
  /as/<content-type>/<path>   serves <path> with that Content-Type ("text~html" for "text/html")
  /redirect/<url-quoted URL>  answers 302 to that URL (redirect guards)
"""

from __future__ import annotations

import functools
import mimetypes
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


class _Handler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - keep the test output clean
        pass

    def _send_file(self, rel: str, extra_headers: dict[str, str] | None = None, content_type: str | None = None):
        path = (Path(self.directory) / unquote(rel)).resolve()
        if not path.is_file() or Path(self.directory).resolve() not in path.parents:
            self.send_error(404)
            return
        body = path.read_bytes()
        self.send_response(200)
        ctype = content_type or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if ctype.startswith("text/"):
            ctype += "; charset=utf-8" if "charset" not in ctype else ""
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra_headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):  # noqa: N802
        self.do_GET()

    def do_GET(self):  # noqa: N802
        parts = urlsplit(self.path).path.lstrip("/").split("/")
        head = parts[0]
        try:
            if head == "status" and len(parts) >= 2:
                code = int(parts[1])
                body = f"status {code}".encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
            elif head == "slow" and len(parts) >= 3:
                time.sleep(float(parts[1]))
                self._send_file("/".join(parts[2:]))
            elif head == "optout" and len(parts) >= 3:
                self._send_file("/".join(parts[2:]), {"X-Robots-Tag": unquote(parts[1])})
            elif head == "redirect" and len(parts) >= 2:
                self.send_response(302)
                self.send_header("Location", unquote("/".join(parts[1:])))
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif head == "as" and len(parts) >= 3:
                self._send_file("/".join(parts[2:]), content_type=unquote(parts[1]).replace("~", "/"))
            else:
                self._send_file("/".join(parts))
        except (BrokenPipeError, ConnectionResetError):
            pass


class LoopbackServer:
    """`with LoopbackServer(folder) as server: server.url("a.jpg")` — bound to 127.0.0.1 on a free port."""

    def __init__(self, directory: str | Path, port: int = 0):
        self.directory = Path(directory)
        handler = functools.partial(_Handler, directory=str(self.directory))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="fairsift-loopback", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "") -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def start(self) -> "LoopbackServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> "LoopbackServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
