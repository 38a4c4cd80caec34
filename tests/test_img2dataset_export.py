"""`fairsift export --format img2dataset` against img2dataset itself: the same images, served on loopback, go once
through fairsift (download, filter, export) and once through bare `img2dataset.download` with the same resize
options and the same additional columns; the two output folders must have the same file names, column names,
column order, types, keys, .json fields and values. The exports are then read with pandas, DuckDB, Hugging Face
`datasets` and `webdataset`."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import duckdb  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from curate import schemas, tables  # noqa: E402
from curate.download.stage import download, img2dataset_arguments  # noqa: E402
from curate.export.stage import export  # noqa: E402
from curate.filter.stage import FilterConfig, filter_run  # noqa: E402
from curate.net.loopback import LoopbackServer  # noqa: E402
from curate.options import DownloadOptions, ExportOptions  # noqa: E402
from tests.run_builder import SAMPLE_DIR  # noqa: E402

IMAGES = sorted((SAMPLE_DIR / "images").glob("*.jpg"))[:5]
ADDITIONAL = ["uid", "clip_score", "clip_model", "licence"]
OPTIONS = DownloadOptions(image_size=64, threads=4, processes=1, timeout=5, allow_private_network=True)


def _bare_img2dataset(url_list: Path, output: Path, output_format: str) -> Path:
    import img2dataset

    args = img2dataset_arguments(OPTIONS, 10_000)
    args.update(output_format=output_format, save_additional_columns=ADDITIONAL)
    img2dataset.download(url_list=str(url_list), output_folder=str(output), **args)
    return output


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("i2d")
    run = root / "run"
    with LoopbackServer(SAMPLE_DIR / "images") as server:
        urls = [server.url(p.name) for p in IMAGES]
        captions = [f"a sample photo, number {i} — é" for i in range(len(urls))]
        uids = [tables.compute_uid(u, c) for u, c in zip(urls, captions)]
        n = len(urls)
        scores = [0.2 + 0.01 * i for i in range(n)]
        pairs = pa.table({"uid": uids, "url": urls, "caption": captions, "page_url": pa.nulls(n, pa.string()),
                          "source": ["ingest"] * n, "caption_source": ["list"] * n, "caption_truncated": [False] * n,
                          "licence": [f"CC BY 2.0 #{i}" for i in range(n)]})
        tables.write_part(run, "pairs", 0, pairs)
        download(run, OPTIONS)
        tables.write_table(run, "clip", pa.table({"uid": uids, "clip_score": pa.array(scores, pa.float32()),
                                                  "model": ["tiny-test"] * n}, schema=schemas.CLIP))
        filter_run(run, FilterConfig.model_validate({"steps": []}))
        export(run, ExportOptions(format="img2dataset"))
        ours_parquet = pd.read_parquet(run / "img2dataset" / "00000.parquet")
        ours_parquet_files = sorted(p.name for p in (run / "img2dataset").iterdir())
        ours_schema = pq.read_schema(run / "img2dataset" / "00000.parquet")

        url_list = root / "list.parquet"
        pq.write_table(pa.table({"url": urls, "caption": captions, "uid": uids,
                                 "clip_score": pa.array(scores, pa.float32()), "clip_model": ["tiny-test"] * n,
                                 "licence": pairs["licence"]}), url_list)
        bare_parquet = _bare_img2dataset(url_list, root / "bare_parquet", "parquet")
        bare_wds = _bare_img2dataset(url_list, root / "bare_wds", "webdataset")
    export(run, ExportOptions(format="img2dataset", webdataset=True))
    return {"run": run, "ours_parquet": ours_parquet, "ours_parquet_files": ours_parquet_files,
            "ours_schema": ours_schema, "bare_parquet": bare_parquet, "bare_wds": bare_wds, "n": n}


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def test_parquet_layout_matches_img2dataset(outputs):
    bare = outputs["bare_parquet"]
    assert outputs["ours_parquet_files"] == _files(bare) == ["00000.parquet", "00000_stats.json"]
    theirs_schema = pq.read_schema(bare / "00000.parquet")
    assert outputs["ours_schema"].names == theirs_schema.names  # same columns in the same order, image as `jpg`
    assert theirs_schema.names[:4] == ADDITIONAL and theirs_schema.names[-1] == "jpg"
    for field in theirs_schema:
        assert outputs["ours_schema"].field(field.name).type == field.type, field.name
    ours = outputs["ours_parquet"].set_index("key").sort_index()
    theirs = pd.read_parquet(bare / "00000.parquet").set_index("key").sort_index()
    assert ours.index.tolist() == theirs.index.tolist() == [f"{i:09d}" for i in range(outputs["n"])]
    same = ["uid", "caption", "url", "status", "width", "height", "original_width", "original_height", "exif",
            "sha256", "licence", "clip_model"]
    pd.testing.assert_frame_equal(ours[same], theirs[same], check_dtype=False)
    assert ours["clip_score"].tolist() == pytest.approx(theirs["clip_score"].tolist())
    for key in ours.index:  # the same resize options give the same JPEG
        with Image.open(io.BytesIO(ours.loc[key, "jpg"])) as a, Image.open(io.BytesIO(theirs.loc[key, "jpg"])) as b:
            assert a.size == b.size
    ours_stats = json.loads((outputs["run"] / "img2dataset" / "00000_stats.json").read_text())
    assert list(ours_stats) == list(json.loads((bare / "00000_stats.json").read_text()))
    assert ours_stats["count"] == ours_stats["successes"] == outputs["n"]


def test_webdataset_layout_matches_img2dataset(outputs):
    ours_dir, bare = outputs["run"] / "img2dataset", outputs["bare_wds"]
    assert _files(ours_dir) == _files(bare) == ["00000.parquet", "00000.tar", "00000_stats.json"]
    assert pq.read_schema(ours_dir / "00000.parquet").names == pq.read_schema(bare / "00000.parquet").names

    def members(path: Path) -> dict[str, bytes]:
        with tarfile.open(path) as tar:
            return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}

    ours, theirs = members(ours_dir / "00000.tar"), members(bare / "00000.tar")
    assert sorted(ours) == sorted(theirs)
    assert {name.split(".", 1)[1] for name in ours} == {"jpg", "txt", "json"}
    for name in ours:
        if name.endswith(".json"):
            mine, other = json.loads(ours[name]), json.loads(theirs[name])
            assert list(mine) == list(other)  # the same fields in the same order
            assert {k: v for k, v in mine.items() if k != "clip_score"} == \
                {k: v for k, v in other.items() if k != "clip_score"}
            assert ours[name].decode().startswith("{\n    ")  # indent=4, as img2dataset writes it
        elif name.endswith(".txt"):
            assert ours[name] == theirs[name]


def test_exports_read_with_pandas_duckdb_datasets_and_webdataset(outputs, tmp_path):
    run, n = outputs["run"], outputs["n"]
    folder = run / "img2dataset"
    assert len(pd.read_parquet(folder / "00000.parquet")) == n
    assert duckdb.sql(f"select count(*) from read_parquet('{folder}/*.parquet')").fetchall() == [(n,)]
    corpus = pd.read_parquet(run / "corpus")
    assert list(corpus.columns[-1:]) == ["licence"] and len(corpus) == n
    assert duckdb.sql(f"select count(distinct key) from read_parquet('{run}/corpus/*.parquet')").fetchall() == [(n,)]

    import datasets
    import webdataset as wds

    ds = datasets.load_dataset("parquet", data_dir=str(run / "corpus"), split="train", cache_dir=str(tmp_path / "hf"))
    assert isinstance(ds.features["image"], datasets.Image) and ds.num_rows == n
    assert isinstance(ds[0]["image"], Image.Image)
    samples = list(wds.WebDataset(str(folder / "00000.tar"), shardshuffle=False).decode("pil"))
    assert len(samples) == n and all(isinstance(s["jpg"], Image.Image) for s in samples)
    assert sorted(s["__key__"] for s in samples) == sorted(corpus["key"])
    assert {s["json"]["uid"] for s in samples} == set(corpus["uid"])
