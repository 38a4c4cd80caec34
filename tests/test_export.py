"""Export: the kept rows as Parquet parts that DuckDB, pandas and Hugging Face datasets read, plus webdataset tars."""

from __future__ import annotations

import io
import json

import duckdb
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from curate import tables
from curate.export.stage import CORPUS, export
from curate.filter.stage import FilterConfig, default_filter_config, filter_run
from curate.options import ExportOptions
from pipelines.cli import app
from tests.run_builder import planted_rows, write_run


@pytest.fixture
def filtered_run(tmp_path):
    rows = list(planted_rows().values())
    run_dir = write_run(tmp_path / "run", rows, parts=3)
    counts = filter_run(run_dir, default_filter_config())
    assert 0 < counts["kept"] < len(rows)
    return run_dir, counts["kept"]


def _corpus_files(run_dir) -> list[str]:
    return [str(p) for p in tables.list_parts(run_dir, "corpus")]


def test_export_writes_exactly_the_kept_rows_readable_by_duckdb_pandas_and_datasets(filtered_run, tmp_path):
    run_dir, kept = filtered_run
    counts = export(run_dir, ExportOptions())
    assert counts["rows"] == counts["kept"] == kept
    files = _corpus_files(run_dir)
    # the first shards part has no kept row: it gets no file, since `datasets` cannot read a Parquet file of 0 rows
    assert json.loads((run_dir / ".corpus_source.json").read_text())["empty_parts"] == ["part-00000.parquet"]
    assert files

    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    assert list(frame.columns) == CORPUS.names
    assert len(frame) == kept
    decisions = tables.read_table(run_dir, "decisions").to_pandas()
    assert set(frame["uid"]) == set(decisions.loc[decisions["kept"], "uid"])
    clip = tables.read_table(run_dir, "clip").to_pandas().set_index("uid")["clip_score"]
    assert frame["clip_score"].tolist() == pytest.approx(frame["uid"].map(clip).tolist())
    with Image.open(io.BytesIO(frame["image"].iloc[0])) as img:
        assert img.size == (frame["width"].iloc[0], frame["height"].iloc[0])

    n, total_bytes = duckdb.sql(f"select count(*), sum(octet_length(image)) from read_parquet({files})").fetchall()[0]
    assert n == kept and total_bytes == frame["image"].map(len).sum()

    import datasets

    ds = datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(tmp_path / "hf"))
    assert ds.num_rows == kept
    # the folder as it is, with no file list: it holds only the corpus parts
    assert len(pd.read_parquet(run_dir / "corpus")) == kept
    whole = datasets.load_dataset("parquet", data_dir=str(run_dir / "corpus"), split="train",
                                  cache_dir=str(tmp_path / "hf2"))
    assert whole.num_rows == kept
    assert set(ds.column_names) == set(CORPUS.names)
    assert isinstance(ds[0]["image"], bytes) and ds[0]["caption"]


def test_webdataset_tars_hold_jpg_txt_json_per_kept_sample(filtered_run):
    run_dir, kept = filtered_run
    counts = export(run_dir, ExportOptions(webdataset=True))
    tars = sorted(str(p) for p in (run_dir / "corpus_webdataset").glob("part-*.tar"))
    assert tars and counts["webdataset_tars_written"] == len(tars)

    import webdataset as wds

    samples = list(wds.WebDataset(tars, shardshuffle=False))
    assert len(samples) == kept
    corpus = pd.concat([pd.read_parquet(f) for f in _corpus_files(run_dir)]).set_index("uid")
    for sample in samples:
        meta = json.loads(sample["json"])
        assert meta["uid"] == sample["__key__"]
        assert sample["txt"].decode() == corpus.loc[meta["uid"], "caption"]
        assert sample["jpg"] == corpus.loc[meta["uid"], "image"]
        Image.open(io.BytesIO(sample["jpg"])).verify()


def test_rerun_skips_done_parts_resumes_lost_ones_and_rebuilds_when_decisions_change(filtered_run):
    run_dir, kept = filtered_run
    export(run_dir, ExportOptions())
    files = tables.list_parts(run_dir, "corpus")
    before = {p.name: p.read_bytes() for p in files}

    again = export(run_dir, ExportOptions())
    assert again["parts_written"] == 0 and again["rows"] == kept and not again["rebuilt"]

    files[0].unlink()  # a part lost to a crash is written again, the others are left alone
    resumed = export(run_dir, ExportOptions())
    assert resumed["parts_written"] == 1 and resumed["rows"] == kept
    assert {p.name: p.read_bytes() for p in tables.list_parts(run_dir, "corpus")} == before

    # a filter rerun with another config changes decisions: the corpus follows it
    counts = filter_run(run_dir, FilterConfig.model_validate({"steps": ["dedup"]}))
    rebuilt = export(run_dir, ExportOptions())
    assert rebuilt["rebuilt"] and rebuilt["rows"] == counts["kept"] != kept
    assert json.loads((run_dir / ".corpus_source.json").read_text())["decisions_sha256"]


def test_export_needs_decisions(tmp_path):
    run_dir = write_run(tmp_path / "run", list(planted_rows().values()))
    with pytest.raises(tables.MissingTableError, match="fairsift filter"):
        export(run_dir, ExportOptions())


def test_cli_export_with_webdataset(filtered_run):
    run_dir, kept = filtered_run
    result = CliRunner().invoke(app, ["export", str(run_dir), "--webdataset"])
    assert result.exit_code == 0, result.output
    n = duckdb.sql(f"select count(*) from read_parquet({_corpus_files(run_dir)})").fetchall()[0][0]
    assert n == kept
    assert list((run_dir / "corpus_webdataset").glob("part-*.tar"))
