"""What every `fairsift` command shares: errors, running a stage under the manifest, interruptions, help text.

Kept apart from pipelines/cli.py so that the commands there stay one screen each.
"""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.markup import escape

from pipelines.interrupt import Interrupted, signals_interrupt
from pipelines.summary import console, print_stage_summary, print_warning, set_json_output


def fail(message: str, code: int = 2) -> None:
    """One error message (no traceback, never wrapped, so paths stay copyable) and exit code 2."""
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def check_run_folder(run: Path) -> None:
    if run.exists() and not run.is_dir():
        fail(f"run folder {run} is a file, not a folder; pass a folder path to --run / RUN")


def make_cli_engine(name: str, ray_address: Optional[str], workers: Optional[int] = None):
    """The engine a stage command asked for (--engine, --ray-address), or a clear error."""
    from pipelines.engines import EngineError, make_engine

    try:
        return make_engine(name, address=ray_address, workers=workers)
    except EngineError as exc:
        fail(str(exc))


def run_stage(run: Path, stage: str, fn: Callable[..., Optional[dict]], *args, json_output: bool = False,
              engine: str = "local", ray_address: Optional[str] = None, workers: Optional[int] = None,
              **kwargs) -> dict:
    """Run one stage on an engine under the manifest's timer, then print its summary and warnings (or one JSON
    object)."""
    from curate.tables import MissingTableError
    from pipelines import manifest
    from pipelines.runner import call_stage

    set_json_output(json_output)
    check_run_folder(run)
    start = time.perf_counter()
    with make_cli_engine(engine, ray_address, workers) as stage_engine:
        try:
            with manifest.stage_timer(run, stage) as counts:
                result = call_stage(fn, *args, engine=stage_engine, **kwargs) or {}
                counts.update(result)
        except (MissingTableError, OSError, ValueError) as exc:
            # OSError: a full disk or a read-only run folder; the message names the path (curate.parts)
            fail(str(exc))
    print_stage_summary(stage, counts, time.perf_counter() - start)
    return counts


def _unraisable_in_one_line(unraisable) -> None:
    # e.g. multiprocessing's semaphore finalizer after a worker pool died: a traceback at exit would bury the
    # stage's own message, and nothing can be done about it any more
    exc = unraisable.exc_value
    sys.stderr.write(f"warning: ignored during clean-up: {type(exc).__name__}: {exc}\n")


def main(app: typer.Typer) -> None:
    """The console script: the app, with Ctrl-C / SIGTERM ending in one line and exit code 130 / 143, and errors
    raised where Python can only ignore them (finalizers at exit) in one line each."""
    sys.unraisablehook = _unraisable_in_one_line
    with signals_interrupt():
        try:
            app()
        except Interrupted as exc:
            sys.stderr.write("\n")  # after a progress bar's half-drawn line
            console.print(f"[bold yellow]{escape(exc.message())}[/]", highlight=False)
            sys.exit(exc.exit_code)


# ---- options checked before a stage runs ----

def model_options(model: str, pretrained: Optional[str], checkpoint: Optional[Path]) -> dict:
    """model / pretrained / checkpoint checked now, with the closest names for a typo, and the default tag filled."""
    from curate.score.model_names import check_model_name
    from curate.score.stage import default_pretrained

    if checkpoint is not None and not checkpoint.is_file():
        fail(f"--checkpoint file not found: {checkpoint}")
    try:
        check_model_name(model, pretrained, str(checkpoint) if checkpoint else None)
    except ValueError as exc:
        fail(str(exc))
    return {"model": model, "pretrained": pretrained if pretrained is not None else default_pretrained(model, checkpoint),
            "checkpoint": str(checkpoint) if checkpoint else None}


def stage_options(cls, **values):
    """A stage's options model, with a bad value reported as a one-line error instead of a traceback."""
    from pydantic import ValidationError

    try:
        return cls(**values)
    except ValidationError as exc:
        problems = "; ".join(f"--{'-'.join(str(x) for x in e['loc']).replace('_', '-')}: {e['msg']}" for e in exc.errors())
        fail(problems)


def groups_stale(run: Path) -> bool:
    """signals/groups is missing, or older than a pairs part (pairs were crawled or ingested again since)."""
    from curate import tables

    groups, pairs = tables.list_parts(run, "groups"), tables.list_parts(run, "pairs")
    if not groups:
        return True
    return max((p.stat().st_mtime for p in pairs), default=0) > min(g.stat().st_mtime for g in groups)


# ---- help text in the user's words ----

def plain_help_types() -> None:
    """Show each option's metavar (PIXELS, SECONDS, KIND:PATH) instead of a Python type (<int>, <list[str]>), nothing
    after flags and arguments, and `RUN` rather than `{RUN}` in usage lines.

    Typer 0.2x prints those types and offers no per-command switch, so its two display methods are replaced here
    (only when they exist: older Typer versions print click's metavars, which are fine)."""
    from typer import core

    def display_type_rich(self, ctx):  # noqa: ARG001 - typer's signature
        if isinstance(self, core.TyperArgument) or getattr(self, "is_flag", False):
            return None
        return self.metavar or self.name.upper()

    def usage_display_name(self):
        name = self.metavar or self.name.upper() + ("..." if self.nargs != 1 else "")  # a metavar says it all
        return name if self.required else f"[{name}]"

    for cls in (getattr(core, "TyperArgument", None), getattr(core, "TyperOption", None)):
        if cls is not None and hasattr(cls, "display_type_rich"):
            cls.display_type_rich = display_type_rich
    if hasattr(getattr(core, "TyperArgument", None), "_usage_display_name"):
        core.TyperArgument._usage_display_name = usage_display_name


# ---- checks with a clear message ----

REPORT_NEEDS = {  # path in the run folder -> the command that writes it
    "decisions.parquet": "fairsift filter RUN",
    "audit/composition.parquet": "fairsift audit RUN",
    "audit/filter_impact.parquet": "fairsift audit RUN",
}
REPORT_OPTIONAL = {
    "audit/threshold_sweep.parquet": ("threshold-sweep curves", "fairsift audit RUN"),
    "audit/cooccurrence.parquet": ("co-occurrence", "fairsift audit RUN"),
    "probes": ("model probes", "fairsift probe --dataset fairface:DIR --out RUN/probes"),
}


def report_missing(run: Path) -> tuple[list[str], list[str]]:
    """(missing required tables with the command that makes each, notes on optional sections left out)."""
    missing = [f"{rel} ({cmd})" for rel, cmd in REPORT_NEEDS.items() if not (run / rel).exists()]
    notes = []
    for rel, (what, cmd) in REPORT_OPTIONAL.items():
        path = run / rel
        if not (path.is_file() or (path.is_dir() and any(path.glob("probe_*.parquet")))):
            notes.append(f"no {what} section: {rel} is missing ({cmd})")
    return missing, notes


def warn_all(notes: list[str]) -> None:
    for note in notes:
        print_warning(note)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def next_free_port(start: int, tries: int = 100) -> Optional[int]:
    for port in range(start + 1, min(start + 1 + tries, 65536)):
        if port_is_free(port):
            return port
    return None
