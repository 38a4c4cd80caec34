"""Fault injection (issue 9, item 1), the CI-sized version of scripts/chaos.

For each of download, dedup, score, filter, export and audit: kill -9 the stage's whole process group at seeded
random points (at least 3 kills), resume with the same command until it finishes, and compare with an uninterrupted
run: every table identical after sorting by uid (image bytes included), no duplicate or missing uid, no temporary
file left, the manifest says `done` with the clean run's counts. Then a full disk and a read-only run folder: a clear
error naming the path (no traceback), exit code != 0, finished parts intact, nothing half-written visible.

Everything runs through the public CLI on real images served over loopback HTTP, with the tiny test model.
FAIRSIFT_CHAOS_SEED picks other kill points (the default is fixed so that CI is reproducible).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate import parts
from curate.net.loopback import LoopbackServer
from pipelines import manifest
from tests import chaos_faults as faults
from tests import chaos_harness as harness

SEED = int(os.environ.get("FAIRSIFT_CHAOS_SEED", "0"))
N_IMAGES = 14  # + 4 planted rows (an exact and a near duplicate, a 404, a page that is not an image)
N_PARTS = 4
KILLS = 3


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """The sample served over loopback HTTP and the clean chain download -> ... -> audit, built once."""
    work = tmp_path_factory.mktemp("chaos")
    harness.make_site(work / "site", N_IMAGES)
    with LoopbackServer(work / "site") as server:
        sample = harness.build_sample(work, server.base_url, work / "site", n_parts=N_PARTS, seed=SEED)
        ref = harness.build_reference(work, sample.pairs_dir, harness.STAGES)
        yield work, sample, ref


def _report(result: harness.StageChaos) -> str:
    return (f"{result.stage}: {result.kills} kills over {result.rounds} rounds (modes {result.kill_modes}, output "
            f"files at kill {result.parts_at_kill()}):\n  " + "\n  ".join(result.problems))


def test_the_sample_has_several_parts_and_every_kind_of_row(chain):
    _, sample, ref = chain
    assert len(sample.part_sizes) == N_PARTS and len(set(sample.part_sizes)) > 1
    counts = json.loads((ref.after["audit"] / "manifest.json").read_text())["stages"]
    assert counts["download"]["counts"]["status"]["success"] == N_IMAGES + 2
    assert counts["download"]["counts"]["rows"] == sample.n_rows
    duplicates = counts["dedup"]["counts"]["duplicates"]
    assert duplicates["sha256"] >= 1 and duplicates["phash"] >= 1
    assert counts["export"]["counts"]["rows"] >= 1


@pytest.mark.parametrize("stage", harness.STAGES)
def test_kill_9_and_resume_gives_the_clean_run(chain, stage):
    work, _, ref = chain
    result = harness.chaos_stage(stage, ref, work, kills=KILLS, seed=SEED, kills_per_round=(KILLS, KILLS))
    assert result.kills >= KILLS, _report(result)
    assert result.resumes >= KILLS
    assert not result.problems, _report(result)
    assert result.identical


def test_the_comparison_sees_a_lost_row_a_duplicate_and_a_temp_file(chain, tmp_path):
    """The oracle itself: a copy of the clean run with one row dropped, one repeated and a temp file is caught."""
    _, _, ref = chain
    got = harness.copy_run(ref.after["download"], tmp_path / "tampered")
    part = sorted((got / "shards").glob("part-*.parquet"))[-1]
    table = pq.read_table(part)
    pq.write_table(pa.concat_tables([table.slice(1), table.slice(1, 1)]), part)
    (got / "shards" / ".tmp-1234-part-00009.parquet").write_bytes(b"half")
    problems = "\n".join(harness.compare_runs(ref.after["download"], got, ("download",)))
    assert "1 duplicate uid" in problems
    assert "1 uid(s) missing" in problems
    assert "temporary files left" in problems


# ---------------------------------------------------------------- a full disk and a read-only run folder

def _assert_clean_failure(result: faults.FailedRun) -> None:
    if result.skipped:
        pytest.skip(result.skipped)
    stderr = result.proc.stderr.strip() if result.proc else ""
    assert not result.problems, (f"{result.stage} ({result.how}), exit {result.proc.returncode}:\n  "
                                 + "\n  ".join(result.problems) + f"\nstderr ends with:\n{stderr[-1500:]}")


@pytest.mark.parametrize("stage", ["download", "score"])
def test_disk_full_on_a_small_tmpfs(chain, stage):
    _, _, ref = chain
    _assert_clean_failure(faults.disk_full_tmpfs(stage, ref, fraction=0.5))


@pytest.mark.parametrize("stage", ["dedup", "export"])
def test_file_too_large_without_root(chain, stage):
    """RLIMIT_FSIZE (portable, no root needed): writing the larger parts fails with EFBIG."""
    work, _, ref = chain
    _assert_clean_failure(faults.disk_full_rlimit(stage, ref, work))


@pytest.mark.parametrize("stage,how", [("filter", "bind"), ("audit", "nobody"), ("score", "chmod")])
def test_read_only_run_folder(chain, stage, how):
    work, _, ref = chain
    _assert_clean_failure(faults.read_only_run(stage, ref, work, how))


# ---------------------------------------------------------------- the pieces the harness found wanting

def test_a_stage_plans_over_the_debris_of_a_killed_writer(tmp_path):
    """kill -9 skips atomic_write's cleanup: the next plan of that stage removes its temporary files and folders
    (and in the run folder itself only those of its own outputs: the manifest's belong to another writer)."""
    run = tmp_path / "run"
    parts.atomic_write(pa.table({"uid": ["a"]}), run / "in" / "part-00000.parquet")
    (run / "out").mkdir()
    (run / "out" / ".tmp-0123-part-00000.parquet").write_bytes(b"PAR1 half")
    (run / "out" / ".tmp-download-x1y2").mkdir()
    (run / "out" / ".tmp-download-x1y2" / "pairs.parquet").write_bytes(b"x")
    (run / ".tmp-77-decisions.parquet").write_bytes(b"half")
    (run / ".tmp-77-manifest.json").write_text("{}")
    parts.plan_tasks("s", run, [("p0", ["in/part-00000.parquet"], ["out/part-00000.parquet"]),
                                ("d", ["in/part-00000.parquet"], ["decisions.parquet"])], {})
    assert sorted(p.name for p in (run / "out").iterdir()) == []
    assert sorted(p.name for p in run.glob(".tmp*")) == [".tmp-77-manifest.json"]


def test_a_part_that_cannot_be_written_names_itself_and_leaves_nothing(tmp_path):
    run = tmp_path / "run"
    (run / "shards").mkdir(parents=True)
    limit = 4096
    code = (
        "import resource, signal, sys, pyarrow as pa\n"
        "from curate import parts\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
        "try:\n"
        f"    parts.atomic_write(pa.table({{'b': [bytes(range(256)) * 64] * 8}}), {str(run / 'shards' / 'part-00000.parquet')!r}, compression='none')\n"
        "except parts.PartWriteError as exc:\n"
        "    print(exc.errno, exc); sys.exit(3)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=harness.child_env())
    assert proc.returncode == 3, proc.stderr
    assert f"cannot write {run / 'shards' / 'part-00000.parquet'}: File too large" in proc.stdout
    assert list((run / "shards").iterdir()) == []


def test_manifest_on_a_full_disk_names_itself_and_leaves_no_temp_file(tmp_path):
    if faults.can_mount():
        pytest.skip(faults.can_mount())
    with faults.tmpfs(8192) as mnt:
        manifest.save(mnt, {"stages": {}})
        (mnt / "filler").write_bytes(b"x" * 4096)
        with pytest.raises(OSError, match=f"cannot write {mnt / 'manifest.json'}: No space left on device"):
            manifest.save(mnt, {"stages": {"x": {"counts": {"y": "z" * 10_000}}}})
        assert sorted(p.name for p in mnt.iterdir()) == ["filler", "manifest.json"]
        assert json.loads((mnt / "manifest.json").read_text()) == {"stages": {}}


def _dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)


def test_a_killed_manifest_save_is_cleaned_up_by_the_next(tmp_path):
    dead, live = _dead_pid(), os.getppid()
    (tmp_path / f".tmp-{dead}.{parts.HOST_TAG}-0a1b-manifest.json").write_text("{half")
    (tmp_path / f".tmp-{live}.{parts.HOST_TAG}-0a1b-manifest.json").write_text("{}")  # a live writer's: left alone
    manifest.save(tmp_path, {"stages": {}})
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".tmp-{live}.{parts.HOST_TAG}-0a1b-manifest.json",
                                                         "manifest.json"]


