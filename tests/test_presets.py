"""Filter presets: published baselines by name, from the CLI and from configs, each with its source and deviations."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from curate import tables
from curate.filter.presets import PRESETS
from curate.filter.stage import FilterConfig, filter_run, load_filter_config
from pipelines.cli import app
from pipelines.config import load_config
from tests.run_builder import planted_rows, write_run


@pytest.fixture
def run_dir(tmp_path):
    return write_run(tmp_path / "run", list(planted_rows().values()))


def _kept(run_dir) -> set[str]:
    d = tables.read_table(run_dir, "decisions", columns=["uid", "kept"]).to_pandas()
    return set(d.loc[d["kept"], "uid"])


def test_every_preset_names_its_source_deviations_and_steps():
    assert set(PRESETS) == {"datacomp-basic", "datacomp-clip-score", "datacomp-basic-clip-score", "laion-400m"}
    for name, preset in PRESETS.items():
        assert preset.source and preset.deviations and preset.description, name
        config = FilterConfig(preset=name)
        assert config.preset == name and [s.name for s in config.steps]
    assert [s.name for s in FilterConfig(preset="datacomp-basic-clip-score").steps] == ["basic", "clip_top_fraction"]
    assert FilterConfig(preset="datacomp-clip-score").steps[0].fraction == 0.3
    assert "ViT-L/14" in PRESETS["datacomp-clip-score"].reference_model
    assert "ViT-B/32" in PRESETS["laion-400m"].reference_model


def test_intersection_preset_is_the_intersection_of_the_two_baselines(run_dir):
    filter_run(run_dir, FilterConfig(preset="datacomp-basic"))
    basic = _kept(run_dir)
    filter_run(run_dir, FilterConfig(preset="datacomp-clip-score"))
    top = _kept(run_dir)
    counts = filter_run(run_dir, FilterConfig(preset="datacomp-basic-clip-score"))
    both = _kept(run_dir)
    assert basic and top and both == basic & top and both != top
    assert counts["preset"]["name"] == "datacomp-basic-clip-score"
    assert counts["preset"]["clip_model_used"] == "tiny-test"  # what write_run's signals/clip says
    assert "ViT-L/14" in counts["preset"]["model_note"] and "tiny-test" in counts["preset"]["model_note"]


def test_laion_400m_keeps_captions_of_5_chars_and_cosine_at_least_0_3(run_dir):
    filter_run(run_dir, FilterConfig(preset="laion-400m"))
    shards = tables.read_table(run_dir, "shards", columns=["uid", "caption", "status"]).to_pandas()
    clip = tables.read_table(run_dir, "clip").to_pandas().set_index("uid")["clip_score"]
    score = shards["uid"].map(clip)
    expected = shards[(shards["status"] == "success") & (shards["caption"].str.len() >= 5) & (score >= 0.3)]
    assert _kept(run_dir) == set(expected["uid"])
    assert 0 < len(expected) < len(shards)


def test_presets_in_filter_and_run_configs(tmp_path):
    filters = tmp_path / "filters.yaml"
    filters.write_text("preset: datacomp-basic\n")
    assert load_filter_config(filters).preset == "datacomp-basic"
    run_cfg = tmp_path / "run.yaml"
    run_cfg.write_text(yaml.safe_dump({"name": "x", "ingest": {"path": "list.csv"},
                                       "filter": {"preset": "laion-400m"}}))
    cfg = load_config(run_cfg)
    again = FilterConfig.model_validate(cfg.filter)  # the runner validates the dumped section again
    assert again.preset == "laion-400m" and [s.name for s in again.steps] == ["caption_chars", "clip_threshold"]
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text("preset: datacomp-basic\nsteps: [dedup]\n")
    with pytest.raises(ValueError, match="not both"):
        load_filter_config(mixed)


def test_cli_preset_says_which_model_scored_the_run(run_dir, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["filter", str(run_dir), "--preset", "datacomp-clip-score"])
    assert result.exit_code == 0, result.output
    assert "ViT-L/14" in result.output and "tiny-test" in result.output
    counts = json.loads((run_dir / "manifest.json").read_text())["stages"]["filter"]["counts"]
    assert counts["preset"]["clip_model_used"] == "tiny-test" and counts["preset"]["source"].startswith("DataComp")
    decisions = pd.read_parquet(run_dir / "decisions.parquet")
    assert [c for c in decisions.columns if c.startswith("pass_")] == ["pass_download", "pass_clip_top_fraction"]

    bad = runner.invoke(app, ["filter", str(run_dir), "--preset", "datacomp-basc"])
    assert bad.exit_code == 2 and "did you mean 'datacomp-basic'" in bad.output and "laion-400m" in bad.output
    both = runner.invoke(app, ["filter", str(run_dir), "--preset", "laion-400m", "--config", str(tmp_path / "x.yaml")])
    assert both.exit_code == 2 and "not both" in both.output
