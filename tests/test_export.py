"""Export: the kept rows as Parquet parts that DuckDB, pandas and Hugging Face datasets read as they are (image as
an Image feature), img2dataset's columns, webdataset tars, and parts redone exactly when what they read changed."""

from __future__ import annotations

import io
import json
import tarfile

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from curate import tables
from curate.export.corpus import CORPUS
from curate.export.stage import export
from curate.filter.stage import FilterConfig, default_filter_config, filter_run
from curate.options import ExportOptions
from curate.parts import read_lineage
from pipelines.cli import app
from tests.run_builder import planted_rows, write_run

IMG2DATASET_COLUMNS = ["key", "status", "error_message", "width", "height", "original_width", "original_height",
                       "exif", "sha256"]


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
    assert counts["rows"] == counts["kept"] == kept and counts["parts"] == counts["parts_written"] == 3
    files = _corpus_files(run_dir)
    assert len(files) == 3  # one per shards part, the first with 0 rows (it kept nothing)
    assert pq.ParquetFile(files[0]).metadata.num_rows == 0

    frame = pd.read_parquet(run_dir / "corpus")
    assert list(frame.columns) == CORPUS.names and set(IMG2DATASET_COLUMNS) <= set(frame.columns)
    decisions = tables.read_table(run_dir, "decisions").to_pandas()
    assert sorted(frame["uid"]) == sorted(decisions.loc[decisions["kept"], "uid"])
    clip = tables.read_table(run_dir, "clip").to_pandas().set_index("uid")["clip_score"]
    assert frame["clip_score"].tolist() == pytest.approx(frame["uid"].map(clip).tolist())
    assert (frame["status"] == "success").all() and frame["error_message"].isna().all()
    assert frame["image"].iloc[0]["path"] is None
    with Image.open(io.BytesIO(frame["image"].iloc[0]["bytes"])) as img:
        assert img.size == (frame["width"].iloc[0], frame["height"].iloc[0])

    # keys as img2dataset's compute_key gives them: 5-digit shard (the part number), 4-digit row in the shard
    for part_no, path in enumerate(files):
        shards = pq.read_table(tables.list_parts(run_dir, "shards")[part_no], columns=["uid"]).column("uid").to_pylist()
        part = pq.read_table(path, columns=["uid", "key"]).to_pylist()
        assert [r["key"] for r in part] == [f"{part_no:05d}{shards.index(r['uid']):04d}" for r in part]
    assert frame["key"].str.fullmatch(r"\d{9}").all()

    n, total_bytes = duckdb.sql(f"select count(*), sum(octet_length(image.bytes)) from read_parquet({files})"
                                ).fetchall()[0]
    assert n == kept and total_bytes == frame["image"].map(lambda i: len(i["bytes"])).sum()

    import datasets

    ds = datasets.load_dataset("parquet", data_dir=str(run_dir / "corpus"), split="train",
                               cache_dir=str(tmp_path / "hf"))
    assert ds.num_rows == kept and set(ds.column_names) == set(CORPUS.names)
    assert isinstance(ds.features["image"], datasets.Image)  # no cast_column needed
    assert ds.features["clip_score"] == datasets.Value("float32") and ds.features["key"] == datasets.Value("string")
    image = ds[0]["image"]
    assert isinstance(image, Image.Image) and image.size == (ds[0]["width"], ds[0]["height"])


def test_a_filter_that_keeps_nothing_still_writes_the_corpus_schema(filtered_run, tmp_path):
    run_dir, _ = filtered_run
    counts = filter_run(run_dir, FilterConfig.model_validate({"steps": [{"clip_threshold": {"min_score": 2.0}}]}))
    assert counts["kept"] == 0
    assert export(run_dir, ExportOptions())["rows"] == 0
    frame = pd.read_parquet(run_dir / "corpus")
    assert frame.empty and list(frame.columns) == CORPUS.names
    assert duckdb.sql(f"select count(*) from read_parquet({_corpus_files(run_dir)})").fetchall() == [(0,)]
    assert pq.read_schema(_corpus_files(run_dir)[0]).field("image").type == CORPUS.field("image").type


