"""ingest: every URL list img2dataset ingests -> pairs/, streamed batch by batch, with drops counted.

Lists are written by pandas (every `to_json` orient, `to_csv` with and without its index, `to_parquet` with a named
and an unnamed index), so the writer, not this code, decides what a format looks like.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import curate.sources.list_reader as list_reader
from curate.sources.ingest import ingest
from curate.options import IngestOptions
from curate.schemas import PAIRS
from curate.tables import compute_uid, list_parts, read_table
from pipelines.cli import app

ALT_TEXTS = Path(__file__).resolve().parent / "data" / "captions" / "laion_style_alt_texts_2002.parquet"
SHARED_ALT_TEXTS = Path(__file__).resolve().parents[2] / "shared" / "data" / "captions" / \
    "laion_style_alt_texts_10000.parquet"

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
PANDAS_JSON_ORIENTS = ["records", "columns", "index", "split", "table"]


def _check_pairs(run: Path, expected=EXPECTED, extra="src_uid") -> pa.Table:
    table = read_table(run, "pairs")
    assert table.schema.names[: len(PAIRS)] == PAIRS.names
    rows = table.to_pylist()
    assert [(r["url"], r["caption"], r["caption_truncated"], r[extra]) for r in rows] == expected
    for row in rows:
        assert row["uid"] == compute_uid(row["url"], row["caption"])
        assert (row["source"], row["caption_source"], row["page_url"]) == ("ingest", "list", None)
    return table


def _options(path: Path, **kwargs) -> IngestOptions:
    return IngestOptions(path=str(path), url_col=kwargs.pop("url_col", "link"),
                         caption_col=kwargs.pop("caption_col", "text"),
                         save_additional_columns=kwargs.pop("save", ["uid", "width"]), **kwargs)


def _write(frame: pd.DataFrame, path: Path, fmt: str) -> None:
    if fmt == "parquet":
        frame.to_parquet(path)
    elif fmt in ("csv", "csv.gz"):
        frame.to_csv(path, index=False)
    elif fmt == "tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif fmt in ("jsonl", "jsonl.gz"):
        frame.to_json(path, orient="records", lines=True)
    elif fmt == "txt":
        path.write_text("\n".join(frame.iloc[:, 0].fillna("")) + "\n")
    else:
        raise AssertionError(fmt)


@pytest.mark.parametrize("fmt", ["parquet", "csv", "tsv", "jsonl", "csv.gz", "jsonl.gz"])
def test_formats(tmp_path, fmt):
    path = tmp_path / f"list.{fmt}"
    _write(pd.DataFrame(ROWS), path, fmt)
    counts = ingest(tmp_path / "run", _options(path))
    table = _check_pairs(tmp_path / "run")
    assert counts["dropped"] == EXPECTED_DROPS and counts["rows"] == 6 and counts["pairs"] == 3
    assert table.column_names[len(PAIRS):] == ["src_uid", "width"]  # named by the flag, contract names prefixed


@pytest.mark.parametrize("orient", PANDAS_JSON_ORIENTS)
def test_every_pandas_json_orient(tmp_path, orient):
    path = tmp_path / "list.json"
    frame = pd.DataFrame(ROWS)
    frame.to_json(path, orient=orient)
    counts = ingest(tmp_path / "run", _options(path))
    _check_pairs(tmp_path / "run")
    assert counts["json_orient"] == orient and counts["dropped"] == EXPECTED_DROPS


def test_pandas_default_to_json_is_read_with_its_numbers_as_text(tmp_path):
    """pandas' default `DataFrame.to_json()` (column-oriented) used to end in a 15 KB Arrow traceback."""
    path = tmp_path / "list.json"
    frame = pd.DataFrame(ROWS).assign(width=[640, 480, 1, 2, 3, 4])
    path.write_text(frame.to_json())  # orient="columns", numbers as JSON numbers, index labels "0".."5"
    counts = ingest(tmp_path / "run", _options(path))
    assert counts["json_orient"] == "columns"
    assert read_table(tmp_path / "run", "pairs").column("width").to_pylist() == ["640", "480", "4"]


