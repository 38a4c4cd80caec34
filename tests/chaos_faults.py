"""A stage that cannot write: a full disk (a small tmpfs as root, RLIMIT_FSIZE without root) and a read-only run
folder (a read-only bind mount or user nobody as root, chmod a-w otherwise). Each gives a FailedRun with the problems
found: the error must be clear (what and where, no traceback dump, exit code != 0) and whatever was finished stays
intact (every part reads back with the clean run's rows, nothing half-written visible, no temporary files)."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from tests.chaos_compare import (
    copy_run,
    part_integrity_problems,
    table_groups,
    temp_entries,
    tree_snapshot,
)
from tests.chaos_harness import Reference, child_env, run_cli

TRACEBACK = "Traceback (most recent call last)"

def disk_usage(path: Path) -> int:
    """Bytes allocated (blocks, as a filesystem counts them) by a folder tree."""
    return sum(p.lstat().st_blocks * 512 for p in Path(path).rglob("*")) + Path(path).lstat().st_blocks * 512


def can_mount() -> Optional[str]:
    """None when this process may mount a tmpfs, else why not."""
    if os.geteuid() != 0:
        return "not root: mounting a tmpfs needs root (the RLIMIT_FSIZE case covers disk full without it)"
    probe = Path(tempfile.mkdtemp(prefix="chaos-mount-probe-"))
    try:
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)], capture_output=True,
                              text=True)
        if proc.returncode != 0:
            return f"mount -t tmpfs is not permitted here: {proc.stderr.strip()}"
        subprocess.run(["umount", str(probe)], check=True)
        return None
    finally:
        probe.rmdir()


@contextmanager
def tmpfs(size_bytes: int) -> Iterator[Path]:
    mnt = Path(tempfile.mkdtemp(prefix="chaos-tmpfs-"))
    size = max(4096, int(size_bytes) // 4096 * 4096)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mnt)], check=True,
                   capture_output=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        mnt.rmdir()


@contextmanager
def read_only_bind(src: Path) -> Iterator[Path]:
    """src seen through a read-only bind mount (root only): every write fails with EROFS, whatever the permissions."""
    mnt = Path(tempfile.mkdtemp(prefix="chaos-ro-"))
    subprocess.run(["mount", "--bind", str(src), str(mnt)], check=True, capture_output=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(mnt)], check=True, capture_output=True)
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        mnt.rmdir()


def file_size_limit(limit: int):
    """preexec_fn: files the child writes may not grow past `limit` bytes; a write past it fails with EFBIG (the
    default action of SIGXFSZ, killing the process, is turned off: we want to see the error the stage reports)."""
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def as_nobody_command(cmd: list[str], home: Path) -> tuple[list[str], dict]:
    """Run as user nobody (root ignores file permissions, so a chmod a-w folder only stops another user)."""
    env = child_env(HOME=str(home), MPLCONFIGDIR=str(home / "mpl"), XDG_CACHE_HOME=str(home / "cache"),
                    TMPDIR=str(home))
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"] + cmd, env


def chmod_read_only(path: Path) -> None:
    for p in [path, *Path(path).rglob("*")]:
        if not p.is_symlink():
            p.chmod(p.stat().st_mode & ~0o222)


def chmod_writable(path: Path) -> None:
    for p in [path, *Path(path).rglob("*")]:
        if not p.is_symlink():
            p.chmod(p.stat().st_mode | 0o200)


def clear_error_problems(proc: subprocess.CompletedProcess, path_hint: str, words: tuple[str, ...]) -> list[str]:
    """A failed stage must say what happened and where, without a traceback dump."""
    problems = []
    err = proc.stderr
    if proc.returncode == 0:
        problems.append("exit code 0 although the stage could not write its outputs")
    if TRACEBACK in err:
        last = err.strip().splitlines()[-1] if err.strip() else ""
        problems.append(f"a traceback dump instead of a clear error (last line: {last[:300]!r})")
    if not any(w.lower() in err.lower() for w in words):
        problems.append(f"the error does not say {' / '.join(words)!r}: {err.strip()[-300:]!r}")
    if path_hint not in err:
        problems.append(f"the error does not name a path under {path_hint}")
    return problems


def _statvfs_used(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def output_bytes(before: Path, after: Path) -> int:
    """What a stage added: the files of `after` that `before` lacks or that changed, each rounded up to a page."""
    total = 0
    for path in Path(after).rglob("*"):
        if not path.is_file():
            continue
        old = Path(before) / path.relative_to(after)
        if not old.is_file() or old.stat().st_size != path.stat().st_size:
            total += -(-path.stat().st_size // 4096) * 4096
    return total


@dataclass
class FailedRun:
    """A stage run that could not write everything, and what it left behind."""
    stage: str
    how: str
    proc: Optional[subprocess.CompletedProcess] = None
    run_dir: Optional[Path] = None
    skipped: Optional[str] = None
    problems: list[str] = field(default_factory=list)
    parts_before: int = 0
    parts_after: int = 0


def _left_behind_problems(run: Path, before_snap: dict[str, tuple], clean: Path) -> list[str]:
    """After a failed run: files that existed before are untouched, every part reads back and holds exactly the
    rows of the clean run's part of that name (so no half-written part is visible), no temp files."""
    problems = part_integrity_problems(run, clean)
    after_snap = tree_snapshot(run)
    changed = [rel for rel, info in before_snap.items()
               if rel.endswith(".parquet") and after_snap.get(rel) != info]
    if changed:
        problems.append(f"finished parts changed or removed: {changed[:5]}")
    leftovers = temp_entries(run)
    if leftovers:
        problems.append(f"temporary files left: {leftovers[:5]}")
    return problems


