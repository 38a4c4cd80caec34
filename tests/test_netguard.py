"""netguard: private, loopback, link-local, multicast, reserved and unspecified hosts are refused, IPv4 and IPv6."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from curate.net.loopback import LoopbackServer
from curate.net.netguard import PrivateNetworkError, ensure_public, host_of, is_private_host
from curate.net.redirect_guard import CONNECT_REFUSED, ENV_VAR, GUARD_DIR, REDIRECT_REFUSED, guarded_environment

PRIVATE = [
    "127.0.0.1", "127.8.9.10", "10.0.0.1", "172.16.5.4", "192.168.1.1",  # loopback, RFC 1918
    "169.254.169.254",  # link-local (cloud metadata)
    "0.0.0.0", "224.0.0.1", "240.0.0.1", "255.255.255.255", "100.64.0.1",  # unspecified, multicast, reserved, CGNAT
    "::1", "::", "fe80::1", "fe80::1%eth0", "fc00::1", "ff02::1", "2001:db8::1",
    "::ffff:127.0.0.1", "2002:7f00:1::1",  # IPv4 loopback inside IPv6 (mapped, 6to4)
    "localhost",  # a name, resolved for real
    "2130706433",  # 127.0.0.1 written as one number, as a URL may carry it
    "http://127.0.0.1:8080/a.jpg", "https://[::1]/x", "http://user:secret@10.1.2.3/", "127.0.0.1:9000", "[::1]:80",
    "",  # nothing to check
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "http://93.184.216.34/image.jpg", "2606:4700:4700::1111",
          "http://[2606:4700:4700::1111]:8080/a.jpg"]


@pytest.mark.parametrize("target", PRIVATE)
def test_private_targets_are_refused(target):
    assert is_private_host(target)
    with pytest.raises(PrivateNetworkError, match="--allow-private-network"):
        ensure_public(target)


@pytest.mark.parametrize("target", PUBLIC)
def test_public_targets_pass(target):
    assert not is_private_host(target)
    ensure_public(target)


def test_unresolvable_host_is_left_to_the_request():
    # .invalid never resolves (RFC 6761): the fetch fails on its own with a network error
    assert not is_private_host("http://no-such-host.invalid/a.jpg")


def test_host_of():
    assert host_of("https://Example.org:8443/a?b") == "example.org"
    assert host_of("[::1]:80") == "::1"
    assert host_of("fe80::1") == "fe80::1"
    assert host_of("example.org:80") == "example.org"


# ---- the guard in img2dataset's worker processes (curate/redirect_guard) -----------------------------------------
# A worker is a fresh interpreter that picks the guard up at start-up, so each check runs one: python -c "urlopen(...)".
# Every loopback URL is itself private, so the loopback server also acts as the HTTP proxy for a made-up public host
# (.invalid never resolves): "http://public.invalid/redirect/<target>" is answered by it with a 302 to <target>,
# like a public site redirecting into the private network. The proxy's own address is exempt from the connect check.

SAMPLE_IMAGE = Path(__file__).resolve().parents[1] / "pipelines" / "sample" / "images" / "wm_335.jpg"
FETCH = "import sys, urllib.request; print('fetched', len(urllib.request.urlopen(sys.argv[1], timeout=5).read()))"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("www")
    shutil.copy(SAMPLE_IMAGE, folder / "x.jpg")
    with LoopbackServer(folder) as srv:
        yield srv


def _child(url: str, *, guard: bool, proxy: str | None = None, extra_path: tuple[str, ...] = (),
           code: str = FETCH) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter, in the environment the download stage gives img2dataset (guard=True)."""
    with guarded_environment() if guard else contextlib.nullcontext():
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    if proxy:
        env["http_proxy"] = proxy
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), *extra_path]))
    return subprocess.run([sys.executable, "-c", code, url], env=env, capture_output=True, text=True, timeout=60,
                          check=False)


def _redirect(target: str) -> str:
    return "http://public.invalid/redirect/" + quote(target, safe="")


@pytest.mark.parametrize("target", ["http://10.255.255.1/x.jpg", "http://169.254.169.254/latest/meta-data",
                                    "http://localhost:1/x.jpg", "http://[::1]/x.jpg"])
def test_worker_refuses_redirect_to_private_address(server, target):
    refused = _child(_redirect(target), guard=True, proxy=server.base_url)
    assert refused.returncode != 0
    assert f"HTTP Error 302: {REDIRECT_REFUSED}: {target}" in refused.stderr


def test_without_the_guard_the_redirect_is_followed(server):
    # the proxy answers the redirected request for 10.255.255.1 too, so following it fetches the image
    followed = _child(_redirect("http://10.255.255.1/x.jpg"), guard=False, proxy=server.base_url)
    assert followed.returncode == 0 and followed.stdout.split() == ["fetched", str(SAMPLE_IMAGE.stat().st_size)]


def test_worker_follows_public_redirects_and_fetches_through_proxy(server):
    fetched = _child(_redirect("http://elsewhere.invalid/x.jpg"), guard=True, proxy=server.base_url)
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout.split() == ["fetched", str(SAMPLE_IMAGE.stat().st_size)]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_worker_refuses_connections_to_private_addresses(server, host):
    """The connect check: whatever a name resolved to earlier, the address connected to now is what counts."""
    url = f"http://{host}:{server.port}/x.jpg"
    assert _child(url, guard=False).stdout.split()[0] == "fetched"
    refused = _child(url, guard=True)
    assert refused.returncode != 0 and CONNECT_REFUSED in refused.stderr and "fetched" not in refused.stdout


def test_guard_runs_the_sitecustomize_it_shadows_and_survives_its_errors(tmp_path):
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    (good / "sitecustomize.py").write_text("import os\nos.environ['SHADOWED_RAN'] = 'yes'\n")
    (bad / "sitecustomize.py").write_text("raise RuntimeError('broken user sitecustomize')\n")
    probe = ("import os, sys, sitecustomize, urllib.request; "
             "print(sitecustomize.GUARD_INSTALLED, os.environ.get('SHADOWED_RAN'), "
             "type(urllib.request._opener).__name__)")
    ran = _child("", guard=True, extra_path=(str(good),), code=probe)
    assert ran.returncode == 0 and ran.stdout.split() == ["True", "yes", "OpenerDirector"], ran.stderr
    survived = _child("", guard=True, extra_path=(str(bad),), code=probe)
    assert survived.returncode == 0 and survived.stdout.split() == ["True", "None", "OpenerDirector"]
    assert "broken user sitecustomize" in survived.stderr
    unguarded = _child("", guard=False, extra_path=(GUARD_DIR, str(good)), code=probe)
    assert unguarded.stdout.split() == ["False", "yes", "NoneType"]  # without the variable: no guard, still chains


def test_guarded_environment_is_restored(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    monkeypatch.delenv(ENV_VAR, raising=False)
    with guarded_environment():
        assert os.environ["PYTHONPATH"] == os.pathsep.join([GUARD_DIR, "/somewhere"])
        assert os.environ[ENV_VAR] == "1"
    assert os.environ["PYTHONPATH"] == "/somewhere" and ENV_VAR not in os.environ
    monkeypatch.delenv("PYTHONPATH")
    with guarded_environment():
        assert os.environ["PYTHONPATH"] == GUARD_DIR
    assert "PYTHONPATH" not in os.environ
