"""Ctrl-C and `kill` in the middle of a stage: real signals to a real `fairsift` process.

The images come from a loopback server that never answers in time, so the download stage is surely running when
the signal arrives; the test waits until the server has seen a request before sending it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import fairsift_exe, offline_env


class _Stall(BaseHTTPRequestHandler):
    seen = threading.Event()

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        type(self).seen.set()
        time.sleep(30)  # never answers within the test


@pytest.fixture()
def stalling_server():
    _Stall.seen = threading.Event()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stall)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _Stall.seen
    finally:
        server.shutdown()
        server.server_close()


def _url_list(tmp_path: Path, base: str) -> Path:
    listing = tmp_path / "urls.csv"
    listing.write_text("url,caption\n" + "".join(f"{base}/img{i}.jpg,a photo of a harbour {i}\n" for i in range(4)))
    return listing


def _interrupt(args: list[str], seen: threading.Event, cwd: Path, *, group: bool, signum: int):
    """Start fairsift in its own session, wait until the download is under way, signal it; (rc, stderr)."""
    proc = subprocess.Popen(fairsift_exe() + args, cwd=cwd, env=offline_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert seen.wait(120), "the download never reached the server"
        if group:  # what a terminal does on Ctrl-C: the whole foreground process group gets SIGINT
            os.killpg(proc.pid, signum)
        else:  # `kill PID`
            os.kill(proc.pid, signum)
        _, err = proc.communicate(timeout=120)
        return proc.returncode, err
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _stage_status(run_dir: Path, stage: str) -> str:
    return json.loads((run_dir / "manifest.json").read_text())["stages"][stage]["status"]


def test_ctrl_c_during_download_exits_130_with_one_line(tmp_path, stalling_server):
    base, seen = stalling_server
    run_dir = tmp_path / "run"
    ingest = subprocess.run(fairsift_exe() + ["ingest", str(_url_list(tmp_path, base)), "--run", str(run_dir)],
                            env=offline_env(), capture_output=True, text=True, timeout=300)
    assert ingest.returncode == 0, ingest.stderr
    rc, err = _interrupt(["download", str(run_dir), "--allow-private-network", "--timeout", "60"], seen, tmp_path,
                         group=True, signum=signal.SIGINT)
    assert rc == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "interrupted during download; run the same command to resume"
    assert "Traceback" not in err
    assert _stage_status(run_dir, "download") == "interrupted"


def test_sigterm_during_a_run_exits_143_and_the_manifest_says_interrupted(tmp_path, stalling_server):
    base, seen = stalling_server
    listing = _url_list(tmp_path, base)
    config = tmp_path / "run.yaml"
    config.write_text(f"name: stopped\nallow_private_network: true\ningest: {{path: {listing.name}}}\n"
                      "download: {timeout: 60}\nscore: {model: tiny-test}\n")
    rc, err = _interrupt(["run", str(config), "--run", str(tmp_path / "run")], seen, tmp_path, group=False,
                         signum=signal.SIGTERM)
    assert rc == 143, err[-2000:]
    assert err.strip().splitlines()[-1] == "interrupted during download; run the same command to resume"
    assert _stage_status(tmp_path / "run", "download") == "interrupted"
    assert _stage_status(tmp_path / "run", "ingest") == "done"
