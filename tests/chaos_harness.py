"""Fault injection through the public CLI: kill -9 a stage at random points, resume it, compare with a clean run.

Shared by tests/test_fault_injection.py (a few kills per stage, in CI) and scripts/chaos (the full version).
Everything goes through `python -m pipelines.cli STAGE RUN ...` in a child process, so the harness keeps working
whatever a stage does inside (img2dataset processes, an engine's process pool, a global step).

- `build_sample`: real sample images served by a loopback HTTP server, and a pairs table of several small parts
  (uneven sizes, so kills land between and inside parts and part files differ in size), with a few rows that fail
  to download or are exact/near duplicates so every status and dedup kind flows down the chain.
- `build_reference`: the chain download -> dedup -> score -> filter -> export -> audit run uninterrupted; the run
  folder before and after each stage is kept.
- `chaos_stage`: rounds of "fresh copy of the folder before the stage; start the stage in its own process group;
  SIGKILL the whole group at a seeded random point; start it again with the same command ... until it finishes",
  then `compare_runs` against the clean run.
Comparisons live in tests/chaos_compare.py; a full disk and a read-only run folder in tests/chaos_faults.py.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pyarrow as pa
from PIL import Image

from tests.chaos_compare import (
    RUN_TARGET,
    STAGES,
    compare_runs,
    copy_run,
    output_part_count,
    stage_temp_entries,
    temp_entries,
)

__all__ = ["RUN_TARGET", "STAGES", "Reference", "StageChaos", "build_reference", "build_sample", "chaos_stage", "make_site",
           "stage_command"]

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = ROOT / "pipelines" / "sample"
TOKEN_ENV = "FAIRSIFT_CHAOS_TOKEN"  # every process a stage starts inherits it: how escaped children are found



# ---------------------------------------------------------------- the sample: a site, its server, a pairs table

@dataclass
class Sample:
    site_dir: Path
    pairs_dir: Path  # a run folder holding only pairs/
    part_sizes: list[int]
    n_rows: int


def _reencode(src: Path, dst: Path, quality: int, scale: float) -> None:
    with Image.open(src) as im:
        im = im.convert("RGB")
        im = im.resize((max(1, int(im.width * scale)), max(1, int(im.height * scale))), Image.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=quality)
    dst.write_bytes(buf.getvalue())


def build_site(site_dir: Path, n_images: int) -> list[tuple[str, str]]:
    """n real sample images (with their real captions) plus planted cases; returns (path on the site, caption)."""
    records = [json.loads(line) for line in (SAMPLE_DIR / "samples.jsonl").read_text().splitlines() if line.strip()]
    records = records[:n_images]
    if len(records) < 4:
        raise ValueError(f"need at least 4 sample images, the bundled sample has {len(records)}")
    (site_dir / "img").mkdir(parents=True, exist_ok=True)
    entries = []
    for rec in records:
        name = Path(rec["file"]).name
        shutil.copyfile(SAMPLE_DIR / rec["file"], site_dir / "img" / name)
        entries.append((f"img/{name}", rec["caption"]))
    first, second = entries[0], entries[1]
    shutil.copyfile(site_dir / first[0], site_dir / "img" / "copy.jpg")  # exact duplicate, another caption
    entries.append(("img/copy.jpg", first[1] + " (copy)"))
    _reencode(site_dir / second[0], site_dir / "img" / "near.jpg", 40, 0.9)  # near duplicate
    entries.append(("img/near.jpg", second[1] + " (re-encoded)"))
    entries.append(("status/404/missing.jpg", "a photograph that has gone missing"))  # failed download
    entries.append(("as/text~html/index.html", "a web page pretending to be a picture"))  # failed decode
    (site_dir / "index.html").write_text("<html><body>not an image</body></html>")
    return entries


def part_sizes_for(n_rows: int, n_parts: int) -> list[int]:
    """Uneven part sizes (1 : 2 : 3 ...), so output parts differ in size (a file-size limit then cuts between them)."""
    n_parts = max(1, min(n_parts, n_rows))
    weights = list(range(1, n_parts + 1))
    sizes = [max(1, n_rows * w // sum(weights)) for w in weights]
    sizes[-1] += n_rows - sum(sizes)
    return sizes


def write_pairs(run_dir: Path, base_url: str, entries: list[tuple[str, str]], n_parts: int, seed: int) -> list[int]:
    """The pairs table as `fairsift ingest`/`crawl` would leave it, split into uneven parts (order shuffled, seeded,
    so duplicates and failures fall into different parts)."""
    from curate import schemas, tables

    entries = list(entries)
    random.Random(seed).shuffle(entries)
    sizes = part_sizes_for(len(entries), n_parts)
    start = 0
    for index, size in enumerate(sizes):
        chunk = entries[start:start + size]
        start += size
        urls = [f"{base_url}/{path}" for path, _ in chunk]
        captions = [caption for _, caption in chunk]
        rows = {"uid": [tables.compute_uid(u, c) for u, c in zip(urls, captions)], "url": urls, "caption": captions,
                "page_url": [f"{base_url}/index.html"] * len(chunk), "source": ["ingest"] * len(chunk),
                "caption_source": ["list"] * len(chunk), "caption_truncated": [False] * len(chunk)}
        tables.write_part(run_dir, "pairs", index, pa.table(rows, schema=schemas.PAIRS))
    return sizes


def build_sample(work: Path, base_url: str, site_dir: Path, *, n_parts: int, seed: int) -> Sample:
    """pairs/ for the site already built in site_dir (served at base_url), and a `fairsift run` config that ingests
    the same pairs from a CSV list (for the whole-pipeline target "run")."""
    entries = build_site_entries(site_dir)
    pairs_dir = work / "pairs_only"
    sizes = write_pairs(pairs_dir, base_url, entries, n_parts, seed)
    write_run_config(work / "run_config", base_url, entries, n_parts, seed)
    return Sample(site_dir=site_dir, pairs_dir=pairs_dir, part_sizes=sizes, n_rows=len(entries))


def write_run_config(folder: Path, base_url: str, entries: list[tuple[str, str]], n_parts: int, seed: int) -> Path:
    """config.yaml for `fairsift run`: ingest list.csv in n_parts parts, then every stage with the CI settings."""
    import csv

    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    entries = list(entries)
    random.Random(seed).shuffle(entries)
    with open(folder / "list.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["url", "caption"])
        writer.writerows([f"{base_url}/{path}", caption] for path, caption in entries)
    config = {
        "name": "chaos", "allow_private_network": True,
        "ingest": {"path": "list.csv", "rows_per_part": -(-len(entries) // n_parts)},
        "download": {"image_size": 64, "threads": 4, "timeout": 5, "processes": 1},
        "score": {"model": "tiny-test", "pretrained": None, "device": "cpu", "batch_size": 8, "workers": 0},
        "export": {"webdataset": True},
        "audit": {"enabled": True, "n_boot": 50, "min_count": 3, "seed": 0},
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def build_site_entries(site_dir: Path) -> list[tuple[str, str]]:
    return [tuple(e) for e in json.loads((site_dir / "entries.json").read_text())]


def make_site(site_dir: Path, n_images: int) -> None:
    entries = build_site(site_dir, n_images)
    (site_dir / "entries.json").write_text(json.dumps(entries))


# ---------------------------------------------------------------- running a stage through the CLI

def stage_command(stage: str, run_dir: Path, engine: str = "local", config: Optional[Path] = None) -> list[str]:
    """The public command of each stage, with settings small enough for CI (tiny test model, few bootstraps);
    for the target "run", `fairsift run CONFIG --run RUN`."""
    if stage == RUN_TARGET:
        if config is None:
            raise ValueError("the run target needs the config written by build_sample")
        return [sys.executable, "-m", "pipelines.cli", "run", str(config), "--run", str(run_dir), "--engine", engine]
    base = [sys.executable, "-m", "pipelines.cli", stage, str(run_dir)]
    extra = {
        "download": ["--image-size", "64", "--threads", "4", "--timeout", "5", "--processes", "1",
                     "--allow-private-network"],
        "dedup": [],
        "score": ["--model", "tiny-test", "--device", "cpu", "--batch-size", "8", "--workers", "0"],
        "filter": [],
        "export": ["--webdataset"],
        "audit": ["--n-boot", "50", "--min-count", "3", "--seed", "0"],
    }[stage]
    return base + extra + ["--engine", engine]


def child_env(token: Optional[str] = None, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_MODE="disabled", NO_ALBUMENTATIONS_UPDATE="1",
               PYTHONPATH=str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""),
               # the CLI's rich console wraps lines at the terminal width; a wide one keeps paths whole in stderr
               COLUMNS="500", TERM="dumb", PYTHONUNBUFFERED="1")
    if token:
        env[TOKEN_ENV] = token
    env.update(extra)
    return env


def run_cli(cmd: list[str], *, env: Optional[dict] = None, timeout: float = 900, preexec_fn=None,
            cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env or child_env(), cwd=cwd or ROOT, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=preexec_fn, start_new_session=True)


def processes_with_token(token: str) -> list[int]:
    """Live processes whose environment carries the token: the stage and everything it started, wherever they went."""
    needle = f"{TOKEN_ENV}={token}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


# ---------------------------------------------------------------- the clean chain

@dataclass
class Reference:
    before: dict[str, Path] = field(default_factory=dict)  # stage -> run folder before it ran
    after: dict[str, Path] = field(default_factory=dict)  # stage -> run folder after it ran
    seconds: dict[str, float] = field(default_factory=dict)  # stage -> wall time of the clean run
    first_output: dict[str, float] = field(default_factory=dict)  # stage -> when its first output file appeared
    config: Optional[Path] = None  # the `fairsift run` config of the target "run"

    def command(self, stage: str, run_dir: Path, engine: str = "local") -> list[str]:
        return stage_command(stage, run_dir, engine, self.config)


def build_reference(work: Path, pairs_dir: Path, stages: tuple[str, ...], engine: str = "local",
                    timeout: float = 900) -> Reference:
    """Run the chain up to the last of `stages` uninterrupted, keeping the folder before and after each stage, and
    when each stage's outputs began to appear (the kill points are drawn around its working time). The target
    "run" is `fairsift run` of the config beside pairs_dir, from an empty run folder."""
    ref = Reference(config=work / "run_config" / "config.yaml")
    chain = [s for s in stages if s in STAGES]
    current = pairs_dir
    for stage in STAGES[: max(STAGES.index(s) for s in chain) + 1] if chain else ():
        _clean_run(ref, stage, current, work / f"clean_{stage}", engine, timeout)
        current = ref.after[stage]
    if RUN_TARGET in stages:
        empty = work / "empty_run"
        empty.mkdir(exist_ok=True)
        _clean_run(ref, RUN_TARGET, empty, work / "clean_run", engine, timeout)
    return ref


def _clean_run(ref: Reference, stage: str, before: Path, after: Path, engine: str, timeout: float) -> None:
    ref.before[stage] = before
    after = copy_run(before, after)
    start = time.perf_counter()
    token = uuid.uuid4().hex
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(ref.command(stage, after, engine), env=child_env(token), cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        first = None
        try:
            parts_before = output_part_count(after, stage)
            while proc.poll() is None:
                if first is None and output_part_count(after, stage) > parts_before:
                    first = time.perf_counter() - start
                if time.perf_counter() - start > timeout:
                    raise TimeoutError(f"clean `{stage}` ran over {timeout}s")
                time.sleep(0.01)
        finally:
            kill_group(proc, token)
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    ref.seconds[stage] = time.perf_counter() - start
    ref.first_output[stage] = first if first is not None else 0.5 * ref.seconds[stage]
    if proc.returncode != 0:
        raise RuntimeError(f"clean `{stage}` failed ({proc.returncode}):\n{stderr[-4000:]}")
    ref.after[stage] = after


# ---------------------------------------------------------------- kill -9 at random points

@dataclass
class Attempt:
    kind: str  # "killed" or "finished"
    mode: str = ""  # how the kill point was chosen: random delay, inside a part write, right after a part
    seconds: float = 0.0
    parts_at_kill: int = 0
    temp_at_kill: bool = False
    returncode: Optional[int] = None
    escaped: int = 0
    stderr_tail: str = ""


@dataclass
class StageChaos:
    stage: str
    kills: int = 0
    resumes: int = 0
    rounds: int = 0
    identical_rounds: int = 0
    attempts: list[Attempt] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    leftover_temp: int = 0
    kill_modes: dict[str, int] = field(default_factory=dict)

    @property
    def identical(self) -> bool:
        return self.rounds > 0 and self.identical_rounds == self.rounds and not self.problems

    def parts_at_kill(self) -> str:
        seen = sorted({a.parts_at_kill for a in self.attempts if a.kind == "killed"})
        return ",".join(map(str, seen)) or "-"


KILL_MODES = ("random", "in_write", "after_part")


def _wait_for_kill_point(proc: subprocess.Popen, run_dir: Path, stage: str, mode: str, delay: float,
                         deadline: float) -> bool:
    """Wait until the kill point; False when the process ended first. `delay` bounds every mode (and is the point
    itself for `random`): a part write or a new part that never comes still gets its kill."""
    start = time.perf_counter()
    parts_before = output_part_count(run_dir, stage)
    temp_before = stage_temp_entries(run_dir, stage)  # a killed attempt's debris is not a write in progress
    interval = 0.002 if mode == "in_write" else 0.01
    while True:
        if proc.poll() is not None:
            return False
        now = time.perf_counter()
        if now - start >= delay or now >= deadline:
            return True
        if mode == "in_write" and stage_temp_entries(run_dir, stage) - temp_before:
            return True
        if mode == "after_part" and output_part_count(run_dir, stage) > parts_before:
            return True
        time.sleep(interval)


def kill_group(proc: subprocess.Popen, token: str) -> int:
    """SIGKILL the stage's process group; then any process that carries the token but left the group (it escaped:
    counted, and killed too). Returns how many escaped."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    for _ in range(200):
        if not group_alive(proc.pid):
            break
        time.sleep(0.01)
    escaped = [pid for pid in processes_with_token(token) if _is_alive(pid)]
    for pid in escaped:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(escaped)


