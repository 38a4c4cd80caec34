"""Polite and fail-fast downloads, on loopback: robots.txt fetched once per host and obeyed, the User-Agent and its
contact, per-host concurrency and rate limits, Retry-After, domain lists, dead hosts failing at once and the per-host
circuit breaker (`host_unreachable`)."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path
from urllib.parse import quote

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import pyarrow as pa  # noqa: E402
import pytest  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from curate import tables  # noqa: E402
from curate.download.stage import download  # noqa: E402
from curate.net import netguard, robots  # noqa: E402
from curate.net.domains import DomainRules  # noqa: E402
from curate.net.loopback import LoopbackServer  # noqa: E402
from curate.options import DownloadOptions  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "pipelines" / "sample" / "images" / "wm_335.jpg"
ROBOTS = "User-agent: fairsift\nDisallow: /private/\n\nUser-agent: *\nDisallow: /\n"


def _folder(path: Path, robots_txt: str | None = ROBOTS) -> Path:
    for sub in ("", "private", "open"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    for i in range(30):
        shutil.copy(SAMPLE, path / f"img{i}.jpg")
        shutil.copy(SAMPLE, path / "private" / f"img{i}.jpg")
    if robots_txt is not None:
        (path / "robots.txt").write_text(robots_txt)
    return path


def _run(run: Path, parts: list[list[str]], **options) -> dict:
    for index, urls in enumerate(parts):
        tables.write_part(run, "pairs", index, pa.table({"uid": [f"{index}-{i}" for i in range(len(urls))],
                                                         "url": urls, "caption": ["c"] * len(urls)}))
    values = dict(image_size=16, timeout=2, threads=8, allow_private_network=True)
    values.update(options)
    robots.CACHE.clear()
    return download(run, DownloadOptions(**values))


def _shards(run: Path) -> list[dict]:
    return tables.read_table(run, "shards", ["url", "status", "error_kind", "error_message"]).to_pylist()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with LoopbackServer(_folder(tmp_path_factory.mktemp("site"))) as server:
        yield server


@pytest.fixture()
def server(site):
    site.reset_log()
    return site


# ---- robots.txt and the User-Agent ---------------------------------------------------------------------------------

def test_robots_txt_fetched_once_and_obeyed_for_our_user_agent(server, tmp_path):
    parts = [[server.url(f"img{i}.jpg") for i in range(5)] + [server.url(f"private/img{i}.jpg") for i in range(3)],
             [server.url(f"private/img{i}.jpg") for i in range(3, 6)] + [server.url("img9.jpg")]]
    counts = _run(tmp_path, parts)
    assert counts["status"] == {"success": 6, "refused_robots": 6}
    assert server.count("/robots.txt") == 1  # two parts, one host, one fetch
    assert server.count("/private/") == 0  # refused rows are never requested
    refused = [r for r in _shards(tmp_path) if r["status"] == "refused_robots"]
    assert all(r["error_kind"] == "robots_txt" and "robots.txt disallows /private/" in r["error_message"]
               and "'fairsift'" in r["error_message"] for r in refused)


def test_ignore_robots_txt(server, tmp_path):
    counts = _run(tmp_path, [[server.url("private/img1.jpg")]], respect_robots_txt=False)
    assert counts["status"] == {"success": 1} and server.count("/robots.txt") == 0


@pytest.mark.parametrize("code, expected", [(404, "success"), (403, "success"), (503, "refused_robots"),
                                            (500, "refused_robots")])
def test_robots_txt_answers_read_as_rfc_9309_says(tmp_path, code, expected):
    with LoopbackServer(_folder(tmp_path / "www", robots_txt=None), robots_status=code) as server:
        counts = _run(tmp_path / "run", [[server.url("img1.jpg"), server.url("img2.jpg")]])
        assert counts["status"] == {expected: 2}
        assert server.count("/robots.txt") == 1 and server.count("/img") == (2 if expected == "success" else 0)
    if expected == "refused_robots":
        assert f"answered {code}" in _shards(tmp_path / "run")[0]["error_message"]


def test_user_agent_carries_a_contact(server, tmp_path):
    _run(tmp_path / "a", [[server.url("img1.jpg")]])
    agents = {r["headers"]["User-Agent"] for r in server.requests}  # robots.txt and the image alike
    assert len(agents) == 1
    agent = agents.pop()
    assert agent.startswith("fairsift/") and "(+https://github.com/fairsift/fairsift)" in agent
    server.reset_log()
    _run(tmp_path / "b", [[server.url("img1.jpg")]], contact="mailto:curator@example.org")
    assert {r["headers"]["User-Agent"] for r in server.requests} == {agent.split(" (")[0]
                                                                     + " (+mailto:curator@example.org)"}
    server.reset_log()
    _run(tmp_path / "c", [[server.url("img1.jpg")]], user_agent="MyLabBot/2.0 (+https://lab.example/bot)")
    assert {r["headers"]["User-Agent"] for r in server.requests} == {"MyLabBot/2.0 (+https://lab.example/bot)"}
    with pytest.raises(ValidationError, match="contact"):
        DownloadOptions(user_agent="MyLabBot/2.0")
    with pytest.raises(ValidationError, match="contact"):
        DownloadOptions(contact="nobody")


def test_robots_groups_match_the_configured_user_agent(server, tmp_path):
    """robots.txt disallows everything for other agents ('User-agent: *  Disallow: /'): a bot named otherwise obeys
    that group."""
    counts = _run(tmp_path, [[server.url("img1.jpg")]], user_agent="OtherBot/1 (+https://lab.example)")
    assert counts["status"] == {"refused_robots": 1}


# ---- per-host limits, Retry-After -----------------------------------------------------------------------------------

def test_per_host_concurrency_is_a_ceiling(server, tmp_path):
    urls = [server.url(f"slow/0.2/img{i}.jpg") for i in range(12)]
    counts = _run(tmp_path / "three", [urls], threads=16, per_host_concurrency=3)
    assert counts["status"] == {"success": 12}
    assert server.max_in_flight <= 3
    server.reset_log()
    _run(tmp_path / "one", [urls[:5]], threads=16, per_host_concurrency=1)
    assert server.max_in_flight == 1


def test_per_host_rate_limit_spaces_request_starts(server, tmp_path):
    counts = _run(tmp_path, [[server.url(f"img{i}.jpg") for i in range(6)]], threads=8, per_host_rps=5)
    assert counts["status"] == {"success": 6}
    starts = sorted(r["time"] for r in server.requests if r["path"].startswith("/img"))
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    # 5 per second: starts 0.2 s apart (a scheduling guarantee, not a speed measurement); the server logs a request
    # when it has read it, so a new connection's set-up may shift one arrival a little
    assert starts[-1] - starts[0] >= 5 * 0.2 * 0.95 and min(gaps) >= 0.1, gaps


def test_retry_after_is_honoured(server, tmp_path):
    counts = _run(tmp_path, [[server.url("throttle/429/1/1/img3.jpg")]])
    assert counts["status"] == {"success": 1}
    tries = [r["time"] for r in server.requests if r["path"].startswith("/throttle")]
    assert len(tries) == 2 and tries[1] - tries[0] >= 0.95  # the retry waited the second it was asked to


def test_a_retry_after_too_long_closes_the_host_without_requests(tmp_path):
    with LoopbackServer(_folder(tmp_path / "www")) as server:
        urls = [server.url("throttle/503/3600/99/img1.jpg")] + [server.url(f"img{i}.jpg") for i in range(5)]
        counts = _run(tmp_path / "run", [urls], retry_after_max=10)
        assert counts["status"] == {"failed_to_download": 6} and counts["failures"] == {"throttled": 6}
        assert server.count("/img") == 0  # the rest was not requested
        messages = [r["error_message"] for r in _shards(tmp_path / "run")]
        assert len(set(messages)) == 1 and "answered 503 asking to wait 3600 s (Retry-After)" in messages[0]


# ---- domain lists ---------------------------------------------------------------------------------------------------

def test_domain_rules_cover_subdomains_and_idna():
    rules = DomainRules(blocked=["Example.org", "*.ads.test", "bücher.de"])
    assert rules.refusal("example.org") and rules.refusal("cdn.EXAMPLE.org") and rules.refusal("x.ads.test")
    assert rules.refusal("xn--bcher-kva.de") and rules.refusal("shop.bücher.de")
    assert rules.refusal("notexample.org") is None and rules.refusal("example.org.evil.test") is None
    only = DomainRules(allowed=["images.example"])
    assert only.refusal("cdn.images.example") is None and "not under an allowed domain" in only.refusal("other.test")


def test_allowed_and_blocked_domains(server, tmp_path):
    by_ip = server.url("img1.jpg")
    by_name = f"http://localhost:{server.port}/img2.jpg"
    blocked = _run(tmp_path / "blocked", [[by_ip, by_name]], blocked_domains=["localhost"])
    assert [r["status"] for r in _shards(tmp_path / "blocked")] == ["success", "blocked_domain"]
    assert "blocked domain localhost" in _shards(tmp_path / "blocked")[1]["error_message"]
    assert blocked["failures"] == {"domain_list": 1}
    _run(tmp_path / "allowed", [[by_ip, by_name]], allowed_domains=["localhost"])
    assert [r["status"] for r in _shards(tmp_path / "allowed")] == ["blocked_domain", "success"]
    redirect = server.url("redirect/" + quote(by_name, safe=""))  # a redirect into a blocked domain is refused
    _run(tmp_path / "redirect", [[redirect]], blocked_domains=["localhost"])
    assert _shards(tmp_path / "redirect")[0]["status"] == "blocked_domain"


# ---- dead hosts: fail at once, then stop trying ---------------------------------------------------------------------

def test_dns_failures_are_not_retried_and_the_breaker_closes_the_host(server, tmp_path, monkeypatch):
    lookups: Counter = Counter()
    real = netguard.getaddrinfo

    def counting(host, port):
        lookups[host] += 1
        return real(host, port)

    monkeypatch.setattr(netguard, "getaddrinfo", counting)
    netguard.clear_dns_cache()
    dead = [f"http://dead-{h}.invalid/img{i}.jpg" for h in range(3) for i in range(5)]
    live = [server.url(f"img{i}.jpg") for i in range(3)]
    counts = _run(tmp_path, [dead + live], host_failure_limit=2, retries=3)
    assert counts["status"] == {"failed_to_download": 6, "host_unreachable": 9, "success": 3}
    assert counts["failures"] == {"dns": 6, "circuit_breaker": 9}
    assert all(lookups[f"dead-{h}.invalid"] == 1 for h in range(3))  # looked up once (then cached), never retried
    rows = _shards(tmp_path)
    for h in range(3):
        mine = [r for r in rows if f"dead-{h}.invalid" in r["url"]]
        assert [r["status"] for r in mine] == ["failed_to_download"] * 2 + ["host_unreachable"] * 3  # row order
        assert all(r["error_kind"] == "dns" and "DNS lookup of" in r["error_message"] for r in mine[:2])
        assert all(f"dead-{h}.invalid:80 failed 2 consecutive time(s)" in r["error_message"]
                   and "DNS lookup" in r["error_message"] for r in mine[2:])


def test_refused_connections_fail_at_once_and_trip_the_breaker(tmp_path):
    closed = [f"http://127.0.0.1:1/img{i}.jpg" for i in range(6)]
    counts = _run(tmp_path, [closed], host_failure_limit=4)
    assert counts["status"] == {"failed_to_download": 4, "host_unreachable": 2}
    assert counts["failures"] == {"refused": 4, "circuit_breaker": 2}


def test_a_thousand_urls_on_unreachable_hosts_all_get_a_status(tmp_path):
    """The scenario of benchmarks/bench_download.py --dead (which times it): 500 URLs on 100 names that do not
    resolve and 500 on closed loopback ports, over 4 parts."""
    urls = [f"http://host-{i % 100}.invalid/{i}.jpg" for i in range(500)]
    urls += [f"http://127.0.0.1:{1 + i % 50}/{i}.jpg" for i in range(500)]
    parts = [urls[i::4] for i in range(4)]
    counts = _run(tmp_path, parts, threads=32)
    assert counts["rows"] == 1000
    assert set(counts["status"]) == {"failed_to_download", "host_unreachable"}
    assert set(counts["failures"]) <= {"dns", "refused", "circuit_breaker"}
    assert counts["failures"]["circuit_breaker"] >= 1000 - 4 * 150 * 3  # at most 3 tries per host and part


def test_transient_failures_are_retried_only_when_asked(server, tmp_path):
    once = server.url("throttle/500/none/1/img4.jpg")  # a 500, then the image
    assert _run(tmp_path / "none", [[once]])["failures"] == {"http_500": 1}
    again = server.url("throttle/502/none/1/img5.jpg")
    assert _run(tmp_path / "one", [[again]], retries=1)["status"] == {"success": 1}
    assert server.count("/throttle/502") == 2
