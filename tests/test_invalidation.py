"""Reruns never serve stale data: after changing any output-shaping option of any stage, a rerun of the same run
folder gives exactly the tables a from-scratch run with the new options gives (issue: content-keyed invalidation).

One baseline run is built once; each case copies it, reruns with one option changed, and compares every table
(pairs, shards, signals/*, decisions, corpus, audit/*) with a fresh run of the changed config, after sorting by uid.
"""

from __future__ import annotations

import copy
import shutil

import pytest

from pipelines.config import RunConfig
from pipelines.engines import LocalEngine
from pipelines.runner import run_pipeline
from tests.test_engine_equivalence import _tables
from tests.tiny_clip import tiny_clip_checkpoint  # noqa: F401  (fixture)

BASE = {
    "name": "invalidation",
    "allow_private_network": True,
    "crawl": {"sources": [], "max_depth": 1, "rows_per_part": 16},
    "download": {"image_size": 64, "threads": 4, "timeout": 5},
    "dedup": {"phash_distance": 4},
    "score": {"model": "tiny-test", "pretrained": None, "batch_size": 32, "workers": 0},
    "filter": {"steps": ["dedup", {"clip_top_fraction": {"fraction": 0.5}}]},
    "audit": {"enabled": True, "min_count": 5, "n_boot": 30},
}


def _with(config: dict, path: str, value) -> dict:
    changed = copy.deepcopy(config)
    *parents, key = path.split(".")
    node = changed
    for p in parents:
        node = node[p]
    node[key] = value
    return changed


@pytest.fixture(scope="module")
def base_config(demo_site_server) -> dict:
    return _with(BASE, "crawl.sources", [f"{demo_site_server.base_url}/pages/index.html"])


def _run(config: dict, run_dir) -> None:
    run_pipeline(RunConfig.model_validate(config), run_dir, engine=LocalEngine(workers=1))


@pytest.fixture(scope="module")
def baseline(base_config, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("baseline") / "run"
    _run(base_config, run_dir)
    return run_dir


CASES = [
    ("download.image_size", 48),
    ("download.resize_mode", "center_crop"),
    ("download.encode_quality", 70),
    ("dedup.phash_distance", 12),
    ("filter.steps", ["dedup", {"clip_top_fraction": {"fraction": 0.25}}]),
    ("audit.min_count", 3),
]


@pytest.mark.parametrize("path,value", CASES, ids=[c[0] for c in CASES])
def test_rerun_after_an_option_change_equals_a_fresh_run(path, value, base_config, baseline, tmp_path):
    changed = _with(base_config, path, value)
    rerun = tmp_path / "rerun"
    shutil.copytree(baseline, rerun)
    _run(changed, rerun)
    fresh = tmp_path / "fresh"
    _run(changed, fresh)
    got, want = _tables(rerun), _tables(fresh)
    assert set(got) == set(want)
    for name in want:
        assert got[name].equals(want[name]), f"{name} is stale after changing {path}"


def test_rerun_with_another_model_rescores_everything(base_config, baseline, tmp_path, tiny_clip_checkpoint):
    changed = _with(base_config, "score.checkpoint", str(tiny_clip_checkpoint))
    rerun = tmp_path / "rerun"
    shutil.copytree(baseline, rerun)
    _run(changed, rerun)
    fresh = tmp_path / "fresh"
    _run(changed, fresh)
    got, want = _tables(rerun), _tables(fresh)
    for name in want:
        assert got[name].equals(want[name]), f"{name} is stale after changing the model"


def _finished(run_dir) -> dict[str, str]:
    import json

    stages = json.loads((run_dir / "manifest.json").read_text())["stages"]
    return {name: entry.get("finished_at") for name, entry in stages.items()}


def _files(run_dir) -> dict[str, int]:
    return {str(p.relative_to(run_dir)): p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}


def _dry_run(config: dict, run_dir, capsys) -> dict[str, tuple[str, str]]:
    capsys.readouterr()
    run_pipeline(RunConfig.model_validate(config), run_dir, engine=LocalEngine(workers=1), dry_run=True)
    lines = [line.split(None, 2) for line in capsys.readouterr().err.splitlines() if line.strip()]
    return {parts[0]: (parts[1], parts[2] if len(parts) > 2 else "") for parts in lines if len(parts) >= 2}


def test_dry_run_says_what_would_run_and_why_and_touches_nothing(base_config, baseline, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(baseline, run)
    before = _files(run)
    unchanged = _dry_run(base_config, run, capsys)
    assert {stage for stage, (action, _) in unchanged.items() if action == "run"} == set(), unchanged
    assert {"crawl", "download", "dedup", "score", "filter", "export", "audit"} <= set(unchanged)

    changed = _dry_run(_with(base_config, "download.image_size", 48), run, capsys)
    assert changed["crawl"][0] == "skip"
    assert changed["download"] == ("run", "options changed: image_size")
    for stage in ("dedup", "score", "filter", "export", "audit"):
        assert changed[stage][0] == "run" and "would run first" in changed[stage][1], (stage, changed[stage])
    assert _files(run) == before  # a dry run writes nothing, not even the manifest


def test_force_redoes_one_stage_and_from_redoes_the_rest(base_config, baseline, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(baseline, run)
    want = _tables(baseline)
    first = _finished(run)

    run_pipeline(RunConfig.model_validate(base_config), run, engine=LocalEngine(workers=1), force=("download",))
    forced = _finished(run)
    assert forced["download"] != first["download"]
    # the download came out byte-identical, so what was computed from it is current: not redone
    assert all(forced[s] == first[s] for s in ("dedup", "score", "filter", "export", "audit"))
    assert {name: t.equals(want[name]) for name, t in _tables(run).items()} == {name: True for name in want}

    run_pipeline(RunConfig.model_validate(base_config), run, engine=LocalEngine(workers=1), from_stage="filter")
    after = _finished(run)
    assert all(after[s] != forced[s] for s in ("filter", "export", "audit"))
    assert all(after[s] == forced[s] for s in ("download", "dedup", "score"))
    assert {name: t.equals(want[name]) for name, t in _tables(run).items()} == {name: True for name in want}