def disk_full_tmpfs(stage: str, ref: Reference, fraction: float = 0.5, engine: str = "local",
                    timeout: float = 900) -> FailedRun:
    """Run `stage` on a copy of its input folder in a tmpfs with room for `fraction` of what the stage writes."""
    result = FailedRun(stage, f"tmpfs with room for {fraction:.0%} of the stage's output")
    why = can_mount()
    if why:
        result.skipped = why
        return result
    need = output_bytes(ref.before[stage], ref.after[stage])
    with tmpfs(disk_usage(ref.before[stage]) * 2 + need + (1 << 20)) as mnt:
        run = copy_run(ref.before[stage], mnt / "run")
        size = _statvfs_used(mnt) + int(fraction * need)
        subprocess.run(["mount", "-o", f"remount,size={max(4096, size // 4096 * 4096)}", str(mnt)], check=True,
                       capture_output=True)
        result.run_dir = run
        snap = tree_snapshot(run)
        result.parts_before = len(table_groups_parts(run))
        result.proc = run_cli(ref.command(stage, run, engine), timeout=timeout)
        result.parts_after = len(table_groups_parts(run))
        result.problems = clear_error_problems(result.proc, str(mnt), ("no space left", "disk full", "ENOSPC")) \
            + _left_behind_problems(run, snap, ref.after[stage])
    return result


def table_groups_parts(run_dir: Path) -> list[Path]:
    return [p for paths in table_groups(run_dir).values() for p in paths]


def disk_full_rlimit(stage: str, ref: Reference, work: Path, engine: str = "local", timeout: float = 900) -> FailedRun:
    """Without root: RLIMIT_FSIZE in the stage's processes at the median size of the parts the clean run wrote, so
    writing the larger parts fails with EFBIG (File too large) and the smaller ones succeed."""
    result = FailedRun(stage, "RLIMIT_FSIZE at the median output part size")
    sizes = sorted(p.stat().st_size for p in table_groups_parts(ref.after[stage])
                   if not (ref.before[stage] / p.relative_to(ref.after[stage])).exists())
    if not sizes:
        result.skipped = f"{stage} writes no Parquet part"
        return result
    limit = sizes[len(sizes) // 2]
    run = copy_run(ref.before[stage], work / f"rlimit_{stage}")
    result.run_dir = run
    snap = tree_snapshot(run)
    result.parts_before = len(table_groups_parts(run))
    result.proc = run_cli(ref.command(stage, run, engine), timeout=timeout, preexec_fn=file_size_limit(limit))
    result.parts_after = len(table_groups_parts(run))
    result.problems = clear_error_problems(result.proc, str(run), ("file too large", "EFBIG", "no space left")) \
        + _left_behind_problems(run, snap, ref.after[stage])
    return result


def read_only_run(stage: str, ref: Reference, work: Path, how: str, engine: str = "local",
                  timeout: float = 900) -> FailedRun:
    """`stage` on a read-only copy of its input folder: `bind` (root: a read-only bind mount), `nobody` (root: user
    nobody on a chmod a-w copy) or `chmod` (not root: a chmod a-w copy). Expect a clear error and nothing changed."""
    result = FailedRun(stage, how)
    is_root = os.geteuid() == 0
    if how in ("bind", "nobody") and not is_root:
        result.skipped = f"{how} needs root; the chmod case covers a read-only folder for this user"
        return result
    if how == "chmod" and is_root:
        result.skipped = "root ignores file permissions; the bind and nobody cases cover root"
        return result
    if how == "bind" and can_mount():
        result.skipped = can_mount()
        return result
    # a world-traversable place (pytest's tmp folders are 0700 to root; nobody could not even reach the run)
    base = Path(tempfile.mkdtemp(prefix="chaos-ro-", dir=work))
    base.chmod(0o755)
    for parent in base.parents:
        if parent.stat().st_mode & 0o005 != 0o005:
            parent.chmod(parent.stat().st_mode | 0o005)
    run = copy_run(ref.before[stage], base / "run")
    result.run_dir = run
    env = None
    cmd = ref.command(stage, run, engine)
    try:
        if how == "bind":
            snap = tree_snapshot(run)
            with read_only_bind(run) as ro:
                cmd = ref.command(stage, ro, engine)
                result.proc = run_cli(cmd, timeout=timeout)
                hint = str(ro)
        else:
            chmod_read_only(run)
            snap = tree_snapshot(run)
            if how == "nobody":
                home = base / "home"
                home.mkdir()
                os.chown(home, 65534, 65534)
                cmd, env = as_nobody_command(cmd, home)
            result.proc = run_cli(cmd, env=env, timeout=timeout)
            hint = str(run)
        after = tree_snapshot(run)
        result.problems = clear_error_problems(result.proc, hint, ("read-only", "permission denied", "not writable"))
        if after != snap:
            changed = sorted(k for k in set(snap) | set(after) if snap.get(k) != after.get(k))
            result.problems.append(f"the read-only run folder changed: {changed[:5]}")
    finally:
        chmod_writable(run)
    return result