def test_values_orient_and_json_lines_in_a_json_file(tmp_path):
    values = tmp_path / "values.json"
    pd.DataFrame(ROWS).to_json(values, orient="values")  # no column names: "0", "1", ...
    counts = ingest(tmp_path / "v", _options(values, url_col="0", caption_col="1", save=["2"]))
    assert counts["json_orient"] == "values"
    _check_pairs(tmp_path / "v", extra="2")
    lines = tmp_path / "lines.json"
    pd.DataFrame(ROWS).to_json(lines, orient="records", lines=True)
    ingest(tmp_path / "l", _options(lines))
    _check_pairs(tmp_path / "l")


def test_index_columns_are_dropped(tmp_path):
    frame = pd.DataFrame(ROWS)
    csv = tmp_path / "with_index.csv"
    frame.to_csv(csv)  # pandas writes its index first, under an empty name
    counts = ingest(tmp_path / "csv", _options(csv, save=None))
    assert counts["index_columns_dropped"] == [""]
    assert read_table(tmp_path / "csv", "pairs").column_names == PAIRS.names

    parquet = tmp_path / "with_index.parquet"
    frame.set_index("uid").to_parquet(parquet)  # a named index, stored as a column + pandas metadata
    counts = ingest(tmp_path / "pq", _options(parquet, save=["width"]))
    assert counts["index_columns_dropped"] == ["uid"]
    assert read_table(tmp_path / "pq", "pairs").column_names == PAIRS.names + ["width"]
    frame.iloc[[0, 1, 5]].to_parquet(parquet)  # a non-range index: __index_level_0__
    ingest(tmp_path / "pq2", _options(parquet, save=["uid", "width"]))
    assert "__index_level_0__" not in read_table(tmp_path / "pq2", "pairs").column_names


@pytest.mark.parametrize("fmt", ["parquet", "csv", "tsv", "jsonl", "json", "txt", "csv.gz", "txt.gz"])
def test_url_only_lists_in_every_format_give_null_captions(tmp_path, fmt):
    urls = ["https://a.example/1.jpg", "https://a.example/2.jpg", None, "https://a.example/1.jpg"]
    frame = pd.DataFrame({"url": urls})
    path = tmp_path / f"list.{fmt}"
    if fmt == "json":
        frame.to_json(path, orient="records")
    elif fmt == "txt.gz":
        path.write_bytes(gzip.compress("\n".join(u or "" for u in urls).encode()))
    else:
        _write(frame, path, fmt)
    counts = ingest(tmp_path / "run", IngestOptions(path=str(path)))  # default caption_col "caption" is absent
    rows = read_table(tmp_path / "run", "pairs").to_pylist()
    assert [(r["url"], r["caption"]) for r in rows] == [(urls[0], None), (urls[1], None)]
    assert rows[0]["uid"] == compute_uid(urls[0], None)
    assert counts["dropped"]["empty_url"] == 1 and counts["dropped"]["duplicate_in_list"] == 1
    assert counts["empty_caption"] == 2 and counts["caption_column"] is None
    if fmt != "txt" and fmt != "txt.gz":
        assert "no 'caption' column" in counts["notes"][0]


def test_caption_col_none_ignores_a_caption_column(tmp_path):
    path = tmp_path / "list.parquet"
    pq.write_table(pa.table({"url": ["https://a.example/1.jpg"], "caption": ["not read"]}), path)
    ingest(tmp_path / "run", IngestOptions(path=str(path), caption_col="none"))
    row = read_table(tmp_path / "run", "pairs").to_pylist()[0]
    assert row["caption"] is None and "src_caption" not in row
    ingest(tmp_path / "run", IngestOptions(path=str(path), caption_col=None, save_additional_columns=["caption"]))
    assert read_table(tmp_path / "run", "pairs").to_pylist()[0]["src_caption"] == "not read"


def test_nan_and_empty_cells_and_10k_character_urls(tmp_path):
    long_url = "https://a.example/" + "a" * 10_000 + ".jpg"
    frame = pd.DataFrame({"url": ["https://a.example/1.jpg", math.nan, "", "   ", long_url, "https://a.example/3.jpg",
                                  "https://a.example/4.jpg"],
                          "caption": ["one", "nan url", "empty url", "blank url", "long", math.nan, "   "]})
    for fmt in ("parquet", "csv", "jsonl"):
        path = tmp_path / f"list.{fmt}"
        _write(frame, path, fmt)
        counts = ingest(tmp_path / fmt, IngestOptions(path=str(path)))
        rows = read_table(tmp_path / fmt, "pairs").to_pylist()
        assert [(r["url"], r["caption"]) for r in rows] == [
            ("https://a.example/1.jpg", "one"), (long_url, "long"), ("https://a.example/3.jpg", None),
            ("https://a.example/4.jpg", None)], fmt
        assert counts["dropped"]["empty_url"] == 3 and counts["empty_caption"] == 2, fmt
        assert len(rows[1]["url"]) == 10_022


