"""`fairsift search`: nearest pairs by cosine over the stored embeddings of a run scored by the tiny test model.

The oracle is brute force: every stored embedding compared with the query in numpy, sorted by cosine."""

from __future__ import annotations

import json
import os

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from curate import tables  # noqa: E402
from curate.filter.stage import default_filter_config, filter_run  # noqa: E402
from curate.options import ScoreOptions  # noqa: E402
from curate.score.clip_model import encode_texts, load_clip  # noqa: E402
from curate.score.stage import score  # noqa: E402
from curate.search.index import load_or_build  # noqa: E402
from curate.search.query import search  # noqa: E402
from pipelines.cli import app  # noqa: E402
from tests.run_builder import SAMPLE_DIR, planted_rows, write_run  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = write_run(tmp_path_factory.mktemp("search") / "run", list(planted_rows().values()), parts=2)
    score(run, ScoreOptions(model="tiny-test", device="cpu", workers=0, batch_size=64))
    filter_run(run, default_filter_config())
    return run


def _stored(run_dir, modality="image") -> tuple[list[str], np.ndarray]:
    emb = tables.read_table(run_dir, "embeddings").to_pandas()
    vectors = np.stack([np.asarray(v, dtype=np.float32) for v in emb[f"{modality}_embedding"]])
    return emb["uid"].tolist(), vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _brute_force(run_dir, query: np.ndarray, k: int, exclude=None, keep=None, modality="image") -> list[str]:
    uids, vectors = _stored(run_dir, modality)
    cos = vectors @ (query / np.linalg.norm(query))
    order = [uids[i] for i in np.argsort(-cos, kind="stable")
             if uids[i] != exclude and (keep is None or uids[i] in keep)]
    return order[:k]


def test_text_query_matches_brute_force_and_says_it_is_the_test_model(run_dir):
    result = search(run_dir, text="a photo of a red bicycle", k=5)
    loaded = load_clip("tiny-test", device="cpu")
    query = encode_texts(loaded, ["a photo of a red bicycle"])[0]
    assert result.table.column("uid").to_pylist() == _brute_force(run_dir, query, 5)
    scores = result.table.column("score").to_pylist()
    assert scores == sorted(scores, reverse=True) and all(-1.0001 <= s <= 1.0001 for s in scores)
    assert result.info["is_test_model"] and "TEST model" in result.info["note"]
    rows = result.table.to_pylist()
    shards = tables.read_table(run_dir, "shards", columns=["uid", "caption", "url"]).to_pandas().set_index("uid")
    for row in rows:
        assert row["caption"] == shards.loc[row["uid"], "caption"] and row["url"] == shards.loc[row["uid"], "url"]
        assert row["kept"] is not None and row["clip_score"] is not None


def test_uid_query_leaves_the_pair_out_and_kept_only_filters(run_dir):
    uids, vectors = _stored(run_dir)
    target = uids[3]
    result = search(run_dir, uid=target, k=4)
    assert result.table.column("uid").to_pylist() == _brute_force(run_dir, vectors[3], 4, exclude=target)
    decisions = tables.read_table(run_dir, "decisions").to_pandas()
    keep = set(decisions.loc[decisions["kept"], "uid"])
    kept = search(run_dir, uid=target, k=3, kept_only=True)
    assert kept.table.column("uid").to_pylist() == _brute_force(run_dir, vectors[3], 3, exclude=target, keep=keep)
    assert all(kept.table.column("kept").to_pylist())
    text = search(run_dir, uid=target, k=3, against="text")
    _, text_vectors = _stored(run_dir, "text")
    assert text.table.column("uid").to_pylist() == _brute_force(run_dir, text_vectors[3], 3, exclude=target,
                                                                modality="text")


def test_image_query_encodes_the_file_with_the_run_model(run_dir):
    image = SAMPLE_DIR / "images" / sorted(p.name for p in (SAMPLE_DIR / "images").glob("*.jpg"))[0]
    result = search(run_dir, image=image, k=3)
    from PIL import Image

    from curate.score.clip_model import encode_images

    loaded = load_clip("tiny-test", device="cpu")
    with Image.open(image) as img:
        query = encode_images(loaded, loaded.preprocess(img.convert("RGB")).unsqueeze(0))[0]
    assert result.table.column("uid").to_pylist() == _brute_force(run_dir, query, 3)


def test_index_is_built_once_and_rebuilt_when_embeddings_change(run_dir, tmp_path):
    first = load_or_build(run_dir)
    again = load_or_build(run_dir)
    assert not again.rebuilt and again.record == first.record
    assert set(first.record["built_from"]) == {f"signals/embeddings/part-0000{i}.parquet" for i in range(2)}
    assert "TEST MODEL" in first.record["model"] and first.record["factory"] == "Flat"

    # a changed embeddings part (as after a rescore): the index notices and is rebuilt from the new vectors
    part = tables.list_parts(run_dir, "embeddings")[1]
    table = pa.parquet.read_table(part)
    flipped = pa.array([[-x for x in v] for v in table.column("image_embedding").to_pylist()],
                       table.schema.field("image_embedding").type)
    tables.atomic_write_parquet(table.set_column(1, "image_embedding", flipped), part)
    rebuilt = load_or_build(run_dir)
    assert rebuilt.rebuilt and rebuilt.record["built_from"] != first.record["built_from"]
    uids, vectors = _stored(run_dir)
    result = search(run_dir, uid=uids[0], k=5)
    assert result.table.column("uid").to_pylist() == _brute_force(run_dir, vectors[0], 5, exclude=uids[0])


def test_ivf_index_answers_like_brute_force_when_it_probes_every_list(run_dir, tmp_path):
    ivf = load_or_build(run_dir, factory="IVF2,Flat")
    assert ivf.rebuilt and ivf.record["factory"] == "IVF2,Flat"
    uids, vectors = _stored(run_dir)
    scores, ids = ivf.index.search(vectors[:1], 4)
    assert [ivf.uids[i] for i in ids[0]] == _brute_force(run_dir, vectors[0], 4)


def test_cli_search_table_json_and_errors(run_dir, tmp_path):
    runner = CliRunner()
    uid = tables.read_table(run_dir, "embeddings", columns=["uid"]).column("uid")[0].as_py()
    table = runner.invoke(app, ["search", str(run_dir), "--uid", uid, "-k", "3"])
    assert table.exit_code == 0, table.output
    assert "rank" in table.stdout and "score" in table.stdout and len(table.stdout.strip().splitlines()) >= 4
    as_json = runner.invoke(app, ["search", str(run_dir), "--text", "a dog", "-k", "2", "--format", "json",
                                  "--kept-only"])
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert len(data["results"]) == 2 and all(r["kept"] for r in data["results"])
    assert data["is_test_model"] and "TEST model" in data["note"]

    none = runner.invoke(app, ["search", str(run_dir)])
    assert none.exit_code == 2 and "exactly one query" in none.output
    unknown = runner.invoke(app, ["search", str(run_dir), "--uid", "nope"])
    assert unknown.exit_code == 2 and "uid nope has no stored embedding" in unknown.output
    other = runner.invoke(app, ["search", str(run_dir), "--text", "x", "--model", "ViT-B-32", "--pretrained", "nope"])
    assert other.exit_code == 2
    empty = write_run(tmp_path / "empty", list(planted_rows().values())[:3], parts=1)
    missing = runner.invoke(app, ["search", str(empty), "--text", "x"])
    assert missing.exit_code == 2 and "fairsift score" in missing.output
