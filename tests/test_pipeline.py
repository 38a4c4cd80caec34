"""End to end: the README's demo offline, `fairsift run` from a YAML config, resume after losing a part."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from curate import tables
from curate.net.loopback import LoopbackServer
from pipelines.demo_site import INJECTION_CAPTION, build_site
from tests.conftest import fairsift_exe, offline_env


def _read(run_dir: Path, name: str, columns=None):
    return tables.read_table(run_dir, name, columns=columns)


def test_demo_runs_offline_and_says_it_used_the_test_model(demo_run):
    run_dir, proc = demo_run
    out = proc.stdout + proc.stderr
    assert "TEST MODEL" in out or "test model" in out.lower()
    assert "fairsift demo --model ViT-B-32" in out.replace("\n", " ") or "--checkpoint" in out
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["model"]["is_test_model"] is True
    assert "model_fallback" in manifest
    for stage in ("crawl", "download", "dedup", "score", "filter", "export", "audit", "probe", "report"):
        assert manifest["stages"][stage]["status"] == "done", stage
    assert "funnel" in out.lower()


def test_demo_finds_what_was_planted(demo_run):
    run_dir, _ = demo_run
    planted = json.loads((run_dir / "site" / "planted.json").read_text())
    shards = _read(run_dir, "shards", ["uid", "url", "caption", "status"]).to_pandas()
    assert (shards["status"] == "success").sum() == planted["images"]
    assert (shards["status"] != "success").sum() == len(planted["failed_downloads"])
    assert shards["uid"].is_unique
    pairs = _read(run_dir, "pairs", ["uid", "caption"]).to_pandas()
    assert not pairs["caption"].isin(["logo", "IMG_1234.jpg"]).any()
    assert INJECTION_CAPTION in set(pairs["caption"])

    dedup = _read(run_dir, "dedup").to_pandas().merge(shards, on="uid")
    name = dedup["url"].str.rsplit("/", n=1).str[-1]
    for kind, pairs_ in (("sha256", planted["exact_duplicates"]), ("phash", planted["near_duplicates"])):
        for original, copy in pairs_:
            a = dedup[name == Path(original).name].iloc[0]
            b = dedup[name == Path(copy).name].iloc[0]
            # either may be the representative (highest clip_score wins); the other points at it
            dup, rep = (b, a) if b["dup_of"] is not None else (a, b)
            assert dup["dup_of"] == rep["uid"], (original, copy)
            assert dup["dup_kind"] == kind, (copy, dup["dup_kind"])
            assert rep["dup_of"] is None
    planted_names = {Path(p).name for pair in planted["exact_duplicates"] + planted["near_duplicates"] for p in pair}
    others = dedup[~name.isin(planted_names) & ~name.str.startswith("inj_")]
    assert others["dup_of"].isna().all(), others[others["dup_of"].notna()][["url", "dup_kind"]]

    decisions = _read(run_dir, "decisions").to_pandas()
    pass_cols = [c for c in decisions.columns if c.startswith("pass_")]
    assert (decisions[pass_cols].all(axis=1) == decisions["kept"]).all()
    corpus = _read(run_dir, "corpus", ["uid", "clip_model"])
    assert corpus.num_rows == int(decisions["kept"].sum())
    assert all("TEST MODEL" in m for m in corpus.column("clip_model").to_pylist())  # scores say where they came from
    assert (run_dir / "report" / "index.html").is_file()


def _write_config(tmp_path: Path, base_url: str, **overrides) -> Path:
    cfg = {
        "name": "t",
        "allow_private_network": True,
        "crawl": {"sources": [f"{base_url}/pages/index.html"], "max_depth": 1},
        "download": {"image_size": 64, "threads": 8, "timeout": 5},
        "score": {"model": "tiny-test", "pretrained": None, "batch_size": 32, "workers": 0},
        "filter": {"steps": [{"step": "dedup"}, {"step": "clip_top_fraction", "fraction": 0.5}]},
    }
    cfg.update(overrides)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture()
def site(tmp_path):
    build_site(tmp_path / "site")
    with LoopbackServer(tmp_path / "site") as server:
        yield server


def _run(args, cwd):
    return subprocess.run(fairsift_exe() + args, cwd=cwd, env=offline_env(), capture_output=True, text=True,
                          timeout=900)


def test_run_from_config_resumes_after_a_lost_part(tmp_path, site):
    config = _write_config(tmp_path, site.base_url)
    run_dir = tmp_path / "run"
    first = _run(["run", str(config), "--run", str(run_dir)], tmp_path)
    assert first.returncode == 0, first.stderr[-5000:]
    before = {name: _read(run_dir, name) for name in ("shards", "clip", "dedup", "decisions", "corpus")}

    again = _run(["run", str(config), "--run", str(run_dir)], tmp_path)
    assert again.returncode == 0, again.stderr[-5000:]
    assert "skipped" in again.stderr

    # lose one part of two stages' outputs: the rerun must notice and rebuild exactly those parts
    for name in ("shards", "clip"):
        tables.list_parts(run_dir, name)[0].unlink()
    resumed = _run(["run", str(config), "--run", str(run_dir)], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-5000:]
    for name, table in before.items():
        after = _read(run_dir, name)
        assert after.equals(table), name


def test_bad_config_names_the_field(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({"crawl": {"sources": ["x.html"]}, "download": {"image_sise": 64}}))
    proc = _run(["run", str(config), "--run", str(tmp_path / "run")], tmp_path)
    assert proc.returncode == 2
    assert "download.image_sise" in proc.stderr


def test_missing_table_says_which_command_creates_it(tmp_path):
    proc = _run(["score", str(tmp_path / "empty"), "--model", "tiny-test"], tmp_path)
    assert proc.returncode == 2
    assert "fairsift download" in proc.stderr


def test_audit_perceived_records_its_prompts_in_the_manifest(demo_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(demo_run[0], run_dir, ignore=shutil.ignore_patterns("site", "report"))
    proc = _run(["audit", str(run_dir), "--perceived", "--n-boot", "50", "--min-count", "5"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-5000:]
    counts = json.loads((run_dir / "manifest.json").read_text())["stages"]["audit"]["counts"]
    prompts = counts["perceived_prompts"]
    assert prompts and "person" in json.dumps(prompts).lower()
    perceived = _read(run_dir, "perceived").to_pandas()
    assert {c for c in perceived.columns if c.startswith("perceived_")} >= {"perceived_gender_presentation",
                                                                             "perceived_age_group"}
    composition = _read_audit(run_dir, "composition")
    assert "perceived_gender_presentation" in set(composition["attribute"])


def _read_audit(run_dir: Path, name: str):
    import pandas as pd

    return pd.read_parquet(run_dir / "audit" / f"{name}.parquet")


def test_a_run_path_that_is_a_file_is_a_clear_error(tmp_path):
    not_a_folder = tmp_path / "run.txt"
    not_a_folder.write_text("")
    proc = _run(["download", str(not_a_folder)], tmp_path)
    assert proc.returncode == 2 and "is a file, not a folder" in proc.stderr and "Traceback" not in proc.stderr


def test_demo_on_the_ray_engine_gives_the_demos_funnel(demo_run, tmp_path):
    """`fairsift demo --engine ray` (a local Ray instance, every part as a Ray task) ends with the same funnel."""
    from curate.filter.funnel import funnel_rows

    run_dir = tmp_path / "ray-demo"
    env = offline_env()
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    proc = subprocess.run(fairsift_exe() + ["demo", "--run", str(run_dir), "--engine", "ray"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-5000:]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["stages"]["download"]["engine"]["name"] == "ray"
    assert funnel_rows(run_dir) == funnel_rows(demo_run[0])
