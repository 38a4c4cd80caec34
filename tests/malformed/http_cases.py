"""HTTP misbehaviours on the loopback server (curate/net/loopback.py routes), each with the shards status and
error kind the download must give it under CASE_OPTIONS.

`write_http_fixtures(folder)` writes the files the routes serve (an image, an HTML page, a robots.txt that disallows
/private/ for fairsift); `http_cases()` lists HttpCase(name, path, status, kind, own_server): a case with own_server
closes its host for the rest of the part (a Retry-After longer than the download waits), so a harness serves it from
a server of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from urllib.parse import quote

from tests.malformed.image_cases import _encode, _photo

GOOD = "good.jpg"
# the download options the expectations assume (seconds and bytes kept small so the cases run in seconds)
# (room for a loaded CI machine: reading the 4 MiB of an endless body must not hit total_timeout first)
CASE_OPTIONS = dict(timeout=2, total_timeout=8.0, max_bytes=4 << 20, retries=0, throttle_retries=1,
                    retry_after_max=2.0, max_redirects=5, allow_private_network=True, image_size=32, threads=16,
                    per_host_concurrency=16)
ROBOTS_TXT = "User-agent: fairsift\nDisallow: /private/\n\nUser-agent: *\nDisallow: /nobody/\n"


@dataclass(frozen=True)
class HttpCase:
    name: str
    path: str
    status: str
    kind: Optional[str] = None
    own_server: bool = False


def write_http_fixtures(folder: str | Path) -> None:
    folder = Path(folder)
    (folder / "private").mkdir(parents=True, exist_ok=True)
    (folder / "nobody").mkdir(parents=True, exist_ok=True)
    image = _encode(_photo(160, 120), "JPEG", quality=90)
    for name in (GOOD, f"private/{GOOD}", f"nobody/{GOOD}"):
        (folder / name).write_bytes(image)
    (folder / "page.html").write_text("<!DOCTYPE html><html><body><img src='good.jpg' alt='x'></body></html>")
    (folder / "robots.txt").write_text(ROBOTS_TXT)


def http_cases() -> list[HttpCase]:
    ok, dl, rs = "success", "failed_to_download", "failed_to_resize"
    cases = [
        HttpCase("plain image", GOOD, ok),
        HttpCase("image sent as text/plain", f"as/text~plain/{GOOD}", ok),
        HttpCase("image sent as text/html", f"as/text~html/{GOOD}", ok),
        HttpCase("image sent as image/png", f"as/image~png/{GOOD}", ok),
        HttpCase("html sent as image/jpeg", "as/image~jpeg/page.html", rs, "not_an_image"),
        HttpCase("html page", "page.html", rs, "not_an_image"),
        HttpCase("gzip-encoded image", f"gzip/{GOOD}", ok),
        HttpCase("3 redirects", f"chain/3/{GOOD}", ok),
        HttpCase("8 redirects (limit 5)", f"chain/8/{GOOD}", dl, "too_many_redirects"),
        HttpCase("redirect to itself", "loop/self", dl, "redirect_loop"),
        HttpCase("redirect ping-pong", "pingpong/a", dl, "redirect_loop"),
        HttpCase("redirect to ftp", "redirect/" + quote("ftp://example.com/a.jpg", safe=""), dl, "bad_redirect"),
        HttpCase("slow first byte", f"slow/5/{GOOD}", dl, "timeout"),
        HttpCase("body trickle", f"trickle/400/{GOOD}", dl, "total_timeout"),
        HttpCase("header trickle", f"header-trickle/100/{GOOD}", dl, "total_timeout"),
        HttpCase("endless body", "endless", dl, "too_large"),
        HttpCase("endless html", "endless/text~html", dl, "too_large"),
        HttpCase("gzip bomb", "gzip-bomb/64", dl, "too_large"),
        HttpCase("Content-Length too long", f"wrong-length/999999/{GOOD}", dl, "incomplete"),
        HttpCase("Content-Length too short", f"wrong-length/200/{GOOD}", rs, None),
        HttpCase("connection closed without answer", "hangup/x", dl, "protocol"),
        HttpCase("answer that is not HTTP", "garbage/x", dl, "protocol"),
        HttpCase("429 then ok (Retry-After 1)", f"throttle/429/1/1/{GOOD}", ok),
        HttpCase("503 then ok (Retry-After 1)", f"throttle/503/1/1/{GOOD}", ok),
        HttpCase("429 with an HTTP-date Retry-After", f"throttle/429/{quote('Thu, 01 Jan 1970 00:00:00 GMT')}/1/{GOOD}",
                 ok),
        HttpCase("429 five times", f"throttle/429/1/5/{GOOD}", dl, "throttled"),
        HttpCase("429 without Retry-After", f"throttle/429/none/1/{GOOD}", dl, "throttled"),
        HttpCase("503 asking for an hour", f"throttle/503/3600/99/{GOOD}", dl, "throttled", own_server=True),
        HttpCase("X-Robots-Tag noai", f"optout/noai/{GOOD}", "opted_out", "x_robots_tag"),
        HttpCase("X-Robots-Tag for us", f"optout/{quote('fairsift: noimageai')}/{GOOD}", "opted_out", "x_robots_tag"),
        HttpCase("X-Robots-Tag for another bot", f"optout/{quote('otherbot: noai')}/{GOOD}", ok),
        HttpCase("X-Robots-Tag noindex only", f"optout/noindex/{GOOD}", ok),
        HttpCase("robots.txt disallows us", f"private/{GOOD}", "refused_robots", "robots_txt"),
        HttpCase("robots.txt disallows others", f"nobody/{GOOD}", ok),
    ]
    for code in (204, 400, 401, 403, 404, 410, 418, 451, 500, 502, 504):
        if code == 204:
            cases.append(HttpCase("204 no content", "status/204/x.jpg", rs, "empty"))
        else:
            cases.append(HttpCase(f"HTTP {code}", f"status/{code}/x.jpg", dl, f"http_{code}"))
    return cases