def _is_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def chaos_stage(stage: str, ref: Reference, work: Path, *, kills: int, seed: int,
                kills_per_round: tuple[int, int] = (1, 4), engine: str = "local", timeout: float = 900,
                log=None) -> StageChaos:
    """Kill `stage` at least `kills` times over rounds on fresh copies, each resumed to the end and compared.

    A round draws how many kills it gets from `kills_per_round` (seeded); a round whose stage finishes before its
    kill point ends early, so more rounds follow until `kills` is reached."""
    rng = random.Random(f"{seed}:{stage}")
    result = StageChaos(stage)
    clean_seconds = ref.seconds[stage]
    rounds_without_kill = 0
    while result.kills < kills:
        if rounds_without_kill >= 10:
            result.problems.append(f"{stage} finished before every kill point in 10 rounds running; "
                                   f"{result.kills} of {kills} kills landed")
            break
        result.rounds += 1
        run_dir = copy_run(ref.before[stage], work / f"chaos_{stage}_{result.rounds}")
        planned = min(kills - result.kills, rng.randint(*kills_per_round))
        killed_this_round = 0
        attempts_this_round = 0
        while True:
            attempts_this_round += 1
            kill = killed_this_round < planned and attempts_this_round <= planned * 4
            attempt = _attempt(ref, stage, run_dir, rng, min(ref.first_output[stage], 0.9 * clean_seconds),
                               clean_seconds, kill=kill, engine=engine, timeout=timeout)
            result.attempts.append(attempt)
            if attempt.kind == "finished" and attempts_this_round == 1 and kill:
                # the whole stage ran quicker than the clean run did (a less busy machine): draw later points
                # within the time it takes now
                clean_seconds = min(clean_seconds, attempt.seconds)
            if attempt.kind == "killed":
                result.kills += 1
                killed_this_round += 1
                result.kill_modes[attempt.mode] = result.kill_modes.get(attempt.mode, 0) + 1
                if attempt.escaped:
                    result.problems.append(f"round {result.rounds}: {attempt.escaped} process(es) outlived the "
                                           "killed process group")
                if log:
                    log(f"{stage}: kill {result.kills} ({attempt.mode}, {attempt.seconds:.2f}s, "
                        f"{attempt.parts_at_kill} output file(s), temp file present: {attempt.temp_at_kill})")
                result.resumes += 1
                continue
            if attempt.returncode != 0:
                result.problems.append(f"round {result.rounds}: the resumed `{stage}` exited {attempt.returncode}: "
                                       f"{attempt.stderr_tail}")
            if attempt.escaped:
                result.problems.append(f"round {result.rounds}: {attempt.escaped} process(es) outlived the finished "
                                       "stage")
            break
        rounds_without_kill = rounds_without_kill + 1 if killed_this_round == 0 else 0
        problems = compare_runs(ref.after[stage], run_dir, None if stage == RUN_TARGET else (stage,))
        result.leftover_temp += len(temp_entries(run_dir))
        if problems:
            result.problems += [f"round {result.rounds}: {p}" for p in problems]
        else:
            result.identical_rounds += 1
            shutil.rmtree(run_dir)  # keep only the folders that show a problem
        if log:
            log(f"{stage}: round {result.rounds} done after {killed_this_round} kill(s): "
                + ("identical to the clean run" if not problems else "; ".join(problems)))
    return result