def test_malformed_rows_are_counted_with_their_line(tmp_path):
    txt = tmp_path / "urls.txt.gz"
    txt.write_bytes(gzip.compress(b"https://a.example/1.jpg\n\nnot a url\nhttps://a.example/2.jpg\n"))
    counts = ingest(tmp_path / "txt", IngestOptions(path=str(txt)))
    rows = read_table(tmp_path / "txt", "pairs").to_pylist()
    assert [(r["url"], r["caption"]) for r in rows] == [("https://a.example/1.jpg", None),
                                                       ("https://a.example/2.jpg", None)]
    assert counts["dropped"]["empty_url"] == 1 and counts["dropped"]["invalid_url"] == 1

    csv = tmp_path / "list.csv"
    csv.write_text("url,caption\nhttps://a.example/1.jpg,one\nhttps://a.example/2.jpg,two,three\n"
                   "https://a.example/3.jpg,three\n")
    counts = ingest(tmp_path / "csv", IngestOptions(path=str(csv)))
    assert read_table(tmp_path / "csv", "pairs").column("caption").to_pylist() == ["one", "three"]
    assert counts["dropped"]["malformed_row"] == 1 and counts["rows"] == 3
    assert counts["malformed_examples"][0].startswith("list.csv ")
    assert "'https://a.example/2.jpg,two,three' has 3 fields, the header 2" in counts["malformed_examples"][0]

    jsonl = tmp_path / "list.jsonl"
    jsonl.write_text('{"url": "https://a.example/1.jpg"}\n{"url": "https://a.exa\n["https://a.example/2.jpg"]\n'
                     '{"url": "https://a.example/3.jpg", "caption": 3}\n')
    counts = ingest(tmp_path / "jsonl", IngestOptions(path=str(jsonl)))
    assert read_table(tmp_path / "jsonl", "pairs").column("caption").to_pylist() == [None, "3"]
    assert counts["dropped"]["malformed_row"] == 2
    assert counts["malformed_examples"][0].startswith("list.jsonl line 2 is not JSON")
    assert counts["malformed_examples"][1] == "list.jsonl line 3 is a JSON list, not an object"


def test_errors_name_the_file_and_the_field(tmp_path):
    path = tmp_path / "list.csv"
    pd.DataFrame(ROWS).to_csv(path, index=False)
    with pytest.raises(ValueError) as error:
        ingest(tmp_path / "run", _options(path, url_col="URL"))
    message = str(error.value)
    assert str(path) in message and "'URL'" in message and "'link'" in message and "'text'" in message
    with pytest.raises(ValueError, match="'TEXT'"):
        ingest(tmp_path / "run", _options(path, caption_col="TEXT"))
    with pytest.raises(ValueError, match=r"'nope' \(--save-additional-columns\) not found"):
        ingest(tmp_path / "run", _options(path, save=["width", "nope"]))
    with pytest.raises(ValueError, match="unsupported URL list format"):
        ingest(tmp_path / "run", _options(path.rename(tmp_path / "list.xlsx")))
    broken = tmp_path / "broken.json"
    broken.write_text('{"url": {"0": "https://a.example/1.jpg",\n "1": }}')
    with pytest.raises(ValueError, match=r"broken.json: not valid JSON at line 2 column 7"):
        ingest(tmp_path / "run", IngestOptions(path=str(broken)))
    nested = tmp_path / "nested.parquet"
    pq.write_table(pa.table({"url": [{"href": "https://a.example/1.jpg"}]}), nested)
    with pytest.raises(ValueError, match=r"column 'url' \(--url-col\) holds struct"):
        ingest(tmp_path / "run", IngestOptions(path=str(nested)))