def test_rerun_skips_current_parts_and_redoes_exactly_those_whose_selection_changed(filtered_run):
    run_dir, kept = filtered_run
    export(run_dir, ExportOptions())
    files = tables.list_parts(run_dir, "corpus")
    before = {p.name: p.read_bytes() for p in files}
    lineage = read_lineage(files[1])
    assert lineage["stage"] == "export"
    # the part's own decisions part (the filter decides part by part) and the clip values it read
    assert {"shards/part-00001.parquet", "decisions_parts/part-00001.parquet"} <= set(lineage["inputs"])
    assert any(rel.startswith("signals/clip/") for rel in lineage["inputs"])

    again = export(run_dir, ExportOptions())
    assert again["parts_written"] == 0 and again["parts_skipped"] == 3 and again["rows"] == kept

    files[0].unlink()  # a part lost to a crash is written again, the others are left alone
    resumed = export(run_dir, ExportOptions())
    assert resumed["parts_written"] == 1 and resumed["rows"] == kept
    assert {p.name: p.read_bytes() for p in tables.list_parts(run_dir, "corpus")} == before

    # another filter config changes which rows are kept: the corpus follows decisions part by part
    counts = filter_run(run_dir, FilterConfig.model_validate({"steps": ["dedup"]}))
    rebuilt = export(run_dir, ExportOptions())
    assert rebuilt["rows"] == counts["kept"] != kept and rebuilt["parts_written"] >= 1
    decisions = tables.read_table(run_dir, "decisions").to_pandas()
    assert sorted(pd.read_parquet(run_dir / "corpus")["uid"]) == sorted(decisions.loc[decisions["kept"], "uid"])
    assert read_lineage(tables.list_parts(run_dir, "corpus")[1])["inputs"]["decisions_parts/part-00001.parquet"] \
        != lineage["inputs"]["decisions_parts/part-00001.parquet"]

    # a changed clip score (a rescore) changes the corpus rows that carry it
    clip = tables.read_table(run_dir, "clip")
    tables.write_table(run_dir, "clip", clip.set_column(1, "clip_score", pa.compute.add(clip["clip_score"], 0.01)))
    rescored = export(run_dir, ExportOptions())
    assert rescored["parts_written"] >= 1
    corpus = pd.read_parquet(run_dir / "corpus")
    new = tables.read_table(run_dir, "clip").to_pandas().set_index("uid")["clip_score"]
    assert corpus["clip_score"].tolist() == pytest.approx(corpus["uid"].map(new).tolist(), nan_ok=True)


def test_pairs_additional_columns_travel_into_the_corpus(tmp_path):
    rows = list(planted_rows().values())
    run_dir = write_run(tmp_path / "run", rows, parts=1)
    shards = tables.read_table(run_dir, "shards", columns=["uid", "url", "caption"])
    n = shards.num_rows
    pairs = pa.table({"uid": shards["uid"], "url": shards["url"], "caption": shards["caption"],
                      "page_url": pa.nulls(n, pa.string()), "source": ["ingest"] * n,
                      "caption_source": ["list"] * n, "caption_truncated": [False] * n,
                      "licence": [f"CC BY {i}" for i in range(n)]})
    tables.write_part(run_dir, "pairs", 0, pairs)
    filter_run(run_dir, default_filter_config())
    export(run_dir, ExportOptions())
    frame = pd.read_parquet(run_dir / "corpus")
    assert frame.columns[-1] == "licence"
    by_uid = dict(zip(pairs["uid"].to_pylist(), pairs["licence"].to_pylist()))
    assert frame["licence"].tolist() == frame["uid"].map(by_uid).tolist()


def test_webdataset_tars_hold_jpg_txt_json_per_kept_sample(filtered_run):
    run_dir, kept = filtered_run
    counts = export(run_dir, ExportOptions(webdataset=True))
    tars = sorted(str(p) for p in (run_dir / "corpus_webdataset").glob("part-*.tar"))
    assert len(tars) == 3 and counts["webdataset_tars_written"] == 3

    import webdataset as wds

    samples = list(wds.WebDataset(tars, shardshuffle=False, empty_check=False))
    assert len(samples) == kept
    corpus = pd.read_parquet(run_dir / "corpus").set_index("uid")
    for sample in samples:
        meta = json.loads(sample["json"])
        assert meta["uid"] == sample["__key__"]
        assert set(IMG2DATASET_COLUMNS) <= set(meta) and "image" not in meta
        assert meta["key"] == corpus.loc[meta["uid"], "key"]
        assert sample["txt"].decode() == corpus.loc[meta["uid"], "caption"]
        assert sample["jpg"] == corpus.loc[meta["uid"], "image"]["bytes"]
        Image.open(io.BytesIO(sample["jpg"])).verify()
    assert export(run_dir, ExportOptions(webdataset=True))["webdataset_tars_written"] == 0
    filter_run(run_dir, FilterConfig.model_validate({"steps": ["dedup"]}))
    assert export(run_dir, ExportOptions(webdataset=True))["webdataset_tars_written"] >= 1
    with tarfile.open(tars[1]) as tar:
        names = {m.name.split(".")[0] for m in tar.getmembers()}
    assert names <= set(pd.read_parquet(run_dir / "corpus")["uid"])


def test_export_needs_decisions(tmp_path):
    run_dir = write_run(tmp_path / "run", list(planted_rows().values()))
    with pytest.raises(tables.MissingTableError, match="fairsift filter"):
        export(run_dir, ExportOptions())


def test_cli_export_with_webdataset_and_img2dataset_format(filtered_run):
    run_dir, kept = filtered_run
    result = CliRunner().invoke(app, ["export", str(run_dir), "--webdataset"])
    assert result.exit_code == 0, result.output
    n = duckdb.sql(f"select count(*) from read_parquet({_corpus_files(run_dir)})").fetchall()[0][0]
    assert n == kept
    assert list((run_dir / "corpus_webdataset").glob("part-*.tar"))
    result = CliRunner().invoke(app, ["export", str(run_dir), "--format", "img2dataset"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (run_dir / "img2dataset").iterdir()) == [
        f"{i:05d}{suffix}" for i in range(3) for suffix in (".parquet", "_stats.json")]
    bad = CliRunner().invoke(app, ["export", str(run_dir), "--format", "tfrecord"])
    assert bad.exit_code == 2 and "img2dataset" in bad.output
