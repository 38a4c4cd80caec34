"""The network-safety rule (curate.net.netguard) as crawl and download meet it: every non-public address and every
spelling of one is refused, checked on the address actually connected, through redirects and behind an HTTP proxy.
Each refusal test counts the requests a listening loopback server received: 0. Control tests make the same requests
with the guard lifted and see them arrive, so the counts can tell."""

from __future__ import annotations

import ipaddress
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import pyarrow as pa
import pytest

from curate import tables
from curate.net import netguard
from curate.net.http import FetchError, HttpClient, HttpSettings
from curate.net.loopback import LoopbackServer
from curate.net.netguard import PrivateNetworkError, ensure_public, host_of, is_private_host, parse_ip

PRIVATE = [
    "127.0.0.1", "127.8.9.10", "10.0.0.1", "172.16.5.4", "192.168.1.1",  # loopback, RFC 1918
    "169.254.169.254",  # link-local (cloud metadata)
    "0.0.0.0", "0.1.2.3", "224.0.0.1", "240.0.0.1", "255.255.255.255", "100.64.0.1",  # 0/8, multicast, reserved, CGNAT
    "::1", "::", "fe80::1", "fe80::1%eth0", "fc00::1", "fd12:3456::1", "ff02::1", "2001:db8::1",
    "::ffff:127.0.0.1", "::ffff:7f00:1", "::ffff:169.254.169.254", "2002:7f00:1::1", "64:ff9b::7f00:1",
    "localhost",  # a name, resolved for real
    "2130706433", "0x7f000001", "0177.0.0.1", "0x7f.0.0.1", "127.1", "0", "017700000001",  # legacy IPv4 spellings
    "http://127.0.0.1:8080/a.jpg", "https://[::1]/x", "http://user:secret@10.1.2.3/", "127.0.0.1:9000", "[::1]:80",
    "http://0x7f.1/a.jpg", "http://[::ffff:127.0.0.1]:80/",
    "",  # nothing to check
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "http://93.184.216.34/image.jpg", "2606:4700:4700::1111",
          "http://[2606:4700:4700::1111]:8080/a.jpg", "::ffff:8.8.8.8", "64:ff9b::808:808"]


@pytest.mark.parametrize("target", PRIVATE)
def test_private_targets_are_refused(target):
    assert is_private_host(target)
    with pytest.raises(PrivateNetworkError, match="--allow-private-network"):
        ensure_public(target)


@pytest.mark.parametrize("target", PUBLIC)
def test_public_targets_pass(target):
    assert not is_private_host(target)
    ensure_public(target)


@pytest.mark.parametrize("spelling", ["2130706433", "0x7f000001", "0177.0.0.1", "0x7f.0.0.1", "127.1", "017700000001",
                                      "0x7F.0x0.0x0.0x1", "127.0.1"])
def test_legacy_ipv4_spellings_mean_what_the_resolver_reads(spelling):
    import socket

    expected = ipaddress.ip_address(socket.getaddrinfo(spelling, 80, 0, socket.SOCK_STREAM)[0][4][0])  # the oracle
    assert parse_ip(spelling) == expected
    assert parse_ip("example") is None and parse_ip("cafe.example") is None and parse_ip("deadbeef") is None


def test_unresolvable_host_is_left_to_the_request():
    # .invalid never resolves (RFC 6761): the fetch fails on its own with a DNS error
    assert not is_private_host("http://no-such-host.invalid/a.jpg")


def test_host_of():
    assert host_of("https://Example.org:8443/a?b") == "example.org"
    assert host_of("[::1]:80") == "::1"
    assert host_of("fe80::1") == "fe80::1"
    assert host_of("example.org:80") == "example.org"


# ---- requests that must never reach a listening server ------------------------------------------------------------

SAMPLE_IMAGE = Path(__file__).resolve().parents[1] / "pipelines" / "sample" / "images" / "wm_335.jpg"
# every way of writing the loopback server's address that a resolver turns into a loopback address
SPELLINGS = ["127.0.0.1", "2130706433", "0x7f000001", "0177.0.0.1", "0x7f.0.0.1", "127.1", "017700000001",
             "0x7F.0.0.1", "0", "0.0.0.0", "localhost", "LocalHost", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]"]


@pytest.fixture(scope="module")
def listening(tmp_path_factory):
    folder = tmp_path_factory.mktemp("target")
    (folder / "x.jpg").write_bytes(SAMPLE_IMAGE.read_bytes())
    with LoopbackServer(folder) as server:
        yield server


@pytest.fixture()
def target(listening):
    listening.reset_log()  # each test counts its own requests
    return listening


