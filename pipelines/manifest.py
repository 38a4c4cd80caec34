"""manifest.json: what ran in a run folder, with which config, versions and model, and what each stage counted."""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from curate import parts
from curate.versions import package_versions

MANIFEST = "manifest.json"


def load(run_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST
    if not path.exists():
        return {"stages": {}}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); move it away to start a fresh manifest") from exc


def save(run_dir: str | os.PathLike, manifest: dict[str, Any]) -> None:
    """Write manifest.json atomically (temporary name + rename). A full disk or a read-only folder raises an OSError
    naming manifest.json, and leaves neither a temporary file nor a damaged manifest behind."""
    path = Path(run_dir) / MANIFEST
    tmp = parts.temp_path(path)
    text = json.dumps(manifest, indent=2, default=str, sort_keys=False)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        parts.remove_dead_writers_temp_files(path.parent, recursive=False)  # a manifest save that was killed
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno is not None else str(exc)
        raise OSError(exc.errno, f"cannot write {path}: {reason}", str(path)) from exc
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def update(run_dir: str | os.PathLike, **fields: Any) -> dict[str, Any]:
    """Set top-level fields. `fairsift run` calls this once as it starts, before any stage, so it is also where the
    temporary files of writers that died (a run killed with kill -9) are removed, as stage_timer does for the stage
    commands."""
    parts.remove_dead_writers_temp_files(run_dir)
    manifest = load(run_dir)
    manifest.update(fields)
    manifest.setdefault("versions", package_versions())
    save(run_dir, manifest)
    return manifest


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def record_stage(run_dir: str | os.PathLike, stage: str, status: str, seconds: float, counts: dict | None = None,
                 error: str | None = None) -> dict[str, Any]:
    manifest = load(run_dir)
    manifest.setdefault("created_at", _now())
    manifest["versions"] = package_versions()
    entry = {"status": status, "seconds": round(seconds, 3), "finished_at": _now(), "counts": counts or {}}
    if error:
        entry["error"] = error
    if status == "done":
        from pipelines.summary import stage_warnings

        warnings = stage_warnings(stage, counts or {})
        if warnings:
            entry["warnings"] = warnings  # what the terminal said, for scripts and the dashboard
    # model facts surface at the top so every consumer sees which model (and whether the test model) made the scores
    if stage == "score" and counts and isinstance(counts.get("model"), dict):
        manifest["model"] = counts["model"]
    manifest.setdefault("stages", {})[stage] = entry
    save(run_dir, manifest)
    return manifest


def record_failure(run_dir: str | os.PathLike, stage: str, seconds: float, exc: BaseException,
                   counts: dict | None = None) -> dict[str, Any]:
    """Record a stage that ended with an exception: `interrupted` for Ctrl-C/SIGTERM (the exception then names the
    stage, for the one line the CLI prints), `failed` otherwise."""
    from pipelines.interrupt import Interrupted, as_interrupted

    stopped = as_interrupted(exc)
    if stopped is not None:
        if isinstance(exc, Interrupted) and exc.stage is None:
            exc.stage = stage  # the innermost stage names the interruption
        return record_stage(run_dir, stage, "interrupted", seconds, counts, error=str(stopped))
    return record_stage(run_dir, stage, "failed", seconds, counts, error=f"{type(exc).__name__}: {exc}")


@contextmanager
def stage_timer(run_dir: str | os.PathLike, stage: str) -> Iterator[dict]:
    """Record a stage's status, timing and counts; the body fills the yielded dict with counts.

    First, the temporary files of writers that died (a stage killed with kill -9 earlier) are removed from the run
    folder: a resumed stage leaves the folder as clean as an uninterrupted one."""
    parts.remove_dead_writers_temp_files(run_dir)
    counts: dict = {}
    start = time.perf_counter()
    try:
        yield counts
    except BaseException as exc:
        try:
            record_failure(run_dir, stage, time.perf_counter() - start, exc, counts)
        except OSError:
            pass  # a full disk or read-only folder cannot take the record either: the stage's own error says why
        raise
    record_stage(run_dir, stage, "done", time.perf_counter() - start, counts)


def stage_done(run_dir: str | os.PathLike, stage: str) -> bool:
    return load(run_dir).get("stages", {}).get(stage, {}).get("status") == "done"
