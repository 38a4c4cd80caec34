"""Run by site.py at the start of every Python process whose PYTHONPATH begins with this folder.

With FAIRSIFT_REFUSE_PRIVATE_REDIRECTS=1 (set only for img2dataset's worker processes, see __init__.py) it installs:

- a urllib opener whose redirect handler refuses a redirect to a host that resolves to a private, loopback or
  link-local address (curate.net.netguard's rule), raising HTTPError "redirect to a private-network address refused: URL";
- an audit hook on "socket.connect" that refuses a TCP connection to such an address. It sees the very address the
  socket is about to connect to, after DNS, so a host that resolved to a public address when the download stage
  checked it and to a private one now (DNS rebinding) is refused before a byte is sent. Connections to a configured
  proxy (http_proxy, https_proxy, ...) pass: the proxy then resolves the target itself, so behind a proxy only the
  redirect check applies.

Without the variable it does nothing of its own. Either way it then runs the sitecustomize it shadows (the next one
on sys.path), so a user's or a distribution's still runs. Nothing here may stop an interpreter from starting:
failures are reported on stderr (img2dataset's log) and start-up goes on.
"""

import os
import sys

GUARD_INSTALLED = False  # tests read this to see that the guard is in place


def _install_guard() -> None:
    import socket
    import urllib.error
    import urllib.request

    from curate.net.netguard import host_of, is_private_address, is_private_host, parse_ip, resolve
    from curate.net.redirect_guard import CONNECT_REFUSED, REDIRECT_REFUSED

    class RefusePrivateRedirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req, fp, code, msg, headers, newurl):
            if is_private_host(newurl):
                raise urllib.error.HTTPError(req.full_url, code, f"{REDIRECT_REFUSED}: {newurl}", headers, fp)
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    urllib.request.install_opener(urllib.request.build_opener(RefusePrivateRedirects))

    inet_families = (socket.AF_INET, socket.AF_INET6)
    proxy_addresses = None  # resolved on the first private connect, which is rare

    def is_proxy(ip) -> bool:
        nonlocal proxy_addresses
        if proxy_addresses is None:
            proxies = urllib.request.getproxies()
            proxy_addresses = {
                address for scheme, url in proxies.items() if scheme != "no" for address in resolve(host_of(url))
            }
        return ip in proxy_addresses

    def refuse_private_connect(event: str, args: tuple) -> None:
        if event != "socket.connect":
            return
        sock, address = args
        if getattr(sock, "family", None) not in inet_families or not isinstance(address, tuple) or not address:
            return
        ip = parse_ip(str(address[0]))
        if ip is not None and is_private_address(ip) and not is_proxy(ip):
            # an OSError, so socket.create_connection and urllib report it as a failed connection
            raise ConnectionRefusedError(f"{CONNECT_REFUSED}: {address[0]} port {address[1]}")

    sys.addaudithook(refuse_private_connect)


def _run_shadowed_sitecustomize() -> None:
    import importlib.machinery
    import importlib.util

    here = os.path.realpath(os.path.dirname(os.path.abspath(__file__)))
    others = [entry for entry in sys.path if os.path.realpath(os.path.abspath(entry or os.curdir)) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", others)
    if spec is None or spec.loader is None or spec.origin == __file__:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    globals()["shadowed_sitecustomize"] = module


# the shadowed one first, so that our opener is the one in place if it installs its own
try:
    _run_shadowed_sitecustomize()
except Exception as exc:  # noqa: BLE001 - site.py would only have warned as well
    sys.stderr.write(f"fairsift: error in the sitecustomize shadowed by {__file__}: {exc!r}\n")

if os.environ.get("FAIRSIFT_REFUSE_PRIVATE_REDIRECTS") == "1":  # curate.net.redirect_guard.ENV_VAR
    try:
        _install_guard()
        GUARD_INSTALLED = True
    except Exception as exc:  # noqa: BLE001 - an interpreter must start whatever happens here
        sys.stderr.write(f"fairsift: the private-network redirect guard could not be installed: {exc!r}\n")