@pytest.fixture()
def no_proxy_env(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY", "all_proxy",
                 "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


def _url(spelling: str, server: LoopbackServer, path: str = "x.jpg") -> str:
    return f"http://{spelling}:{server.port}/{path}"


def _get(url: str, allow: bool = False):
    client = HttpClient(HttpSettings(allow_private_network=allow, timeout=3, total_timeout=5))
    try:
        return client.get(url)
    finally:
        client.close()


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_no_spelling_of_loopback_reaches_the_server(target, spelling, no_proxy_env):
    with pytest.raises(FetchError) as refused:
        _get(_url(spelling, target))
    assert refused.value.status == "blocked_private_network" and refused.value.kind == "private_address"
    assert "--allow-private-network" in refused.value.message
    assert target.count() == 0


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_control_each_spelling_reaches_the_server_when_allowed(target, spelling, no_proxy_env):
    response = _get(_url(spelling, target), allow=True)
    assert response.status == 200 and response.body == SAMPLE_IMAGE.read_bytes()
    assert target.count() == 1


def test_names_resolving_to_private_addresses_are_refused_at_connect(target, monkeypatch, no_proxy_env):
    """DNS plays tricks through the resolver every check and connect share: a name that resolves to loopback, one with
    a public and a private answer, and a rebinding name that answers public to a first lookup (an up-front check)
    and loopback to the next (the connect). The address connected is the one checked, so all are refused."""
    real = netguard.getaddrinfo
    calls: Counter = Counter()

    def fake_dns(host, port):
        calls[host] += 1
        answers = {"evil.test": ["127.0.0.1"], "mixed.test": ["93.184.216.34", "127.0.0.1"],
                   "metadata.test": ["169.254.169.254"],
                   "rebind.test": ["93.184.216.34"] if calls[host] == 1 else ["127.0.0.1"]}
        if host not in answers:
            return real(host, port)
        return [(2, 1, 6, "", (address, port)) for address in answers[host]]

    monkeypatch.setattr(netguard, "getaddrinfo", fake_dns)
    assert not is_private_host("rebind.test")  # the first lookup says public ...
    for name in ("evil.test", "mixed.test", "metadata.test", "rebind.test"):
        with pytest.raises(FetchError) as refused:
            _get(_url(name, target))
        assert refused.value.status == "blocked_private_network", name
    assert calls["rebind.test"] == 2  # ... the connect looked it up again and was refused on what it got
    assert target.count() == 0


def test_redirects_and_private_targets_are_refused_behind_an_http_proxy(tmp_path, target, monkeypatch, no_proxy_env):
    """With http_proxy set, the proxy connects, so each hop's target is checked before it is handed over. The proxy
    is a loopback server too (a configured proxy may be private); `.invalid` names stand in for public hosts."""
    (tmp_path / "proxy").mkdir()
    (tmp_path / "proxy" / "y.jpg").write_bytes(SAMPLE_IMAGE.read_bytes())
    with LoopbackServer(tmp_path / "proxy") as proxy:
        monkeypatch.setenv("http_proxy", proxy.base_url)
        assert _get("http://public.invalid/y.jpg").status == 200  # a public target goes through the proxy
        assert proxy.count() == 1
        for spelling in SPELLINGS + ["169.254.169.254", "[::1]", "10.0.0.1"]:
            hop = _url(spelling, target)
            with pytest.raises(FetchError) as direct:
                _get(hop)
            assert direct.value.status == "blocked_private_network", spelling
            with pytest.raises(FetchError) as redirected:
                _get("http://public.invalid/redirect/" + quote(hop, safe=""))
            assert redirected.value.status == "blocked_private_network", spelling
        assert _get("http://public.invalid/redirect/" + quote("http://cdn.invalid/y.jpg", safe="")).status == 200
        assert target.count() == 0
        assert proxy.count() == 1 + (len(SPELLINGS) + 3) + 2  # only the public hops reached the proxy


def test_download_stage_refuses_every_spelling_with_zero_requests(target, tmp_path, no_proxy_env):
    from curate.download.stage import download
    from curate.options import DownloadOptions

    urls = [_url(s, target) for s in SPELLINGS] + [f"http://[::1]:{target.port}/x.jpg",
                                                   f"http://169.254.169.254:{target.port}/latest/meta-data"]
    run = tmp_path / "run"
    tables.write_part(run, "pairs", 0, pa.table({"uid": [str(i) for i in range(len(urls))], "url": urls,
                                                 "caption": ["c"] * len(urls)}))
    counts = download(run, DownloadOptions(timeout=3, threads=4))
    assert counts["status"] == {"blocked_private_network": len(urls)}
    assert target.count() == 0


def test_crawler_refuses_every_spelling_with_zero_requests(target, tmp_path, no_proxy_env):
    from curate.options import CrawlOptions
    from curate.sources.crawl import crawl

    for i, spelling in enumerate(SPELLINGS):
        counts = crawl(tmp_path / f"run{i}", CrawlOptions(sources=[_url(spelling, target, "index.html")]))
        assert counts["pages_refused_private"] == 1 and counts["pages"] == 0, (spelling, counts)
    assert target.count() == 0