def test_streams_in_batches_into_parts_and_reruns_identically(tmp_path, monkeypatch):
    monkeypatch.setattr(list_reader, "BATCH_ROWS", 300)  # many batches, batches straddling parts
    run = tmp_path / "run"
    options = IngestOptions(path=str(ALT_TEXTS), url_col="URL", caption_col="TEXT", rows_per_part=800)
    counts = ingest(run, options)
    source = pd.read_parquet(ALT_TEXTS)  # oracle: the same rules in pandas
    valid = source["URL"].str.strip().str.match(r"^https?://[^/\s]+")
    assert counts["rows"] == 2002 and counts["dropped"]["invalid_url"] == int((~valid).sum()) == 1  # "UNLIKELY"
    assert counts["pairs"] == int(valid.sum()) == 2001 and counts["parts"] == 3
    assert [pq.ParquetFile(p).metadata.num_rows for p in list_parts(run, "pairs")] == [800, 800, 401]
    first = read_table(run, "pairs")
    assert len(first.column("uid").unique()) == 2001
    long = int((source["TEXT"].str.split().str.join(" ").str.len() > 1000).sum())
    assert sum(first.column("caption_truncated").to_pylist()) == long == 2
    assert first.column("url").to_pylist()[:3] == source["URL"].str.strip().tolist()[:3]

    monkeypatch.setattr(list_reader, "BATCH_ROWS", 65_536)
    ingest(run, options)  # another batch size, same table
    assert read_table(run, "pairs").equals(first)

    if SHARED_ALT_TEXTS.is_file():  # all 10,000 when ../shared is beside the checkout
        counts = ingest(tmp_path / "all", IngestOptions(path=str(SHARED_ALT_TEXTS), url_col="URL", caption_col="TEXT"))
        assert counts["rows"] == 10_000 and counts["pairs"] == 9_999 and counts["dropped"]["invalid_url"] == 1




def test_cli_ingest(tmp_path):
    runner = CliRunner()
    run = tmp_path / "run"
    result = runner.invoke(app, ["ingest", str(ALT_TEXTS), "--run", str(run), "--url-col", "URL", "--caption-col",
                                 "TEXT"])
    assert result.exit_code == 0, result.output
    assert read_table(run, "pairs", ["uid"]).num_rows == 2_001
    counts = json.loads((run / "manifest.json").read_text())["stages"]["ingest"]["counts"]
    assert counts["pairs"] == 2_001 and counts["dropped"]["invalid_url"] == 1

    bad = runner.invoke(app, ["ingest", str(ALT_TEXTS), "--run", str(run), "--url-col", "link"])
    assert bad.exit_code == 2 and "'link'" in bad.output and "URL" in bad.output

    listed = tmp_path / "list.json"
    listed.write_text(pd.DataFrame(ROWS).to_json())
    ok = runner.invoke(app, ["ingest", str(listed), "--run", str(run), "--url-col", "link", "--caption-col", "none",
                             "--save-additional-columns", "width,text"])
    assert ok.exit_code == 0, ok.output
    table = read_table(run, "pairs")
    assert table.column_names[len(PAIRS):] == ["width", "text"]
    assert table.column("caption").null_count == 3 == table.num_rows


def test_a_uid_repeated_across_batches_and_parts_is_kept_once_in_list_order(tmp_path, monkeypatch):
    """No set of every uid is held: repeats within a batch go at once, repeats across batches in a DuckDB pass.
    Oracle: the list's first occurrence of each (url, caption), in list order."""
    import random

    import curate.sources.list_reader as list_reader
    from curate.sources.ingest import ingest as ingest_list

    monkeypatch.setattr(list_reader, "BATCH_ROWS", 700)  # many batches
    rng = random.Random(0)
    urls = [f"http://e.org/{rng.randint(0, 3000)}.jpg" for _ in range(9000)]
    captions = [rng.choice(["a", "b"]) for _ in urls]
    pq.write_table(pa.table({"url": urls, "caption": captions}), tmp_path / "list.parquet")
    counts = ingest_list(tmp_path / "run", IngestOptions(path=str(tmp_path / "list.parquet"), rows_per_part=1000))
    pairs = read_table(tmp_path / "run", "pairs")
    expected = list(dict.fromkeys(zip(urls, captions)))
    assert list(zip(pairs["url"].to_pylist(), pairs["caption"].to_pylist())) == expected
    assert counts["pairs"] == len(expected) and counts["dropped"]["duplicate_in_list"] == len(urls) - len(expected)
