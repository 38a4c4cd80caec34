"""Reruns never serve stale data: after changing any output-shaping option of any stage, a rerun of the same run
folder gives exactly the tables a from-scratch run with the new options gives (issue: content-keyed invalidation).

One baseline run is built once; each case copies it, reruns with one option changed, and compares every table
(pairs, shards, signals/*, decisions, corpus, audit/*) with a fresh run of the changed config, after sorting by uid.
"""

from __future__ import annotations

import copy
import shutil

import pytest

from curate.net.loopback import LoopbackServer
from pipelines.config import RunConfig
from pipelines.demo_site import build_site
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
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    build_site(root)
    with LoopbackServer(root) as server:
        yield server


@pytest.fixture(scope="module")
def base_config(site) -> dict:
    return _with(BASE, "crawl.sources", [f"{site.base_url}/pages/index.html"])


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