def test_a_stage_starts_by_removing_what_killed_writers_left_anywhere_in_the_run(tmp_path):
    """Whatever a stage's code does, its parts and the manifest are written under names that say their writer:
    the next stage command removes a dead writer's files (kill -9 skips every cleanup) and never a live one's."""
    dead, live = _dead_pid(), os.getppid()
    run = tmp_path / "run"
    (run / "signals" / "clip").mkdir(parents=True)
    dead_files = [run / f".tmp-{dead}.{parts.HOST_TAG}-1-decisions.parquet",
                  run / "signals" / "clip" / f".tmp-{dead}.{parts.HOST_TAG}-2-part-00000.parquet"]
    kept = [run / "signals" / "clip" / f".tmp-{live}.{parts.HOST_TAG}-3-part-00001.parquet",  # being written
            run / "signals" / "clip" / f".tmp-{dead}.0000beef-4-part-00002.parquet",  # another machine's writer
            run / ".tmp-download-x1y2"]  # says nothing of its writer
    for path in dead_files + kept:
        path.write_bytes(b"half")
    with manifest.stage_timer(run, "score"):
        assert not any(p.exists() for p in dead_files)
        assert all(p.exists() for p in kept)
    assert parts.temp_path(run / "x.parquet").name.startswith(f".tmp-{os.getpid()}.{parts.HOST_TAG}-")
    # `fairsift run` does not go through stage_timer: it starts with manifest.update, which sweeps the same way
    again = run / "pairs" / f".tmp-{dead}.{parts.HOST_TAG}-5-part-00000.parquet"
    again.parent.mkdir()
    again.write_bytes(b"half")
    manifest.update(run, config={})
    assert not again.exists() and all(p.exists() for p in kept)
    with parts.temp_dir(run / "shards", "download") as scratch:
        assert scratch.is_dir() and scratch.name.startswith(f".tmp-{os.getpid()}.{parts.HOST_TAG}-")
        assert scratch.name.endswith("-download")
    assert not scratch.exists()


