"""Shared fixtures. The demo run is built once per session (offline, tiny test model) and reused read-only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
SAMPLE_DIR = ROOT / "pipelines" / "sample"


def fairsift_exe() -> list[str]:
    """The installed console script, as the README's command uses it."""
    exe = Path(sys.executable).with_name("fairsift")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "pipelines.cli"]


def offline_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_MODE="disabled", NO_ALBUMENTATIONS_UPDATE="1")
    return env


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="module")
def demo_site_server(tmp_path_factory):
    """The demo's site (pages and real sample images) served on 127.0.0.1, one per test module."""
    from curate.net.loopback import LoopbackServer
    from pipelines.demo_site import build_site

    root = tmp_path_factory.mktemp("site")
    build_site(root)
    with LoopbackServer(root) as server:
        yield server


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """`fairsift demo` run once, offline: the same command the README gives."""
    run_dir = tmp_path_factory.mktemp("demo") / "run"
    proc = subprocess.run(fairsift_exe() + ["demo", "--run", str(run_dir)], cwd=tmp_path_factory.getbasetemp(),
                          env=offline_env(), capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0:
        raise AssertionError(f"demo failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return run_dir, proc
