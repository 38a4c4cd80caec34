"""`fairsift dashboard`: Streamlit on 127.0.0.1, with the run folders passed through the environment."""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP = Path(__file__).with_name("app.py")


def streamlit_command(port: int) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", "127.0.0.1",
            "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none", "--global.developmentMode", "false",
            "--client.toolbarMode", "viewer"]  # viewer: no Deploy button, no developer menu


def dashboard_env(runs: list[Path]) -> dict[str, str]:
    env = dict(os.environ)
    env["FAIRSIFT_RUN"] = str(Path(runs[0]).resolve())
    env.pop("FAIRSIFT_RUN2", None)
    if len(runs) > 1:
        env["FAIRSIFT_RUN2"] = str(Path(runs[1]).resolve())
    return env


def launch(runs: list[Path], port: int = 8501) -> int:
    """Become the Streamlit server (exec), so that Ctrl+C, `kill` or a service manager stop the server itself."""
    print(f"fairsift dashboard: http://127.0.0.1:{port}  (Ctrl+C to stop)", flush=True)
    command = streamlit_command(port)
    os.execvpe(command[0], command, dashboard_env(runs))
    return 0  # not reached: exec replaces this process