def test_a_stage_whose_failure_cannot_be_recorded_still_reports_its_own_error(tmp_path):
    """On a read-only folder the failure record cannot be written either; the stage's own error must come out,
    not a second one from the manifest chained onto it."""
    run = tmp_path / "run"
    run.mkdir()
    manifest.save(run, {"stages": {}})
    if os.geteuid() == 0 and faults.can_mount():
        pytest.skip(faults.can_mount())

    def check(folder: Path) -> None:
        with pytest.raises(KeyError, match="the stage's own error") as info:
            with manifest.stage_timer(folder, "score"):
                raise KeyError("the stage's own error")
        assert info.value.__context__ is None

    if os.geteuid() == 0:
        with faults.read_only_bind(run) as ro:
            check(ro)
    else:
        run.chmod(0o555)
        try:
            check(run)
        finally:
            run.chmod(0o755)


def test_part_digest_depends_on_rows_not_on_memory_layout():
    """curate.parts says two parts with the same rows get the same digest whatever wrote them; today the digest is
    of the Arrow IPC bytes, so a sliced or differently chunked table with the same rows gets another digest, and a
    part read back from Parquet does not match the digest in its own footer."""
    import io

    table = pa.table({"uid": ["a", "b", "c", "d"], "n": [1, None, 3, 4],
                      "e": pa.array([[1.0], [2.0, 3.0], None, [4.0]], pa.list_(pa.float16()))})
    same_rows = [table.slice(1), pa.concat_tables([table.slice(1, 1), table.slice(2)])]
    digests = {parts.content_digest(t) for t in same_rows}
    buf = io.BytesIO()
    pq.write_table(same_rows[0], buf)
    buf.seek(0)
    digests.add(parts.content_digest(pq.read_table(buf)))
    assert len(digests) == 1