def _attempt(ref: Reference, stage: str, run_dir: Path, rng: random.Random, first_output: float,
             clean_seconds: float, *,
             kill: bool, engine: str, timeout: float) -> Attempt:
    mode = rng.choice(KILL_MODES)
    # a random point: one in four during start-up and planning, the others while parts are being written (from a
    # little before the clean run's first output to its end); a resumed run has less to do, so some land after it
    if rng.random() < 0.25:
        delay = rng.uniform(0.05, max(0.1, first_output))
    else:
        delay = rng.uniform(0.8 * first_output, 1.05 * clean_seconds)
    token = uuid.uuid4().hex
    cmd = ref.command(stage, run_dir, engine)
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, env=child_env(token), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)
        try:
            if kill and _wait_for_kill_point(proc, run_dir, stage, mode, delay if mode == "random" else
                                             max(delay, clean_seconds), start + timeout):
                parts = output_part_count(run_dir, stage)
                temp = bool(temp_entries(run_dir))
                escaped = kill_group(proc, token)
                return Attempt("killed", mode, time.perf_counter() - start, parts, temp, escaped=escaped)
            proc.wait(timeout=max(1.0, timeout - (time.perf_counter() - start)))
        except BaseException:
            kill_group(proc, token)
            raise
        escaped = kill_group(proc, token)  # nothing may outlive a finished stage either
        err.seek(0)
        tail = err.read().decode(errors="replace")[-3000:]
    return Attempt("finished", seconds=time.perf_counter() - start, returncode=proc.returncode, escaped=escaped,
                   stderr_tail=tail)


