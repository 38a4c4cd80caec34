"""Private-network guard for the processes img2dataset spawns (the code they run is sitecustomize.py, alongside).

The download stage refuses private hosts before img2dataset sees a URL, but img2dataset follows redirects itself,
with urllib, in worker processes it starts with multiprocessing's "spawn". A public URL answering
"302 Location: http://169.254.169.254/..." would be fetched. Those workers are fresh interpreters, so the guard
reaches them through their start-up: with this folder first on PYTHONPATH, site.py imports our `sitecustomize`,
which refuses such redirects (and connections to private addresses) when ENV_VAR is "1". See `guarded_environment`.

This folder is a package so that setuptools ships sitecustomize.py with it; nothing else may live here, since
the folder itself goes on the workers' sys.path.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator

GUARD_DIR = os.path.dirname(os.path.abspath(__file__))
ENV_VAR = "FAIRSIFT_REFUSE_PRIVATE_REDIRECTS"
REFUSAL_MARKER = "private-network address refused"  # in every refusal message: the download stage looks for it
REDIRECT_REFUSED = "redirect to a " + REFUSAL_MARKER
CONNECT_REFUSED = "connection to a " + REFUSAL_MARKER


@contextlib.contextmanager
def guarded_environment() -> Iterator[None]:
    """Within the block, Python processes started from this one run the guard; the environment is restored after."""
    if sys.flags.ignore_environment or sys.flags.no_site:  # -E, -I or -S: passed on to spawned workers, which then
        warnings.warn(  # neither read PYTHONPATH nor import sitecustomize
            "python runs with -E, -I or -S: img2dataset's workers will not refuse redirects to private addresses",
            RuntimeWarning,
            stacklevel=3,
        )
    saved = {name: os.environ.get(name) for name in ("PYTHONPATH", ENV_VAR)}
    inherited = saved["PYTHONPATH"]
    os.environ["PYTHONPATH"] = GUARD_DIR + (os.pathsep + inherited if inherited else "")
    os.environ[ENV_VAR] = "1"
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
