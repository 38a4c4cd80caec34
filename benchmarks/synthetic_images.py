"""Synthetic images over loopback HTTP, and URL lists that point at them, for the memory and scaling benchmarks.

`/img/<i>.jpg` is a 256x256 JPEG made from seed i: an 8x8 grid of random colours, smoothly upsampled, so that every
image is different (its pHash is random, so dedup finds no planted duplicates) and small (~6 KB, like a web photo
after resizing). Images are generated on request, so a 400k-row benchmark needs no 400k files on disk.
"""

from __future__ import annotations

import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

SIZE = 256


def synthetic_jpeg(seed: int, size: int = SIZE) -> bytes:
    rng = np.random.default_rng(seed)
    grid = Image.fromarray(rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8))
    buf = io.BytesIO()
    grid.resize((size, size), Image.BILINEAR).save(buf, "JPEG", quality=85)
    return buf.getvalue()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002
        pass

    def do_GET(self):  # noqa: N802
        name = self.path.rsplit("/", 1)[-1]
        try:
            seed = int(name.split(".")[0])
        except ValueError:
            self.send_error(404)
            return
        body = synthetic_jpeg(seed)
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class ImageServer:
    """`with ImageServer() as server: server.url(i)` — serves on 127.0.0.1 only, stops on exit."""

    def __init__(self) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/img/{i}.jpg"

    def __enter__(self) -> "ImageServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


CAPTION_WORDS = ("a photo of a woman smiling in a park", "a man riding a bicycle in Paris",
                 "children playing football on the beach", "a bowl of fresh fruit on a wooden table",
                 "an old church in a small village in Italy", "a red car parked on a street in Tokyo")


def write_url_list(path: Path, server: ImageServer, n: int) -> Path:
    """A Parquet URL list (url, caption) of n synthetic images, for `fairsift ingest`.

    Row groups of 10,000 rows whatever n: reading a Parquet list holds one row group's decoding buffers, so a list
    of any length with the same row groups reads in the same memory (pyarrow's writers default to 1Mi-row groups,
    DuckDB's to 122,880 rows)."""
    captions = [f"{CAPTION_WORDS[i % len(CAPTION_WORDS)]} number {i}" for i in range(n)]
    pq.write_table(pa.table({"url": [server.url(i) for i in range(n)], "caption": captions}), path,
                   row_group_size=10_000)
    return path
