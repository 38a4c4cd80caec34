"""The filter stage on a run built from real sample images and captions with planted cases (tests/run_builder.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml
from typer.testing import CliRunner

from curate import tables
from curate.filter.stage import FilterConfig, default_filter_config, filter_run, load_filter_config
from pipelines.cli import app
from tests.run_builder import planted_rows, write_run


@pytest.fixture
def planted(tmp_path):
    rows = planted_rows()
    run_dir = write_run(tmp_path / "run", list(rows.values()))
    return run_dir, {key: row.uid for key, row in rows.items()}, rows


def _decisions(run_dir) -> pd.DataFrame:
    return tables.read_table(run_dir, "decisions").to_pandas().set_index("uid", drop=False)


def _config(*steps) -> FilterConfig:
    return FilterConfig.model_validate({"steps": list(steps)})


ALL_STEPS = _config(
    "dedup", {"clip_threshold": {"min_score": 0.2}}, "language", "caption_words", "image_size", "aspect_ratio",
    "nsfw_caption", {"clip_top_fraction": {"fraction": 0.3}},
)


def test_default_config_is_dedup_basic_top_30_percent():
    config = default_filter_config()
    assert [s.name for s in config.steps] == ["dedup", "basic", "clip_top_fraction"]
    assert config.steps[2].fraction == 0.3
    basic = config.steps[1]
    assert (basic.languages, basic.detector, basic.min_words, basic.min_chars, basic.min_side, basic.max_ratio,
            basic.use) == (["en"], "fasttext", 3, 6, 200, 3.0, "original")


def test_decisions_have_one_row_per_shard_and_kept_is_and_of_steps(planted):
    run_dir, uid, _ = planted
    counts = filter_run(run_dir, ALL_STEPS)
    d = _decisions(run_dir)
    shards = tables.read_table(run_dir, "shards", columns=["uid"])
    assert d["uid"].tolist() == shards["uid"].to_pylist()

    pass_cols = [c for c in d.columns if c.startswith("pass_")]
    assert pass_cols == ["pass_download", "pass_dedup", "pass_clip_threshold", "pass_language",
                         "pass_caption_words", "pass_image_size", "pass_aspect_ratio", "pass_nsfw_caption",
                         "pass_clip_top_fraction"]
    assert (d["kept"] == d[pass_cols].all(axis=1)).all()
    for _, row in d.iterrows():
        failing = [c.removeprefix("pass_") for c in pass_cols if not row[c]]
        assert row["dropped_by"] == (failing[0] if failing else None)
        assert (row["reason"] is None) == bool(row["kept"])

    assert counts["rows"] == len(d) and counts["kept"] == int(d["kept"].sum())
    assert list(counts["steps"]) == [c.removeprefix("pass_") for c in pass_cols]
    for step, c in counts["steps"].items():
        assert c["pass"] == int(d[f"pass_{step}"].sum())
        assert c["dropped_first"] == int((d["dropped_by"] == step).sum())

    # the failed download is the funnel's first drop, with its status as the reason
    failed = d.loc[uid["failed"]]
    assert failed["dropped_by"] == "download" and failed["reason"] == "failed_to_download"


def test_each_planted_case_is_dropped_by_its_step_with_value_and_threshold(planted):
    run_dir, uid, rows = planted
    filter_run(run_dir, ALL_STEPS)
    d = _decisions(run_dir)

    assert d.loc[uid["phash_dup"], "dropped_by"] == "dedup"
    assert d.loc[uid["phash_dup"], "reason"] == f"dup_of {uid['sample_0'][:8]}… (phash)"
    assert d.loc[uid["eval_dup"], "reason"] == "dup_of cifar10/test/00042.png (eval_set)"

    low = d.loc[uid["sample_0"]]  # clip_score 0.15
    assert not low["pass_clip_threshold"] and low["reason"] == "clip_score 0.15 < 0.2"
    assert d.loc[uid["unscored"], "reason"] == "no clip_score"
    assert not d.loc[uid["unscored"], "pass_clip_top_fraction"]

    german = d.loc[uid["german"]]
    assert german["dropped_by"] == "language" and german["language"] == "de"
    assert german["reason"].startswith("language de (") and german["reason"].endswith(") not in [en]")

    assert not d.loc[uid["short"], "pass_caption_words"]
    assert d.loc[uid["small"], "reason"] == "min side 150 < 200 (original 150x400)"
    assert d.loc[uid["small"], "pass_aspect_ratio"]
    assert d.loc[uid["wide"], "reason"] == "aspect ratio 4 > 3 (original 1200x300)"
    assert d.loc[uid["nsfw"], "reason"] == "caption contains NSFW term 'erotica'"
    assert d.loc[uid["erotic_inside_word"], "pass_nsfw_caption"]  # whole words only: "heterotic" is fine

    # every step is evaluated on all rows on its own: the duplicate still has a language verdict
    assert d.loc[uid["phash_dup"], "pass_language"]
    assert d.loc[uid["german"], "pass_clip_threshold"]


def test_top_fraction_keeps_exactly_round_fraction_of_scored_rows_and_breaks_ties_by_uid(tmp_path):
    rows = list(planted_rows().values())
    for row in rows[:12]:
        row.clip_score = 0.5  # a twelve-way tie across the cut of k = 10
    run_dir = write_run(tmp_path / "run", rows)
    counts = filter_run(run_dir, _config({"clip_top_fraction": {"fraction": 0.25}}))
    d = _decisions(run_dir)
    scored = d[d["clip_score"].notna()].reset_index(drop=True)
    k = round(0.25 * len(scored))
    assert k == 10 and int(d["pass_clip_top_fraction"].sum()) == k
    expected = scored.assign(neg=-scored["clip_score"]).sort_values(["neg", "uid"]).head(k)["uid"]
    assert set(d.index[d["pass_clip_top_fraction"]]) == set(expected)
    cut = counts["thresholds"]["clip_top_fraction"]
    assert cut == pytest.approx(float(scored[scored["uid"].isin(expected)]["clip_score"].min()), abs=1e-6)
    tied_out = d[(d["clip_score"] == 0.5) & ~d["pass_clip_top_fraction"]]
    assert len(tied_out) == 12 - k and tied_out["reason"].str.contains("left out by uid order").all()
    below = d[d["clip_score"].notna() & (d["clip_score"] < cut)]
    assert below["reason"].str.fullmatch(r"clip_score [0-9.]+ < top 25% cut 0\.5").all()


def test_basic_is_one_step_with_sub_checks_in_reason_and_columns(planted):
    run_dir, uid, _ = planted
    filter_run(run_dir, _config("basic"))
    d = _decisions(run_dir)
    for key, check, text in [("german", "language", "language de ("),
                             ("short", "caption_words", "caption_words: 1 words < min_words 3"),
                             ("small", "image_size", "image_size: min side 150 < 200"),
                             ("wide", "aspect_ratio", "aspect_ratio: aspect ratio 4 > 3")]:
        row = d.loc[uid[key]]
        assert row["dropped_by"] == "basic" and not row[f"basic_{check}"]
        assert text in row["reason"]
    sub_checks = ["basic_language", "basic_caption_words", "basic_caption_chars", "basic_image_size",
                  "basic_aspect_ratio"]
    assert (d["pass_basic"] == d[sub_checks].all(axis=1)).all()


def test_caption_words_bounds(planted):
    run_dir, uid, _ = planted
    filter_run(run_dir, _config({"caption_words": {"min_words": 3, "max_words": 8}}))
    d = _decisions(run_dir)
    assert d.loc[uid["short"], "reason"] == "1 words < min_words 3"
    assert d.loc[uid["german"], "reason"] == "9 words > max_words 8"
    assert d.loc[uid["nsfw"], "pass_caption_words"] and d.loc[uid["nsfw"], "caption_words"] == 7


def test_image_size_can_use_the_resized_image(planted):
    run_dir, uid, _ = planted
    filter_run(run_dir, _config({"image_size": {"use": "resized", "min_side": 200}}))
    d = _decisions(run_dir)
    assert d.loc[uid["small"], "pass_image_size"]  # the shard image is 256x256 whatever the original was
    assert d.loc[uid["failed"], "reason"] == "failed_to_download"
    assert not d.loc[uid["failed"], "pass_image_size"]


def test_dedup_kinds_option_keeps_eval_set_always_dropped(planted):
    run_dir, uid, _ = planted
    filter_run(run_dir, _config({"dedup": {"kinds": ["url", "sha256"]}}))
    d = _decisions(run_dir)
    assert d.loc[uid["phash_dup"], "pass_dedup"]
    assert not d.loc[uid["eval_dup"], "pass_dedup"]


def test_language_is_detected_once_and_stored_in_signals_lang(planted):
    run_dir, uid, _ = planted
    filter_run(run_dir, _config("language"))
    lang = tables.read_table(run_dir, "lang").to_pandas().set_index("uid")
    assert list(lang.columns) == ["language", "language_prob", "detector"]
    assert set(lang["detector"]) == {"fasttext"}
    assert lang.loc[uid["german"], "language"] == "de" and lang.loc[uid["sample_1"], "language"] == "en"
    assert lang.loc[uid["german"], "language_prob"] > 0.9

    # a stored verdict is reused, not recomputed: plant one and see the filter follow it
    stored = tables.read_table(run_dir, "lang")
    languages = ["de" if u == uid["sample_1"] else v for u, v in
                 zip(stored["uid"].to_pylist(), stored["language"].to_pylist())]
    _plant_lang(run_dir, stored.set_column(1, "language", pa.array(languages)))
    counts = filter_run(run_dir, _config("language"))
    assert counts["language_parts_detected"] == 0
    assert not _decisions(run_dir).loc[uid["sample_1"], "pass_language"]


def _plant_lang(run_dir, planted: pa.Table) -> None:
    """Replace the stored languages as if the detector had said so: each lang part keeps its lineage (what it was
    computed from), so the filter takes it as current instead of detecting again."""
    from curate import parts

    by_uid = {u: i for i, u in enumerate(planted["uid"].to_pylist())}
    for path in tables.list_parts(run_dir, "lang"):
        lineage = parts.read_lineage(path)
        uids = tables.read_part(path, ["uid"])["uid"].to_pylist()
        parts.atomic_write(planted.take([by_uid[u] for u in uids]), path, lineage)


def test_uncertain_guesses_fail_as_in_datacomp_unless_asked_to_pass(planted):
    run_dir, uid, _ = planted
    filter_run(run_dir, _config("language"))  # stores signals/lang
    stored = tables.read_table(run_dir, "lang")
    # what py3langid says of "a man smiling": Central Bikol, 23% sure
    is_row = [u == uid["sample_1"] for u in stored["uid"].to_pylist()]
    languages = ["bcl" if hit else v for hit, v in zip(is_row, stored["language"].to_pylist())]
    probs = [0.23 if hit else p for hit, p in zip(is_row, stored["language_prob"].to_pylist())]
    _plant_lang(run_dir, pa.table({"uid": stored["uid"], "language": languages,
                                   "language_prob": pa.array(probs, pa.float32()), "detector": stored["detector"]}))
    filter_run(run_dir, _config("language"))
    row = _decisions(run_dir).loc[uid["sample_1"]]
    assert not row["pass_language"] and "language bcl (0.23) not in [en]" in row["reason"]
    filter_run(run_dir, _config({"language": {"uncertain": "pass"}}))
    assert _decisions(run_dir).loc[uid["sample_1"], "pass_language"]
    filter_run(run_dir, _config({"language": {"uncertain": "pass", "uncertain_below": 0.2}}))
    assert not _decisions(run_dir).loc[uid["sample_1"], "pass_language"]


def test_min_confidence_fails_uncertain_english(planted):
    run_dir, uid, _ = planted
    filter_run(run_dir, _config({"language": {"min_confidence": 0.999}}))
    d = _decisions(run_dir)
    unsure = d[(d["language"] == "en") & ~d["pass_language"]]
    assert len(unsure) > 0
    assert unsure["reason"].str.contains("< min_confidence 0.999").any()


def test_rerun_gives_identical_decisions(planted):
    run_dir, _, _ = planted
    filter_run(run_dir, default_filter_config())
    first = tables.read_table(run_dir, "decisions")
    filter_run(run_dir, default_filter_config())
    assert tables.read_table(run_dir, "decisions").equals(first)


def test_missing_signal_table_names_the_command_that_creates_it(tmp_path):
    run_dir = write_run(tmp_path / "run", list(planted_rows().values()), clip=False)
    with pytest.raises(tables.MissingTableError, match="fairsift score"):
        filter_run(run_dir, _config({"clip_threshold": {"min_score": 0.2}}))
    with pytest.raises(tables.MissingTableError, match="fairsift download"):
        filter_run(tmp_path / "empty", _config("nsfw_caption"))


def test_config_files_and_errors_that_name_the_field(tmp_path):
    steps_file = tmp_path / "filter.yaml"
    steps_file.write_text(yaml.safe_dump({"steps": ["dedup", {"clip_threshold": {"min_score": 0.3}},
                                                    {"name": "nsfw_caption"}, {"step": "caption_words", "min_words": 4}]}))
    config = load_filter_config(steps_file)
    assert [s.name for s in config.steps] == ["dedup", "clip_threshold", "nsfw_caption", "caption_words"]
    assert config.steps[1].min_score == 0.3 and config.steps[3].min_words == 4

    run_config = tmp_path / "run.yaml"
    run_config.write_text(yaml.safe_dump({"name": "x", "filter": {"steps": ["basic"]}}))
    assert [s.name for s in load_filter_config(run_config).steps] == ["basic"]

    typo = tmp_path / "typo.yaml"
    typo.write_text("steps:\n  - clip_top_fraction: {fractoin: 0.3}\n")
    with pytest.raises(ValueError, match=r"steps\.0\.clip_top_fraction\.fractoin"):
        load_filter_config(typo)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("steps: [dedupe]\n")
    with pytest.raises(ValueError, match="dedupe"):
        load_filter_config(unknown)
    top_typo = tmp_path / "top.yaml"
    top_typo.write_text("steps: [dedup]\nstepz: [basic]\n")
    with pytest.raises(ValueError, match="stepz"):
        load_filter_config(top_typo)
    twice = tmp_path / "twice.yaml"
    twice.write_text("steps: [dedup, dedup]\n")
    with pytest.raises(ValueError, match="more than once"):
        load_filter_config(twice)
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_filter_config(tmp_path / "nope.yaml")


def test_cli_filter_with_config_and_with_a_typo(planted, tmp_path):
    run_dir, uid, _ = planted
    config = tmp_path / "x.yaml"
    config.write_text("steps:\n  - dedup\n  - clip_threshold: {min_score: 0.25}\n  - nsfw_caption\n")
    result = CliRunner().invoke(app, ["filter", str(run_dir), "--config", str(config)])
    assert result.exit_code == 0, result.output
    d = _decisions(run_dir)
    assert [c for c in d.columns if c.startswith("pass_")] == ["pass_download", "pass_dedup",
                                                               "pass_clip_threshold", "pass_nsfw_caption"]
    assert np.array_equal(d["kept"].to_numpy(), d[[c for c in d.columns if c.startswith("pass_")]].all(axis=1))

    config.write_text("steps:\n  - clip_threshold: {min_scor: 0.25}\n")
    result = CliRunner().invoke(app, ["filter", str(run_dir), "--config", str(config)])
    assert result.exit_code == 2
    assert "min_scor" in result.output and "Traceback" not in result.output

    config.write_text("steps:\n  - {clip_treshold: {min_score: 0.25}}\n  - dedupe\n")
    result = CliRunner().invoke(app, ["filter", str(run_dir), "--config", str(config)])
    assert result.exit_code == 2
    assert "unknown filter step 'clip_treshold'" in result.output and "clip_threshold" in result.output
