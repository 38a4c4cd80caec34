"""ingest: URL lists in img2dataset's formats -> pairs/, streamed batch by batch, with drops counted."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import curate.sources.ingest as ingest_module
from curate.sources.ingest import ingest
from curate.options import IngestOptions
from curate.schemas import PAIRS
from curate.tables import compute_uid, list_parts, read_table
from pipelines.cli import app

LAION = Path(__file__).parents[2] / "shared" / "data" / "captions" / "laion_style_alt_texts_10000.parquet"

# one row of every kind: kept, kept with extra whitespace, empty url, non-http url, duplicate, over-long caption
ROWS = [
    {"link": "https://a.example/1.jpg", "text": "A red bicycle", "uid": "theirs-1", "width": "640"},
    {"link": " https://a.example/2.jpg ", "text": "  Two  cats\n on a sofa ", "uid": "theirs-2", "width": "480"},
    {"link": "", "text": "no url", "uid": "theirs-3", "width": "1"},
    {"link": "ftp://a.example/3.jpg", "text": "not http", "uid": "theirs-4", "width": "2"},
    {"link": "https://a.example/1.jpg", "text": "A red bicycle", "uid": "theirs-5", "width": "3"},
    {"link": "https://a.example/long image.jpg", "text": "x" * 5000, "uid": "theirs-6", "width": "4"},
]
EXPECTED = [
    ("https://a.example/1.jpg", "A red bicycle", False, "theirs-1"),
    ("https://a.example/2.jpg", "Two cats on a sofa", False, "theirs-2"),
    ("https://a.example/long%20image.jpg", "x" * 1000, True, "theirs-6"),
]
EXPECTED_DROPS = {"empty_url": 1, "invalid_url": 1, "duplicate_in_list": 1, "malformed_row": 0}


def _check_pairs(run: Path, expected=EXPECTED) -> pa.Table:
    table = read_table(run, "pairs")
    assert table.schema.names[: len(PAIRS)] == PAIRS.names
    rows = table.to_pylist()
    assert [(r["url"], r["caption"], r["caption_truncated"], r["src_uid"]) for r in rows] == expected
    for row in rows:
        assert row["uid"] == compute_uid(row["url"], row["caption"])
        assert (row["source"], row["caption_source"], row["page_url"]) == ("ingest", "list", None)
    return table


def _options(path: Path, **kwargs) -> IngestOptions:
    return IngestOptions(path=str(path), url_col=kwargs.pop("url_col", "link"),
                         caption_col=kwargs.pop("caption_col", "text"), **kwargs)


@pytest.mark.parametrize("fmt", ["parquet", "csv", "tsv", "jsonl", "json", "csv.gz"])
def test_formats(tmp_path, fmt):
    frame = pd.DataFrame(ROWS)
    path = tmp_path / f"list.{fmt}"
    if fmt == "parquet":
        frame.to_parquet(path)
    elif fmt in ("csv", "csv.gz"):
        frame.to_csv(path, index=False)
    elif fmt == "tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        path.write_text(json.dumps(ROWS))
    counts = ingest(tmp_path / "run", _options(path))
    table = _check_pairs(tmp_path / "run")
    assert counts["dropped"] == EXPECTED_DROPS and counts["rows"] == 6 and counts["pairs"] == 3
    assert "width" in table.column_names and "__index_level_0__" not in table.column_names


def test_txt_list_and_malformed_csv_rows(tmp_path):
    txt = tmp_path / "urls.txt.gz"
    txt.write_bytes(gzip.compress(b"https://a.example/1.jpg\n\nnot a url\nhttps://a.example/2.jpg\n"))
    counts = ingest(tmp_path / "txt", IngestOptions(path=str(txt)))
    rows = read_table(tmp_path / "txt", "pairs").to_pylist()
    assert [(r["url"], r["caption"]) for r in rows] == [("https://a.example/1.jpg", ""), ("https://a.example/2.jpg", "")]
    assert counts["dropped"]["empty_url"] == 1 and counts["dropped"]["invalid_url"] == 1

    csv = tmp_path / "list.csv"
    csv.write_text("url,caption\nhttps://a.example/1.jpg,one\nhttps://a.example/2.jpg,two,three\n"
                   "https://a.example/3.jpg,three\n")
    counts = ingest(tmp_path / "csv", IngestOptions(path=str(csv)))
    assert read_table(tmp_path / "csv", "pairs").column("caption").to_pylist() == ["one", "three"]
    assert counts["dropped"]["malformed_row"] == 1 and counts["rows"] == 3


def test_no_caption_column(tmp_path):
    path = tmp_path / "list.parquet"
    pq.write_table(pa.table({"url": ["https://a.example/1.jpg"], "caption": ["kept as src_caption"]}), path)
    ingest(tmp_path / "run", IngestOptions(path=str(path), caption_col=None))
    row = read_table(tmp_path / "run", "pairs").to_pylist()[0]
    assert row["caption"] == "" and row["src_caption"] == "kept as src_caption"


def test_missing_column_names_file_column_and_columns(tmp_path):
    path = tmp_path / "list.csv"
    pd.DataFrame(ROWS).to_csv(path, index=False)
    with pytest.raises(ValueError) as error:
        ingest(tmp_path / "run", _options(path, url_col="URL"))
    message = str(error.value)
    assert str(path) in message and "'URL'" in message and "'link'" in message and "'text'" in message
    with pytest.raises(ValueError, match="'TEXT'"):
        ingest(tmp_path / "run", _options(path, caption_col="TEXT"))
    with pytest.raises(ValueError, match="unsupported URL list format"):
        ingest(tmp_path / "run", _options(path.rename(tmp_path / "list.xlsx")))


def test_streams_in_batches_into_parts_and_reruns_identically(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest_module, "BATCH_ROWS", 700)  # many batches, batches straddling parts
    run = tmp_path / "run"
    options = IngestOptions(path=str(LAION), url_col="URL", caption_col="TEXT", rows_per_part=4000)
    counts = ingest(run, options)
    assert counts["rows"] == 10_000 and counts["pairs"] == 9_999  # one row's URL is the word "UNLIKELY"
    assert counts["dropped"]["invalid_url"] == 1 and counts["parts"] == 3
    assert [pq.ParquetFile(p).metadata.num_rows for p in list_parts(run, "pairs")] == [4000, 4000, 1999]
    first = read_table(run, "pairs")
    assert len(first.column("uid").unique()) == 9_999
    assert sum(first.column("caption_truncated").to_pylist()) == 2  # the two captions over 1000 characters
    source = pd.read_parquet(LAION)
    assert first.column("url").to_pylist()[:3] == source["URL"].str.strip().tolist()[:3]

    monkeypatch.setattr(ingest_module, "BATCH_ROWS", 65_536)
    ingest(run, options)  # another batch size, same table
    assert read_table(run, "pairs").equals(first)


def test_cli_ingest(tmp_path):
    runner = CliRunner()
    run = tmp_path / "run"
    result = runner.invoke(app, ["ingest", str(LAION), "--run", str(run), "--url-col", "URL", "--caption-col", "TEXT"])
    assert result.exit_code == 0, result.output
    assert read_table(run, "pairs", ["uid"]).num_rows == 9_999
    counts = json.loads((run / "manifest.json").read_text())["stages"]["ingest"]["counts"]
    assert counts["pairs"] == 9_999 and counts["dropped"]["invalid_url"] == 1

    bad = runner.invoke(app, ["ingest", str(LAION), "--run", str(run), "--url-col", "link"])
    assert bad.exit_code == 2 and "'link'" in bad.output and "URL" in bad.output
