"""netguard: private, loopback, link-local, multicast, reserved and unspecified hosts are refused, IPv4 and IPv6."""

from __future__ import annotations

import pytest

from curate.netguard import PrivateNetworkError, ensure_public, host_of, is_private_host

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
